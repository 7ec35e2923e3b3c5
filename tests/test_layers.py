"""The import rules between gnoicert's packages (docs/architecture.md, "Packages and imports").

Every module under src/gnoicert is parsed, and each import of gnoicert.* (module level, inside
functions, under TYPE_CHECKING, relative or absolute) becomes an edge between two packages. An
edge that ALLOWED does not list fails, naming the file and line, so a new dependency between
layers is a decision written here and in the architecture document, never an accident.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "gnoicert"

TOP = "gnoicert"  # gnoicert/__init__.py: the library's public names, loaded lazily from client
PACKAGES = frozenset({"proto", "pki", "common", "daemon", "client", "cli", "lab", "nornir"})
REQUIRED = frozenset({"proto", "pki", "daemon", "client", "cli"})

# package -> the packages it may import (imports inside a package are always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    TOP: frozenset({"client"}),
    "proto": frozenset(),
    "common": frozenset(),
    "pki": frozenset({"common"}),
    "daemon": frozenset({"pki", "proto", "common"}),
    "client": frozenset({"pki", "proto", "common"}),
    "cli": frozenset({TOP, "client", "pki", "proto", "common", "lab"}),
    "lab": frozenset({"daemon", "client", "pki", "proto", "common"}),
    # The optional Nornir tasks are another front end on the client library, like the CLI.
    "nornir": frozenset({"client", "common"}),
}
# Edges that must not run when the importing module loads (only inside functions).
LAZY_ONLY = frozenset({("cli", "lab")})
# Names any package may take from gnoicert/__init__.py: constants that pull in no layer.
TOP_CONSTANTS = frozenset({"__version__"})
# Packages that must stay off the network stack.
NO_GRPC = frozenset({"pki", "common"})


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target inside gnoicert, where it is, and whether it runs at load."""

    path: Path
    line: int
    module: str  # dotted, absolute: "gnoicert.pki.crypto", "grpc.aio", "gnoicert"
    names: tuple[str, ...]  # the names of a `from ... import`, empty for `import x`
    eager: bool  # runs when the importing module is loaded


def package_of_path(path: Path, root: Path = ROOT) -> str:
    """gnoicert/__init__.py -> TOP; gnoicert/<pkg>/... -> pkg."""
    parts = path.relative_to(root).parts
    return TOP if len(parts) == 1 else parts[0]


def package_of_module(module: str, names: tuple[str, ...]) -> str | None:
    """The package an absolute import lands in; None if it is not gnoicert."""
    parts = module.split(".")
    if parts[0] != TOP:
        return None
    if len(parts) > 1:
        return parts[1]
    # `from gnoicert import pki` reaches the subpackage; `from gnoicert import X` the top module.
    subpackages = {name for name in names if name in PACKAGES}
    if subpackages and len(subpackages) == len(names):
        return subpackages.pop()
    return TOP


def _module_name(path: Path, root: Path) -> list[str]:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, source: str, root: Path = ROOT) -> list[Import]:
    """Every import in a module, relative ones resolved against the module's own package."""
    tree = ast.parse(source, filename=str(path))
    module_parts = _module_name(path, root)
    package_parts = module_parts if path.name == "__init__.py" else module_parts[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_eager = eager
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                child_eager = False
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_one(stmt, eager=False)
                for stmt in child.orelse:
                    visit_one(stmt, eager=eager)
                continue
            visit_one(child, child_eager)

    def visit_one(child: ast.AST, eager: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                found.append(Import(path, child.lineno, alias.name, (), eager))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = package_parts[: len(package_parts) - (child.level - 1)]
                target = ".".join(base + ([child.module] if child.module else []))
            else:
                target = child.module or ""
            names = tuple(alias.name for alias in child.names)
            found.append(Import(path, child.lineno, target, names, eager))
        visit(child, eager)

    visit(tree, eager=True)
    return found


def violations(path: Path, source: str, root: Path = ROOT) -> list[str]:
    """Every broken layer rule in one module, each as 'file:line: what'."""
    importer = package_of_path(path, root)
    where = path.relative_to(root.parent.parent) if root == ROOT else path
    problems: list[str] = []
    if importer not in ALLOWED:
        problems.append(f"{where}:1: module outside the known packages ({sorted(ALLOWED)})")
        return problems
    for imp in imports_of(path, source, root):
        head = imp.module.split(".")[0]
        if importer in NO_GRPC and head.startswith("grpc"):
            problems.append(f"{where}:{imp.line}: {importer} must not import {imp.module}")
        target = package_of_module(imp.module, imp.names)
        if target is None or target == importer:
            continue
        if target == TOP and set(imp.names) <= TOP_CONSTANTS and imp.names:
            continue
        if target not in ALLOWED[importer]:
            problems.append(
                f"{where}:{imp.line}: {importer} -> {target} ({imp.module}) is not an allowed "
                f"edge; {importer} may import {sorted(ALLOWED[importer]) or 'nothing'}"
            )
        elif (importer, target) in LAZY_ONLY and imp.eager:
            problems.append(
                f"{where}:{imp.line}: {importer} may import {target} only inside a function "
                f"(lazily), not when the module loads ({imp.module})"
            )
    return problems


MODULES = sorted(ROOT.rglob("*.py"))


def test_the_layer_packages_exist() -> None:
    present = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert present >= REQUIRED, f"missing packages: {sorted(REQUIRED - present)}"
    assert present <= PACKAGES, (
        f"packages without a rule in tests/test_layers.py: {sorted(present - PACKAGES)}"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layer_rules(path: Path) -> None:
    assert violations(path, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if package_of_path(p) == "common"] or [None],
    ids=lambda p: str(p.relative_to(ROOT)) if p else "no-common-package",
)
def test_common_needs_only_the_standard_library(path: Path | None) -> None:
    if path is None:
        pytest.skip("src/gnoicert/common does not exist on this branch")
    outside = [
        f"{path.name}:{imp.line}: {imp.module}"
        for imp in imports_of(path, path.read_text(encoding="utf-8"))
        if imp.module.split(".")[0] not in sys.stdlib_module_names
        and package_of_module(imp.module, imp.names) != "common"
        and imp.module != "__future__"
    ]
    assert outside == []


# -- the checker itself: it must fail on what it is meant to catch ------------------------------


def _fake(tmp_path: Path, package: str, source: str) -> tuple[Path, Path]:
    root = tmp_path / "gnoicert"
    path = root / package / "mod.py" if package != TOP else root / "__init__.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path, root


def test_a_forbidden_edge_names_file_and_line(tmp_path: Path) -> None:
    path, root = _fake(tmp_path, "daemon", "import os\n\nfrom gnoicert.client import models\n")
    [problem] = violations(path, path.read_text(), root)
    assert problem.startswith(f"{path}:3: daemon -> client")


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("client", "from gnoicert.cli.main import main\n", "client -> cli"),
        ("client", "def f() -> None:\n    from gnoicert.daemon import service\n", "-> daemon"),
        ("client", "from gnoicert import CertClient\n", "client -> gnoicert"),
        ("pki", "import grpc\n", "pki must not import grpc"),
        ("pki", "from grpc import aio\n", "pki must not import grpc"),
        ("pki", "from gnoicert.proto import cert_pb2\n", "pki -> proto"),
        ("pki", "from ..daemon import errors\n", "pki -> daemon"),
        ("common", "from gnoicert.pki import crypto\n", "common -> pki"),
        ("cli", "from gnoicert.lab import fleet\n", "only inside a function"),
        ("cli", "from gnoicert.daemon import server\n", "cli -> daemon"),
        ("nornir", "from gnoicert.cli.main import main\n", "nornir -> cli"),
        ("nornir", "from gnoicert.daemon import server\n", "nornir -> daemon"),
        (TOP, "from gnoicert.daemon import server\n", "gnoicert -> daemon"),
    ],
)
def test_each_rule_catches_its_breach(
    tmp_path: Path, package: str, source: str, expected: str
) -> None:
    path, root = _fake(tmp_path, package, source)
    problems = violations(path, source, root)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("daemon", "from gnoicert import __version__\n"),
        ("daemon", "from . import errors\nfrom .errors import DOMAIN\n"),
        ("cli", "def run() -> None:\n    from gnoicert.lab import fleet\n"),
        ("cli", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gnoicert.lab\n"),
        ("lab", "from gnoicert.daemon import server\nfrom gnoicert.client import workflows\n"),
        (TOP, "from gnoicert.client.workflows import CertClient\n"),
    ],
)
def test_allowed_edges_pass(tmp_path: Path, package: str, source: str) -> None:
    path, root = _fake(tmp_path, package, source)
    assert violations(path, source, root) == []

"""docs/architecture.md lists every module of src/gnoicert once, and no module that is gone.

The module tables are the one place a newcomer learns what each module is for; a module added
or renamed without its row would make them quietly wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gnoicert"
DOC = ROOT / "docs" / "architecture.md"
UNLISTED = frozenset({"proto"})  # generated code, described as a package only

_HEADING = re.compile(r"^### `([\w/]+)`$")
_ROW = re.compile(r"^\| `(\w+)` \|(.*)\|$")


def documented() -> dict[str, list[tuple[str, bool]]]:
    """package -> [(module, coming)] from the tables under each "### `package`" heading."""
    tables: dict[str, list[tuple[str, bool]]] = {}
    package = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            package = None
        elif heading := _HEADING.match(line):
            package = heading.group(1)
            tables[package] = []
        elif package is not None and (row := _ROW.match(line)):
            tables[package].append((row.group(1), "(coming)" in row.group(2)))
    return tables


def modules(package: str) -> set[str]:
    return {path.stem for path in (PACKAGE / package).glob("*.py") if path.stem != "__init__"}


def test_every_package_has_a_module_table() -> None:
    packages = {
        path.name
        for path in PACKAGE.iterdir()
        if (path / "__init__.py").exists() and path.name not in UNLISTED
    }
    assert packages <= set(documented())


def test_every_module_is_listed_once_and_every_row_exists() -> None:
    for package, rows in documented().items():
        names = [name for name, _ in rows]
        assert len(names) == len(set(names)), f"{package}: a module listed twice: {names}"
        present = modules(package)
        missing = present - set(names)
        assert not missing, f"docs/architecture.md lists no row for {package}/{sorted(missing)}"
        gone = {name for name, coming in rows if not coming} - present
        assert not gone, f"docs/architecture.md lists {package}/{sorted(gone)}, which is gone"

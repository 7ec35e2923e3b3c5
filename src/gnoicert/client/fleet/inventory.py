"""The fleet inventory: a YAML file of defaults, groups and targets.

The format is documented in docs/operator-guide.md, "Fleet".

Keys are the long command-line option names with `_`. A bad file is reported whole: every
problem at once, each with its file, line and key, so one edit fixes them all. Parsing keeps
PyYAML's node marks for the lines; values are checked here, files named by the inventory are
checked to exist (relative to the inventory file), and nothing is connected to.

Layers, highest first: the caller's `overrides` (command-line options), the target's own keys,
its groups in the order listed (later wins), `defaults`, then the caller's `base` (GNOICERT_*
environment over the client configuration file). `csr` merges key by key; `password_file` and
`password_env` are one setting, so a layer naming either replaces both.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gnoicert.client.channel import ChannelOptions
from gnoicert.client.errors import InputError
from gnoicert.client.models import CsrParams
from gnoicert.common.address import format_host_port, parse_host_port
from gnoicert.common.constants import DEFAULT_PORT, DEFAULT_TIMEOUT_S
from gnoicert.pki.crypto import CSR_SUBJECT_FIELDS, validate_certificate_id
from gnoicert.pki.errors import InvalidCertificateId

LAYER_KEYS: tuple[str, ...] = (
    "port",
    "ca_file",
    "cert",
    "key",
    "server_name",
    "username",
    "password_file",
    "password_env",
    "timeout",
    "insecure",
    "certificate_id",
    "csr",
)
"""Keys allowed in `defaults`, a group, a target and the caller's outer layers."""
TARGET_ONLY_KEYS: tuple[str, ...] = ("address", "groups")
TOP_KEYS: tuple[str, ...] = ("defaults", "groups", "targets")
CSR_KEYS: tuple[str, ...] = (*CSR_SUBJECT_FIELDS, "key_type", "key_size")
PATH_KEYS = frozenset({"ca_file", "cert", "key", "password_file"})
PASSWORD_KEYS = frozenset({"password_file", "password_env"})
TEMPLATE_FIELDS = ("name", "address")

# Names become file names (generate-csr writes one CSR per target) and glob subjects.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_RULE = "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"

Layer = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an inventory: where (file, 1-based line, key path) and what."""

    path: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class InventoryError(InputError):
    """The inventory (or an outer layer) has problems; `problems` lists every one of them."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        count = len(problems)
        lines = "\n".join(f"  {problem}" for problem in problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"the inventory {path} has {count} {noun}:\n{lines}",
            field="inventory",
            check="invalid-inventory",
            path=path,
        )
        self.problems = tuple(problems)


class SelectionError(InputError):
    """`--target`/`--limit` selected nothing, or named neither a target nor an address."""


# ---------------------------------------------------------------------------------------------
# The parsed file and the resolved targets


@dataclass(frozen=True, slots=True)
class TargetEntry:
    """A target as the file gives it: its own keys, its groups, and the host (and the port
    when the address carries one, which then wins over every `port` key)."""

    name: str
    host: str
    address_port: int | None
    groups: tuple[str, ...]
    settings: Layer


@dataclass(frozen=True, slots=True)
class Inventory:
    """A checked inventory: paths are absolute, every group reference exists."""

    path: Path
    defaults: Layer
    groups: Mapping[str, Layer]
    targets: Mapping[str, TargetEntry]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One target with every layer applied and the templates filled in.

    The fields are the command-line options' (a ChannelOptions is built with
    `channel_options`); `csr` holds CsrParams fields. The password itself is never stored:
    `password()` reads it from the file or variable when the runner connects.
    """

    name: str
    address: str
    groups: tuple[str, ...] = ()
    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    insecure: bool = False
    certificate_id: str | None = None
    csr: Mapping[str, str | int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def host(self) -> str:
        return parse_host_port(self.address, default_port=DEFAULT_PORT)[0]

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The password from `password_file` (first line) or `password_env`; None without."""
        if self.password_file:
            try:
                text = Path(self.password_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"{self.name}: cannot read the password file {self.password_file}: "
                    f"{getattr(exc, 'strerror', None) or exc}",
                    field="password_file",
                    check="unreadable",
                    path=self.password_file,
                    target=self.address,
                ) from None
            return text.splitlines()[0] if text else ""
        if self.password_env:
            env = os.environ if environ is None else environ
            if self.password_env not in env:
                raise InputError(
                    f"{self.name}: the password variable {self.password_env} is not set",
                    field="password_env",
                    check="unset",
                    target=self.address,
                )
            return env[self.password_env]
        return None

    def channel_options(self, *, password: str | None = None) -> ChannelOptions:
        """The ChannelOptions for this target (the PEM files are read here)."""
        return ChannelOptions.from_settings(self.address, self, password=password)

    def csr_params(self) -> CsrParams:
        return CsrParams(**self.csr)  # type: ignore[arg-type]  # checked by _check_csr


# ---------------------------------------------------------------------------------------------
# Loading


def load_inventory(path: str | Path) -> Inventory:
    """Parse and check an inventory file; raise InventoryError listing every problem."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InventoryError(shown, [Problem(shown, 0, "", f"cannot read it: {reason}")]) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return _Parser(loader, path).inventory(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        message = f"not valid YAML: {exc.problem or exc.context}"
        raise InventoryError(shown, [Problem(shown, line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise InventoryError(shown, [Problem(shown, 0, "", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()


class _Parser:
    """Walks the node tree, collecting problems instead of stopping at the first."""

    def __init__(self, loader: yaml.SafeLoader, path: Path) -> None:
        self.loader = loader
        self.path = path
        self.shown = str(path)
        self.base_dir = path.parent
        self.problems: list[Problem] = []

    def problem(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(self.shown, line, key, message))

    def inventory(self, root: yaml.Node | None) -> Inventory:
        defaults: Layer = {}
        groups: dict[str, Layer] = {}
        targets: dict[str, TargetEntry] = {}
        if root is None:
            self.problem(None, "", "the file is empty; it needs a `targets` mapping")
        elif not isinstance(root, yaml.MappingNode):
            self.problem(root, "", "the top level must be a mapping of defaults, groups, targets")
        else:
            sections = dict(self.pairs(root, "", TOP_KEYS))
            if "defaults" in sections:
                defaults = self.layer(sections["defaults"][1], "defaults", LAYER_KEYS)
            if "groups" in sections:
                for name, (key_node, node) in self.pairs(sections["groups"][1], "groups", None):
                    if self.check_name(key_node, "groups", name):
                        groups[name] = self.layer(node, f"groups.{name}", LAYER_KEYS)
            if "targets" in sections:
                targets_node = sections["targets"][1]
                for name, (key_node, node) in self.pairs(targets_node, "targets", None):
                    if self.check_name(key_node, "targets", name):
                        entry = self.target(name, key_node, node, groups)
                        if entry is not None:
                            targets[name] = entry
            else:
                self.problem(root, "targets", "missing: the inventory needs a `targets` mapping")
        if self.problems:
            raise InventoryError(self.shown, sorted(self.problems, key=lambda p: p.line))
        return Inventory(
            path=self.path,
            defaults=MappingProxyType(dict(defaults)),
            groups=MappingProxyType(groups),
            targets=MappingProxyType(targets),
        )

    def pairs(
        self, node: yaml.Node, where: str, allowed: Sequence[str] | None
    ) -> list[tuple[str, tuple[yaml.Node, yaml.Node]]]:
        """The (key, (key node, value node)) of a mapping; reports non-mappings, duplicate
        keys, non-string keys and (when `allowed` is given) unknown keys."""
        if _is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, where, f"must be a mapping, not {_kind(node)}")
            return []
        own = len(node.value)
        self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) come first
        merged_count = len(node.value) - own
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        own_seen: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
                self.problem(key_node, where, f"keys must be strings, not {_kind(key_node)}")
                continue
            path = f"{where}.{key}" if where else key
            if index >= merged_count:
                if key in own_seen:
                    self.problem(key_node, path, "given twice; keys and names must be unique")
                    continue
                own_seen.add(key)
            if allowed is not None and key not in allowed:
                self.problem(key_node, path, _unknown_key(key, allowed))
                continue
            found[key] = (key_node, value_node)
        return list(found.items())

    def check_name(self, node: yaml.Node, where: str, name: str) -> bool:
        if _NAME_RE.fullmatch(name) is None:
            self.problem(node, f"{where}.{name}", f"bad name: use {_NAME_RULE}")
            return False
        return True

    def layer(self, node: yaml.Node, where: str, allowed: Sequence[str]) -> dict[str, Any]:
        return self.layer_of(self.pairs(node, where, allowed), where)

    def layer_of(
        self, pairs: Iterable[tuple[str, tuple[yaml.Node, yaml.Node]]], where: str
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, (_, value_node) in pairs:
            if key in TARGET_ONLY_KEYS:
                continue
            value = self.value(key, value_node, f"{where}.{key}")
            if value is not _INVALID:
                values[key] = value
        return values

    def target(
        self, name: str, key_node: yaml.Node, node: yaml.Node, groups: Mapping[str, Layer]
    ) -> TargetEntry | None:
        where = f"targets.{name}"
        pairs = dict(self.pairs(node, where, (*TARGET_ONLY_KEYS, *LAYER_KEYS)))
        settings = self.layer_of(pairs.items(), where)
        host: str | None = None
        address_port: int | None = None
        if "address" not in pairs:
            self.problem(key_node, f"{where}.address", "missing: every target needs an address")
        else:
            address_node = pairs["address"][1]
            address = self.scalar(address_node)
            if not isinstance(address, str) or not address.strip():
                self.problem(address_node, f"{where}.address", "must be a host or host:port")
            else:
                try:
                    host, port = parse_host_port(address.strip(), default_port=0)
                    address_port = port or None
                except ValueError as exc:
                    self.problem(address_node, f"{where}.address", f"bad address: {exc}")
        member_of: list[str] = []
        if "groups" in pairs:
            groups_node = pairs["groups"][1]
            items = groups_node.value if isinstance(groups_node, yaml.SequenceNode) else None
            if items is None:
                self.problem(groups_node, f"{where}.groups", "must be a list of group names")
            else:
                for item in items:
                    group = self.scalar(item)
                    if not isinstance(group, str):
                        self.problem(item, f"{where}.groups", "group names must be strings")
                    elif group not in groups:
                        self.problem(item, f"{where}.groups", _unknown_group(group, groups))
                    elif group not in member_of:
                        member_of.append(group)
        if host is None:
            return None
        return TargetEntry(
            name=name,
            host=host,
            address_port=address_port,
            groups=tuple(member_of),
            settings=MappingProxyType(settings),
        )

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return _INVALID
        return self.loader.construct_object(node, deep=True)

    def value(self, key: str, node: yaml.Node, where: str) -> Any:
        if key == "csr":
            return self.csr(node, where)
        value = self.scalar(node)
        try:
            return check_value(key, value, base_dir=self.base_dir)
        except ValueError as exc:
            self.problem(node, where, str(exc))
            return _INVALID

    def csr(self, node: yaml.Node, where: str) -> Any:
        values: dict[str, Any] = {}
        for key, (_, value_node) in self.pairs(node, where, CSR_KEYS):
            value = self.scalar(value_node)
            try:
                values[key] = check_csr_value(key, value)
            except ValueError as exc:
                self.problem(value_node, f"{where}.{key}", str(exc))
        return MappingProxyType(values)


_INVALID: Any = object()
# The command line's short spellings, which are not keys (one name per setting).
_ALIASES = {
    "cn": "common_name",
    "org": "organization",
    "ou": "organizational_unit",
    "ip": "ip_address",
    "email": "email_id",
    "cert_file": "cert",
    "key_file": "key",
    "user": "username",
}


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.tag.rsplit(':', 1)[-1]} {node.value!r}"


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    if key == "password":
        return "the password itself never goes in the inventory: use password_file or password_env"
    if key in TARGET_ONLY_KEYS:
        return f"`{key}` belongs to a target only"
    close = [_ALIASES[key]] if _ALIASES.get(key) in allowed else []
    close = close or difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(allowed)}"
    return f"unknown key; {hint}"


def _unknown_group(group: str, groups: Mapping[str, Layer]) -> str:
    close = difflib.get_close_matches(group, list(groups), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"no group named {group!r} in `groups`{hint}"


# ---------------------------------------------------------------------------------------------
# Values (shared by the file and the caller's layers)


def check_value(key: str, value: Any, *, base_dir: Path | None = None) -> Any:
    """The checked value of a layer key (paths made absolute and checked to be files);
    ValueError says what is wrong. `csr` takes a mapping of CsrParams fields."""
    if value is _INVALID:
        raise ValueError("must be a single value, not a mapping or a list")
    if key == "port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError(f"must be a port number from 1 to 65535, got {value!r}")
        return value
    if key == "timeout":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"must be a positive number of seconds, got {value!r}")
        return float(value)
    if key == "insecure":
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if key == "csr":
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of CSR parameters")
        return MappingProxyType({k: check_csr_value(k, v) for k, v in value.items()})
    text = _string(value)
    if key in PATH_KEYS:
        return _existing_file(text, base_dir)
    if key == "server_name":
        check_template(text)
    elif key == "password_env" and _ENV_RE.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not an environment variable name")
    elif key == "certificate_id":
        try:
            validate_certificate_id(text)
        except InvalidCertificateId as exc:
            raise ValueError(str(exc)) from None
    elif key not in LAYER_KEYS:
        raise ValueError(_unknown_key(key, LAYER_KEYS))
    return text


def check_csr_value(key: str, value: Any) -> Any:
    if key not in CSR_KEYS:
        raise ValueError(_unknown_key(key, CSR_KEYS))
    if key == "key_size":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"must be a positive whole number of bits, got {value!r}")
        return value
    text = _string(value)
    if key == "key_type":
        if text not in ("rsa", "ecdsa"):
            raise ValueError(f"must be rsa or ecdsa, got {text!r}")
        return text
    check_template(text)
    return text


def _string(value: Any) -> str:
    if not isinstance(value, str):
        quoted = " (quote it)" if isinstance(value, bool | int | float) else ""
        raise ValueError(f"must be a string, got {value!r}{quoted}")
    return value


def _existing_file(text: str, base_dir: Path | None) -> str:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        relative = f" (relative to {base_dir})" if base_dir and not Path(text).is_absolute() else ""
        raise ValueError(f"no such file: {text}{relative}")
    return str(path)


def check_template(text: str) -> None:
    """Raise ValueError unless every `{...}` in text is `{name}` or `{address}`."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc} (write {{{{ for a literal brace)") from None
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(
                f"bad template field {{{field_name}}} in {text!r}: use {{name}} or {{address}}"
            )


def render(text: str, *, name: str, address: str) -> str:
    """Fill `{name}` and `{address}` (checked by check_template first)."""
    return text.format_map({"name": name, "address": address})


# ---------------------------------------------------------------------------------------------
# Layering and selection


def merge_layers(layers: Iterable[Layer]) -> dict[str, Any]:
    """Layers lowest first into one mapping; None values are absent (an unset option)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        present = {key: value for key, value in layer.items() if value is not None}
        if PASSWORD_KEYS & present.keys():
            for key in PASSWORD_KEYS:
                merged.pop(key, None)
        for key, value in present.items():
            if key == "csr":
                merged["csr"] = {**merged.get("csr", {}), **value}
            else:
                merged[key] = value
    return merged


def check_layer(layer: Layer | None, source: str) -> dict[str, Any]:
    """A caller's layer (command line, environment, configuration file) checked like the file's
    keys, relative paths against the working directory."""
    if not layer:
        return {}
    checked: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in layer.items():
        if value is None:
            continue
        try:
            checked[key] = check_value(key, value)
        except ValueError as exc:
            problems.append(Problem(source, 0, key, str(exc)))
    if problems:
        raise InventoryError(source, problems)
    return checked


def resolve(
    inventory: Inventory | None,
    name: str,
    *,
    overrides: Layer | None = None,
    base: Layer | None = None,
) -> Target:
    """One target, by inventory name or (any other value) as an address with the defaults."""
    entry = inventory.targets.get(name) if inventory is not None else None
    layers: list[Layer] = [check_layer(base, "environment and configuration file")]
    if inventory is not None:
        layers.append(inventory.defaults)
    if entry is not None:
        layers += [inventory.groups[group] for group in entry.groups]  # type: ignore[union-attr]
        layers.append(entry.settings)
        host, own_port, groups = entry.host, entry.address_port, entry.groups
    else:
        try:
            host, port = parse_host_port(name, default_port=0)
        except ValueError as exc:
            known = " or an inventory target" if inventory is not None else ""
            raise SelectionError(
                f"{name!r} is neither a host[:port]{known}: {exc}",
                field="target",
                check="bad-address",
            ) from None
        own_port, groups = port or None, ()
    layers.append(check_layer(overrides, "command line"))
    merged = merge_layers(layers)
    port = own_port or merged.pop("port", None) or DEFAULT_PORT
    merged.pop("port", None)
    csr = merged.pop("csr", {})
    rendered = {"name": name, "address": host}
    if merged.get("server_name"):
        merged["server_name"] = render(merged["server_name"], **rendered)
    csr = {
        key: render(value, **rendered) if isinstance(value, str) and key != "key_type" else value
        for key, value in csr.items()
    }
    return Target(
        name=name,
        address=format_host_port(host, port),
        groups=groups,
        csr=MappingProxyType(csr),
        **merged,
    )


def split_values(values: Iterable[str]) -> list[str]:
    """Repeatable, comma-separated option values as one list (blanks dropped, order kept)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def select(
    inventory: Inventory | None, *, targets: Sequence[str] = (), limits: Sequence[str] = ()
) -> list[str]:
    """The names (inventory targets, or addresses) to act on, in order, without repeats.

    `targets` are `-t` values: one naming an inventory target selects it, any other is an
    address. Without any, every inventory target is selected. `limits` are globs matched
    against each name and its groups; a target is kept if any limit matches.
    """
    chosen = split_values(targets)
    if not chosen:
        if inventory is None:
            raise SelectionError(
                "no target: give -t HOST:PORT or --inventory FILE", field="target", check="missing"
            )
        chosen = list(inventory.targets)
    names = list(dict.fromkeys(chosen))
    patterns = split_values(limits)
    if patterns:
        names = [name for name in names if _matches(inventory, name, patterns)]
        if not names:
            raise SelectionError(
                f"--limit {' '.join(patterns)} matched no selected target",
                field="limit",
                check="no-match",
            )
    return names


def _matches(inventory: Inventory | None, name: str, patterns: Sequence[str]) -> bool:
    entry = inventory.targets.get(name) if inventory is not None else None
    subjects = [name, *(entry.groups if entry is not None else ())]
    return any(fnmatch.fnmatchcase(item, pattern) for pattern in patterns for item in subjects)


def resolve_targets(
    inventory: Inventory | None,
    *,
    targets: Sequence[str] = (),
    limits: Sequence[str] = (),
    overrides: Layer | None = None,
    base: Layer | None = None,
) -> tuple[Target, ...]:
    """`select` then `resolve` each: the targets a fleet command acts on."""
    return tuple(
        resolve(inventory, name, overrides=overrides, base=base)
        for name in select(inventory, targets=targets, limits=limits)
    )

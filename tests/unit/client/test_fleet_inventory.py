"""The fleet inventory: parsing, every problem with its line, layering, templates, selection."""

from __future__ import annotations

import fnmatch
import string
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gnoicert.client.errors import InputError
from gnoicert.client.fleet.inventory import (
    Inventory,
    InventoryError,
    SelectionError,
    TargetEntry,
    check_template,
    load_inventory,
    merge_layers,
    render,
    resolve,
    resolve_targets,
    select,
)

GOOD = """\
defaults:
  port: 9339
  username: ops
  password_file: secrets/ops.txt
  ca_file: ca/bundle.pem
  cert: operator.pem
  key: operator.key
  certificate_id: gnoi-server
  csr: {common_name: "{name}.example.net", ip_address: "{address}", key_size: 2048}
groups:
  core: {port: 57400, csr: {organization: Core}}
  edge: {password_env: EDGE_PASSWORD, timeout: 30}
targets:
  r1: {address: 10.0.0.1, groups: [core], server_name: "{name}.example.net"}
  r2: {address: "10.0.0.2:1234", groups: [core, edge]}
  r3: {address: 10.0.0.3, groups: [edge, core], port: 80, csr: {key_size: 4096}}
  r4: {address: "2001:db8::4"}
"""


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    for relative in ("secrets/ops.txt", "ca/bundle.pem", "operator.pem", "operator.key"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("ops-password\n" if relative.startswith("secrets") else "PEM\n")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load_inventory(write(tmp_path, GOOD))


def test_paths_are_relative_to_the_inventory_file(inventory: Inventory, tmp_path: Path) -> None:
    r1 = resolve(inventory, "r1")
    assert r1.ca_file == str(tmp_path / "ca/bundle.pem")
    assert (r1.cert, r1.key) == (str(tmp_path / "operator.pem"), str(tmp_path / "operator.key"))
    assert r1.password() == "ops-password"


def test_layers_target_over_groups_in_order_over_defaults(inventory: Inventory) -> None:
    r1, r2, r3, r4 = (resolve(inventory, name) for name in ("r1", "r2", "r3", "r4"))
    assert r1.address == "10.0.0.1:57400"  # the group's port over the defaults'
    assert r2.address == "10.0.0.2:1234"  # a port in the address wins over every port key
    assert r3.address == "10.0.0.3:80"  # the target's own key over its groups
    assert r4.address == "[2001:db8::4]:9339"
    assert (r2.timeout, r3.timeout, r1.timeout) == (30.0, 30.0, 10.0)
    assert r3.groups == ("edge", "core")
    assert dict(r3.csr) == {
        "common_name": "r3.example.net",
        "ip_address": "10.0.0.3",
        "key_size": 4096,
        "organization": "Core",
    }


def test_a_layer_naming_one_password_source_replaces_the_other(inventory: Inventory) -> None:
    r2 = resolve(inventory, "r2")
    assert (r2.password_file, r2.password_env) == (None, "EDGE_PASSWORD")
    assert r2.password({"EDGE_PASSWORD": "edge"}) == "edge"
    with pytest.raises(InputError, match="EDGE_PASSWORD is not set"):
        r2.password({})
    r1 = resolve(inventory, "r1", overrides={"password_env": "CLI_PW"})
    assert (r1.password_file, r1.password_env) == (None, "CLI_PW")


def test_templates_fill_server_name_and_csr(inventory: Inventory) -> None:
    r1 = resolve(inventory, "r1")
    assert r1.server_name == "r1.example.net"
    params = r1.csr_params()
    assert (params.common_name, params.ip_address, params.key_size) == (
        "r1.example.net",
        "10.0.0.1",
        2048,
    )


def test_outer_layers_wrap_the_inventory(inventory: Inventory, tmp_path: Path) -> None:
    other_ca = tmp_path / "other.pem"
    other_ca.write_text("PEM\n")
    base = {"username": "from-env", "timeout": 5, "insecure": False, "ca_file": str(other_ca)}
    r1 = resolve(inventory, "r1", base=base, overrides={"username": "from-cli"})
    assert r1.username == "from-cli"  # command line over the defaults
    assert r1.ca_file == str(tmp_path / "ca/bundle.pem")  # defaults over the environment
    r1 = resolve(inventory, "r1", base=base)
    assert r1.username == "ops"
    adhoc = resolve(None, "192.0.2.7", base=base)
    assert (adhoc.username, adhoc.timeout, adhoc.ca_file) == ("from-env", 5.0, str(other_ca))


def test_outer_layers_are_checked_too(inventory: Inventory) -> None:
    with pytest.raises(InventoryError) as caught:
        resolve(inventory, "r1", overrides={"port": 0, "certificate_id": "../x"})
    assert [p.key for p in caught.value.problems] == ["port", "certificate_id"]
    assert all(p.path == "command line" for p in caught.value.problems)


def test_channel_options_are_built_from_a_target(tmp_path: Path) -> None:
    path = write(tmp_path, "targets:\n  r1: {address: 192.0.2.1, insecure: true, timeout: 3}\n")
    options = resolve(load_inventory(path), "r1").channel_options()
    assert (options.address, options.insecure, options.timeout) == ("192.0.2.1:9339", True, 3.0)


# -- selection -----------------------------------------------------------------------------------


def test_every_target_in_file_order_without_selection(inventory: Inventory) -> None:
    assert select(inventory) == ["r1", "r2", "r3", "r4"]


def test_t_values_name_targets_or_addresses(inventory: Inventory) -> None:
    names = select(inventory, targets=["r3,192.0.2.9:9000", "r1", "r3"])
    assert names == ["r3", "192.0.2.9:9000", "r1"]
    targets = resolve_targets(inventory, targets=["192.0.2.9:9000"])
    [adhoc] = targets
    assert (adhoc.address, adhoc.groups, adhoc.username) == ("192.0.2.9:9000", (), "ops")
    assert adhoc.csr["common_name"] == "192.0.2.9:9000.example.net"


def test_limit_globs_names_and_groups(inventory: Inventory) -> None:
    assert select(inventory, limits=["edge"]) == ["r2", "r3"]
    assert select(inventory, limits=["r[14]", "core"]) == ["r1", "r2", "r3", "r4"]
    assert select(inventory, limits=["r4,r1"]) == ["r1", "r4"]
    assert select(inventory, targets=["r1", "r2"], limits=["edge"]) == ["r2"]
    with pytest.raises(SelectionError, match="matched no selected target"):
        select(inventory, limits=["nothing*"])


def test_no_target_and_no_inventory_is_an_error() -> None:
    with pytest.raises(SelectionError, match="no target"):
        select(None)
    with pytest.raises(SelectionError, match="neither a host"):
        resolve(None, "bad host name!")


_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)


@given(
    names=st.lists(_NAMES, min_size=1, max_size=12, unique=True),
    groups=st.lists(_NAMES, max_size=4, unique=True),
    data=st.data(),
)
def test_limit_keeps_exactly_the_targets_a_pattern_matches(
    names: list[str], groups: list[str], data: st.DataObject
) -> None:
    membership = {
        name: tuple(data.draw(st.lists(st.sampled_from(groups), unique=True))) if groups else ()
        for name in names
    }
    inventory = Inventory(
        path=Path("x.yaml"),
        defaults={},
        groups={group: {} for group in groups},
        targets={
            name: TargetEntry(name, "192.0.2.1", None, membership[name], {}) for name in names
        },
    )
    pattern = data.draw(st.sampled_from([*names, *groups, "*", "r*", "*1*", "[a-m]*"]))
    expected = [
        name
        for name in names
        if any(fnmatch.fnmatchcase(s, pattern) for s in (name, *membership[name]))
    ]
    if expected:
        assert select(inventory, limits=[pattern]) == expected
    else:
        with pytest.raises(SelectionError):
            select(inventory, limits=[pattern])


# -- templates -----------------------------------------------------------------------------------

_LITERAL = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=10)


@given(parts=st.lists(st.one_of(_LITERAL, st.sampled_from(["{name}", "{address}"])), max_size=6))
def test_templates_of_name_and_address_render(parts: list[str]) -> None:
    text = "".join(parts)
    check_template(text)
    rendered = render(text, name="r1", address="10.0.0.1")
    assert rendered == text.replace("{name}", "r1").replace("{address}", "10.0.0.1")


def _only_name_and_address(text: str) -> bool:
    """The oracle: Python's own format parser, with nothing but bare {name} and {address}."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return False
    return all(
        field is None or (field in ("name", "address") and not spec and not conversion)
        for _, field, spec, conversion in parsed
    )


@given(text=st.text(alphabet="{}!:namedrs x", max_size=20) | st.text(max_size=20))
def test_any_other_template_is_refused_not_crashed(text: str) -> None:
    if _only_name_and_address(text):
        check_template(text)
        assert render(text, name="n", address="a") == text.format(name="n", address="a")
    else:
        with pytest.raises(ValueError, match="template"):
            check_template(text)


def test_merge_layers_merges_csr_by_key() -> None:
    merged = merge_layers([{"csr": {"a": 1, "b": 2}}, {"csr": {"b": 3}}, {"username": None}])
    assert merged == {"csr": {"a": 1, "b": 3}}


# -- a bad inventory ----------------------------------------------------------------------------

BAD = """\
defaults:
  prot: 9339
  password: hunter2
  ca_file: missing.pem
groups:
  core: {port: 70000}
targets:
  r1: {address: 10.0.0.1, groups: [cor]}
  r2: {server_name: "{host}.example.net", address: 10.0.0.2}
  r1: {address: 10.0.0.9}
  r4: {certificate_id: "../etc"}
  r5: {address: 10.0.0.5, csr: {key_type: dsa, country: NO}, timeout: -1}
"""


def test_every_problem_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    found = [(p.line, p.key) for p in caught.value.problems]
    assert found == [
        (2, "defaults.prot"),
        (3, "defaults.password"),
        (4, "defaults.ca_file"),
        (6, "groups.core.port"),
        (8, "targets.r1.groups"),
        (9, "targets.r2.server_name"),
        (10, "targets.r1"),
        (11, "targets.r4.certificate_id"),
        (11, "targets.r4.address"),
        (12, "targets.r5.csr.key_type"),
        (12, "targets.r5.csr.country"),
        (12, "targets.r5.timeout"),
    ]
    message = str(caught.value)
    assert message.startswith(f"the inventory {path} has 12 problems:")
    assert f"{path}:2: defaults.prot: unknown key; did you mean `port`?" in message
    assert "did you mean `core`?" in message
    assert "use password_file or password_env" in message
    assert "hunter2" not in message
    assert "missing.pem (relative to" in message
    assert "{host}" in message
    assert "(quote it)" in message  # country: NO is a YAML boolean


def test_five_different_faults_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          usrname: ops
        targets:
          a: {address: 10.0.0.1, port: 0}
          b: {address: 10.0.0.2, groups: [nope]}
          c: {port: 9339}
          a: {address: 10.0.0.4}
        """,
    )
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert [(p.line, p.key) for p in caught.value.problems] == [
        (2, "defaults.usrname"),
        (4, "targets.a.port"),
        (5, "targets.b.groups"),
        (6, "targets.c.address"),
        (7, "targets.a"),
    ]
    assert all(p.path == str(path) for p in caught.value.problems)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("targets: [a, b]\n", 1, "must be a mapping"),
        ("targets:\n  r1: {address: 10.0.0.1\n", 3, "not valid YAML"),
        ("", 0, "the file is empty"),
        ("defaults: {}\n", 1, "needs a `targets` mapping"),
        ("targets:\n  r1: {address: 10.0.0.1, groups: core}\n", 2, "must be a list"),
        ("targets:\n  bad/name: {address: 10.0.0.1}\n", 2, "bad name"),
        ("targets:\n  r1: {address: '10.0.0.1:99999'}\n", 2, "bad address"),
        ("groups:\n  g: {address: 10.0.0.1}\ntargets: {}\n", 2, "belongs to a target only"),
        ("targets:\n  r1: {address: 10.0.0.1, csr: {cn: x}}\n", 2, "did you mean"),
        ("targets:\n  r1: {address: 10.0.0.1, csr: {common_name: '{nam}'}}\n", 2, "{nam}"),
        ("targets:\n  r1: {address: 10.0.0.1, password_env: 'A B'}\n", 2, "variable name"),
        ("targets:\n  r1: {address: 10.0.0.1, insecure: yes please}\n", 2, "true or false"),
        ("targets:\n  r1: {address: 10.0.0.1, server_name: [a]}\n", 2, "single value"),
        ("targets:\n  1: {address: 10.0.0.1}\n", 2, "keys must be strings"),
    ],
)
def test_each_fault_has_its_line(tmp_path: Path, text: str, line: int, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    [problem] = caught.value.problems
    assert problem.line == line
    assert expected in problem.message


def test_yaml_merge_keys_are_layers_not_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        targets:
          r1: &base {address: 10.0.0.1, username: a, timeout: 3}
          r2:
            <<: *base
            address: 10.0.0.2
        """,
    )
    r2 = resolve(load_inventory(path), "r2")
    assert (r2.address, r2.username, r2.timeout) == ("10.0.0.2:9339", "a", 3.0)


def test_a_missing_inventory_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read it"):
        load_inventory(tmp_path / "absent.yaml")

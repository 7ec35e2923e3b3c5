"""What a command loads: `gnoicert --version` and `gnoicert get --json` import only what they use.

The start-up budget of `gnoicert get` (docs/decisions.md) is met by not importing what the
command never runs. Checked with `python -X importtime`, whose report names every module the
process imported; no timing is asserted.
"""

from __future__ import annotations

import sys

from tests.support.cli import Lab, expect, run_command

NEVER_FOR_VERSION = (
    "grpc",
    "cryptography",
    "google.protobuf",
    "rich",
    "yaml",
    "shtab",
    "asyncio",
    "logging",  # -v only
    "pathlib",
    "textwrap",  # the --help epilog
    "shlex",  # @args files
)
# What `get` has no use for: renderers and formats it does not print, the signing side, the
# schemas (--json documents are checked by tests, not at run time), the config file's parser
# when there is no config file, the password prompt, and helpers of other commands.
NEVER_FOR_GET_JSON = (
    "rich",
    "yaml",
    "shtab",
    "tomlkit",
    "jsonschema",
    "importlib.resources",
    "tomllib",
    "difflib",  # suggestions, on a usage error only
    "getpass",
    "uuid",
    "tempfile",
    "shlex",
    "gnoicert.client.ca",
    "gnoicert.client.signer",
    "gnoicert.client.fleet.report",
    "gnoicert.cli.fleet",
    "gnoicert.cli.demo",
    "gnoicert.cli.hints",
    "gnoicert.cli.suggest",
    "gnoicert.cli.completion",
    "gnoicert.lab",
    "gnoicert.pki.store",
    "gnoicert.daemon",
)


def imported(*args: str) -> set[str]:
    """The modules a `gnoicert ARGS...` process imported (it must succeed)."""
    run = expect(
        run_command([sys.executable, "-X", "importtime", "-m", "gnoicert.cli.main", *args]), 0
    )
    names = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "gnoicert.cli" in names, run.stderr[-2000:]  # main itself runs as __main__
    return names


def loaded(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_version_loads_no_heavy_module() -> None:
    assert loaded(imported("--version"), NEVER_FOR_VERSION) == []


def test_get_json_loads_only_what_it_uses(lab: Lab) -> None:
    names = imported("get", "--json", *lab.connection(lab.factory_pem))
    assert {"grpc", "cryptography.x509", "gnoicert.proto.cert_pb2"} <= names
    assert loaded(names, NEVER_FOR_GET_JSON) == []

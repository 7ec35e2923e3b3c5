"""What a command loads, and how it ends: `gnoicert --version` and `gnoicert get --json` import
only what they use, and a one-target command ends without the interpreter's teardown.

The start-up budget of `gnoicert get` (docs/decisions.md) is met by not importing what the
command never runs. Checked with `python -X importtime`, whose report names every module the
process imported; no timing is asserted.
"""

from __future__ import annotations

import sys

from tests.support.cli import CliRun, Lab, expect, run_command

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
    # Other commands' models and the Install/Rotate machinery: each frozen dataclass costs
    # about half a millisecond to create, so `get` creates only client/listing.py's.
    "gnoicert.client.models",
    "gnoicert.client.fleet.rollout",
    "gnoicert.client.preflight",
    "gnoicert.client.validation",
    "gnoicert.client.steps",
    "gnoicert.client.streams",
    "gnoicert.pki.chain",
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
    assert {
        "grpc",
        "cryptography.x509",
        "gnoicert.proto.cert_pb2",
        "gnoicert.client.listing",
    } <= names
    assert loaded(names, NEVER_FOR_GET_JSON) == []


# The console script, with an exit hook that prints a marker: a teardown runs it, an immediate
# end (after a one-target command, docs/decisions.md) does not.
_WITH_EXIT_HOOK = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('teardown ran', file=sys.stderr))\n"
    "from gnoicert.cli.main import main\n"
    "sys.exit(main())\n"
)


def console_script(*args: str) -> CliRun:
    return run_command([sys.executable, "-c", _WITH_EXIT_HOOK, *args])


def test_one_target_commands_end_without_teardown_and_lose_nothing(lab: Lab) -> None:
    connection = lab.connection(lab.factory_pem)
    listing = expect(console_script("get", "--json", "-vv", *connection), 0)
    assert "teardown ran" not in listing.stderr
    document = listing.json()  # all of stdout arrived, and parses
    assert (document["command"], document["ok"], document["certificates"]) == ("get", True, [])
    assert "rpc GetCertificates" in listing.stderr  # -vv lines, written before the end
    clock = expect(console_script("time", *connection), 0)
    assert clock.stdout.strip()
    assert "teardown ran" not in clock.stderr
    # The exit code is the command's own (1: --strict and an ID the target does not hold).
    refused = expect(console_script("revoke", "no-such-id", "--strict", *connection), 1)
    assert "no-such-id" in refused.stdout + refused.stderr
    assert "teardown ran" not in refused.stderr


def test_other_commands_and_errors_end_as_before(lab: Lab) -> None:
    usage = expect(console_script("get", "--no-such-option"), 2)
    assert "teardown ran" in usage.stderr
    version = expect(console_script("--version"), 0)
    assert "teardown ran" in version.stderr
    completion = expect(console_script("completion", "bash"), 0)
    assert "teardown ran" in completion.stderr


def test_a_running_thread_gets_the_usual_exit() -> None:
    code = (
        "import atexit, sys, threading\n"
        "from gnoicert.cli.main import _end_process\n"
        "atexit.register(lambda: print('teardown ran'))\n"
        "release = threading.Event()\n"
        "worker = threading.Thread(target=release.wait)\n"
        "worker.start()\n"
        "_end_process(3)\n"
        "print('returned')\n"
        "release.set()\n"
    )
    run = expect(run_command([sys.executable, "-c", code]), 0)
    assert run.stdout.splitlines() == ["returned", "teardown ran"]


def test_the_immediate_end_covers_the_one_target_commands() -> None:
    from gnoicert.cli.commands import _RPC_COMMANDS
    from gnoicert.cli.main import _ENDS_AT_ONCE

    assert {*_RPC_COMMANDS, "ca"} == _ENDS_AT_ONCE

"""A parser built for one command line behaves as the whole parser on that command line.

`gnoicert` builds only the commands its command line names (start-up cost, issue 13): the
help, the parse result, the usage errors and their suggestions, and the completion script must
be those of the whole parser, for every command.
"""

from __future__ import annotations

import argparse
import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from gnoicert.cli.main import ArgsFileParser, UsageError, build_parser, main
from tests.support.cli import SUBCOMMANDS

# A command line per command that parses (the operands each needs).
COMMAND_LINES: dict[str, list[str]] = {
    "install": ["install", "gnoi-server", "--ca-dir", "ca", "--cn", "r1"],
    "rotate": ["rotate", "gnoi-server", "--sign-command", "sign", "--no-tls-check"],
    "revoke": ["revoke", "a", "b", "--strict"],
    "get": ["get", "--details", "--expiring-within", "30"],
    "generate-csr": ["generate-csr", "id", "--key-type", "ecdsa", "--out", "x.csr"],
    "load": ["load", "id", "cert.pem", "--dry-run"],
    "load-ca": ["load-ca", "bundle.pem"],
    "can-generate-csr": ["can-generate-csr", "--key-size", "4096"],
    "time": ["time"],
    "ca": ["ca", "issue", "ca", "op", "--out-cert", "c.pem", "--out-key", "k.pem"],
    "demo": ["demo", "--workdir", "w"],
    "lab": ["lab", "--devices", "3", "--workdir", "w"],
    "report": ["report", "merge", "a.jsonl", "--output", "all.jsonl"],
    "exporter": ["exporter", "--listen", "127.0.0.1:0"],
    "completion": ["completion", "bash"],
}
GLOBAL = ["-t", "127.0.0.1:9339", "--timeout", "3", "--json"]


def helps(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], str]:
    """The formatted help of the parser and of the subcommands under it that were built."""
    found = {path: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if isinstance(sub, argparse.ArgumentParser):
                    found.update(helps(sub, (*path, name)))
    return found


def test_every_command_has_a_command_line() -> None:
    assert sorted(COMMAND_LINES) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_the_named_command_is_built_in_full(command: str) -> None:
    argv = [*GLOBAL, *COMMAND_LINES[command]]
    whole, scoped = build_parser(), build_parser(argv)
    assert scoped.parse_args(argv) == whole.parse_args(argv)
    whole_helps, scoped_helps = helps(whole), helps(scoped)
    assert scoped_helps[()] == whole_helps[()]  # `gnoicert --help` lists every command
    built = {path for path in scoped_helps if path}
    # Any word that names a command builds it (`--ca-dir ca` builds `ca` too); completion
    # describes every command.
    named = set(SUBCOMMANDS) if command == "completion" else set(argv) & set(SUBCOMMANDS)
    assert {path[0] for path in built} == named
    assert (command,) in built
    for path in built:
        assert scoped_helps[path] == whole_helps[path], path


def test_a_command_line_naming_no_command_lists_them_all() -> None:
    assert build_parser(["--help"]).format_help() == build_parser().format_help()
    assert build_parser([]).format_usage() == build_parser().format_usage()


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "--ca-dri", "ca"],  # a close spelling of another command's option
        ["get", "--ca-dir", "ca"],  # another command's option: argparse's own words
        ["--tls-ca", "ca.pem", "get"],  # a gnoic habit
        ["gett"],  # no such command
        ["get", "--timeout", "soon"],
        [],
    ],
)
def test_usage_errors_are_the_whole_parsers(argv: list[str]) -> None:
    messages = []
    for parser in (build_parser(), build_parser(argv)):
        with pytest.raises(UsageError) as raised:
            parser.parse_args(argv)
        messages.append((raised.value.message, raised.value.usage, raised.value.prog))
    assert messages[0] == messages[1]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help, --version
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_main_builds_only_the_command_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ArgsFileParser] = []
    original = build_parser

    def recording(argv: list[str] | None = None) -> ArgsFileParser:
        parser = original(argv)
        built.append(parser)
        return parser

    monkeypatch.setattr(sys.modules["gnoicert.cli.main"], "build_parser", recording)
    code, _, err = run_main(["get", "--ca-dri", "x"])
    assert code == 2
    assert "unknown option --ca-dri; did you mean --ca-dir?" in err
    assert built[0].partial  # the one main() parses with; the suggestion came from the whole
    assert not built[1].partial


def test_completion_and_args_files_build_every_command() -> None:
    assert not build_parser(["completion", "bash"]).partial
    assert not build_parser(["@args.txt"]).partial
    assert build_parser(["get"]).partial


def test_help_and_version_are_unchanged() -> None:
    whole = build_parser()
    for argv, expected in (
        (["--help"], whole.format_help()),
        (["get", "--help"], helps(whole)[("get",)]),
        (["ca", "init", "--help"], helps(whole)[("ca", "init")]),
    ):
        code, out, _ = run_main(argv)
        assert (code, out) == (0, expected), argv
    code, out, _ = run_main(["--version"])
    assert code == 0
    assert out.startswith("gnoicert ")

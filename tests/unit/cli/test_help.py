"""`--help` as operators read it: every command described with examples, every argument
explained, the exit codes and the settings in `gnoicert --help`, the connection options once.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from gnoicert.cli.config import SETTINGS
from gnoicert.cli.main import EXIT_CODES, build_parser
from gnoicert.daemon.main import _parser as daemon_parser

CONNECTION_FLAGS = ("--target", "--ca-file", "--cert", "--username", "--password-env", "--config")


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[tuple[str, ...], str]]:
    """(path, formatted help) of every subcommand."""
    return [(path, sub.format_help()) for path, sub in walk(parser) if path]


@pytest.mark.parametrize("parser", [build_parser(), daemon_parser()], ids=["gnoicert", "gnoicertd"])
def test_every_argument_has_help(parser: argparse.ArgumentParser) -> None:
    """Each action shown somewhere has non-empty help; the suppressed ones on subcommands are
    the global options, documented once on the main parser."""
    documented = {
        action.dest
        for action in parser._actions
        if action.help and action.help != argparse.SUPPRESS
    }
    missing = []
    for path, sub in walk(parser):
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                names = {choice.dest for choice in action._choices_actions}
                missing += [f"{' '.join(path)} {n}" for n in action.choices if n not in names]
                assert all(choice.help for choice in action._choices_actions), path
                continue
            if action.help == argparse.SUPPRESS:
                assert path, action.dest
                assert action.dest in documented, (path, action.dest)
                continue
            if not (action.help or "").strip():
                missing.append(
                    f"{' '.join(path) or parser.prog}: {action.option_strings or action.dest}"
                )
    assert not missing, missing


@pytest.mark.parametrize("parser", [build_parser(), daemon_parser()], ids=["gnoicert", "gnoicertd"])
def test_every_command_is_described(parser: argparse.ArgumentParser) -> None:
    for path, sub in walk(parser):
        if path:
            assert len(sub.description or "") > 20, path


def test_every_gnoicert_command_has_examples() -> None:
    for path, text in subcommands(build_parser()):
        assert "examples:\n  gnoicert " in text, path


def test_connection_options_shown_once() -> None:
    main_help = build_parser().format_help()
    for flag in CONNECTION_FLAGS:
        assert flag in main_help
    for path, text in subcommands(build_parser()):
        for flag in CONNECTION_FLAGS:
            assert flag + " " not in text.split("examples:")[0], (path, flag)
        if path[0] not in ("ca", "demo", "completion", "lab", "report", "exporter"):
            assert "see gnoicert --help" in text, path


def test_main_help_has_exit_codes_and_settings() -> None:
    text = build_parser().format_help()
    assert "exit codes:" in text
    for code, meaning in EXIT_CODES:
        assert f"  {code:<3} {meaning}" in text
    assert "flag > environment > config file > default" in text
    assert "~/.config/gnoicert/config.toml" in text
    for setting in SETTINGS:
        assert setting.env in text


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ca", "issue", "--help"], ["--dns NAME", "a DNS SAN", "--out-key FILE", "mode 0600"]),
        (["can-generate-csr", "--help"], ["--key-size", "RSA key size to ask about"]),
        (["revoke", "--help"], ["IDs to revoke"]),
    ],
)
def test_named_arguments_are_explained(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def test_gnoicertd_serve_and_config_check_are_described() -> None:
    helps = dict(subcommands(daemon_parser()))
    assert "SIGHUP" in helps[("serve",)]
    assert "without starting" in helps[("config", "check")]

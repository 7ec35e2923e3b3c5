"""Unknown options answered with the one meant: gnoic and gnmic habits, then close spellings.

Operators come from gnoic (`-a HOST`, `--tls-ca`, `--format json`); argparse would only say
"unrecognized arguments", or worse take the next word for the command.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence

# gnoic / gnmic option -> ours (docs/operator-guide.md, "Coming from gnoic").
HABITS: dict[str, str] = {
    "-a": "-t / --target",
    "--address": "-t / --target",
    "--format": "--json / --output json",
    "--tls-ca": "--ca-file",
    "--tls-cert": "--cert",
    "--tls-key": "--key",
    "--tls-server-name": "--server-name",
    "--skip-verify": "--ca-file with the target's CA (gnoicert always verifies)",
    "-p": "--password-env VAR / --password-file FILE",
    "--password": "--password-env VAR / --password-file FILE",
    "-d": "-v / --verbose",
    "--debug": "-v / --verbose",
    "--id": "the certificate ID as an argument (gnoicert install ID ...)",
    "--min-key-size": "--key-size",
    "--ca-cert": "--ca-dir DIR",
    "--ca-key": "--ca-dir DIR",
}


def known_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of the parser and of its subcommands, at any depth."""
    found: set[str] = set()
    for action in parser._actions:  # argparse keeps no public list of its options
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= known_options(sub)
    return found


def first_unknown_option(arguments: Sequence[str], known: Iterable[str]) -> str | None:
    """The first token that looks like an option and that no command knows."""
    known = set(known)
    for argument in arguments:
        if argument == "--":
            return None
        if not argument.startswith("-") or argument == "-" or _is_number(argument):
            continue
        name = argument.split("=", 1)[0]
        if not name.startswith("--") and argument[:2] in known:
            continue  # -vv, -tHOST
        if name not in known and not _is_known_prefix(name, known):
            return name
    return None


def unknown_option_message(option: str, known: Iterable[str]) -> str:
    """ "unknown option X; did you mean Y?" (or without the question when nothing is close)."""
    suggestion = HABITS.get(option)
    if suggestion is None:
        suggestion = "".join(difflib.get_close_matches(option, sorted(known), n=1, cutoff=0.75))
    if suggestion:
        return f"unknown option {option}; did you mean {suggestion}?"
    return f"unknown option {option}"


def _is_known_prefix(name: str, known: set[str]) -> bool:
    """argparse accepts unambiguous abbreviations of long options (--time for --timeout)."""
    return name.startswith("--") and any(option.startswith(name) for option in known)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True

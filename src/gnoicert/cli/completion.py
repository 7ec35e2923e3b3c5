"""`gnoicert completion SHELL`: a static completion script generated from the parser by shtab.

Only this command imports shtab, so no other command pays for it at start-up. Options and
positionals that take files or directories (metavar FILE, DIR, ...) complete paths.
"""

from __future__ import annotations

import argparse
import sys

_FILE_METAVARS = frozenset({"FILE", "CERT_FILE", "BUNDLE_FILE", "CSR_FILE"})
_DIR_METAVARS = frozenset({"DIR"})


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The script for `shell`, with path completion on the file and directory arguments."""
    import shtab

    for sub in _parsers(parser):
        for action in sub._actions:
            if action.metavar in _FILE_METAVARS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
            elif action.metavar in _DIR_METAVARS:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    script: str = shtab.complete(parser, shell=shell)
    return script


def print_script(parser: argparse.ArgumentParser, shell: str) -> int:
    sys.stdout.write(completion_script(parser, shell))
    return 0


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every subcommand's parser, depth first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_parsers(sub))
    return found

"""The `gnoicert` command: argparse front end, exit codes, and error reporting.

Only the standard library is imported at module level: `gnoicert --help` stays fast, and
GRPC_VERBOSITY can be set before grpcio loads (its C core otherwise prints its own log lines
next to our messages). The work happens in commands.py.

Exit codes: 0 success, 1 refused or failed (the gRPC code and reason are printed), 2 usage
error, 3 the certificate failed validation (preflight or the rotate validation step) and
nothing was committed, 4 `get --expiring-within` found certificates expiring within that time.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from gnoicert import __version__
from gnoicert.cli.documents import (
    FORMATS,
    ID_COMMANDS,
    OUTPUT_ENV,
    RPC_COMMANDS,
    command_name,
    error_document,
    error_fields,
    is_structured,
    resolve_format,
    usage_error,
)
from gnoicert.common.constants import (
    DEFAULT_PORT,
    DEFAULT_RSA_KEY_SIZE,
    DEFAULT_TIMEOUT_S,
    EXPORTER_INTERVAL_S,
    EXPORTER_LISTEN,
)
from gnoicert.common.exit_codes import EXIT_EXPIRING as EXIT_EXPIRING
from gnoicert.common.exit_codes import EXIT_FAILED as EXIT_FAILED
from gnoicert.common.exit_codes import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from gnoicert.common.exit_codes import EXIT_OK as EXIT_OK
from gnoicert.common.exit_codes import EXIT_STOPPED as EXIT_STOPPED
from gnoicert.common.exit_codes import EXIT_USAGE as EXIT_USAGE
from gnoicert.common.exit_codes import EXIT_VALIDATION as EXIT_VALIDATION

if TYPE_CHECKING:
    from gnoicert.client.errors import RpcFailed


_ARGS_FILE_ERROR = "cannot read args file"
_N = TypeVar("_N", int, float)


class ArgsFileParser(argparse.ArgumentParser):
    """argparse with Junos-style @args files: one or more options per line, shell quoting,
    blank lines and # comments ignored (`python app.py @args.txt --opt override`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fromfile_prefix_chars", "@")
        super().__init__(*args, **kwargs)
        self._seen: list[str] = []  # the arguments it read, @files expanded (for error())
        self.partial = False  # built for one command line: other commands are stubs

    def _read_args_from_files(self, arg_strings: list[str]) -> list[str]:
        for token in arg_strings:
            if token[:1] in (self.fromfile_prefix_chars or ""):
                try:
                    with open(token[1:], "rb"):
                        pass
                except OSError as exc:
                    self.error(f"{_ARGS_FILE_ERROR} {token[1:]}: {exc.strerror or exc}")
        self._seen = super()._read_args_from_files(arg_strings)
        return self._seen

    def error(self, message: str) -> NoReturn:
        """argparse's error, in fewer and better words: an unreadable @file is one line, and
        an unknown option is named with the option meant (gnoic's -a is our -t)."""
        from gnoicert.cli.suggest import first_unknown_option, known_options, unknown_option_message

        command = self.prog.split()[0]
        if message.startswith(_ARGS_FILE_ERROR):
            raise UsageError(message, usage="", prog=command)
        # A parser built for one command line knows only its commands' options; the unknown
        # option is judged against every command's, as on the whole parser.
        known = known_options(build_parser() if self.partial else self)
        unknown = first_unknown_option(self._seen, known)
        if unknown is not None:
            message = unknown_option_message(unknown, known)
        # Raise instead of printing and exiting: main() reports usage errors in the output
        # format asked for (a JSON document with --json).
        raise UsageError(message, usage=self.format_usage(), prog=self.prog)

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        stripped = arg_line.strip()
        if not stripped or stripped.startswith("#"):
            return []
        import shlex

        return shlex.split(stripped, comments=True)


class UsageError(Exception):
    """The command line could not be parsed (exit 2)."""

    def __init__(self, message: str, *, usage: str, prog: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog


def requested_format(argv: Sequence[str], parser: ArgsFileParser) -> str | None:
    """The output format the command line asks for (the last --json or --output wins), found
    without parsing it, @args files included: usage errors are reported in it too."""
    words = _expand_args_files(argv, parser, depth=0)
    found: str | None = None
    for index, word in enumerate(words):
        if word == "--":
            break
        value: str | None = None
        if word == "--json":
            value = "json"
        elif word in ("-o", "--output") and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--output="):
            value = word.partition("=")[2]
        elif word.startswith("-o") and not word.startswith("--") and len(word) > 2:
            value = word[2:].lstrip("=")
        if value in FORMATS:
            found = value
    return found


def _expand_args_files(argv: Sequence[str], parser: ArgsFileParser, *, depth: int) -> list[str]:
    """argv with @FILE replaced by its options, as the parser reads them; a file that cannot
    be read is left out here (the parser reports it)."""
    tokens: list[str] = []
    for token in argv:
        if not token.startswith("@") or depth > 10:
            tokens.append(token)
            continue
        try:
            with open(token[1:], encoding="utf-8") as lines:
                inner = [arg for line in lines for arg in parser.convert_arg_line_to_args(line)]
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        tokens.extend(_expand_args_files(inner, parser, depth=depth + 1))
    return tokens


_OptionSpec = tuple[tuple[str, ...], dict[str, Any]]


def _option(*flags: str, **settings: Any) -> _OptionSpec:
    """One row of an option table: the flags and the add_argument settings."""
    return flags, settings


def _add_options(
    group: argparse.ArgumentParser | argparse._ArgumentGroup,
    options: Sequence[_OptionSpec],
    **overrides: Any,
) -> None:
    """Add a table of options, each with `overrides` over its own settings."""
    for flags, settings in options:
        group.add_argument(*flags, **{**settings, **overrides})


def _shared(suppress: bool) -> dict[str, Any]:
    """The settings of a shared option: unset stays None, or absent on a subcommand."""
    if suppress:
        return {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
    return {"default": None}


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options shared by every command. Added to the main parser, and to each subcommand with
    SUPPRESS defaults, so they may come before or after the command name. Their help is shown
    once, by `gnoicert --help`. Unset options stay None here: config.py fills them in (flag >
    GNOICERT_* > config file > default)."""
    connection = (
        _option(
            "-t",
            "--target",
            metavar="HOST[:PORT]",
            action="append",
            help=f"the target to dial (port {DEFAULT_PORT}, or --port, when omitted); repeatable "
            "and comma-separated for several (-t r1,r2 -t 10.0.0.3); with --inventory, a name "
            "there selects that target",
        ),
        _option(
            "--port",
            metavar="PORT",
            type=_positive_int,
            help=f"port for a --target that names none (default {DEFAULT_PORT})",
        ),
        _option(
            "--ca-file",
            metavar="FILE",
            help="CA certificates (PEM) the target's certificate must chain to (default: the "
            "system store)",
        ),
        _option("--cert", metavar="FILE", help="client certificate (PEM) for mutual TLS"),
        _option("--key", metavar="FILE", help="private key (PEM) of the client certificate"),
        _option(
            "--server-name",
            metavar="NAME",
            help="name to check in the target's certificate (when dialling an IP)",
        ),
        _option("-u", "--username", metavar="USER", help="user name sent as gRPC metadata"),
        _option(
            "--password-env",
            metavar="VAR",
            help="read the password from this environment variable",
        ),
        _option(
            "--password-file",
            metavar="FILE",
            help="read the password from the first line of this file (without either, it is "
            "prompted for on a terminal)",
        ),
        _option(
            "--timeout",
            metavar="SECONDS",
            type=_positive_float,
            help=f"per-RPC timeout (default {DEFAULT_TIMEOUT_S:g})",
        ),
        _option(
            "--insecure",
            action="store_true",
            help="plaintext gRPC, no TLS (only for targets serving plaintext)",
        ),
    )
    settings = (
        _option(
            "--config",
            metavar="FILE",
            help="client configuration file (default ~/.config/gnoicert/config.toml)",
        ),
        _option(
            "--profile",
            metavar="NAME",
            help="use the [profiles.NAME] table of the configuration file",
        ),
    )
    _add_options(
        parser.add_argument_group("connection") if not suppress else parser,
        connection,
        **_shared(suppress),
    )
    _fleet_options(parser, suppress=suppress)
    _add_options(
        parser.add_argument_group("configuration") if not suppress else parser,
        settings,
        **_shared(suppress),
    )
    default = argparse.SUPPRESS if suppress else None
    output = parser.add_argument_group("output")
    output.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        metavar="FORMAT",
        default=default,
        help="table, json, yaml or tsv (default: a table on a terminal, tab-separated text for "
        f"listings in a pipe; or {OUTPUT_ENV})",
    )
    output.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        default=default,
        help="shorthand for --output json",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="show the steps (-vv: also every RPC with its time, and gRPC's own logs)",
    )


def _fleet_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Many targets at once (docs/operator-guide.md, "Fleet"): selection, rollout, report."""
    from gnoicert.client.fleet import DEFAULT_CONCURRENCY, DEFAULT_TARGET_TIMEOUT_S

    fleet = (
        _option(
            "--inventory",
            metavar="FILE",
            help="act on the targets of this YAML inventory (all, or those -t/--limit select)",
        ),
        _option(
            "--limit",
            metavar="PATTERN",
            action="append",
            help="keep targets whose name or a group matches this glob (repeatable, commas)",
        ),
        _option(
            "--shard",
            metavar="I/N",
            help="act on shard I of N of the selected targets (a stable split by name)",
        ),
        _option(
            "--concurrency",
            metavar="N",
            type=_positive_int,
            help=f"targets in flight at once (default {DEFAULT_CONCURRENCY})",
        ),
        _option(
            "--target-timeout",
            metavar="SECONDS",
            type=_positive_float,
            help=f"time allowed to one target (default {DEFAULT_TARGET_TIMEOUT_S:g})",
        ),
        _option(
            "--canary",
            metavar="N",
            type=_non_negative_int,
            help="run the first N targets alone; the rest only if every one succeeded",
        ),
        _option(
            "--batch-size",
            metavar="N|P%",
            type=_size,
            help="after the canary, start the rest in batches of N targets (or P%% of them)",
        ),
        _option(
            "--max-failures",
            metavar="N|P%",
            type=_size_or_zero,
            help="stop starting targets once more than N (or P%%) have failed; those in flight "
            "end on their own (default: no limit)",
        ),
        _option(
            "--pause",
            metavar="SECONDS",
            type=_non_negative_float,
            help="wait this long between batches (default 0)",
        ),
        _option(
            "--report",
            metavar="FILE",
            help="append one JSON line per target as it ends, then a summary line",
        ),
        _option(
            "--resume",
            metavar="FILE",
            help="skip the targets whose last record in this report is committed (or ok); the "
            "report is appended to unless --report names another file",
        ),
    )
    _add_options(
        parser.add_argument_group("fleet") if not suppress else parser,
        fleet,
        **_shared(suppress),
    )


def _rollout_size(*, allow_zero: bool) -> Callable[[str], Any]:
    """An argparse type for N or P% (--batch-size, --max-failures)."""

    def parse(text: str) -> Any:
        from gnoicert.client.fleet.rollout import parse_size

        try:
            return parse_size(text, allow_zero=allow_zero)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _number(convert: Callable[[str], _N], noun: str, *, positive: bool) -> Callable[[str], _N]:
    """An argparse type for a positive or a non-negative int or float."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if positive and value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        if not positive and not value >= 0:  # NaN is negative here
            raise argparse.ArgumentTypeError("must not be negative")
        return value

    return parse


_size = _rollout_size(allow_zero=False)
_size_or_zero = _rollout_size(allow_zero=True)
_positive_float = _number(float, "a number", positive=True)
_non_negative_float = _number(float, "a number", positive=False)
_positive_int = _number(int, "a whole number", positive=True)
_non_negative_int = _number(int, "a whole number", positive=False)


def _optional_id(parser: argparse.ArgumentParser, what: str) -> None:
    """The certificate ID operand, which an inventory may supply instead."""
    parser.add_argument("certificate_id", metavar="ID", nargs="?", help=what + _ID_NOTE)


def _csr_options(parser: argparse.ArgumentParser) -> None:
    csr = (
        _option(
            "--common-name",
            "--cn",
            dest="common_name",
            metavar="CN",
            help="subject common name (also a DNS SAN when it is a name)",
        ),
        _option("--country", metavar="CC", help="two-letter country code"),
        _option("--state", help="subject state or province"),
        _option("--city", help="subject locality"),
        _option("--organization", "--org", dest="organization", help="subject organization"),
        _option(
            "--organizational-unit",
            "--ou",
            dest="organizational_unit",
            help="subject organizational unit",
        ),
        _option("--ip-address", "--ip", dest="ip_address", help="IP address (becomes an IP SAN)"),
        _option("--email-id", "--email", dest="email_id", help="e-mail address of the subject"),
        _option(
            "--key-type",
            choices=("rsa", "ecdsa"),
            help="rsa (default) or ecdsa; ecdsa (P-256) keys are always made by this client",
        ),
        _option(
            "--key-size",
            type=_positive_int,
            help=f"RSA key size (the minimum asked of the target); default {DEFAULT_RSA_KEY_SIZE}",
        ),
    )
    _add_options(parser.add_argument_group("CSR parameters"), csr, default=None)


def _workflow_options(parser: argparse.ArgumentParser) -> None:
    """What install and rotate share: the CSR, the signer and the workflow switches."""
    _csr_options(parser)
    group = parser.add_argument_group("signing")
    signers = (
        _option("--ca-dir", metavar="DIR", help="sign with the local CA in DIR"),
        _option(
            "--sign-command",
            metavar="CMD",
            help="sign by running CMD (CSR on stdin, PEM certificate on stdout)",
        ),
    )
    signing = (
        _option(
            "--days",
            type=_positive_int,
            default=365,
            metavar="DAYS",
            help="validity of certificates signed by --ca-dir (default 365)",
        ),
        _option(
            "--signer-timeout",
            type=_positive_float,
            default=60.0,
            metavar="SECONDS",
            help="time allowed to --sign-command (default 60)",
        ),
    )
    workflow = (
        _option(
            "--key-source",
            choices=("auto", "target", "client"),
            default="auto",
            help="who makes the key pair: auto (ask the target first), target, client",
        ),
        _option(
            "--ca-bundle",
            metavar="FILE",
            help="CA bundle (PEM) to load with the certificate; replaces the target's",
        ),
        _option(
            "--dry-run",
            action="store_true",
            help="check everything that can be checked without changing the target (no stream, "
            "no GenerateCSR) and list what could not be; nothing is sent",
        ),
        _option(
            "--no-preflight",
            action="store_true",
            help="skip the client-side checks of the signed certificate",
        ),
    )
    _add_options(group.add_mutually_exclusive_group(), signers)
    _add_options(group, signing)
    _add_options(parser.add_argument_group("workflow"), workflow)


EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_FAILED, "refused or failed (the gRPC code and reason are printed)"),
    (EXIT_USAGE, "usage error: bad options, input files, config file or GNOICERT_* value"),
    (EXIT_VALIDATION, "the certificate failed validation; nothing was committed"),
    (EXIT_EXPIRING, "get --expiring-within found certificates expiring within DAYS"),
    (EXIT_STOPPED, "fleet: the canary or --max-failures ended the run early"),
    (EXIT_INTERRUPTED, "interrupted"),
)
FLEET_EXIT_NOTE = (
    "over several targets: 0 every target succeeded, 1 at least one failed, 3 every failure\n"
    "was a validation or preflight failure; when several apply: 2, 130, 5, 1, 3, 4, 0."
)
COMPLETION_SHELLS = ("bash", "zsh", "fish", "tcsh")
_ID_NOTE = " (may be left out when the inventory gives certificate_id)"
# CsrParams' fields, written out: pki.crypto (their home) loads cryptography, which a parser
# that may only print --version or --help should not (tests/unit/cli/test_main.py holds them equal).
_CSR_DEFAULTS: dict[str, Any] = {
    "common_name": "",
    "country": "",
    "state": "",
    "city": "",
    "organization": "",
    "organizational_unit": "",
    "ip_address": "",
    "email_id": "",
    "key_type": "rsa",
    "key_size": DEFAULT_RSA_KEY_SIZE,
}


def _main_epilog() -> str:
    from gnoicert.cli.config import help_epilog

    codes = "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES)
    note = "\n".join(f"  {line}" for line in FLEET_EXIT_NOTE.splitlines())
    return (
        f"exit codes:\n{codes}\n{note}\n\n{help_epilog()}\n\n"
        "Options can be read from files: gnoicert @args.txt (one or more per line).\n"
        "Every command has examples: gnoicert COMMAND --help."
    )


def _exporter_options(parser: argparse.ArgumentParser) -> None:
    """The exporter's own options; --inventory, --limit and --concurrency are the fleet's."""
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        default=EXPORTER_LISTEN,
        help=f"HOST:PORT to serve /metrics on, plain HTTP (default {EXPORTER_LISTEN}; "
        "port 0 picks a free port)",
    )
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_positive_float,
        default=EXPORTER_INTERVAL_S,
        help=f"ask every target this often (default {EXPORTER_INTERVAL_S:g})",
    )


class _MainParser(ArgsFileParser):
    """The top-level parser: its epilog (exit codes, settings) is written when help is shown,
    not on every run."""

    def format_help(self) -> str:
        if self.epilog is None:
            self.epilog = _main_epilog()
        return super().format_help()


class _Unbuilt:
    """A command left out of a parser built for one command line: it takes every definition
    call (options, groups, subcommands) and keeps none. argparse never enters it: its name is
    not on the command line."""

    def __getattr__(self, name: str) -> Callable[..., _Unbuilt]:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> _Unbuilt:
        return self


def _command_parser(*, stub: bool = False, **settings: Any) -> Any:
    """The parser class of the subcommands: an ArgsFileParser, or _Unbuilt for a stub (a name
    and a summary in `gnoicert --help`, at no cost)."""
    return _Unbuilt() if stub else ArgsFileParser(**settings)


def _commands_named(argv: Sequence[str] | None) -> frozenset[str] | None:
    """The words of `argv` that may name a command, or None when every command must be built:
    an @args file may name any, and `completion` describes them all."""
    if argv is None or "completion" in argv or any(word.startswith("@") for word in argv):
        return None
    return frozenset(argv)


def build_parser(argv: Sequence[str] | None = None) -> ArgsFileParser:
    """The whole command line (exposed for tests and for `--help` generation).

    Given the command line to parse, only the commands named in it get their options, help
    text and examples; the others are stubs that only list themselves under `gnoicert --help`.
    Adding every command's options costs as much as a `get` over loopback spends in its RPC
    (issue 13's start-up budget), and argparse only ever enters the command named.
    """
    from gnoicert.cli.helptext import COMMANDS

    named = _commands_named(argv)
    raw = argparse.RawDescriptionHelpFormatter
    parser = _MainParser(
        prog="gnoicert",
        description="Manage TLS certificates on network devices over gNOI CertificateManagement.",
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"gnoicert {__version__}")
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        # argparse only calls parser_class with the add_parser settings: a factory will do.
        parser_class=cast("type[ArgsFileParser]", _command_parser),
    )

    def described(
        group: Any, name: str, key: str, *, connects: bool = True
    ) -> argparse.ArgumentParser:
        text = COMMANDS[key]
        if named is not None and key.split()[0] not in named:
            parser.partial = True
            stub: argparse.ArgumentParser = group.add_parser(name, help=text.summary, stub=True)
            return stub
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            help=text.summary,
            description=text.description,
            epilog=text.epilog(connects=connects),
            formatter_class=raw,
        )
        _connection_options(sub, suppress=True)
        return sub

    def command(name: str, *, connects: bool = True) -> argparse.ArgumentParser:
        return described(commands, name, name, connects=connects)

    def change_command(name: str, what: str) -> argparse.ArgumentParser:
        """install and rotate: the ID operand, then the CSR, signing and workflow options."""
        sub = command(name)
        _optional_id(sub, what)
        _workflow_options(sub)
        return sub

    install = change_command("install", "the new certificate's ID")
    install.add_argument(
        "--require-san",
        action="store_true",
        help="fail preflight unless the SANs cover the address dialled "
        "(for the certificate the gRPC server will present)",
    )

    rotate = change_command("rotate", "the ID whose certificate to replace")
    rotate.add_argument(
        "--no-tls-check",
        action="store_true",
        help="the certificate is not the gRPC server's: skip the served-"
        "certificate check and the SAN preflight check (inferred when the target lists the "
        "ID without the grpc-server endpoint and serves another certificate)",
    )
    rotate.add_argument(
        "--expect-name",
        metavar="NAME",
        help="the name the new certificate must carry for the validation session and the SAN "
        "check (default: --server-name, else the host dialled); repairs a certificate loaded "
        "with the wrong name: --server-name OLD --expect-name NEW",
    )

    revoke = command("revoke")
    revoke.add_argument("certificate_ids", metavar="ID", nargs="+", help="IDs to revoke")
    revoke.add_argument(
        "--strict", action="store_true", help="exit 1 when an ID was not present on the target"
    )

    get = command("get")
    get.add_argument("--details", action="store_true", help="every field of every certificate")
    get.add_argument(
        "--save",
        metavar="DIR",
        help="write each certificate to DIR/ID.pem (over several targets: DIR/NAME/ID.pem)",
    )
    get.add_argument(
        "--expiring-within",
        metavar="DAYS",
        type=_non_negative_int,
        help="only certificates expiring within DAYS days; exit 4 when there are any",
    )

    csr = command("generate-csr")
    _optional_id(csr, "the ID the target keeps the key under")
    _csr_options(csr)
    csr.add_argument(
        "--out",
        metavar="FILE",
        help="write the CSR here instead of stdout (over several targets: a directory, one "
        "NAME.csr per target)",
    )

    load = command("load")
    load.add_argument("certificate_id", metavar="ID", help="the ID to load the certificate under")
    load.add_argument(
        "certificate_file", metavar="CERT_FILE", help="PEM: the certificate, then its chain"
    )
    load.add_argument(
        "--private-key",
        metavar="FILE",
        help="the certificate's key, when the target did not generate it",
    )
    load.add_argument("--ca-bundle", metavar="FILE", help="CA bundle (PEM) to load with it")
    load.add_argument(
        "--dry-run",
        action="store_true",
        help="check the connection, the ID and the certificate; nothing is loaded",
    )
    load.add_argument("--no-preflight", action="store_true", help="skip the client-side checks")
    load.add_argument(
        "--force",
        action="store_true",
        help="load even onto the gRPC server's certificate (no validation, no rollback: "
        "prefer rotate)",
    )

    load_ca = command("load-ca")
    load_ca.add_argument(
        "bundle_file", metavar="BUNDLE_FILE", help="PEM CA certificates; replaces the target's"
    )

    can = command("can-generate-csr")
    can.add_argument(
        "--key-size",
        type=_positive_int,
        default=DEFAULT_RSA_KEY_SIZE,
        help=f"RSA key size to ask about (default {DEFAULT_RSA_KEY_SIZE})",
    )

    command("time")

    ca = command("ca", connects=False)
    ca_commands = ca.add_subparsers(dest="ca_command", metavar="CA_COMMAND", required=True)

    def ca_command(name: str) -> argparse.ArgumentParser:
        sub = described(ca_commands, name, f"ca {name}", connects=False)
        sub.add_argument("directory", metavar="DIR", help="the CA's directory")
        return sub

    ca_init = ca_command("init")
    ca_init.add_argument(
        "--intermediate", action="store_true", help="issue through an intermediate CA"
    )
    ca_init.add_argument(
        "--key-type", choices=("rsa", "ecdsa"), default="rsa", help="CA key type (default rsa)"
    )
    ca_init.add_argument(
        "--key-size", type=_positive_int, default=DEFAULT_RSA_KEY_SIZE, help="RSA key size"
    )
    ca_init.add_argument(
        "--common-name",
        "--cn",
        dest="common_name",
        default="gnoicert local CA",
        help="the root's common name (default 'gnoicert local CA')",
    )
    ca_init.add_argument(
        "--days", type=_positive_int, default=3650, help="validity of the CA (default 3650)"
    )
    ca_init.add_argument("--force", action="store_true", help="replace an existing CA")

    ca_sign = ca_command("sign")
    ca_sign.add_argument("csr_file", metavar="CSR_FILE", help="the CSR (PEM) to sign")
    ca_sign.add_argument(
        "--days", type=_positive_int, default=365, help="validity of the certificate (default 365)"
    )
    ca_sign.add_argument(
        "--out", metavar="FILE", help="write the certificate and chain here instead of stdout"
    )

    ca_issue = ca_command("issue")
    ca_issue.add_argument("common_name", metavar="NAME", help="the certificate's common name")
    ca_issue.add_argument(
        "--dns", action="append", default=[], metavar="NAME", help="a DNS SAN (repeatable)"
    )
    ca_issue.add_argument(
        "--ip", action="append", default=[], metavar="ADDRESS", help="an IP SAN (repeatable)"
    )
    ca_issue.add_argument(
        "--key-type", choices=("rsa", "ecdsa"), default="ecdsa", help="key type (default ecdsa)"
    )
    ca_issue.add_argument(
        "--days", type=_positive_int, default=365, help="validity of the certificate (default 365)"
    )
    ca_issue.add_argument(
        "--out-cert", metavar="FILE", required=True, help="where to write the certificate (PEM)"
    )
    ca_issue.add_argument(
        "--out-key", metavar="FILE", required=True, help="where to write the key (PEM, mode 0600)"
    )

    demo = command("demo", connects=False)
    demo.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep the demo's files here (default: a temporary directory)",
    )
    demo.add_argument(
        "--daemon",
        metavar="CMD",
        help="how to start gnoicertd (default: the one installed with gnoicert)",
    )

    lab = command("lab", connects=False)
    lab.add_argument(
        "--devices", metavar="N", type=_positive_int, required=True, help="dev0001 to devN"
    )
    lab.add_argument("--workdir", metavar="DIR", required=True, help="reused when it exists")
    lab.add_argument(
        "--factory", action="store_true", help="leave the devices in their factory state"
    )

    report = command("report", connects=False)
    report_commands = report.add_subparsers(
        dest="report_command", metavar="REPORT_COMMAND", required=True
    )
    merge = report_commands.add_parser(
        "merge",
        help="join fleet reports (shards, resumed runs) into one",
        description="Keep the last record of each target over the files given, in order, and "
        "write one summary of them.",
        epilog="examples:\n  gnoicert report merge shard-1.jsonl shard-2.jsonl --output all.jsonl",
        formatter_class=raw,
    )
    merge.add_argument("files", metavar="FILE", nargs="+", help="JSON Lines reports to merge")
    merge.add_argument(
        "--output",
        dest="merge_output",
        metavar="FILE",
        help="write the merged report here (default: stdout)",
    )
    _exporter_options(command("exporter", connects=False))

    completion = command("completion", connects=False)
    completion.add_argument(
        "shell", metavar="SHELL", choices=COMPLETION_SHELLS, help=f"one of {COMPLETION_SHELLS}"
    )
    return parser


def exit_code_for(exc: BaseException) -> int:
    """The exit code a failure maps to (see the module docstring)."""
    from gnoicert.client.errors import InputError, PreflightFailed, ValidationFailed

    if isinstance(exc, ValidationFailed | PreflightFailed):
        return EXIT_VALIDATION
    if isinstance(exc, InputError):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def _configure_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gnoicert: %(message)s"))
    logger = logging.getLogger("gnoicert")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def status_line(exc: RpcFailed, summary: str) -> str:
    """The gRPC status under the summary, without repeating what the summary already says."""
    reason = f" ({exc.reason})" if exc.reason else ""
    details = f": {exc.details}" if exc.details and exc.details not in summary else ""
    return f"  gRPC status: {exc.code.name}{reason}{details}"


def _report_error(exc: BaseException, *, fmt: str, args: argparse.Namespace) -> int:
    """The error on stderr for a person, and as a document on stdout with --output json|yaml."""
    from gnoicert.cli.hints import Dialled, explain
    from gnoicert.client.errors import RpcFailed

    code = exit_code_for(exc)
    explanation = explain(exc, Dialled(server_name=args.server_name, insecure=bool(args.insecure)))
    lines = [f"gnoicert: {explanation.summary}"]
    if isinstance(exc, RpcFailed):
        lines.append(status_line(exc, explanation.summary))
    if explanation.hint:
        lines.append(f"  hint: {explanation.hint}")
    print("\n".join(lines), file=sys.stderr)
    if is_structured(fmt):
        error = error_fields(exc, message=explanation.summary, hint=explanation.hint)
        target = getattr(exc, "target", "") or getattr(args, "target", None)
        _print_document(
            error_document(command_name(args), exit_code=code, error=error, target=target), fmt
        )
    return code


def _report_usage(exc: UsageError, *, fmt: str) -> int:
    """A usage error as argparse prints it, plus a document when one was asked for."""
    if exc.usage:
        sys.stderr.write(exc.usage)
        print(f"{exc.prog}: error: {exc.message}", file=sys.stderr)
    else:  # an unreadable @args file: one line, no usage (nothing was parsed yet)
        print(f"{exc.prog}: {exc.message}", file=sys.stderr)
    if is_structured(fmt):
        hint = f"see {exc.prog} --help"
        _print_document(
            error_document(None, exit_code=EXIT_USAGE, error=usage_error(exc.message, hint)), fmt
        )
    return EXIT_USAGE


def _print_document(document: dict[str, Any], fmt: str) -> None:
    from gnoicert.cli.output import format_document

    try:
        print(format_document(document, fmt))
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout() -> None:
    """The reader of stdout went away (`gnoicert get --json | head`): send the rest, and the
    interpreter's final flush, to /dev/null instead of printing a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _normalise(args: argparse.Namespace, parser: ArgsFileParser) -> None:
    """-t values as a list (repeatable, comma-separated); one of them stays `args.target` as
    before. CSR options given are kept apart (they override the inventory), then defaulted."""
    from gnoicert.cli.config import normalise_targets

    normalise_targets(args)
    args.fleet = bool(getattr(args, "inventory", None)) or len(args.targets) > 1
    if hasattr(args, "country"):  # the commands with CSR options
        args.csr_flags = {
            k: getattr(args, k) for k in _CSR_DEFAULTS if getattr(args, k) is not None
        }
        for key, value in _CSR_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.command in ID_COMMANDS and not args.certificate_id and not args.inventory:
        raise UsageError(
            "the following arguments are required: ID",
            usage=parser.format_usage(),
            prog=f"{parser.prog} {args.command}",
        )


def _merge_reports(args: argparse.Namespace, fmt: str) -> int:
    """`gnoicert report merge FILE... [--output FILE]`."""
    import tempfile

    from gnoicert.client.fleet.report import ReportError, merge, write_report

    try:
        records, summary = merge(args.files)
        if args.merge_output:
            write_report(args.merge_output, records, summary)
        else:
            with tempfile.TemporaryDirectory() as scratch:
                path = os.path.join(scratch, "merged.jsonl")
                write_report(path, records, summary)
                with open(path, encoding="utf-8") as merged:
                    sys.stdout.write(merged.read())
    except ReportError as exc:
        return _report_error(exc, fmt=fmt, args=args)
    if args.merge_output:
        counts = ", ".join(f"{n} {name}" for name, n in summary.counts.items() if n)
        print(f"{args.merge_output}: {summary.total} targets: {counts or 'none'}", file=sys.stderr)
    return EXIT_OK


# The commands after which the process may end without the interpreter's teardown: the RPC
# commands on one target (commands.py runs them) and the local CA's.
_ENDS_AT_ONCE = frozenset({*RPC_COMMANDS, "ca"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gnoicert` console script; returns the exit code."""
    ran: list[argparse.Namespace] = []
    code = _run(argv, ran)
    if argv is None and ran and ran[0].command in _ENDS_AT_ONCE and not ran[0].fleet:
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """End the console script's process now, with `code`, unless another thread still runs.

    The interpreter's teardown after a one-target command (module by module, grpc's core last)
    costs about as much CPU as the command's RPC (issue 13, bench/cli.py). All it would do for
    these commands is done here first: stdout and stderr flushed, logging shut down (its only
    exit hook in such a run). A thread a normal exit would join makes this return instead.
    """
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): a failure, as in _run
        _discard_stdout()
        code = EXIT_FAILED
    sys.stderr.flush()
    os._exit(code)


def _run(argv: Sequence[str] | None, ran: list[argparse.Namespace]) -> int:
    """The command line run; its parsed arguments are appended to `ran` once it parses."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(arguments)
    try:
        args = parser.parse_args(arguments)  # exits 0 for --help/--version
        fmt = resolve_format(args.output, os.environ)
    except (UsageError, ValueError) as exc:
        usage = (
            exc
            if isinstance(exc, UsageError)
            else UsageError(str(exc), usage=parser.format_usage(), prog=parser.prog)
        )
        try:
            fmt = resolve_format(requested_format(arguments, parser), os.environ)
        except ValueError:
            fmt = "auto"
        return _report_usage(usage, fmt=fmt)
    try:
        _normalise(args, parser)
    except UsageError as exc:
        return _report_usage(exc, fmt=fmt)
    ran.append(args)
    if args.command == "report":
        return _merge_reports(args, fmt)
    if args.command == "completion":  # needs no settings: a broken config file cannot block it
        from gnoicert.cli.completion import print_script

        return print_script(parser, args.shell)
    from gnoicert.cli.config import ConfigError, apply_settings

    try:
        apply_settings(args, os.environ)
    except ConfigError as exc:  # a usage error (exit 2), reported like any other input error
        from gnoicert.client.errors import InputError

        return _report_error(InputError(str(exc)), fmt=fmt, args=args)
    if args.verbose < 2:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    _configure_logging(args.verbose)
    try:
        if args.command == "lab":
            from gnoicert.lab import run_lab

            return run_lab(args.devices, args.workdir, factory=args.factory, verbose=args.verbose)
        if args.command == "exporter":
            from gnoicert.cli.exporter import run_exporter

            return run_exporter(args)
        from gnoicert.cli.precheck import check_arguments

        check_arguments(args)  # before any dialling: a typo costs no round trip
        if args.fleet:
            from gnoicert.cli.fleet import run_fleet

            return run_fleet(args, fmt)
        from gnoicert.cli.commands import run_command

        return run_command(args, fmt)
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        print("gnoicert: interrupted", file=sys.stderr)
        return exit_code_for(exc)
    except Exception as exc:
        from gnoicert.client.errors import GnoiCertError

        if not isinstance(exc, GnoiCertError | OSError):
            raise
        return _report_error(exc, fmt=fmt, args=args)


if __name__ == "__main__":
    sys.exit(main())

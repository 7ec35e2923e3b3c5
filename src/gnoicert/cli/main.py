"""The `gnoicert` command: argparse front end, exit codes, and error reporting.

Only the standard library is imported at module level: `gnoicert --help` stays fast, and
GRPC_VERBOSITY can be set before grpcio loads (its C core otherwise prints its own log lines
next to our messages). The work happens in commands.py.

Exit codes: 0 success, 1 refused or failed (the gRPC code and reason are printed), 2 usage
error, 3 the certificate failed validation (preflight or the rotate validation step) and
nothing was committed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from gnoicert import __version__
from gnoicert.common.constants import DEFAULT_PORT, DEFAULT_RSA_KEY_SIZE, DEFAULT_TIMEOUT_S

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_VALIDATION = 3
EXIT_INTERRUPTED = 130


class ArgsFileParser(argparse.ArgumentParser):
    """argparse with Junos-style @args files: one or more options per line, shell quoting,
    blank lines and # comments ignored (`python app.py @args.txt --opt override`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fromfile_prefix_chars", "@")
        super().__init__(*args, **kwargs)

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        stripped = arg_line.strip()
        if not stripped or stripped.startswith("#"):
            return []
        return shlex.split(stripped, comments=True)


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options shared by every command. Added to the main parser, and to each subcommand with
    SUPPRESS defaults, so they may come before or after the command name. Their help is shown
    once, by `gnoicert --help`. Unset options stay None here: config.py fills them in (flag >
    GNOICERT_* > config file > default)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    def shown(text: str) -> str:
        return argparse.SUPPRESS if suppress else text

    group = parser.add_argument_group("connection") if not suppress else parser
    group.add_argument(
        "-t",
        "--target",
        metavar="HOST[:PORT]",
        default=default(None),
        help=shown(f"the target to dial (port {DEFAULT_PORT}, or --port, when omitted)"),
    )
    group.add_argument(
        "--port",
        metavar="PORT",
        type=_positive_int,
        default=default(None),
        help=shown(f"port for a --target that names none (default {DEFAULT_PORT})"),
    )
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        default=default(None),
        help=shown(
            "CA certificates (PEM) the target's certificate must chain to "
            "(default: the system store)"
        ),
    )
    group.add_argument(
        "--cert",
        metavar="FILE",
        default=default(None),
        help=shown("client certificate (PEM) for mutual TLS"),
    )
    group.add_argument(
        "--key",
        metavar="FILE",
        default=default(None),
        help=shown("private key (PEM) of the client certificate"),
    )
    group.add_argument(
        "--server-name",
        metavar="NAME",
        default=default(None),
        help=shown("name to check in the target's certificate (when dialling an IP)"),
    )
    group.add_argument(
        "-u",
        "--username",
        metavar="USER",
        default=default(None),
        help=shown("user name sent as gRPC metadata"),
    )
    group.add_argument(
        "--password-env",
        metavar="VAR",
        default=default(None),
        help=shown("read the password from this environment variable"),
    )
    group.add_argument(
        "--password-file",
        metavar="FILE",
        default=default(None),
        help=shown(
            "read the password from the first line of this file "
            "(without either, it is prompted for on a terminal)"
        ),
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=default(None),
        help=shown(f"per-RPC timeout (default {DEFAULT_TIMEOUT_S:g})"),
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=default(None),
        help=shown("plaintext gRPC, no TLS (only for targets serving plaintext)"),
    )
    settings = parser.add_argument_group("configuration") if not suppress else parser
    settings.add_argument(
        "--config",
        metavar="FILE",
        default=default(None),
        help=shown("client configuration file (default ~/.config/gnoicert/config.toml)"),
    )
    settings.add_argument(
        "--profile",
        metavar="NAME",
        default=default(None),
        help=shown("use the [profiles.NAME] table of the configuration file"),
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable JSON on stdout",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(None),
        help="show the steps (-vv: also every RPC with its time, and gRPC's own logs)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _csr_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CSR parameters")
    group.add_argument(
        "--common-name",
        "--cn",
        dest="common_name",
        default="",
        metavar="CN",
        help="subject common name (also a DNS SAN when it is a name)",
    )
    group.add_argument("--country", default="", metavar="CC", help="two-letter country code")
    group.add_argument("--state", default="", help="subject state or province")
    group.add_argument("--city", default="", help="subject locality")
    group.add_argument(
        "--organization", "--org", dest="organization", default="", help="subject organization"
    )
    group.add_argument(
        "--organizational-unit",
        "--ou",
        dest="organizational_unit",
        default="",
        help="subject organizational unit",
    )
    group.add_argument(
        "--ip-address", "--ip", dest="ip_address", default="", help="IP address (becomes an IP SAN)"
    )
    group.add_argument(
        "--email-id", "--email", dest="email_id", default="", help="e-mail address of the subject"
    )
    group.add_argument(
        "--key-type",
        choices=("rsa", "ecdsa"),
        default="rsa",
        help="ecdsa (P-256) keys are always made by this client",
    )
    group.add_argument(
        "--key-size",
        type=_positive_int,
        default=DEFAULT_RSA_KEY_SIZE,
        help=f"RSA key size (the minimum asked of the target); default {DEFAULT_RSA_KEY_SIZE}",
    )


def _workflow_options(parser: argparse.ArgumentParser) -> None:
    _csr_options(parser)
    group = parser.add_argument_group("signing")
    signer = group.add_mutually_exclusive_group()
    signer.add_argument("--ca-dir", metavar="DIR", help="sign with the local CA in DIR")
    signer.add_argument(
        "--sign-command",
        metavar="CMD",
        help="sign by running CMD (CSR on stdin, PEM certificate on stdout)",
    )
    group.add_argument(
        "--days",
        type=_positive_int,
        default=365,
        metavar="DAYS",
        help="validity of certificates signed by --ca-dir (default 365)",
    )
    group.add_argument(
        "--signer-timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="time allowed to --sign-command (default 60)",
    )
    flow = parser.add_argument_group("workflow")
    flow.add_argument(
        "--key-source",
        choices=("auto", "target", "client"),
        default="auto",
        help="who makes the key pair: auto (ask the target first), target, client",
    )
    flow.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="CA bundle (PEM) to load with the certificate; replaces the target's",
    )
    flow.add_argument(
        "--dry-run", action="store_true", help="stop after the preflight checks; nothing is loaded"
    )
    flow.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the client-side checks of the signed certificate",
    )


EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_FAILED, "refused or failed (the gRPC code and reason are printed)"),
    (EXIT_USAGE, "usage error: bad options, input files, config file or GNOICERT_* value"),
    (EXIT_VALIDATION, "the certificate failed validation; nothing was committed"),
    (EXIT_INTERRUPTED, "interrupted"),
)
COMPLETION_SHELLS = ("bash", "zsh", "fish", "tcsh")


def _main_epilog() -> str:
    from gnoicert.cli.config import help_epilog

    codes = "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES)
    return (
        f"exit codes:\n{codes}\n\n{help_epilog()}\n\n"
        "Options can be read from files: gnoicert @args.txt (one or more per line).\n"
        "Every command has examples: gnoicert COMMAND --help."
    )


def build_parser() -> ArgsFileParser:
    """The whole command line (exposed for tests and for `--help` generation)."""
    from gnoicert.cli.helptext import COMMANDS

    raw = argparse.RawDescriptionHelpFormatter
    parser = ArgsFileParser(
        prog="gnoicert",
        description="Manage TLS certificates on network devices over gNOI CertificateManagement.",
        epilog=_main_epilog(),
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"gnoicert {__version__}")
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def described(
        group: Any, name: str, key: str, *, connects: bool = True
    ) -> argparse.ArgumentParser:
        text = COMMANDS[key]
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

    install = command("install")
    install.add_argument("certificate_id", metavar="ID", help="the new certificate's ID")
    _workflow_options(install)
    install.add_argument(
        "--require-san",
        action="store_true",
        help="fail preflight unless the SANs cover the address dialled "
        "(for the certificate the gRPC server will present)",
    )

    rotate = command("rotate")
    rotate.add_argument("certificate_id", metavar="ID", help="the ID whose certificate to replace")
    _workflow_options(rotate)
    rotate.add_argument(
        "--no-tls-check",
        action="store_true",
        help="the certificate is not the gRPC server's: skip the served-"
        "certificate check and the SAN preflight check",
    )

    revoke = command("revoke")
    revoke.add_argument("certificate_ids", metavar="ID", nargs="+", help="IDs to revoke")

    get = command("get")
    get.add_argument("--details", action="store_true", help="every field of every certificate")
    get.add_argument("--save", metavar="DIR", help="write each certificate to DIR/ID.pem")
    get.add_argument(
        "--expiring-within",
        metavar="DAYS",
        type=_non_negative_int,
        help="only certificates expiring within DAYS days",
    )

    csr = command("generate-csr")
    csr.add_argument("certificate_id", metavar="ID", help="the ID the target keeps the key under")
    _csr_options(csr)
    csr.add_argument("--out", metavar="FILE", help="write the CSR here instead of stdout")

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
    load.add_argument("--dry-run", action="store_true", help="stop after the preflight checks")
    load.add_argument("--no-preflight", action="store_true", help="skip the client-side checks")

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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gnoicert: %(message)s"))
    logger = logging.getLogger("gnoicert")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def _report_error(exc: BaseException, *, json_mode: bool) -> int:
    from gnoicert.cli.hints import explain
    from gnoicert.cli.output import dumps, to_jsonable
    from gnoicert.client.errors import RpcFailed, ValidationFailed

    code = exit_code_for(exc)
    explanation = explain(exc)
    lines = [f"gnoicert: {explanation.summary}"]
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": explanation.summary,
        "hint": explanation.hint,
    }
    if isinstance(exc, RpcFailed):
        reason = f" ({exc.reason})" if exc.reason else ""
        lines.append(f"  gRPC status: {exc.code.name}{reason}: {exc.details}")
        error.update(code=exc.code.name, reason=exc.reason, details=exc.details, rpc=exc.rpc)
    if isinstance(exc, ValidationFailed):
        error["checks"] = to_jsonable(exc.checks)
    if explanation.hint:
        lines.append(f"  hint: {explanation.hint}")
    print("\n".join(lines), file=sys.stderr)
    if json_mode:
        try:
            print(dumps({"ok": False, "exit_code": code, "error": error}))
        except BrokenPipeError:
            _discard_stdout()
    return code


def _discard_stdout() -> None:
    """The reader of stdout went away (`gnoicert get --json | head`): send the rest, and the
    interpreter's final flush, to /dev/null instead of printing a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gnoicert` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 for --help/--version
    if args.command == "completion":  # needs no settings: a broken config file cannot block it
        from gnoicert.cli.completion import print_script

        return print_script(parser, args.shell)
    from gnoicert.cli.config import ConfigError, apply_settings

    try:
        apply_settings(args, os.environ)
    except ConfigError as exc:  # a usage error (exit 2), reported like any other input error
        from gnoicert.client.errors import InputError

        return _report_error(InputError(str(exc)), json_mode=bool(args.json))
    if args.verbose < 2:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    _configure_logging(args.verbose)
    try:
        from gnoicert.cli.commands import run_command

        return run_command(args)
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
        return _report_error(exc, json_mode=args.json)


if __name__ == "__main__":
    sys.exit(main())

"""What the three gnoi_cert_* applications share beyond grpc_channel: options, password, output.

The Junos applications take the same connection options and the same CSR options; keeping them
here means the applications differ only in what they do. Run the applications from the
directory their args files' paths are relative to; this module and grpc_channel.py are found
next to them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import sys
from pathlib import Path

# grpcio's C core would print its own lines about TLS failures; the applications explain them.
# It must be set before grpcio loads (gnoicert loads it on first use).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import gnoicert
from gnoicert.client.channel import read_pem_file

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_VALIDATION = 3


class ArgsFileParser(argparse.ArgumentParser):
    """argparse reading Junos-style @args files: one or more options per line, shell quoting,
    blank lines and # comments ignored (`python app.py @args.txt --opt override`)."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description, fromfile_prefix_chars="@")

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        return shlex.split(arg_line, comments=True)


def new_parser(description: str) -> ArgsFileParser:
    """A parser with the target connection options every application takes."""
    parser = ArgsFileParser(description)
    target = parser.add_argument_group("target")
    target.add_argument("--server", required=True, help="target address or name")
    target.add_argument("--port", type=int, default=9339)
    target.add_argument(
        "--root_ca_cert", required=True, help="CA (PEM) the target's current certificate chains to"
    )
    target.add_argument("--client_cert", help="client certificate (PEM) for mutual TLS")
    target.add_argument("--client_key", help="client key (PEM) for mutual TLS")
    target.add_argument("--server_name", help="name in the target's certificate, if not --server")
    target.add_argument("--user_id", help="user name (sent as gRPC metadata with the password)")
    # Not mutually exclusive: an option after the @file must be able to override the file's.
    target.add_argument("--password_env", help="environment variable holding the password")
    target.add_argument(
        "--password_file", help="file holding the password (first line; before --password_env)"
    )
    target.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    return parser


def password(args: argparse.Namespace) -> str | None:
    """The password for --user_id: from --password_file, --password_env, or a prompt as on
    Junos. Never from the command line, where other users of the host could read it."""
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise gnoicert.InputError(
                f"cannot read the password file {args.password_file}: {exc.strerror or exc}"
            ) from None
        return (text.splitlines() or [""])[0]
    if args.password_env:
        if args.password_env not in os.environ:
            raise gnoicert.InputError(f"the environment variable {args.password_env} is not set")
        return os.environ[args.password_env]
    if not args.user_id:
        return None
    if not sys.stdin.isatty():
        raise gnoicert.InputError(
            "no terminal to ask for the password: give --password_env or --password_file"
        )
    return getpass.getpass(f"password for {args.user_id}: ")


def channel_options(args: argparse.Namespace) -> gnoicert.ChannelOptions:
    """How the gnoicert client reaches the target: the same files grpc_channel would use."""
    return gnoicert.ChannelOptions.from_files(
        f"{args.server}:{args.port}",
        ca_file=args.root_ca_cert,
        cert_file=args.client_cert,
        key_file=args.client_key,
        server_name=args.server_name,
        username=args.user_id,
        password=password(args),
        timeout=args.timeout,
    )


def add_certificate_arguments(parser: argparse.ArgumentParser, cert_id_help: str) -> None:
    """The CSR parameters, the CA bundle and the signer of the install and rotate applications."""
    csr = parser.add_argument_group("certificate (the target generates the key pair and CSR)")
    csr.add_argument("--cert_id", required=True, help=cert_id_help)
    csr.add_argument("--min_key_size", type=int, default=2048)
    csr.add_argument("--common_name", default="")
    csr.add_argument("--country", default="")
    csr.add_argument("--state", default="")
    csr.add_argument("--city", default="")
    csr.add_argument("--org", default="")
    csr.add_argument("--org_unit", default="")
    csr.add_argument("--ip_address", default="")
    csr.add_argument("--email_id", default="")
    bundle = parser.add_argument_group("CA bundle loaded with the certificate")
    bundle.add_argument("--server_root_ca1", help="root CA (PEM) of the target's new certificate")
    bundle.add_argument(
        "--client_root_ca", help="root CA (PEM) of the clients' certificates (mutual TLS)"
    )
    signing = parser.add_argument_group("signing the CSR")
    signing.add_argument("--ca_dir", help="local CA directory (gnoicert ca init)")
    signing.add_argument(
        "--sign_command",
        help="command reading the CSR (PEM) on stdin, printing the certificate (before --ca_dir)",
    )
    signing.add_argument("--days", type=int, default=365, help="validity (--ca_dir)")


def csr_params(args: argparse.Namespace) -> gnoicert.CsrParams:
    return gnoicert.CsrParams(
        common_name=args.common_name,
        country=args.country,
        state=args.state,
        city=args.city,
        organization=args.org,
        organizational_unit=args.org_unit,
        ip_address=args.ip_address,
        email_id=args.email_id,
        key_size=args.min_key_size,
    )


def signer(args: argparse.Namespace) -> gnoicert.Signer:
    """--sign_command when given (it may override an args file's --ca_dir), else --ca_dir."""
    if args.sign_command:
        return gnoicert.ExternalCommandSigner(args.sign_command)
    if args.ca_dir:
        return gnoicert.LocalCA.open(args.ca_dir, days=args.days)
    raise gnoicert.InputError("no signer: give --ca_dir or --sign_command")


def ca_bundle(args: argparse.Namespace) -> bytes:
    """The bundle to load: the server's new root CA, then the clients' root CA (either may be
    absent; none at all keeps the target's bundle). It replaces the target's whole bundle, so
    it must hold every CA the target should trust from now on (docs/behaviour.md §3)."""
    parts = [
        read_pem_file(args.server_root_ca1, "server root CA (--server_root_ca1)")
        if args.server_root_ca1
        else b"",
        read_pem_file(args.client_root_ca, "client root CA (--client_root_ca)")
        if args.client_root_ca
        else b"",
    ]
    return b"".join(part if part.endswith(b"\n") else part + b"\n" for part in parts if part)


def report_failure(action: str, exc: gnoicert.GnoiCertError) -> int:
    """Say what failed on stderr; returns the exit status (2 bad input, 3 validation, else 1)."""
    print(f"{action} failed: {exc}", file=sys.stderr)
    if isinstance(exc, gnoicert.InputError):
        return EXIT_USAGE
    if isinstance(exc, gnoicert.ValidationFailed | gnoicert.PreflightFailed):
        return EXIT_VALIDATION
    return EXIT_FAILED


def print_certificate(result: gnoicert.InstallResult | gnoicert.RotateResult) -> None:
    print(f"  subject     {result.subject}")
    print(f"  sha256      {result.fingerprint}")
    print(f"  not after   {result.not_after:%Y-%m-%d %H:%M} UTC")
    if result.ca_bundle_size:
        print(f"  CA bundle   {result.ca_bundle_size} certificate(s) loaded")

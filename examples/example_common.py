"""What the three example applications share: target options, the password, error reports.

The Junos applications each take the same connection options; keeping them here means the
examples differ only in what they do. Run the examples from the repository root; this module
is found next to them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

# grpcio's C core would print its own lines about TLS failures; the examples explain them.
# It must be set before grpcio loads (gnoicert loads it on first use).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import gnoicert
from gnoicert.cli.hints import explain
from gnoicert.cli.main import ArgsFileParser, exit_code_for
from gnoicert.client.channel import read_pem_file

__all__ = [
    "ArgsFileParser",
    "add_certificate_arguments",
    "ca_bundle",
    "channel_options",
    "csr_params",
    "new_parser",
    "print_certificate",
    "report_failure",
]


def new_parser(description: str) -> ArgsFileParser:
    """A parser that reads @args files, with the target connection options added."""
    parser = ArgsFileParser(description=description)
    connection = parser.add_argument_group("target")
    connection.add_argument("--server", required=True, help="target address or name")
    connection.add_argument("--port", type=int, default=9339)
    connection.add_argument("--root_ca_cert", help="CA (PEM) the target's certificate chains to")
    connection.add_argument("--client_cert", help="client certificate (PEM) for mutual TLS")
    connection.add_argument("--client_key", help="client key (PEM) for mutual TLS")
    connection.add_argument("--server_name", help="name in the target's certificate")
    connection.add_argument("--user_id", help="user name (sent as gRPC metadata)")
    connection.add_argument("--password_env", help="environment variable holding the password")
    connection.add_argument("--password_file", help="file holding the password")
    connection.add_argument("--timeout", type=float, default=10.0)
    return parser


def _password(user: str | None, env: str | None, path: str | None) -> str | None:
    if path:
        try:
            return (Path(path).read_text(encoding="utf-8").splitlines() or [""])[0]
        except OSError as exc:
            raise gnoicert.InputError(f"cannot read the password file {path}: {exc}") from None
    if env:
        if env not in os.environ:
            raise gnoicert.InputError(f"the environment variable {env} is not set")
        return os.environ[env]
    if user and sys.stdin.isatty():
        return getpass.getpass(f"password for {user}: ")
    return None


def channel_options(args: argparse.Namespace) -> gnoicert.ChannelOptions:
    """Connection options from the parsed target arguments (raises gnoicert errors)."""
    return gnoicert.ChannelOptions.from_files(
        f"{args.server}:{args.port}",
        ca_file=args.root_ca_cert,
        cert_file=args.client_cert,
        key_file=args.client_key,
        server_name=args.server_name,
        username=args.user_id,
        password=_password(args.user_id, args.password_env, args.password_file),
        timeout=args.timeout,
    )


def report_failure(action: str, exc: gnoicert.GnoiCertError) -> int:
    """Explain a failure on stderr; returns the exit code the gnoicert CLI would use."""
    explanation = explain(exc)
    print(f"{action} failed: {explanation.summary}", file=sys.stderr)
    if explanation.hint:
        print(f"hint: {explanation.hint}", file=sys.stderr)
    return exit_code_for(exc)


def add_certificate_arguments(parser: argparse.ArgumentParser, cert_id_help: str) -> None:
    """The CSR parameters and the signing options of the install and rotate applications."""
    csr = parser.add_argument_group("certificate")
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
    signing = parser.add_argument_group("signing")
    signing.add_argument("--ca_dir", required=True, help="local CA directory (gnoicert ca init)")
    signing.add_argument("--days", type=int, default=365)
    signing.add_argument("--ca_bundle", help="CA bundle (PEM) to load with the certificate")


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


def ca_bundle(args: argparse.Namespace) -> bytes:
    return read_pem_file(args.ca_bundle, "CA bundle") if args.ca_bundle else b""


def print_certificate(result: gnoicert.InstallResult | gnoicert.RotateResult) -> None:
    print(f"  subject     {result.subject}")
    print(f"  sha256      {result.fingerprint}")
    print(f"  not after   {result.not_after:%Y-%m-%d %H:%M} UTC")
    if result.ca_bundle_size:
        print(f"  CA bundle   {result.ca_bundle_size} certificate(s) loaded")

"""Revoke certificates on a target by certificate ID (gNOI RevokeCertificates).

The Junos example application of the same name, on top of the gnoicert library. An ID that is
not on the target counts as revoked; per-ID failures are printed and give exit status 1.

    python examples/revoke_certificates.py @examples/args_cert_revoke.txt
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

# grpcio's C core would print its own lines about TLS failures; this script explains them.
# It must be set before grpcio loads (gnoicert loads it on first use).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import gnoicert
from gnoicert.client.cli import ArgsFileParser, exit_code_for
from gnoicert.client.hints import explain


def build_parser() -> ArgsFileParser:
    parser = ArgsFileParser(description=__doc__.splitlines()[0])
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
    parser.add_argument(
        "--cert_id", action="append", required=True, help="a certificate ID (repeat for more)"
    )
    return parser


def password(user: str | None, env: str | None, path: str | None) -> str | None:
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = gnoicert.ChannelOptions.from_files(
            f"{args.server}:{args.port}",
            ca_file=args.root_ca_cert,
            cert_file=args.client_cert,
            key_file=args.client_key,
            server_name=args.server_name,
            username=args.user_id,
            password=password(args.user_id, args.password_env, args.password_file),
            timeout=args.timeout,
        )
        with gnoicert.SyncCertClient(options) as client:
            result = client.revoke(args.cert_id)
    except gnoicert.GnoiCertError as exc:
        explanation = explain(exc)
        print(f"revoke failed: {explanation.summary}", file=sys.stderr)
        if explanation.hint:
            print(f"hint: {explanation.hint}", file=sys.stderr)
        return exit_code_for(exc)
    for certificate_id in result.revoked:
        print(f"revoked {certificate_id}")
    for error in result.errors:
        print(f"not revoked {error.certificate_id}: {error.message}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

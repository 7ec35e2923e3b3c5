"""Rotate a certificate on a target with a target-generated CSR (gNOI Rotate).

The Junos example application of the same name, on top of the gnoicert library: the target
makes a new key pair and CSR for an existing certificate ID, the local CA in --ca_dir signs it,
the certificate is loaded, and before Finalize a new connection checks that the target serves
the new certificate and still answers (System/Time). If any check fails, the rotation is
cancelled and the target rolls back to the old certificate (exit status 3).

    python examples/rotate_certificate_csr.py @examples/args_cert_rotate_csr.txt
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
from gnoicert.client.channel import read_pem_file
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
    csr = parser.add_argument_group("certificate")
    csr.add_argument("--cert_id", required=True, help="the certificate ID to rotate")
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
    parser.add_argument(
        "--no_tls_check",
        action="store_true",
        help="the certificate is not the gRPC server's: skip the served-certificate check",
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
        spec = gnoicert.RotateSpec(
            certificate_id=args.cert_id,
            csr=gnoicert.CsrParams(
                common_name=args.common_name,
                country=args.country,
                state=args.state,
                city=args.city,
                organization=args.org,
                organizational_unit=args.org_unit,
                ip_address=args.ip_address,
                email_id=args.email_id,
                key_size=args.min_key_size,
            ),
            signer=gnoicert.LocalCA.open(args.ca_dir, days=args.days),
            ca_bundle_pem=read_pem_file(args.ca_bundle, "CA bundle") if args.ca_bundle else b"",
            key_source="target",
            require_san=not args.no_tls_check,
            check_served_certificate=not args.no_tls_check,
        )
        with gnoicert.SyncCertClient(options) as client:
            result = client.rotate(spec)
    except gnoicert.GnoiCertError as exc:
        explanation = explain(exc)
        print(f"rotate failed: {explanation.summary}", file=sys.stderr)
        if explanation.hint:
            print(f"hint: {explanation.hint}", file=sys.stderr)
        return exit_code_for(exc)
    for check in result.validation:
        print(f"validation {check.name}: {check.status} ({check.detail})")
    print(f"rotated {result.certificate_id} on {result.target} and finalized")
    print(f"  subject     {result.subject}")
    print(f"  sha256      {result.fingerprint}")
    print(f"  not after   {result.not_after:%Y-%m-%d %H:%M} UTC")
    if result.ca_bundle_size:
        print(f"  CA bundle   {result.ca_bundle_size} certificate(s) loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())

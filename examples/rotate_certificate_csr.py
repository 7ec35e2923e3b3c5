"""Rotate a certificate on a target with a target-generated CSR (gNOI Rotate).

The Junos example application of the same name, on top of the gnoicert library: the target
makes a new key pair and CSR for an existing certificate ID, the local CA in --ca_dir signs it,
the certificate is loaded, and before Finalize a new connection checks that the target serves
the new certificate and still answers (System/Time). If any check fails, the rotation is
cancelled and the target rolls back to the old certificate (exit status 3).

    python examples/rotate_certificate_csr.py @examples/args_cert_rotate_csr.txt
"""

from __future__ import annotations

import sys

import example_common as common

import gnoicert


def build_parser() -> common.ArgsFileParser:
    parser = common.new_parser(__doc__.splitlines()[0])
    common.add_certificate_arguments(parser, "the certificate ID to rotate")
    parser.add_argument(
        "--no_tls_check",
        action="store_true",
        help="the certificate is not the gRPC server's: skip the served-certificate check",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = gnoicert.RotateSpec(
            certificate_id=args.cert_id,
            csr=common.csr_params(args),
            signer=gnoicert.LocalCA.open(args.ca_dir, days=args.days),
            ca_bundle_pem=common.ca_bundle(args),
            key_source="target",
            require_san=not args.no_tls_check,
            check_served_certificate=not args.no_tls_check,
        )
        with gnoicert.SyncCertClient(common.channel_options(args)) as client:
            result = client.rotate(spec)
    except gnoicert.GnoiCertError as exc:
        return common.report_failure("rotate", exc)
    for check in result.validation:
        print(f"validation {check.name}: {check.status} ({check.detail})")
    print(f"rotated {result.certificate_id} on {result.target} and finalized")
    common.print_certificate(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

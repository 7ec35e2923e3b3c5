"""Revoke certificates on a target by certificate ID (gNOI RevokeCertificates).

The Junos example application of the same name, on top of the gnoicert library. The target
counts an ID it does not have as revoked (docs/behaviour.md §4); the library asks first and this
prints such an ID as "not present". Per-ID failures are printed and give exit status 1.

    python examples/gnoi_cert_revoke_certificates.py @examples/args_cert_revoke_certificates.txt
"""

from __future__ import annotations

import sys

import gnoi_cert_common as common

import gnoicert


def build_parser() -> common.ArgsFileParser:
    parser = common.new_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--cert_id", action="append", required=True, help="a certificate ID (repeat for more)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with gnoicert.SyncCertClient(common.channel_options(args)) as client:
            result = client.revoke(args.cert_id)
    except gnoicert.GnoiCertError as exc:
        return common.report_failure("revoke", exc)
    for certificate_id in result.revoked:
        print(f"revoked {certificate_id}")
    for certificate_id in result.not_present:
        print(f"not present {certificate_id}")
    for error in result.errors:
        print(f"not revoked {error.certificate_id}: {error.message}", file=sys.stderr)
    return common.EXIT_OK if result.ok else common.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

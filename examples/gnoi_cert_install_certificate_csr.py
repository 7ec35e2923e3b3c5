"""Install a certificate on a target with a target-generated CSR (gNOI Install).

The Junos example application of the same name, on top of the gnoicert library: the target
makes the key pair and the CSR, the local CA in --ca_dir (or --sign_command) signs it, and the
certificate is loaded under a new certificate ID. With --server_root_ca1 / --client_root_ca the
CA bundle is loaded too; the first bundle turns on mutual TLS (docs/behaviour.md §1).

    python examples/gnoi_cert_install_certificate_csr.py @examples/args_cert_install_csr.txt
"""

from __future__ import annotations

import sys

import gnoi_cert_common as common

import gnoicert


def build_parser() -> common.ArgsFileParser:
    parser = common.new_parser(__doc__.splitlines()[0])
    common.add_certificate_arguments(parser, "the new certificate ID")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = gnoicert.InstallSpec(
            certificate_id=args.cert_id,
            csr=common.csr_params(args),
            signer=common.signer(args),
            ca_bundle_pem=common.ca_bundle(args),
            key_source="target",
        )
        with gnoicert.SyncCertClient(common.channel_options(args)) as client:
            result = client.install(spec)
    except gnoicert.GnoiCertError as exc:
        return common.report_failure("install", exc)
    print(f"installed {result.certificate_id} on {result.target}")
    common.print_certificate(result)
    return common.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

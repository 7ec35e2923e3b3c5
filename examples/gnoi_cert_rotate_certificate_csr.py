"""Rotate a certificate on a target with a target-generated CSR (gNOI Rotate).

The Junos example application of the same name, on top of the gnoicert library: over a first
channel that trusts --root_ca_cert (the target's current CA), the target makes a new key pair
and CSR for an existing certificate ID, the CA signs it, and it is loaded with the CA bundle
(--server_root_ca1, the new certificate's root, and --client_root_ca). Before Finalize, the
validation step: a new TLS connection must get the new certificate, and a new gRPC session
opened with grpc_channel, trusting only --server_root_ca1, must answer System/Time. If any check
fails, the rotation is cancelled and the target rolls back to the old certificate (exit 3).

    python examples/gnoi_cert_rotate_certificate_csr.py @examples/args_cert_rotate_csr.txt
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import gnoi_cert_common as common
import grpc
import grpc.aio
from grpc_channel import grpc_authenticate_channel_mutual, grpc_authenticate_channel_server_only

import gnoicert

TIME_METHOD = "/gnoi.system.System/Time"
Metadata = tuple[tuple[str, str], ...]
Probe = Callable[[grpc.aio.Channel, Metadata], Awaitable[str]]


def build_parser() -> common.ArgsFileParser:
    parser = common.new_parser(__doc__.splitlines()[0])
    common.add_certificate_arguments(parser, "the certificate ID to rotate")
    return parser


def time_nanoseconds(response: bytes) -> int:
    """TimeResponse.time (field 1, a varint) from the serialized message (docs/wire.md)."""
    if not response:
        return 0  # proto3: a zero time is sent as an empty message
    if response[0] != 0x08:
        raise ValueError("not a System/Time response")
    value = 0
    for index, byte in enumerate(response[1:11]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value
    raise ValueError("truncated System/Time response")


def validation_session(args: argparse.Namespace) -> Probe:
    """The Junos validation step: a new session that trusts only the new certificate's root CA
    (--server_root_ca1), and System/Time over it; the answer is what the check reports."""
    root_ca = args.server_root_ca1 or args.root_ca_cert
    # Passed only when asked for, so an operator's own grpc_channel.py still drops in.
    extra: dict[str, Any] = (
        {"options": [("grpc.ssl_target_name_override", args.server_name)]}
        if args.server_name
        else {}
    )

    def call_time(metadata: Metadata) -> str:
        if args.client_cert:
            channel = grpc_authenticate_channel_mutual(
                args.server, args.port, root_ca, args.client_key, args.client_cert, **extra
            )
        else:
            channel = grpc_authenticate_channel_server_only(
                args.server, args.port, root_ca, **extra
            )
        with channel:
            # No generated stubs needed: the request is empty and the answer is one varint.
            time_rpc: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(TIME_METHOD)
            response = time_rpc(b"", metadata=metadata, timeout=args.timeout)
        when = dt.datetime.fromtimestamp(time_nanoseconds(response) / 1e9, tz=dt.UTC)
        return f"System/Time over a new session trusting {root_ca}: {when:%Y-%m-%d %H:%M:%S} UTC"

    async def probe(_channel: grpc.aio.Channel, metadata: Metadata) -> str:
        # The library's own fresh channel is not used: the session is grpc_channel's, as on Junos.
        return await asyncio.to_thread(call_time, metadata)

    return probe


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = gnoicert.RotateSpec(
            certificate_id=args.cert_id,
            csr=common.csr_params(args),
            signer=common.signer(args),
            ca_bundle_pem=common.ca_bundle(args),
            key_source="target",
            probe=validation_session(args),
        )
        with gnoicert.SyncCertClient(common.channel_options(args)) as client:
            result = client.rotate(spec)
    except gnoicert.ValidationFailed as exc:
        for check in exc.checks:
            print(f"validation {check.name}: {check.status} ({check.detail})", file=sys.stderr)
        return common.report_failure("rotate", exc)
    except gnoicert.GnoiCertError as exc:
        return common.report_failure("rotate", exc)
    for check in result.validation:
        print(f"validation {check.name}: {check.status} ({check.detail})")
    print(f"rotated {result.certificate_id} on {result.target} and finalized")
    common.print_certificate(result)
    return common.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""Does the target now refuse a connection without a client certificate?

Loading the first CA bundle, or revoking it, switches a target such as gnoicertd between
server-only and mutual TLS (docs/behaviour.md §1, "Authentication mode"); the switch replaces the
listener just after the RPC ends. The caller learns the new mode by trying: a fresh channel
without a client certificate, polled briefly until it shows the expected mode.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import grpc.aio

from gnoicert.client.channel import ChannelOptions, open_channel
from gnoicert.client.errors import FailureKind, rpc_failed
from gnoicert.common.rpc import SystemRpc
from gnoicert.proto import system_pb2, system_pb2_grpc

MODE_SWITCH_WAIT_S = 3.0
"""How long to wait for the listener of the new mode (gnoicertd replaces it within ms)."""


async def client_certificates_required(
    options: ChannelOptions, *, expect: bool, within: float = MODE_SWITCH_WAIT_S
) -> bool | None:
    """True when a new connection without a client certificate is refused, False when it is
    answered; polled until it matches `expect` or `within` seconds pass. None when it cannot
    tell (plaintext, or a failure that says nothing about client certificates)."""
    if options.insecure:
        return None
    bare = replace(options, client_certificate=None, client_key=None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(within, options.timeout)
    delay = 0.02
    while True:
        required = await _refused_without_certificate(bare)
        # None (say, the old listener closing under the probe) is worth another try too.
        if required == expect or loop.time() >= deadline:
            return required
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def _refused_without_certificate(options: ChannelOptions) -> bool | None:
    channel = open_channel(options, fresh=True)
    try:
        await system_pb2_grpc.SystemStub(channel).Time(
            system_pb2.TimeRequest(), metadata=options.metadata(), timeout=options.timeout
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False  # answered: the handshake without a certificate succeeded
        kind = rpc_failed(exc, target=options.address, rpc=SystemRpc.TIME).kind
        return True if kind == FailureKind.CONNECTION_CLOSED else None
    finally:
        await channel.close()
    return False

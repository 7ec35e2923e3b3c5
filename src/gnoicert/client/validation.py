"""The rotate validation step: is the new certificate what a *new* connection gets, and does
the target answer over it? (docs/wire.md section 5.1 step 5.)

Two checks, both always run so the report says everything that was seen:
- served-certificate: a fresh TLS handshake that trusts only the new chain; the certificate the
  target presents must have the new certificate's fingerprint;
- probe: a fresh gRPC channel (its own subchannel pool) trusting only the new chain, calling
  System/Time, or a caller-supplied probe. An UNIMPLEMENTED answer passes: the target can only
  send it once the TLS handshake with the new certificate has succeeded (targets without
  System/Time exist, docs/behaviour.md §9).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl

import grpc
import grpc.aio

from gnoicert.client.channel import ChannelOptions, Metadata, open_channel
from gnoicert.client.errors import rpc_failed
from gnoicert.client.models import CheckResult, Probe
from gnoicert.common.rpc import SystemRpc
from gnoicert.proto import system_pb2, system_pb2_grpc


async def validate_rotation(
    options: ChannelOptions,
    *,
    expected_fingerprint: str,
    trust_pem: bytes,
    check_served_certificate: bool = True,
    probe: Probe | None = None,
) -> tuple[CheckResult, ...]:
    """Run the checks against the target of `options`, trusting `trust_pem` (the new chain).

    When the certificate is not the gRPC server's, the server keeps presenting its own
    certificate: the probe then trusts what the caller already trusts, not the new chain.
    """
    if not check_served_certificate:
        skipped = CheckResult(
            name="served-certificate", status="skip", detail="not the gRPC server's certificate"
        )
        return skipped, await run_probe(options, probe)
    fresh = options.trusting(trust_pem or options.root_certificates)
    served = await check_served(fresh, expected_fingerprint)
    probed = await run_probe(fresh, probe)
    return served, probed


async def check_served(options: ChannelOptions, expected_fingerprint: str) -> CheckResult:
    """Fingerprint of the certificate a new, verifying TLS connection gets."""
    name = "served-certificate"
    if options.insecure:
        return CheckResult(name=name, status="skip", detail="plaintext channel: no certificate")
    try:
        der = await _served_certificate(options, verify=True)
    except ssl.SSLCertVerificationError as exc:
        seen = await unverified_fingerprint(options)
        return CheckResult(
            name=name,
            status="fail",
            detail=f"a new connection does not accept the served certificate "
            f"({exc.verify_message}); served sha256 {seen}",
        )
    except (ssl.SSLError, OSError) as exc:
        return CheckResult(name=name, status="fail", detail=f"new TLS connection failed: {exc}")
    served = hashlib.sha256(der).hexdigest()
    if served != expected_fingerprint:
        return CheckResult(
            name=name,
            status="fail",
            detail=f"the target serves sha256 {served}, not the new {expected_fingerprint}",
        )
    return CheckResult(
        name=name, status="pass", detail=f"a new connection gets the new certificate ({served})"
    )


async def _served_certificate(options: ChannelOptions, *, verify: bool) -> bytes:
    """DER of what a new TLS connection with these options gets (off the event loop)."""
    return await asyncio.to_thread(options.served_certificate, verify=verify)


async def unverified_fingerprint(options: ChannelOptions) -> str:
    try:
        der = await _served_certificate(options, verify=False)
    except (ssl.SSLError, OSError):
        return "unknown"
    return hashlib.sha256(der).hexdigest()


async def system_time_probe(channel: grpc.aio.Channel, metadata: Metadata) -> str:
    """The default probe: System/Time answers (the RPC the upstream file says every vendor has)."""
    stub = system_pb2_grpc.SystemStub(channel)
    response = await stub.Time(system_pb2.TimeRequest(), metadata=metadata)
    return f"System/Time answered ({response.time} ns)"


async def run_probe(options: ChannelOptions, probe: Probe | None) -> CheckResult:
    name = "probe"
    channel = open_channel(options, fresh=True)
    try:
        detail = await asyncio.wait_for(
            (probe or system_time_probe)(channel, options.metadata()), timeout=options.timeout
        )
    except grpc.aio.AioRpcError as exc:
        rpc = "System/Time" if probe is None else "the probe's RPC"
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return CheckResult(
                name=name,
                status="pass",
                detail=f"{rpc} is not implemented; the UNIMPLEMENTED answer over a new "
                "connection proved the handshake with the new certificate",
            )
        failure = rpc_failed(
            exc, target=options.address, rpc=SystemRpc.TIME if probe is None else "probe"
        )
        return CheckResult(name=name, status="fail", detail=failure.summary)
    except TimeoutError:
        return CheckResult(
            name=name, status="fail", detail=f"no answer within {options.timeout:g} s"
        )
    except Exception as exc:  # a caller's probe may fail in any way
        return CheckResult(name=name, status="fail", detail=f"{type(exc).__name__}: {exc}")
    finally:
        await channel.close()
    return CheckResult(name=name, status="pass", detail=detail)


async def wait_for_rollback(options: ChannelOptions, new_fingerprint: str) -> CheckResult:
    """After a cancel, wait (bounded by the timeout) until new connections stop getting the
    rejected certificate, so the caller returns once the target has rolled back."""
    name = "rollback"
    if options.insecure:
        return CheckResult(name=name, status="skip", detail="plaintext channel: no certificate")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.timeout
    delay = 0.01
    while True:
        served = await unverified_fingerprint(options)
        if served not in (new_fingerprint, "unknown"):
            return CheckResult(name=name, status="pass", detail=f"the target serves {served} again")
        if loop.time() >= deadline:
            return CheckResult(
                name=name,
                status="warn",
                detail=f"the target still served {served} after {options.timeout:g} s",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)

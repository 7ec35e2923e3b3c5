"""What a real gnoicertd process prints when it cannot listen, and what grpc's C core would
print about failed handshakes (docs/platform-notes.md): one clear line, nothing created; no
core lines in the daemon log."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import grpc
import pytest

from gnoicert.proto import cert_pb2
from tests.support.daemon import Clients, probe_fingerprint, run_gnoicertd
from tests.support.flows import ADMIN, cert_stub, install, issue_server_cert
from tests.support.pki import TestCA
from tests.support.target import TargetProcess, spawn_target, wait_for, write_config

CORE_LINES = ("No match found for server name", "Handshake failed", "chttp2", ".cc:")


def test_port_in_use_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port=port)
        result = run_gnoicertd("serve", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in lines[0]
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "audit.jsonl").exists()


def _tls_hello(address: str, server_name: str) -> None:
    """A TLS handshake that sends server_name as SNI and no client certificate."""
    host, port = address.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        try:
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass  # the server refusing the handshake is what this provokes


async def test_grpc_core_handshake_lines_stay_out_of_the_log(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, grpc_lines=['local_certificate = "srv"'])
    proc = spawn_target(config)
    processes.append(proc)
    async with Clients(proc.address) as clients:
        srv = issue_server_cert(ca)
        await install(cert_stub(clients.server_only()), "srv", srv, bundle_pem=ca.bundle_pem)
        await wait_for(lambda: probe_fingerprint(proc.address) == srv.fingerprint, what="srv")
        for _ in range(5):
            # SNI that names no certificate of the server; no client certificate in mutual TLS.
            await asyncio.to_thread(_tls_hello, proc.address, "no-such-name.example")
        with pytest.raises(grpc.aio.AioRpcError):
            await cert_stub(clients.server_only(ca.bundle_pem)).GetCertificates(
                cert_pb2.GetCertificatesRequest(),
                metadata=ADMIN,
                timeout=10,
            )
    assert await asyncio.to_thread(proc.terminate) == 0
    log = proc.stderr_text()
    for noise in CORE_LINES:
        assert noise not in log, log

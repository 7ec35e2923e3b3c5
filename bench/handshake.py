"""What hot reload costs: gnoicertd's dynamic TLS credentials against static ones, in one run.

Measures, on 127.0.0.1 only:
  1. the median of (new TCP connection + TLS handshake + one System/Time RPC), against the
     daemon's listener (grpc.dynamic_ssl_server_credentials, fetcher returning None when nothing
     changed) and against a server with the same servicers built with static
     grpc.ssl_server_credentials, interleaved so drift hits both alike;
  2. the GetCertificates rate (calls/s, sequential, one channel) on each;
  3. the resident memory (VmRSS) of an idle gnoicertd subprocess once it is ready.

Both servers run in this process on one event loop in a background thread; the client is
synchronous grpc in the main thread. Run: .venv/bin/python bench/handshake.py [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gnoicert.daemon.auth import hash_password
from gnoicert.daemon.config import load_config
from gnoicert.daemon.server import Daemon
from gnoicert.proto import cert_pb2, cert_pb2_grpc, system_pb2, system_pb2_grpc

USER, PASSWORD = "bench", "bench-password"
METADATA = (("username", USER), ("password", PASSWORD))
_T = TypeVar("_T")


def write_config(directory: Path) -> Path:
    path = directory / "gnoicertd.toml"
    path.write_text(
        f'state_dir = "{directory / "state"}"\n'
        f'audit_log = "{directory / "audit.jsonl"}"\n'
        "[grpc]\n"
        'listen = "127.0.0.1:0"\n'
        "[[users]]\n"
        f'name = "{USER}"\n'
        f'password_hash = "{hash_password(PASSWORD)}"\n'
        'role = "read-only"\n'
    )
    return path


class LoopThread:
    """An event loop in a background thread, for the servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def start_daemon(config: Path) -> Daemon:
    daemon = Daemon(load_config(config))
    await daemon.start()
    return daemon


async def start_static(daemon: Daemon) -> tuple[grpc.aio.Server, int]:
    """The same servicers and interceptor (same work per call) behind static credentials."""
    served = daemon.credentials.current
    server = grpc.aio.server(interceptors=[daemon._in_flight], options=[("grpc.so_reuseport", 0)])
    cert_pb2_grpc.add_CertificateManagementServicer_to_server(daemon._cert_service, server)
    system_pb2_grpc.add_SystemServicer_to_server(daemon._system_service, server)
    creds = grpc.ssl_server_credentials([(served.key_pem, served.chain_pem)])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    return server, port


def handshake_and_time(address: str, root_pem: bytes) -> float:
    """Seconds for a brand-new connection (own subchannel pool) and one Time RPC."""
    started = time.perf_counter()
    channel = grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(root_certificates=root_pem),
        options=[("grpc.use_local_subchannel_pool", 1)],
    )
    try:
        system_pb2_grpc.SystemStub(channel).Time(system_pb2.TimeRequest(), metadata=METADATA)
    finally:
        channel.close()
    return time.perf_counter() - started


def get_certificates_rate(address: str, root_pem: bytes, seconds: float) -> float:
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root_pem))
    try:
        call: Callable[..., Any] = cert_pb2_grpc.CertificateManagementStub(channel).GetCertificates
        request = cert_pb2.GetCertificatesRequest()
        call(request, metadata=METADATA)  # connect and warm the credential cache
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            call(request, metadata=METADATA)
            count += 1
        return count / elapsed
    finally:
        channel.close()


def idle_rss_kib(directory: Path) -> tuple[int, float]:
    """(VmRSS in KiB, seconds until ready) of gnoicertd started as an operator would."""
    config = write_config(directory)
    ready = directory / "ready"
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gnoicert.daemon.main",
            "serve",
            "--config",
            str(config),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gnoicertd did not become ready")
            time.sleep(0.01)
        startup = time.perf_counter() - started
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(rss.split()[1]), startup
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--iterations", type=int, default=200)
    parser.add_argument("--rate-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gnoicert-bench-") as tmp:
        base = Path(tmp)
        (base / "inproc").mkdir()
        servers = LoopThread()
        daemon = servers.run(start_daemon(write_config(base / "inproc")))
        static, static_port = servers.run(start_static(daemon))
        root_pem = daemon.credentials.current.chain_pem
        dynamic_address = f"127.0.0.1:{daemon.port}"
        static_address = f"127.0.0.1:{static_port}"
        try:
            for address in (dynamic_address, static_address):  # warm up both
                for _ in range(10):
                    handshake_and_time(address, root_pem)
            dynamic: list[float] = []
            fixed: list[float] = []
            for _ in range(args.iterations):
                dynamic.append(handshake_and_time(dynamic_address, root_pem))
                fixed.append(handshake_and_time(static_address, root_pem))
            dynamic_rate = get_certificates_rate(dynamic_address, root_pem, args.rate_seconds)
            static_rate = get_certificates_rate(static_address, root_pem, args.rate_seconds)
        finally:
            servers.run(static.stop(0))
            servers.run(daemon.stop(grace=0))
            servers.close()
        (base / "proc").mkdir()
        rss_kib, startup_s = idle_rss_kib(base / "proc")

    d_med, s_med = statistics.median(dynamic), statistics.median(fixed)
    d_p90 = statistics.quantiles(dynamic, n=10)[-1]
    s_p90 = statistics.quantiles(fixed, n=10)[-1]
    ms = 1e3
    print(f"gnoicertd handshake bench (pid {os.getpid()}, {args.iterations} iterations each)")
    print("new TLS connection + handshake + one Time RPC:")
    print(f"  dynamic (gnoicertd): median {d_med * ms:.3f} ms, p90 {d_p90 * ms:.3f} ms")
    print(f"  static:              median {s_med * ms:.3f} ms, p90 {s_p90 * ms:.3f} ms")
    print(f"  ratio dynamic/static (median): {d_med / s_med:.3f}")
    print(f"GetCertificates, sequential on one channel ({args.rate_seconds:g} s each):")
    print(f"  dynamic: {dynamic_rate:.0f} calls/s")
    print(f"  static:  {static_rate:.0f} calls/s")
    print(f"  ratio dynamic/static: {dynamic_rate / static_rate:.3f}")
    print(
        f"idle gnoicertd subprocess: VmRSS {rss_kib / 1024:.1f} MiB, ready after {startup_s:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

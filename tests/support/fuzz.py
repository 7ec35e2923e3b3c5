"""The fuzzer behind bench/fuzz.py and tests/integration/test_fuzz.py (docs/behaviour.md §7).

It starts a real gnoicertd process (factory state: server-only TLS, username/password) and sends
it `total` messages over several concurrent channels: random bytes on every method (unary and
stream, a few over the size limit) and structured garbage (valid protobufs of the request type
with hostile field values: huge strings, bad IDs, random PEM, wrong or repeated oneof cases), half
with credentials and half without. It counts the status codes, watches the process and its RSS,
and compares the store before and after.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor, message, message_factory

from gnoicert.proto import cert_pb2, system_pb2
from tests.support.daemon import served_pem
from tests.support.flows import ADMIN
from tests.support.target import TargetProcess, secure_channel, spawn_target, write_config

MAX_MESSAGE_MIB = 1  # the daemon's limit in the run, so oversize messages stay cheap to send
_CERT = cert_pb2.DESCRIPTOR.services_by_name["CertificateManagement"]
_SYSTEM = system_pb2.DESCRIPTOR.services_by_name["System"]


@dataclass(frozen=True)
class Method:
    path: str
    request: type[message.Message] | None  # None: random bytes only (a foreign service)
    streaming: bool


def _methods() -> list[Method]:
    found = [
        Method(
            f"/{_CERT.full_name}/{m.name}",
            message_factory.GetMessageClass(m.input_type),
            m.client_streaming,
        )
        for m in _CERT.methods
    ]
    time_method = _SYSTEM.methods_by_name["Time"]
    found.append(
        Method(
            "/gnoi.system.System/Time",
            message_factory.GetMessageClass(time_method.input_type),
            False,
        )
    )
    found.append(Method("/gnoi.system.System/Reboot", None, False))  # not served: UNIMPLEMENTED
    found.append(Method("/grpc.health.v1.Health/Check", None, False))
    return found


METHODS = _methods()

# Hostile values for string fields.
_BAD_IDS = [
    "",
    "../../etc/passwd",
    "a/b",
    "x" * 300,
    "id\x00nul",
    "gnoi-ca-bundle\n",
    " ",
    "é" * 40,
    ".",
    "..",
    ".hidden",
    "semi;colon",
    "tab\there",
]


def _random_pem(rng: random.Random) -> str:
    kind = rng.choice(["CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "CERTIFICATE REQUEST", "X"])
    body = rng.randbytes(rng.randint(0, 1500))

    text = base64.b64encode(body).decode()
    if rng.random() < 0.3:
        text = text[: len(text) // 2] + "!!" + text[len(text) // 2 :]
    return f"-----BEGIN {kind}-----\n{text}\n-----END {kind}-----\n" * rng.randint(1, 3)


def _hostile_string(rng: random.Random, name: str) -> str:
    roll = rng.random()
    if name.endswith("id"):  # never a valid ID: a valid one could legitimately change the store
        return rng.choice(_BAD_IDS)
    if roll < 0.1:
        return "A" * rng.choice([10_000, 100_000, 500_000])
    if roll < 0.4:
        return _random_pem(rng)
    return rng.randbytes(rng.randint(0, 64)).decode("latin-1")


def fill(msg: message.Message, rng: random.Random, depth: int = 0) -> None:
    """Set random hostile values on a random subset of msg's fields (recursively)."""
    for f in msg.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        repeated = f.is_repeated
        count = rng.randint(1, 3) if repeated else 1
        for _ in range(count):
            if f.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                if depth > 3:
                    continue
                sub = getattr(msg, f.name).add() if repeated else getattr(msg, f.name)
                if not repeated:
                    sub.SetInParent()
                fill(sub, rng, depth + 1)
                continue
            value = _scalar(f, rng)
            if repeated:
                getattr(msg, f.name).append(value)
            else:
                setattr(msg, f.name, value)


def _scalar(f: Any, rng: random.Random) -> Any:
    t = f.type
    if t == descriptor.FieldDescriptor.TYPE_STRING:
        return _hostile_string(rng, f.name)
    if t == descriptor.FieldDescriptor.TYPE_BYTES:
        return _hostile_string(rng, f.name).encode("utf-8", "surrogatepass")
    if t == descriptor.FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t == descriptor.FieldDescriptor.TYPE_ENUM:
        return rng.choice([-1, 0, 1, 2, 3, 99, 2**31 - 1])
    if t in (descriptor.FieldDescriptor.TYPE_UINT32, descriptor.FieldDescriptor.TYPE_FIXED32):
        return rng.choice([0, 1, 512, 1024, 4096, 16384, 2**32 - 1])
    if t in (descriptor.FieldDescriptor.TYPE_UINT64, descriptor.FieldDescriptor.TYPE_FIXED64):
        return rng.choice([0, 1, 2**64 - 1])
    if t in (descriptor.FieldDescriptor.TYPE_INT64, descriptor.FieldDescriptor.TYPE_SINT64):
        return rng.choice([0, -1, 2**63 - 1, -(2**63)])
    if t in (descriptor.FieldDescriptor.TYPE_DOUBLE, descriptor.FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e300])
    return rng.choice([0, -1, 1, 2**31 - 1, -(2**31)])


def payload(method: Method, rng: random.Random) -> bytes:
    """Random bytes (sometimes over the size limit), or a hostile but valid message."""
    roll = rng.random()
    if roll < 0.002:
        return rng.randbytes(64) * ((MAX_MESSAGE_MIB << 20) // 64 + 100)  # oversize
    if method.request is None or roll < 0.55:
        return rng.randbytes(rng.choice([1, 2, 5, 16, 100, 1000, rng.randint(1, 20_000)]))
    msg = method.request()
    fill(msg, rng)
    return msg.SerializeToString()


@dataclass
class Report:
    sent: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    crashed: bool = False
    store_changed: bool = False
    log_bytes: int = 0
    rss_kib: dict[int, int] = field(default_factory=dict)  # messages sent -> daemon RSS
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)  # the first surprising statuses

    @property
    def unknown(self) -> int:
        return self.codes["UNKNOWN"]

    @property
    def internal(self) -> int:
        return self.codes["INTERNAL"]

    def failures(self, *, check_rss: bool) -> list[str]:
        """The goals missed (docs/behaviour.md §7)."""
        missed = []
        if self.crashed:
            missed.append("the daemon died")
        if self.unknown:
            missed.append(f"{self.unknown} UNKNOWN")
        if self.internal:
            missed.append(f"{self.internal} INTERNAL")
        if self.store_changed:
            missed.append("the store changed")
        if self.log_bytes >= 1 << 20:
            missed.append(f"daemon log {self.log_bytes} bytes >= 1 MiB")
        if check_rss and len(self.rss_kib) >= 2:
            checkpoints = sorted(self.rss_kib)
            first, last = self.rss_kib[checkpoints[0]], self.rss_kib[checkpoints[-1]]
            if last > first * 1.2:
                missed.append(f"RSS grew from {first} KiB to {last} KiB (> 20 %)")
        return missed


_SURPRISES = frozenset({"UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "CANCELLED"})


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def store_fingerprint(state_dir: Path) -> str:
    """Every file in the store (name and content), but the lock file."""
    digest = hashlib.sha256()
    for path in sorted(state_dir.rglob("*")):
        if path.is_file() and path.name != "LOCK":
            digest.update(str(path.relative_to(state_dir)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


async def _listing(channel: grpc.aio.Channel) -> bytes:
    get: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/{_CERT.full_name}/GetCertificates"
    )
    reply: bytes = await get(b"", metadata=ADMIN, timeout=30)
    return reply


def stream_once(channel: grpc.Channel, path: str, data: bytes, metadata: Any) -> tuple[str, str]:
    """One message, then half-close, responses drained (the status comes after them).

    The sync API: grpc.aio's client reports INTERNAL "Internal error from Core" instead of the
    server's status when its write loses a race with the server ending the call (a client-side
    grpcio bug, grpc/grpc issue 36066), which would hide what the daemon answered.
    """
    call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
    try:
        for _reply in call(iter([data]), metadata=metadata, timeout=30):
            pass
    except grpc.RpcError as exc:
        return str(exc.code().name), str(exc.details())
    return "OK", ""


async def _one(
    channels: tuple[grpc.aio.Channel, grpc.Channel], method: Method, data: bytes, creds: bool
) -> tuple[str, str]:
    """(status code name, details) of one message sent on a new call."""
    metadata = ADMIN if creds else ()
    if method.streaming:
        return await asyncio.to_thread(stream_once, channels[1], method.path, data, metadata)
    try:
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channels[0].unary_unary(method.path)
        await unary(data, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name), str(exc.details())
    return "OK", ""


def _creds(root: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=root)


def _checkpoints(total: int, first: int) -> Iterator[int]:
    yield first
    step = max(first, total // 10)
    at = step
    while at < total:
        if at > first:
            yield at
        at += step
    yield total


async def run(
    workdir: Path,
    total: int,
    *,
    seed: int = 1,
    channels: int = 8,
    concurrency: int = 48,
    first_checkpoint: int = 10_000,
    progress: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Fuzz a fresh gnoicertd in workdir with total messages; the process is stopped after."""
    config = write_config(workdir, grpc_lines=[f"max_message_mib = {MAX_MESSAGE_MIB}"])
    proc = spawn_target(config)
    report = Report()
    try:
        await _fuzz(
            proc, workdir, total, seed, channels, concurrency, first_checkpoint, report, progress
        )
    finally:
        if proc.process.poll() is None:
            proc.terminate()
        report.log_bytes = (workdir / "gnoicertd.log").stat().st_size
    return report


async def _fuzz(
    proc: TargetProcess,
    workdir: Path,
    total: int,
    seed: int,
    channels: int,
    concurrency: int,
    first_checkpoint: int,
    report: Report,
    progress: Callable[[str], None],
) -> None:
    root = await asyncio.to_thread(served_pem, proc.address)
    pool = [
        (secure_channel(proc.address, root), grpc.secure_channel(proc.address, _creds(root)))
        for _ in range(channels)
    ]
    state_dir = workdir / "state"
    try:
        before = (await _listing(pool[0][0]), store_fingerprint(state_dir))
        rng = random.Random(seed)
        checkpoints = list(_checkpoints(total, min(first_checkpoint, total)))
        next_index = 0
        started = time.monotonic()

        async def worker(n: int) -> None:
            nonlocal next_index
            local = random.Random(rng.random())
            while next_index < total and proc.process.poll() is None:
                next_index += 1
                method = local.choice(METHODS)
                data = payload(method, local)
                code, details = await _one(pool[n % channels], method, data, local.random() < 0.5)
                report.codes[code] += 1
                if code in _SURPRISES and len(report.samples) < 20:
                    report.samples.append(f"{code} {method.path} ({len(data)} bytes): {details}")
                report.sent += 1
                if checkpoints and report.sent >= checkpoints[0]:
                    checkpoints.pop(0)
                    report.rss_kib[report.sent] = rss_kib(proc.process.pid)
                    progress(
                        f"{report.sent:>7} sent, {time.monotonic() - started:6.1f} s, "
                        f"daemon RSS {report.rss_kib[report.sent] / 1024:.1f} MiB"
                    )

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        report.seconds = time.monotonic() - started
        report.crashed = proc.process.poll() is not None
        if not report.crashed:
            after = (await _listing(pool[0][0]), store_fingerprint(state_dir))
            report.store_changed = after != before
    finally:
        for aio_channel, sync_channel in pool:
            await aio_channel.close()
            sync_channel.close()

"""SIGKILL a store writer hundreds of times, mid-commit, and check what recovery finds.

The worker (store_crash_worker.py, run with sys.executable) forks one child per run; the child
opens the store and runs a seeded sequence of transactions (install, replace, delete, bundle,
mixed, CSR key consumed by the commit; some applied before commit), announcing each with BEGIN
and DONE. This test kills the child at random moments inside a chosen transaction, reopens the
store and checks: the state is exactly the one before or the one after the interrupted
transaction (recomputed from the same seed), keys match certificates, no temp file or stray
generation is left, modes are right, and no consumed pending key survives. The next run
continues from the recovered state. Two lanes: keys in clear and keys under a key_secret.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import random
import select
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gnoicert.pki import crypto
from gnoicert.pki.store import Store

WORKER = Path(__file__).resolve().parent / "store_crash_worker.py"
SEED = int(os.environ.get("GNOICERT_CRASH_SEED", "20261127"))
KILLS = int(os.environ.get("GNOICERT_CRASH_KILLS", "300"))
OPS = 4000  # longer than any lane needs: each run starts where the last one was killed
MATERIALS = 8
LINE_TIMEOUT_S = 20.0


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_crash_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key: Any, cn: str, issuer_key: Any, issuer_cn: str, ca: bool) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _make_pool() -> Any:
    """EC P-256 material signed by a test CA: made once here, never in the worker's loop."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    ca_pem = _cert(ca_key, "crash CA", ca_key, "crash CA", True)
    other_pem = _cert(other_key, "other CA", other_key, "other CA", True)
    certs, keys = [], []
    for i in range(MATERIALS):
        key = ec.generate_private_key(ec.SECP256R1())
        certs.append(_cert(key, f"leaf{i}", ca_key, "crash CA", False))
        keys.append(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return worker.Pool(
        ca_pem=ca_pem,
        certs=tuple(certs),
        keys=tuple(keys),
        bundles=(b"", ca_pem, ca_pem + other_pem, other_pem),
    )


class LineReader:
    """Lines from a pipe with a deadline, so a hung worker fails the test instead of hanging."""

    def __init__(self, stream: IO[bytes], stderr_path: Path) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._stderr_path = stderr_path

    def next(self) -> str:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(
                    f"the crash worker said nothing for {LINE_TIMEOUT_S} s:\n{self.stderr()}"
                )
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise AssertionError(f"the crash worker exited unexpectedly:\n{self.stderr()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace")


@dataclass
class Lane:
    state_dir: Path
    secret: bytes | None
    next_op: int = 0
    op_us: list[int] = field(default_factory=lambda: [2000])

    def typical_op_s(self) -> float:
        recent = sorted(self.op_us[-50:])
        return recent[len(recent) // 2] / 1e6


def _busy_wait(seconds: float) -> None:
    """Sub-millisecond precision that time.sleep does not give."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _observe(store: Store, pool: Any) -> Any:
    """The recovered state in the model's terms; also checks every key against its certificate."""
    cert_index = {pem: i for i, pem in enumerate(pool.certs)}
    bundle_index = {pem: i for i, pem in enumerate(pool.bundles)}
    view = store.view()
    entities = {}
    for cert_id, entity in view.entities.items():
        material = cert_index[entity.certificate_pem]
        assert entity.private_key_pem == pool.keys[material], f"{cert_id}: key of another cert"
        crypto.check_key_matches(
            entity.certificate, crypto.load_private_key(entity.private_key_pem)
        )
        assert entity.chain_pem in (b"", pool.ca_pem)
        chain = entity.chain_pem == pool.ca_pem
        entities[cert_id] = (material, chain, entity.key_origin.value, entity.version)
        pending = store.pending_key(cert_id)
        assert pending != entity.private_key_pem, f"{cert_id}: consumed pending key survived"
    return worker.State(entities, bundle_index[view.ca_bundle_pem])


def _check_files(store: Store) -> None:
    root = store.path
    generation = store.view().generation
    generations = sorted(p.name for p in (root / "generations").iterdir())
    assert generations == ([str(generation)] if generation else []), generations
    if generation:
        assert os.readlink(root / "current") == f"generations/{generation}"
    for path in [root, *root.rglob("*")]:
        assert not path.name.startswith(".tmp"), f"left behind: {path}"
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name == "key.pem" or path.parent.name == "pending" or path.name == "LOCK":
            assert mode == 0o600, path
        else:
            assert mode & 0o022 == 0, path


def _debris(root: Path) -> bool:
    """Whether a kill left anything for recovery to remove (a partial or unswapped generation)."""
    if not root.exists():
        return False
    try:
        current = os.readlink(root / "current").rpartition("/")[2]
    except FileNotFoundError:
        current = ""
    generations = root / "generations"
    stray = generations.exists() and any(p.name != current for p in generations.iterdir())
    return stray or any(p.name.startswith(".tmp") for p in root.rglob("*"))


@pytest.mark.crash
def test_store_survives_sigkill(tmp_path: Path, crash_summary: list[str]) -> None:
    pool = _make_pool()
    pool_file = tmp_path / "pool.json"
    pool.dump(pool_file)
    ops, states = worker.generate(SEED, OPS, len(pool.certs), len(pool.bundles))
    lanes = [
        Lane(tmp_path / "clear", None),
        Lane(tmp_path / "encrypted", b"crash test key secret"),
    ]
    rng = random.Random(SEED)
    stderr_path = tmp_path / "worker.stderr"
    kills = survived = 0
    outcomes: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    started = time.monotonic()

    def summary() -> str:
        return (
            f"survived {survived}/{kills} kills in {time.monotonic() - started:.1f} s "
            f"(seed {SEED}; mid-transaction: {dict(sorted(by_kind.items()))}; "
            f"recovered {dict(sorted(outcomes.items()))})"
        )

    with stderr_path.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, str(WORKER), str(pool_file), str(SEED), str(OPS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert server.stdin is not None
    assert server.stdout is not None
    lines = LineReader(server.stdout, stderr_path)
    child = 0
    try:
        while kills < KILLS:
            lane = lanes[kills % len(lanes)]
            start = lane.next_op
            stop = start + 20
            assert stop <= OPS
            secret = lane.secret.hex() if lane.secret else "-"
            server.stdin.write(f"RUN {lane.state_dir} {start} {stop} {secret}\n".encode())
            server.stdin.flush()
            kind, _, pid = lines.next().partition(" ")
            assert kind == "PID", kind
            child = int(pid)
            begun: list[int] = []
            done: set[int] = set()
            if rng.random() < 0.08:
                # Anywhere from start-up (the child's own recovery) to its first transactions.
                _busy_wait(rng.uniform(0, 0.01))
            else:
                target = start + rng.randint(0, 3)
                while target not in begun:
                    word, _, rest = lines.next().partition(" ")
                    assert word in ("BEGIN", "DONE"), (word, rest, lines.stderr())
                    if word == "BEGIN":
                        begun.append(int(rest))
                    else:
                        done.add(int(rest.split()[0]))
                        lane.op_us.append(int(rest.split()[1]))
                # Mostly inside the transaction; a third aimed at its end, where the swap is,
                # and more of them while few kills have landed after the swap (timing varies
                # with the machine's load).
                late = 0.33 if outcomes["after"] >= 0.05 * kills else 0.6
                low, high = (0.6, 1.6) if rng.random() < late else (0.0, 1.0)
                _busy_wait(rng.uniform(low, high) * lane.typical_op_s())
            # On a loaded machine the child may finish its 20 operations before the kill.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            while True:
                word, _, rest = lines.next().partition(" ")
                if word == "EXIT":
                    break
                assert word in ("BEGIN", "DONE"), (word, rest, lines.stderr())
                if word == "BEGIN":
                    begun.append(int(rest))
                else:
                    done.add(int(rest.split()[0]))
            child = 0
            if rest == "0" and len(done) == stop - start:
                # The kill came after the last operation: the store must hold its state, and
                # the round counts as a run, not a kill.
                lane.next_op = stop
                with contextlib.closing(Store.open(lane.state_dir, key_secret=lane.secret)) as st:
                    assert _observe(st, pool) == states[stop], f"{summary()}\nclean run {start}"
                continue
            assert rest == str(-signal.SIGKILL), (
                f"worker exited {rest} before the kill:\n{lines.stderr()}"
            )
            kills += 1

            # What may the store hold now? After the last DONE, or before/after the open one.
            last = max(begun) if begun else None
            if last is not None and last not in done:
                candidates = {"before": last, "after": last + 1}
                by_kind[ops[last].kind] += 1
            else:
                candidates = {"between": last + 1 if last is not None else start}
            if _debris(lane.state_dir):
                outcomes["debris removed"] += 1
            store = Store.open(lane.state_dir, key_secret=lane.secret)
            try:
                observed = _observe(store, pool)
                matches = [
                    (name, index) for name, index in candidates.items() if states[index] == observed
                ]
                assert matches, (
                    f"{summary()}\nkill #{kills} in run from {start}: state matches none of "
                    f"{candidates} (transaction {last}: {ops[last] if last is not None else '-'})"
                    f"\nobserved {observed}\nexpected {[states[i] for i in candidates.values()]}"
                )
                name, lane.next_op = matches[-1]
                outcomes["unchanged" if len(matches) == 2 else name] += 1
                _check_files(store)
            finally:
                store.close()
            survived += 1
        server.stdin.write(b"QUIT\n")
        server.stdin.flush()
        assert server.wait(timeout=30) == 0
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
        server.stdin.close()
        server.stdout.close()
    line = summary()
    print(line)
    crash_summary.append(line)
    assert survived == kills >= 200, line
    # Both sides of the commit point were hit, in every kind of transaction.
    assert outcomes["before"] > 0, line
    assert outcomes["after"] > 0, line
    assert set(by_kind) == set(worker.KINDS), line

"""Crash-test worker: runs a seeded sequence of store transactions until it is SIGKILLed.

Run by tests/crash/test_store_crash.py as `python store_crash_worker.py POOL SEED COUNT`. It is a
small fork server so that hundreds of kills fit in seconds: it imports everything once, then for
each `RUN <state_dir> <start> <stop> <secret-hex or ->` line on stdin forks a child that opens
the store itself and runs transactions start..stop-1. Output, one flushed line each:

    PID <pid>          (server) the child to kill
    BEGIN <n>          (child) before any store call of transaction n
    DONE <n> <us>      (child) after commit n returned, with its duration in microseconds
    END                (child) stop reached without being killed
    EXIT <code>        (server) the child is gone (-9 after SIGKILL)

The test imports this module too: `generate` is the single definition of the workload and of
the state expected after each transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

IDS = tuple(f"id{i}" for i in range(6))
KINDS = ("install", "replace", "delete", "bundle", "mixed", "csr")


@dataclass(frozen=True, slots=True)
class Action:
    verb: str  # "put", "delete" or "bundle"
    cert_id: str = ""
    material: int = 0
    chain: bool = False
    origin: str = "client"
    bundle: int = 0


@dataclass(frozen=True, slots=True)
class Op:
    kind: str
    actions: tuple[Action, ...]
    apply: bool  # apply (make visible, not durable) before committing
    pending: str  # ID whose pending CSR key is stored first and consumed by the commit


# cert_id -> (material, chain, origin, version); and the bundle index.
Entities = dict[str, tuple[int, bool, str, int]]


@dataclass(frozen=True, slots=True)
class State:
    entities: Entities
    bundle: int


@dataclass(frozen=True, slots=True)
class Pool:
    ca_pem: bytes
    certs: tuple[bytes, ...]
    keys: tuple[bytes, ...]
    bundles: tuple[bytes, ...]  # bundles[0] is b"" (no bundle)

    @classmethod
    def load(cls, path: Path) -> Pool:
        doc = json.loads(path.read_text())
        return cls(
            ca_pem=doc["ca_pem"].encode(),
            certs=tuple(c.encode() for c in doc["certs"]),
            keys=tuple(k.encode() for k in doc["keys"]),
            bundles=tuple(b.encode() for b in doc["bundles"]),
        )

    def dump(self, path: Path) -> None:
        doc = {
            "ca_pem": self.ca_pem.decode(),
            "certs": [c.decode() for c in self.certs],
            "keys": [k.decode() for k in self.keys],
            "bundles": [b.decode() for b in self.bundles],
        }
        path.write_text(json.dumps(doc))


def _apply_action(entities: Entities, bundle: int, action: Action) -> int:
    if action.verb == "put":
        old = entities.get(action.cert_id)
        version = 1 if old is None else old[3] + 1
        entities[action.cert_id] = (action.material, action.chain, action.origin, version)
    elif action.verb == "delete":
        entities.pop(action.cert_id, None)
    else:
        bundle = action.bundle
    return bundle


def generate(seed: int, count: int, materials: int, bundles: int) -> tuple[list[Op], list[State]]:
    """The workload and states[i], the committed state after the first i transactions."""
    rng = random.Random(seed)
    entities: Entities = {}
    bundle = 0
    ops: list[Op] = []
    states = [State(dict(entities), bundle)]
    for _ in range(count):
        kind = rng.choice(KINDS)
        present = sorted(entities)
        absent = [cert_id for cert_id in IDS if cert_id not in entities]
        if kind == "install" and not absent:
            kind = "replace"
        if kind in ("replace", "delete") and not present:
            kind = "install"

        def put(cert_id: str, origin: str = "client") -> Action:
            return Action("put", cert_id, rng.randrange(materials), rng.random() < 0.5, origin)

        actions: list[Action] = []
        pending = ""
        if kind == "install":
            actions.append(put(rng.choice(absent)))
        elif kind == "replace":
            actions.append(put(rng.choice(present)))
        elif kind == "delete":
            actions.append(Action("delete", rng.choice(present)))
        elif kind == "bundle":
            actions.append(Action("bundle", bundle=rng.randrange(bundles)))
        elif kind == "mixed":
            for cert_id in rng.sample(IDS, rng.randint(2, 3)):
                if cert_id in entities and rng.random() < 0.4:
                    actions.append(Action("delete", cert_id))
                else:
                    actions.append(put(cert_id))
            if rng.random() < 0.5:
                actions.append(Action("bundle", bundle=rng.randrange(bundles)))
        else:  # csr: GenerateCSR's pending key, then LoadCertificate consuming it
            pending = rng.choice(IDS)
            actions.append(put(pending, "target"))
        op = Op(kind, tuple(actions), rng.random() < 0.4, pending)
        for action in op.actions:
            bundle = _apply_action(entities, bundle, action)
        ops.append(op)
        states.append(State(dict(entities), bundle))
    return ops, states


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _run(
    pool: Pool, ops: list[Op], state_dir: Path, start: int, stop: int, secret: bytes | None
) -> None:
    from gnoicert.pki.store import KeyOrigin, Store

    store = Store.open(state_dir, key_secret=secret)
    far = time.time_ns() + 3600 * 10**9
    for n in range(start, stop):
        op = ops[n]
        began = time.perf_counter_ns()
        _emit(f"BEGIN {n}")
        if op.pending:
            material = next(a.material for a in op.actions if a.cert_id == op.pending)
            store.put_pending_key(op.pending, pool.keys[material], expires_ns=far)
        with store.begin() as txn:
            for action in op.actions:
                if action.verb == "bundle":
                    txn.lock_bundle()
                    txn.replace_bundle(pool.bundles[action.bundle])
                    continue
                txn.lock(action.cert_id)
                if action.verb == "delete":
                    txn.delete(action.cert_id)
                else:
                    txn.put(
                        action.cert_id,
                        certificate_pem=pool.certs[action.material],
                        chain_pem=pool.ca_pem if action.chain else b"",
                        private_key_pem=pool.keys[action.material],
                        key_origin=KeyOrigin(action.origin),
                    )
            if op.pending:
                txn.consume_pending_key(op.pending)
            if op.apply:
                txn.apply()
            txn.commit()
        _emit(f"DONE {n} {(time.perf_counter_ns() - began) // 1000}")
    _emit("END")
    store.close()


def serve(pool_path: Path, seed: int, count: int) -> None:
    pool = Pool.load(pool_path)
    ops, _ = generate(seed, count, len(pool.certs), len(pool.bundles))
    import gnoicert.pki.store  # noqa: F401  (import once, before forking)

    while line := sys.stdin.readline():
        words = line.split()
        if words == ["QUIT"]:
            return
        if not words or words[0] != "RUN":
            raise SystemExit(f"unknown command {line!r}")
        state_dir, start, stop, secret = Path(words[1]), int(words[2]), int(words[3]), words[4]
        sys.stdout.flush()
        sys.stderr.flush()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: wait until the server has announced our PID
            os.close(go_write)
            os.read(go_read, 1)
            os.close(go_read)
            code = 0
            try:
                _run(
                    pool,
                    ops,
                    state_dir,
                    start,
                    stop,
                    bytes.fromhex(secret) if secret != "-" else None,
                )
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(go_read)
        _emit(f"PID {pid}")
        with contextlib.suppress(BrokenPipeError):  # killed before it was told to start
            os.write(go_write, b"x")
        os.close(go_write)
        _, status = os.waitpid(pid, 0)
        _emit(f"EXIT {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))

from __future__ import annotations
import time
from pathlib import Path
import grpc
from tests.support.gnoi import *
from tests.support.pki import TestCA
from tests.support.target import served_fingerprint, wait_for

async def test_scratch(tmp_path: Path, ca: TestCA) -> None:
    t0 = time.perf_counter()
    op = await provision(tmp_path, ca)
    print("provision", time.perf_counter() - t0)
    print(served_fingerprint(op.target.address), op.state().entity("srv"))
    t0 = time.perf_counter()
    await op.time()
    print("time", time.perf_counter() - t0)
    for i in range(10):
        before = op.state().entity("srv")
        call = op.stub.Rotate(metadata=op.metadata)
        await call.write(rot(gen("srv")))
        reply = await call.read()
        signed = ca.sign_csr(reply.generated_csr.csr.csr)
        await call.write(rot(load(signed)))
        await call.read()
        assert served_fingerprint(op.target.address) == leaf_fingerprint(signed)
        await call.write(FINALIZE)
        call.cancel()
        await wait_for(lambda: not op.store.is_locked("srv"))
        after = op.state().entity("srv")
        print(i, after.fingerprint == leaf_fingerprint(signed), await call.code())
    print(audit(op.target, event="rotate")[-3:])

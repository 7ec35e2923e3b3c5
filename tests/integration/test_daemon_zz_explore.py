from __future__ import annotations
import asyncio
from pathlib import Path
import pytest
from tests.support.daemon import probe_fingerprint
from tests.support.target import start_target, write_config, wait_for
from tests.support.flows import install, issue_server_cert, cert_stub
from gnoicert.target.policy import TlsMode

@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 6, 8])
async def test_race(tmp_path: Path, ca, steps) -> None:
    t = await start_target(tmp_path, grpc_lines=["hot_reloading = false"])
    await install(cert_stub(t.channel()), "srv", issue_server_cert(ca), bundle_pem=ca.bundle_pem)
    await wait_for(lambda: t.daemon.listener_mode is TlsMode.MUTUAL)
    for ch in t.channels: await ch.close()
    t.channels.clear()
    write_config(tmp_path, grpc_lines=["hot_reloading = false", 'local_certificate = "srv"'])
    listener = t.daemon._server
    task = asyncio.ensure_future(t.daemon.reload(t.config_path))
    for _ in range(steps):
        await asyncio.sleep(0)
    print("steps", steps, "server changed?", t.daemon._server is not listener, task.done())
    await t.daemon.stop(grace=0)
    await asyncio.sleep(0.3)
    print("task", task.done(), "probe after stop:", probe_fingerprint(t.address))

"""`gnoicert demo` runs to the end against a real gnoicertd, as the README's first command."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import expect, run_cli


def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    run = expect(run_cli("demo", "--workdir", str(workdir), timeout=110), 0)
    said = run.stdout
    for step in (
        "[1/11] start gnoicertd in its factory state on a free loopback port",
        "install 'gnoi-server' (target-generated CSR) with the first CA bundle",
        "the daemon switches to mutual TLS",
        "a client without a certificate is refused",
        "configure local_certificate = 'gnoi-server' and reload",
        "rotate 'gnoi-server' with validation before Finalize",
        "served-certificate: pass",
        "probe: pass",
        "revoked: ipsec-peer; left: gnoi-server",
        "[11/11] stop gnoicertd",
        "exit status 0",
        "demo finished in",
    ):
        assert step in said, run
    assert said.index("switches to mutual TLS") < said.index("rotate 'gnoi-server'")

    # The daemon's own record of what happened.
    records = [json.loads(line) for line in (workdir / "audit.log").read_text().splitlines()]
    events = {(r["event"], r["certificate_id"], r["outcome"]) for r in records}
    assert ("install", "gnoi-server", "committed") in events
    assert ("rotate", "gnoi-server", "committed") in events
    assert ("revoke", "ipsec-peer", "committed") in events
    assert any(r["event"] == "mode_switch" for r in records)

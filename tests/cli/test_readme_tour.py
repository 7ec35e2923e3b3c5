"""The README's quick tour runs as written, on a free port in a temporary directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_tour() -> str:
    """The first ```sh block after the README's "## Quick tour" heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quick tour") :]
    match = re.search(r"^```sh\n(.*?)^```", section, re.M | re.S)
    assert match, "the quick tour has no sh block"
    return match.group(1)


def test_the_quick_tour_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "W": str(tmp_path / "gc"), "PORT": "0"}
    env.pop("GNOICERT_CONFIG", None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    process = subprocess.Popen(
        ["bash", "-e", "-c", quick_tour()],
        cwd=ROOT,  # `. .venv/bin/activate` is relative to the checkout
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background gnoicertd goes with it on a failure
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "requires a client certificate" in stdout + stderr  # the mode switch is said
    assert "finalized" in stdout
    assert '"certificate_id": "gnoi-server"' in stdout  # the --json listing
    audit = (tmp_path / "gc" / "audit.jsonl").read_text()
    assert '"event": "rotate"' in audit or '"event":"rotate"' in audit

"""The real peer programs (gnoic, gnxi gnoi_target and gnoi_cert) as subprocesses on loopback.

They are test equipment kept beside the repository (shared/peers in its parent directory),
not part of gnoicert; the whole directory is skipped when they are absent (tests/interop/
conftest.py); GNOICERT_PEERS names another directory. Every run is bounded by a timeout
and every process is killed in teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.cli import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# GNOICERT_PEERS points elsewhere (a git worktree whose parent does not hold shared/).
PEERS = Path(os.environ.get("GNOICERT_PEERS") or REPO_ROOT / ".." / "shared" / "peers")
PEER_PROGRAMS = ("gnoic", "gnoi_target", "gnoi_cert")
LOOPBACK = "127.0.0.1"


def missing_peers() -> str | None:
    """Why the interop suite cannot run here, or None when every peer program is present."""
    absent = [name for name in PEER_PROGRAMS if not (PEERS / name).is_file()]
    if absent:
        return f"the peer programs ({', '.join(absent)}) are not in {PEERS.resolve()}"
    return None


def peer(name: str) -> str:
    return str((PEERS / name).resolve())


@dataclass(frozen=True, slots=True)
class PeerRun:
    """One finished run of a peer client."""

    argv: tuple[str, ...]
    returncode: int
    output: str

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.returncode}\n{self.output}"


def run_peer(name: str, *args: str, cwd: Path | None = None, timeout: float = 30.0) -> PeerRun:
    """A peer client run to completion (stdout and stderr together, as an operator reads it)."""
    argv = (peer(name), *args)
    completed = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return PeerRun(argv, completed.returncode, completed.stdout)


def free_port() -> int:
    """A port nothing listens on right now (the peers cannot pick their own: they need one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class GnxiTarget:
    """gnxi's gnoi_target on 127.0.0.1 (in-memory: a restart forgets everything)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def started_or_exited(self) -> bool:
        return self.process.poll() is not None or port_open(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def start_gnxi_target(
    directory: Path, *flags: str, attempts: int = 5, timeout: float = 15.0
) -> GnxiTarget:
    """gnoi_target listening on a free port; another port when the bind loses a race."""
    directory.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for attempt in range(attempts):
        port = free_port()
        log = directory / f"gnoi_target-{port}-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [peer("gnoi_target"), "-bind_address", f"{LOOPBACK}:{port}", "-logtostderr",
                 *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )  # fmt: skip
        target = GnxiTarget(process, port, log)
        try:
            wait_until(
                target.started_or_exited,
                timeout=timeout,
                what=f"gnoi_target to listen on {target.address}",
            )
        except AssertionError:
            target.stop()
            raise
        if process.poll() is None:
            return target
        text = target.log_text()
        target.stop()
        if "address already in use" not in text:
            raise AssertionError(f"gnoi_target exited with {process.returncode}:\n{text}")
        failures.append(text)
    raise AssertionError(f"gnoi_target lost the bind race {attempts} times:\n" + failures[-1])

"""daemon/memory.py: the malloc settings that bound the daemon's RSS under load and after
password checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gnoicert.daemon import memory

_PROBE = (
    "import os, threading\n"
    "from gnoicert.daemon import memory\n"
    "print(memory.limit_malloc_arenas())\n"
)


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env_extra
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_arenas_are_limited_on_glibc() -> None:
    assert _run({}) == "True"


def test_an_operators_own_setting_is_kept() -> None:
    assert _run({"MALLOC_ARENA_MAX": "8"}) == "False"


def test_debug_report_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.interval() is None
    monkeypatch.setenv(memory.ENV, "30")
    assert memory.interval() == 30.0
    monkeypatch.setenv(memory.ENV, "soon")
    assert memory.interval() is None


# Four password checks in worker threads, as the daemon runs them; prints the RSS they leave
# behind (KiB). argv[1] == "fix": the daemon's mmap threshold first.
_SCRYPT_PROBE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from gnoicert.daemon import memory
from gnoicert.daemon.auth import hash_password, verify_password

def rss() -> int:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

memory.limit_malloc_arenas()
if sys.argv[1] == "fix":
    memory.fix_mmap_threshold()
stored = hash_password("a password")
before = rss()
with ThreadPoolExecutor(2) as pool:
    for _ in range(4):
        pool.submit(verify_password, "a guess", stored).result()
print(rss() - before)
"""


def _rss_left_by_scrypt(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _SCRYPT_PROBE, mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_password_checks_leave_no_scrypt_block_resident() -> None:
    # Each scrypt check allocates 16 MiB (N=2**14, r=8). Without the fixed threshold glibc
    # serves the later ones from the heap and keeps them; the probe shows it does here.
    assert _rss_left_by_scrypt("default") >= 16 * 1024
    assert _rss_left_by_scrypt("fix") < 4 * 1024


def test_an_operators_own_mmap_threshold_is_kept() -> None:
    probe = "from gnoicert.daemon import memory\nprint(memory.fix_mmap_threshold())\n"
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "False"

"""A serving daemon keeps out of memory the modules only some configurations or commands use
(docs/platform-notes.md, "Memory"): each of them stays resident once imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Imported where they are used: [metrics], the memory report, passwd, a mistyped config key,
# and ctypes.util (the arena limit finds mallopt without it).
_ONLY_WHEN_USED = ("prometheus_client", "tracemalloc", "getpass", "difflib", "ctypes.util")

_SERVE = """
import asyncio, sys
from pathlib import Path
from tests.support.target import start_target
from gnoicert.daemon import memory

async def main() -> None:
    target = await start_target(Path(sys.argv[1]), top_lines=sys.argv[2:])
    await target.close()

memory.limit_malloc_arenas()
asyncio.run(main())
print(" ".join(sorted(m for m in {names!r} if m in sys.modules)))
"""

_ROOT = Path(__file__).resolve().parents[2]


def _loaded_after_serving(directory: Path, *top_lines: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _SERVE.format(names=_ONLY_WHEN_USED), str(directory), *top_lines],
        capture_output=True,
        text=True,
        cwd=_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_daemon_without_metrics_loads_none_of_them(tmp_path: Path) -> None:
    assert _loaded_after_serving(tmp_path) == set()


def test_metrics_load_prometheus_client(tmp_path: Path) -> None:
    # The same probe sees a module that is used: the check above is not vacuous.
    loaded = _loaded_after_serving(tmp_path, "[metrics]", 'listen = "127.0.0.1:0"')
    assert loaded == {"prometheus_client"}

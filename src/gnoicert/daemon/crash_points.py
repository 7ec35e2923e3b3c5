"""The commit of a change, with a crash point after it for the crash tests.

With GNOICERT_CRASH_POINT=after-commit in its environment the daemon SIGKILLs itself right after
a store commit has swapped in the new generation and before any outcome record is written: the
moment docs/behaviour.md §8 says a restart must still account for. Without it, nothing happens.
"""

from __future__ import annotations

import os
import signal

from gnoicert.pki.store import StoreView, Transaction

ENV = "GNOICERT_CRASH_POINT"
AFTER_COMMIT = "after-commit"


def commit(tx: Transaction) -> StoreView:
    """tx.commit() (blocking: run it in a thread), then the crash point."""
    view = tx.commit()
    if os.environ.get(ENV) == AFTER_COMMIT:
        os.kill(os.getpid(), signal.SIGKILL)
    return view

"""The `gnoicert` exit codes, shared by single-target commands and fleet runs (one home)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_VALIDATION = 3
EXIT_EXPIRING = 4
EXIT_STOPPED = 5
EXIT_INTERRUPTED = 130

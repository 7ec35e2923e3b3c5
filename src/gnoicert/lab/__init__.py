"""A lab: many provisioned gnoicertd targets on loopback in one process, for fleet work.

`gnoicert lab --devices N --workdir DIR` (see docs/operator-guide.md, "Lab") provisions N
devices, serves them all, writes an inventory and prints a `ready:` line. The package composes
the daemon (each device is a gnoicert.daemon Daemon) and the client library (the lab CA).
"""

from __future__ import annotations

from gnoicert.lab.runner import run_lab

__all__ = ("run_lab",)

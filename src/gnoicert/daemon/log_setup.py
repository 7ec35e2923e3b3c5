"""The daemon's logging, set up before grpcio loads (docs/platform-notes.md).

grpc's C core writes its own lines to stderr (bind retries, "No match found for server name" for
a client's SNI, "Handshake failed ... PEER_DID_NOT_RETURN_A_CERTIFICATE" for a client without a
certificate): one per failed connection, at ERROR, none of them something the operator has to
act on, and the daemon says what matters in its own words (a port in use, a refused caller in
the audit log). GRPC_VERBOSITY is read once, when grpcio loads, so it is set here, first: NONE by
default, ERROR with --verbose; a value already in the environment is kept.

The configuration's log_format ("human" or "json") and log_level apply once it is read, and again
at every reload (SIGHUP); --verbose keeps debug whatever the file says.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from gnoicert.daemon.audit import AUDIT_FIELDS, format_time

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_handler = logging.StreamHandler(sys.stderr)
_verbose = False


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then an audit record's fields
    (event, rpc, outcome, ...) when the line reports one (docs/behaviour.md §8)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": format_time(int(record.created * 1_000_000_000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        audit = getattr(record, AUDIT_FIELDS, None)
        if isinstance(audit, dict):
            for key, value in audit.items():
                entry.setdefault(key, value)  # the audit record's own time wins over ours
            entry["time"] = audit.get("time", entry["time"])
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def configure(*, verbose: bool) -> None:
    global _verbose
    _verbose = verbose
    if "grpc" not in sys.modules:  # too late otherwise; the caller imports grpc after this
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if verbose else "NONE")
    _handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[_handler])


def apply(log_format: str, log_level: str) -> None:
    """Switch the format and level (start, SIGHUP); values were checked by config.py."""
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN_FORMAT)
    _handler.setFormatter(formatter)
    level = logging.DEBUG if _verbose else _LEVELS[log_level]
    root = logging.getLogger()
    if root.level == level:
        return
    # Said at the more verbose of the two levels, so the line shows in one of them.
    more_verbose = level < root.level
    if more_verbose:
        root.setLevel(level)
    logging.getLogger("gnoicertd").info("log level %s", logging.getLevelName(level).lower())
    if not more_verbose:
        root.setLevel(level)

"""The daemon's logging, set up before grpcio loads (docs/platform-notes.md).

grpc's C core writes its own lines to stderr (bind retries, "No match found for server name" for
a client's SNI, "Handshake failed ... PEER_DID_NOT_RETURN_A_CERTIFICATE" for a client without a
certificate): one per failed connection, at ERROR, none of them something the operator has to
act on, and the daemon says what matters in its own words (a port in use, a refused caller in
the audit log). GRPC_VERBOSITY is read once, when grpcio loads, so it is set here, first: NONE by
default, ERROR with --verbose; a value already in the environment is kept.
"""

from __future__ import annotations

import logging
import os
import sys


def configure(*, verbose: bool) -> None:
    if "grpc" not in sys.modules:  # too late otherwise; the caller imports grpc after this
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if verbose else "NONE")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

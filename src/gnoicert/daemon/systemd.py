"""systemd's service notification protocol (sd_notify), without depending on systemd.

With Type=notify systemd passes NOTIFY_SOCKET, a Unix datagram socket (a path, or "@name" in the
abstract namespace), and reads newline-separated VAR=value lines from it: READY=1 once the
listener serves, STOPPING=1 when the drain starts, WATCHDOG=1 at least every WATCHDOG_USEC
microseconds when WatchdogSec= is set. Without NOTIFY_SOCKET every call does nothing, so the
daemon runs the same under any other supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("gnoicertd")


def notify(*lines: str) -> bool:
    """Send lines as one datagram; False (and nothing sent) without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET %r is neither a path nor @name; not notifying", address)
        return False
    payload = "\n".join(lines).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError as exc:
        # systemd gone or the socket replaced: the daemon serves on regardless.
        log.warning("cannot notify systemd on %s: %s", address.lstrip("\0"), exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds when the watchdog is meant for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC %r is not a number; no watchdog pings", usec)
        return None
    return value / 2_000_000 if value > 0 else None


async def watchdog_forever(interval: float) -> None:
    """WATCHDOG=1 every interval from the event loop: a loop that hangs stops the pings."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)

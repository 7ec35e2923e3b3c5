"""host:port text, parsed and printed one way everywhere (client targets, the daemon's listen).

Accepted: "192.0.2.1:9339", "[2001:db8::1]:9339", "router.example.net:9339", and, when the caller
has a default port, the host alone ("192.0.2.1", "router", "2001:db8::1"). Errors are ValueError
with a message that says what to write instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection

MAX_PORT = 65535
_PORT_RE = re.compile(r"[0-9]{1,5}")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def parse_host_port(
    text: str,
    *,
    default_port: int | None = None,
    min_port: int = 1,
    host_names: Collection[str] | None = None,
) -> tuple[str, int]:
    """(host, port) from `text`; IPv6 hosts come back without brackets.

    `default_port` None means the port is required. `host_names` None accepts any valid DNS
    name; a collection accepts IP addresses and only those names (the daemon binds "localhost"
    or an address, never a name it would have to resolve).
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")) or (not rest and default_port is None):
            raise ValueError(f"must be '[ipv6]:port', got {text!r}")
        port_text: str | None = rest[1:] if rest else None
        if _ip_version(host) != 6:
            raise ValueError(f"only IPv6 addresses go in brackets, got {text!r}")
    elif text.count(":") > 1:
        if default_port is None or _ip_version(text) != 6:
            head = text.rpartition(":")[0]
            raise ValueError(f"put an IPv6 address in brackets ('[{head}]:port'), got {text!r}")
        host, port_text = text, None
    else:
        host, sep, after = text.partition(":")
        if not sep and default_port is None:
            raise ValueError(f"must be 'host:port', got {text!r}")
        port_text = after if sep else None
    port = default_port if port_text is None else _port(port_text, min_port)
    assert port is not None
    _check_host(host, host_names)
    return host, port


def format_host_port(host: str, port: int) -> str:
    """host:port as gRPC dials and binds it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if _ip_version(host) == 6 else f"{host}:{port}"


def _port(text: str, min_port: int) -> int:
    if not _PORT_RE.fullmatch(text) or not min_port <= int(text) <= MAX_PORT:
        raise ValueError(f"port must be an integer from {min_port} to {MAX_PORT}, got {text!r}")
    return int(text)


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _check_host(host: str, host_names: Collection[str] | None) -> None:
    if _ip_version(host) is not None:
        return
    if host_names is not None:
        if host in host_names:
            return
        allowed = " or ".join(repr(name) for name in sorted(host_names))
        raise ValueError(f"host must be an IP address or {allowed}, got {host!r}")
    if not host:
        raise ValueError("no host before the ':'")
    # An all-digit last label reads as a mistyped IPv4 address ("256.1.1.1"), not a name.
    last = host.rstrip(".").rpartition(".")[2]
    if not _HOST_NAME_RE.fullmatch(host) or len(host) > 253 or last.isdigit():
        raise ValueError(f"host {host!r} is neither an IP address nor a valid host name")

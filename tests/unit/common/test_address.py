"""The one host:port parser: round trips, the accepted forms, and a clear error for the rest."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gnoicert.common.address import format_host_port, parse_host_port

ports = st.integers(min_value=1, max_value=65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
label = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
host_names = st.lists(label, min_size=1, max_size=4).map(".".join)


@given(host=st.one_of(ipv4, ipv6, host_names), port=ports)
def test_format_then_parse_round_trips(host: str, port: int) -> None:
    assert parse_host_port(format_host_port(host, port)) == (host, port)


@given(host=st.one_of(ipv4, ipv6, host_names))
def test_a_bare_host_takes_the_default_port(host: str) -> None:
    assert parse_host_port(host, default_port=9339) == (host, 9339)


@given(text=st.text(max_size=40))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        host, port = parse_host_port(text, default_port=9339)
    except ValueError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        return
    assert 1 <= port <= 65535
    assert host


@given(address=ipv6, port=ports)
def test_ipv6_with_a_port_needs_brackets(address: str, port: int) -> None:
    with pytest.raises(ValueError, match=r"put an IPv6 address in brackets"):
        parse_host_port(f"{address}:{port}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1:9339", ("192.0.2.1", 9339)),
        ("[2001:db8::1]:57400", ("2001:db8::1", 57400)),
        ("[::1]", ("::1", 9339)),
        ("::1", ("::1", 9339)),
        ("router-1.example.net", ("router-1.example.net", 9339)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_accepted_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, default_port=9339) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.1", "must be 'host:port', got '192.0.2.1'"),
        ("[::1]", "must be '[ipv6]:port', got '[::1]'"),
        ("[::1]x", "must be '[ipv6]:port'"),
        ("[192.0.2.1]:1", "only IPv6 addresses go in brackets"),
        ("h:0", "port must be an integer from 1 to 65535, got '0'"),
        ("h:65536", "port must be an integer from 1 to 65535, got '65536'"),
        ("h:x", "port must be an integer from 1 to 65535, got 'x'"),
        ("h: 80", "port must be an integer"),
        (":80", "no host before the ':'"),
        ("bad_name:80", "host 'bad_name' is neither an IP address nor a valid host name"),
        ("256.1.1.1:80", "host '256.1.1.1' is neither an IP address"),
    ],
)
def test_rejected_forms_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_host_port(text)


def test_a_restricted_host_list_accepts_only_addresses_and_those_names() -> None:
    assert parse_host_port("localhost:0", min_port=0, host_names=("localhost",)) == (
        "localhost",
        0,
    )
    with pytest.raises(ValueError, match="host must be an IP address or 'localhost', got 'r1'"):
        parse_host_port("r1:80", host_names=("localhost",))


def test_format_brackets_only_ipv6() -> None:
    assert format_host_port("192.0.2.1", 1) == "192.0.2.1:1"
    assert format_host_port("2001:db8::1", 1) == "[2001:db8::1]:1"
    assert format_host_port("router", 1) == "router:1"

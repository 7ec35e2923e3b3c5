"""The exporter's pieces without a process: the collector's series from the last results,
`--listen` parsing, and a probe of a closed port coming back down instead of raising."""

from __future__ import annotations

import socket
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gnoicert.client.fleet.exporter import FleetCollector, TargetResult, parse_listen, probe
from gnoicert.client.fleet.inventory import Target


def _samples(collector: FleetCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_target_going_down_loses_its_certificate_series_and_gets_them_back() -> None:
    collector = FleetCollector()
    assert _samples(collector) == {}  # nothing asked yet: no series at all
    answered = TargetResult("r1", True, 0.25, MappingProxyType({"web": 1.9e9, "ca": 2.0e9}))
    collector.update(answered)
    collector.update(TargetResult("r2", True, 0.5, MappingProxyType({"web": 1.8e9})))
    samples = _samples(collector)
    cert = "gnoicert_target_certificate_not_after_seconds"
    assert samples[(cert, (("certificate_id", "web"), ("target", "r1")))] == 1.9e9
    assert samples[(cert, (("certificate_id", "ca"), ("target", "r1")))] == 2.0e9
    assert samples[(cert, (("certificate_id", "web"), ("target", "r2")))] == 1.8e9
    assert samples[("gnoicert_target_up", (("target", "r1"),))] == 1.0
    assert samples[("gnoicert_target_scrape_duration_seconds", (("target", "r1"),))] == 0.25

    collector.update(TargetResult("r1", False, 3.0, error="refused"))
    samples = _samples(collector)
    assert samples[("gnoicert_target_up", (("target", "r1"),))] == 0.0
    assert samples[("gnoicert_target_scrape_duration_seconds", (("target", "r1"),))] == 3.0
    assert [key for key in samples if key[0] == cert] == [
        (cert, (("certificate_id", "web"), ("target", "r2")))
    ]

    collector.update(answered)
    assert _samples(collector)[(cert, (("certificate_id", "web"), ("target", "r1")))] == 1.9e9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("9793", ("127.0.0.1", 9793)),
        ("[::1]:9793", ("::1", 9793)),
        ("localhost:9793", ("localhost", 9793)),
        ("192.0.2.1:9793", ("192.0.2.1", 9793)),  # any address, when the operator says so
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "example.net:9793", "127.0.0.1:65536", "::1:9793", "x"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message is parse_host_port's)
        parse_listen(text)


async def test_a_probe_of_a_closed_port_is_down_not_an_exception() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await probe(Target(name="gone", address=f"127.0.0.1:{port}", timeout=5))
    assert result.name == "gone"
    assert not result.up
    assert result.not_after == {}
    assert result.error
    assert 0 < result.duration_s < 5

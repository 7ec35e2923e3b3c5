"""A real gnoicertd process watched as an operator would: /metrics scraped over HTTP and parsed
with prometheus-client's parser, sd_notify datagrams on a real NOTIFY_SOCKET, JSON log lines,
and the log level changed by SIGHUP."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions
from gnoicert.client.errors import RpcFailed
from gnoicert.client.models import CsrParams, InstallSpec, RotateSpec
from gnoicert.client.sync import SyncCertClient
from tests.support.flows import key_fragments
from tests.support.target import PASSWORDS, TargetProcess, spawn_target, write_config

METRICS = ["[metrics]", 'listen = "127.0.0.1:0"']


def scrape(proc: TargetProcess) -> tuple[str, dict[str, list[Sample]]]:
    """The raw exposition text and its samples by metric family name."""
    url = f"http://{proc.metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    families = {
        family.name: list(family.samples) for family in text_string_to_metric_families(text)
    }
    return text, families


def value(samples: list[Sample], name: str | None = None, **labels: str) -> float | None:
    matches = [
        s
        for s in samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) <= 1, matches
    return matches[0].value if matches else None


def options(proc: TargetProcess, *, password: str = PASSWORDS["admin"]) -> ChannelOptions:
    return ChannelOptions.from_files(
        proc.address,
        ca_file=proc.directory / "state" / "factory" / "certificate.pem",
        username="admin",
        password=password,
        timeout=10,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_metrics_follow_the_store_count_refusals_and_hold_no_secret(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    proc = spawn_target(write_config(tmp_path, top_lines=METRICS))
    processes.append(proc)
    assert proc.metrics_address.startswith("127.0.0.1:")

    _, families = scrape(proc)
    factory = x509.load_pem_x509_certificate(
        (tmp_path / "state" / "factory" / "certificate.pem").read_bytes()
    )
    not_after = families["gnoicert_certificate_not_after_seconds"]
    assert value(not_after, certificate_id="factory") == factory.not_valid_after_utc.timestamp()
    served = families["gnoicert_served_certificate_info"]
    assert value(served, certificate_id="factory", tls_mode="server-only") == 1
    assert value(families["gnoicert_ca_bundle_certificates"]) == 0
    assert families["gnoicert_ca_bundle_earliest_not_after_seconds"] == []
    assert "process_resident_memory_bytes" in families
    assert "python_info" in families

    # A refused request (wrong password) is counted by its audit outcome and reason.
    with (
        SyncCertClient(options(proc, password="not-the-password")) as client,
        pytest.raises(RpcFailed),
    ):
        client.get_certificates()
    _, families = scrape(proc)
    operations = families["gnoicert_operations"]
    refused = value(
        operations,
        "gnoicert_operations_total",
        rpc="GetCertificates",
        outcome="refused",
        reason="BAD_CREDENTIALS",
    )
    assert refused == 1
    auth = families["gnoicert_auth_failures"]
    assert value(auth, "gnoicert_auth_failures_total", reason="BAD_CREDENTIALS") == 1
    assert value(families["gnoicert_rate_limited"], "gnoicert_rate_limited_total") == 0

    # Install "web" with the first CA bundle (the target turns to mutual TLS), then Rotate it,
    # through the client library: the gauges follow the store.
    ca = LocalCA.init(tmp_path / "ca", intermediate=True, key_type="ecdsa")
    csr = CsrParams(common_name="web.example")
    with SyncCertClient(options(proc)) as client:
        installed = client.install(
            InstallSpec(certificate_id="web", csr=csr, signer=ca, ca_bundle_pem=ca.bundle_pem)
        )
    _, families = scrape(proc)
    before = value(families["gnoicert_certificate_not_after_seconds"], certificate_id="web")
    assert before == installed.not_after.timestamp()
    info = families["gnoicert_certificate_info"]
    assert value(info, certificate_id="web", fingerprint=installed.fingerprint, endpoint="") == 1
    assert value(info, certificate_id="factory", endpoint="grpc-server") == 1
    bundle = x509.load_pem_x509_certificates(ca.bundle_pem)
    assert value(families["gnoicert_ca_bundle_certificates"]) == len(bundle)
    earliest = min(c.not_valid_after_utc.timestamp() for c in bundle)
    assert value(families["gnoicert_ca_bundle_earliest_not_after_seconds"]) == earliest

    client_key, client_cert = ca.issue("operator")
    mutual = ChannelOptions(
        target=proc.address,
        root_certificates=(tmp_path / "state" / "factory" / "certificate.pem").read_bytes(),
        client_certificate=client_cert.certificate_pem + client_cert.chain_pem,
        client_key=client_key,
        username="admin",
        password=PASSWORDS["admin"],
        timeout=10,
    )

    def in_mutual_mode() -> bool:
        served = scrape(proc)[1]["gnoicert_served_certificate_info"]
        return value(served, certificate_id="factory", tls_mode="mutual") == 1

    wait_until(in_mutual_mode, "the listener in mutual mode")
    short = LocalCA.open(tmp_path / "ca", days=30)
    with SyncCertClient(mutual) as client:
        rotated = client.rotate(
            RotateSpec(
                certificate_id="web",
                csr=csr,
                signer=short,
                ca_bundle_pem=ca.bundle_pem,
                check_served_certificate=False,
                require_san=False,
            )
        )
    assert rotated.finalized
    text, families = scrape(proc)
    after = value(families["gnoicert_certificate_not_after_seconds"], certificate_id="web")
    assert after == rotated.not_after.timestamp()
    assert after is not None
    assert before is not None
    assert after < before
    now = dt.datetime.now(dt.UTC).timestamp()
    assert 29 * 86400 < after - now < 31 * 86400
    info = families["gnoicert_certificate_info"]
    assert value(info, certificate_id="web", fingerprint=rotated.fingerprint) == 1
    assert value(info, certificate_id="web", fingerprint=installed.fingerprint) is None
    operations = families["gnoicert_operations"]
    assert value(operations, "gnoicert_operations_total", rpc="Rotate", outcome="committed") == 1
    durations = families["gnoicert_operation_duration_seconds"]
    rotate_count = value(durations, "gnoicert_operation_duration_seconds_count", rpc="Rotate")
    assert rotate_count == 1

    # No password, user name or key material anywhere: not in a label, not in the text.
    keys = [
        p.read_bytes() for p in (tmp_path / "state").rglob("*.pem") if b"PRIVATE" in p.read_bytes()
    ]
    assert keys
    fragments = [f for key in keys for f in key_fragments(key)]
    for secret in [*PASSWORDS.values(), "not-the-password", "PRIVATE KEY", *fragments]:
        assert secret not in text
    for samples in families.values():
        for sample in samples:
            for label_value in sample.labels.values():
                assert label_value not in PASSWORDS  # the user names admin, reader
                assert "admin" not in label_value
                assert "reader" not in label_value

    assert proc.terminate() == 0
    with pytest.raises(OSError, match="Connection refused"):  # stopped with the daemon
        scrape(proc)


def test_a_metrics_port_in_use_stops_the_start_with_one_line(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_config(tmp_path, top_lines=["[metrics]", f'listen = "127.0.0.1:{port}"'])
        with pytest.raises(AssertionError, match="exited with 1") as failed:
            processes.append(spawn_target(config))
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in str(failed.value)
    assert not (tmp_path / "state").exists()  # refused before the store was made


def test_readiness_stopping_and_watchdog_reach_notify_socket(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(15)
        proc = spawn_target(
            write_config(tmp_path),
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"},
        )
        processes.append(proc)
        ready = sock.recv(4096).decode().split("\n")
        assert "READY=1" in ready
        assert f"MAINPID={proc.process.pid}" in ready
        # Pings every 0.1 s (half of WATCHDOG_USEC).
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sock.recv(4096) == b"WATCHDOG=1"
        proc.process.send_signal(signal.SIGTERM)
        while True:
            message = sock.recv(4096).decode().split("\n")
            if message != ["WATCHDOG=1"]:
                break
        assert "STOPPING=1" in message
        assert proc.process.wait(timeout=20) == 0


def test_json_log_lines_parse_and_carry_the_audit_fields(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    proc = spawn_target(write_config(tmp_path, top_lines=['log_format = "json"']))
    processes.append(proc)
    with (
        SyncCertClient(options(proc, password="not-the-password")) as client,
        pytest.raises(RpcFailed),
    ):
        client.time()
    ca = LocalCA.init(tmp_path / "ca", key_type="ecdsa")
    with SyncCertClient(options(proc)) as client:
        client.install(
            InstallSpec(
                certificate_id="web",
                csr=CsrParams(common_name="w"),
                signer=ca,
                ca_bundle_pem=ca.bundle_pem,
            )
        )
    assert proc.terminate() == 0
    lines = proc.stderr_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
        assert entry["time"].endswith("Z")
    assert any("ready on port" in e["message"] and e["level"] == "info" for e in entries)
    installs = [e for e in entries if e.get("event") == "install"]
    # The intent record before the commit, then its closing record (docs/behaviour.md §8).
    assert [e["outcome"] for e in installs] == ["intent", "committed"]
    load = installs[-1]
    assert load["logger"] == "gnoicert.audit"
    assert load["certificate_id"] == "web"
    assert load["rpc"] == "/gnoi.certificate.CertificateManagement/Install"
    # The first refusal is the wrong password's (the call made first); the client's probe of the
    # new TLS mode after the install may add its own refusals on a loaded machine.
    refused = next(e for e in entries if e.get("event") == "auth_failed")
    assert refused["rpc"] == "/gnoi.system.System/Time"
    assert (refused["outcome"], refused["reason"]) == ("refused", "BAD_CREDENTIALS")
    assert "not-the-password" not in "\n".join(lines)


def test_sighup_changes_the_log_level_and_format(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, top_lines=['log_level = "warning"'])
    proc = spawn_target(config)
    processes.append(proc)
    config.write_text(
        config.read_text().replace(
            'log_level = "warning"', 'log_level = "info"\nlog_format = "json"'
        )
    )
    proc.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in proc.stderr_text(), "the reload line")
    lines = proc.stderr_text().splitlines()
    # At warning, the start's info lines were not written.
    assert not any("ready on port" in line for line in lines)
    reloaded = [json.loads(line) for line in lines if "configuration reloaded" in line]
    assert reloaded[0]["level"] == "info"
    assert any(json.loads(line)["message"] == "log level info" for line in lines if line[:1] == "{")

    config.write_text(config.read_text().replace('log_level = "info"', 'log_level = "error"'))
    audit = tmp_path / "audit.jsonl"
    proc.process.send_signal(signal.SIGHUP)
    wait_until(lambda: audit.read_text().count('"config_reload"') == 2, "the second reload")
    assert proc.terminate() == 0
    text = proc.stderr_text()
    assert text.count("configuration reloaded") == 1  # the second one was below error
    assert "stopped" not in text.splitlines()[-1]  # info lines at stop are gone too


def test_without_a_metrics_table_nothing_is_served(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    """No [metrics] table: no port, no ready-file line, nothing listening."""
    proc = spawn_target(write_config(tmp_path))
    processes.append(proc)
    assert proc.metrics_address == ""
    assert (tmp_path / "ready").read_text() == proc.address + "\n"
    assert "/metrics" not in proc.stderr_text()
    assert proc.terminate() == 0

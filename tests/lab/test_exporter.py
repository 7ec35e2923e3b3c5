"""`gnoicert exporter` as a real process over a lab of devices: the expiry gauges match what
each device's GetCertificates says, a device taken away mid-run goes to up 0 and loses its
certificate series while the exporter keeps running, and comes back when released."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gnoicert.client.ca import LocalCA
from gnoicert.client.models import CsrParams, InstallSpec
from gnoicert.client.workflows import CertClient
from tests.support.exporter import RunningExporter, Scrape
from tests.support.lab import GNOICERT, RunningLab, lab_starter

__all__ = ("lab_starter",)  # the fixture, imported for this module's tests

LabStarter = Callable[..., RunningLab]
DEVICES = [f"dev{number:04d}" for number in range(1, 6)]


async def _not_after(lab: RunningLab, name: str) -> dict[str, float]:
    async with await CertClient.connect(lab.options(name)) as client:
        return {
            info.certificate_id: info.not_after.timestamp()
            for info in await client.get_certificates()
            if info.not_after is not None
        }


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A 127.0.0.1 port that takes TCP connections and never answers (a hung device)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_the_exporter_follows_a_lab_through_a_device_going_away_and_back(
    lab_starter: LabStarter, silent_port: int
) -> None:
    lab = lab_starter(len(DEVICES))
    # dev0002 holds a second certificate with its own expiry, so a series given to the wrong
    # target or ID would not match.
    async with await CertClient.connect(lab.options("dev0002")) as client:
        await client.install(
            InstallSpec(
                certificate_id="short-lived",
                csr=CsrParams(common_name="short.lab", key_type="ecdsa"),
                signer=LocalCA.open(lab.workdir / "ca", days=20),
            )
        )
    expected = {name: await _not_after(lab, name) for name in DEVICES}
    assert sorted(expected["dev0002"]) == ["gnoi-server", "short-lived"]
    assert expected["dev0002"]["short-lived"] < expected["dev0002"]["gnoi-server"]

    # The lab's inventory plus a hung target with a short timeout, next to it (relative paths).
    fleet = lab.workdir / "fleet.yaml"
    hung = f'  hung: {{address: "127.0.0.1:{silent_port}", timeout: 1}}\n'
    fleet.write_text((lab.workdir / "inventory.yaml").read_text() + hung)

    exporter = RunningExporter(fleet, interval=0.3)
    try:
        assert exporter.address.startswith("127.0.0.1:")

        def all_answered(scrape: Scrape) -> bool:
            return all(scrape.up(name) == 1.0 for name in DEVICES) and scrape.up("hung") == 0.0

        scrape = exporter.wait_for(all_answered)
        for name in DEVICES:
            assert scrape.not_after(name) == expected[name], name
            duration = scrape.duration(name)
            assert duration is not None
            assert 0 < duration < 10
        assert scrape.not_after("hung") == {}
        hung_duration = scrape.duration("hung")
        assert hung_duration is not None
        assert 0.9 < hung_duration < 5  # its own 1 s timeout

        # Take dev0003 away mid-run: up 0 and no certificate series, the others unchanged.
        lab.hold("dev0003")
        scrape = exporter.wait_for(lambda s: s.up("dev0003") == 0.0)
        assert scrape.not_after("dev0003") == {}
        for name in DEVICES:
            if name != "dev0003":
                assert scrape.up(name) == 1.0
                assert scrape.not_after(name) == expected[name], name
        # Still down a round later (not a one-off), and the exporter still serving.
        exporter.wait_for(lambda s: s.samples != scrape.samples and s.up("dev0003") == 0.0)
        assert exporter.process.poll() is None

        # Released, it answers again with the same certificates.
        lab.release("dev0003")
        scrape = exporter.wait_for(lambda s: s.up("dev0003") == 1.0)
        assert scrape.not_after("dev0003") == expected["dev0003"]
    finally:
        code = exporter.stop(signal.SIGTERM)
    assert code == 0, exporter.stderr()
    assert "Traceback" not in exporter.stderr()


def test_sigint_stops_the_exporter_with_exit_0(lab_starter: LabStarter) -> None:
    lab = lab_starter(1)
    exporter = RunningExporter(lab.workdir / "inventory.yaml", interval=30)
    exporter.wait_for(lambda s: s.up("dev0001") == 1.0)
    assert exporter.stop(signal.SIGINT) == 0
    host, port = exporter.address.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5)


def test_limit_exports_only_the_matching_targets(lab_starter: LabStarter) -> None:
    lab = lab_starter(3)
    exporter = RunningExporter(
        lab.workdir / "inventory.yaml", interval=30, extra=["--limit", "dev0002"]
    )
    try:
        assert "1 targets" in exporter.first_line
        scrape = exporter.wait_for(lambda s: s.up("dev0002") == 1.0)
        assert scrape.up("dev0001") is None
        assert scrape.up("dev0003") is None
    finally:
        assert exporter.stop() == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--listen", "0.0.0.0:99999"], "--listen"),
        (["--listen", "example.net:9793"], "--listen"),
        (["--limit", "nothing-*"], "matched no"),
    ],
)
def test_bad_options_are_usage_errors_before_listening(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text('targets:\n  r1: {address: "127.0.0.1:1"}\n')
    done = subprocess.run(
        [str(GNOICERT), "exporter", "--inventory", str(inventory), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "listening:" not in done.stdout


def test_a_bad_inventory_is_reported_whole_with_exit_2(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text("targets:\n  r1: {address: 1, bogus: 2}\n")
    done = subprocess.run(
        [str(GNOICERT), "exporter", "--inventory", str(inventory), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"{inventory}:2" in done.stderr
    assert "bogus" in done.stderr


def test_a_missing_password_is_refused_at_start(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        'targets:\n  r1: {address: "127.0.0.1:1", password_env: "GNOICERT_TEST_UNSET_PW"}\n'
    )
    done = subprocess.run(
        [str(GNOICERT), "exporter", "--inventory", str(inventory), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={key: value for key, value in os.environ.items() if key != "GNOICERT_TEST_UNSET_PW"},
    )
    assert done.returncode == 2, done.stderr
    assert "GNOICERT_TEST_UNSET_PW is not set" in done.stderr
    assert "listening:" not in done.stdout

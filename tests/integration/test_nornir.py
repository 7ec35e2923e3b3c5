"""The Nornir tasks in a real Nornir run over three gnoicertd subprocesses.

Nornir's SimpleInventory is written to files the way a user would; each daemon is in its
factory state (user admin) and keeps server-only TLS after its first CA bundle, so a host
trusts its own factory certificate throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from nornir.core import Nornir

from gnoicert.client.ca import LocalCA
from gnoicert.client.errors import RpcFailed
from gnoicert.client.models import CertificateInfo, InstallResult, RevokeResult, RotateResult
from gnoicert.nornir import (
    get_certificates,
    install_certificate,
    revoke_certificates,
    rotate_certificate,
)
from tests.support.cli import NO_CLIENT_CERTIFICATE
from tests.support.nornir import init_nornir
from tests.support.target import PASSWORDS, TargetProcess, spawn_target, write_config

CERT_ID = "nornir-cert"


@dataclass
class Fleet:
    daemons: dict[str, TargetProcess]
    ca: LocalCA
    nornir: Nornir


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("nornir")
    daemons: dict[str, TargetProcess] = {}
    try:
        for name in ("r1", "r2", "r3"):
            directory = root / name
            directory.mkdir()
            config = write_config(directory, users=("admin",), grpc_lines=NO_CLIENT_CERTIFICATE)
            daemons[name] = spawn_target(config)
        hosts = {}
        for name, daemon in daemons.items():
            host, port = daemon.address.rsplit(":", 1)
            factory = daemon.directory / "state" / "factory" / "certificate.pem"
            hosts[name] = {
                "hostname": host,
                "port": int(port),
                "groups": ["routers"],
                "data": {"ca_file": str(factory)},
            }
        # A host whose password is wrong: its task fails, the others are not affected.
        hosts["r1-wrong-password"] = {**hosts["r1"], "password": "not-the-password"}
        groups = {
            "routers": {
                "data": {
                    "certificate_id": CERT_ID,
                    "csr": {
                        "common_name": "{name}.example.net",
                        "ip_address": "{address}",
                        "key_type": "ecdsa",
                    },
                }
            }
        }
        defaults = {"username": "admin", "password": PASSWORDS["admin"]}
        nornir = init_nornir(root, hosts=hosts, groups=groups, defaults=defaults, workers=4)
        yield Fleet(daemons, LocalCA.init(root / "ca", key_type="ecdsa"), nornir)
    finally:
        for daemon in daemons.values():
            assert daemon.terminate() == 0, daemon.stderr_text()


@pytest.fixture(autouse=True)
def fresh_run(fleet: Fleet) -> None:
    """Nornir skips hosts that failed in an earlier run; each test starts clean."""
    fleet.nornir.data.reset_failed_hosts()


def good_hosts(fleet: Fleet) -> Nornir:
    return fleet.nornir.filter(filter_func=lambda host: host.name in fleet.daemons)


def test_install_rotate_get_and_revoke_over_the_fleet(fleet: Fleet) -> None:
    nornir = good_hosts(fleet)
    # The first CA bundle goes with the certificate; the daemons keep server-only TLS.
    installed = nornir.run(
        task=install_certificate, signer=fleet.ca, ca_bundle_pem=fleet.ca.bundle_pem
    )
    assert not installed.failed, {name: r.exception for name, r in installed.items()}
    first = {}
    for name, multi in installed.items():
        result = multi[0].result
        assert isinstance(result, InstallResult)
        assert result.subject == f"CN={name}.example.net"
        assert multi[0].changed
        first[name] = result.fingerprint

    rotated = nornir.run(
        task=rotate_certificate,
        signer=fleet.ca,
        csr={"organization": "Rotated"},
        check_served_certificate=False,
    )
    assert not rotated.failed, {name: r.exception for name, r in rotated.items()}
    second = {}
    for name, multi in rotated.items():
        result = multi[0].result
        assert isinstance(result, RotateResult)
        assert result.finalized
        assert result.fingerprint != first[name]
        assert "O=Rotated" in result.subject
        second[name] = result.fingerprint

    listed = nornir.run(task=get_certificates)
    assert not listed.failed
    for name, multi in listed.items():
        infos = multi[0].result
        assert all(isinstance(info, CertificateInfo) for info in infos)
        by_id = {info.certificate_id: info for info in infos}
        assert by_id[CERT_ID].fingerprint == second[name]
        assert not multi[0].changed

    revoked = nornir.run(task=revoke_certificates)
    assert not revoked.failed
    for multi in revoked.values():
        result = multi[0].result
        assert isinstance(result, RevokeResult)
        assert result.revoked == (CERT_ID,)
    after = nornir.run(task=get_certificates)
    for multi in after.values():
        assert CERT_ID not in {info.certificate_id for info in multi[0].result}


def test_a_failing_host_fails_alone(fleet: Fleet) -> None:
    results = fleet.nornir.run(task=get_certificates)
    assert set(results.failed_hosts) == {"r1-wrong-password"}
    failure = results["r1-wrong-password"][0]
    assert isinstance(failure.exception, RpcFailed)
    assert failure.exception.code == grpc.StatusCode.UNAUTHENTICATED
    assert "not-the-password" not in str(failure.result)
    assert not any(results[name].failed for name in fleet.daemons)

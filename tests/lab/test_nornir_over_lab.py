"""The Nornir tasks over a real lab of 20 devices: a Nornir inventory built from the lab's
files, then get and rotate on every device (issue 12: "tested with a real Nornir run over the
lab")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gnoicert.client.ca import LocalCA
from gnoicert.client.models import CertificateInfo, RotateResult
from gnoicert.nornir.tasks import get_certificates, rotate_certificate
from tests.support.lab import RunningLab, lab_starter
from tests.support.nornir import init_nornir

__all__ = ["lab_starter"]  # the fixture, imported into this module

DEVICES = 20


def test_get_and_rotate_every_lab_device_with_nornir(
    lab_starter: Callable[..., RunningLab], tmp_path: Path
) -> None:
    lab = lab_starter(DEVICES)
    defaults = lab.inventory.defaults
    hosts = {}
    for name in lab.inventory.targets:
        host, port = lab.address(name).rsplit(":", 1)
        hosts[name] = {"hostname": host, "port": int(port), "groups": ["lab"]}
    groups = {
        "lab": {
            "data": {
                "ca_file": defaults["ca_file"],
                "cert": defaults["cert"],
                "key": defaults["key"],
                "certificate_id": defaults["certificate_id"],
                "csr": {"common_name": "{name}", "ip_address": "127.0.0.1", "key_type": "ecdsa"},
            }
        }
    }
    defaults_data = {"username": "ops", "password": lab.password}
    nornir = init_nornir(tmp_path, hosts=hosts, groups=groups, defaults=defaults_data, workers=8)
    assert len(nornir.inventory.hosts) == DEVICES

    before = nornir.run(task=get_certificates)
    assert not before.failed, {name: r.exception for name, r in before.items()}
    served: dict[str, str] = {}
    for name, multi in before.items():
        infos = {info.certificate_id: info for info in multi[0].result}
        assert all(isinstance(info, CertificateInfo) for info in infos.values())
        served[name] = infos[defaults["certificate_id"]].fingerprint

    signer = LocalCA.open(lab.workdir / "ca")
    rotated = nornir.run(task=rotate_certificate, signer=signer)
    assert not rotated.failed, {name: r.exception for name, r in rotated.items()}
    for name, multi in rotated.items():
        result = multi[0].result
        assert isinstance(result, RotateResult)
        assert result.finalized, name
        assert result.fingerprint != served[name], name

    after = nornir.run(task=get_certificates)
    for name, multi in after.items():
        infos = {info.certificate_id: info for info in multi[0].result}
        assert infos[defaults["certificate_id"]].fingerprint == rotated[name][0].result.fingerprint

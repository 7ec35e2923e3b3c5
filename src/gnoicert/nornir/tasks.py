"""The task functions. Connection settings come from the Nornir host:

- `hostname` and `port` (9339 when unset), `username` and `password`;
- data keys (inherited from groups and defaults as Nornir does): `ca_file`, `cert`, `key`,
  `server_name`, `timeout`, `insecure`, `certificate_id` and `csr` (CsrParams fields).
  `{name}` and `{address}` in `server_name` and `csr` values are filled in per host, as in
  the gnoicert inventory (docs/operator-guide.md, "Fleet").

Each task opens its own SyncCertClient: Nornir's threaded runner gives every host a thread
without an event loop. A failure raises the library's error, which Nornir records as the
host's failed Result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nornir.core.task import Result, Task

from gnoicert.client.channel import ChannelOptions
from gnoicert.client.errors import InputError
from gnoicert.client.fleet.inventory import check_csr_value, check_template, render
from gnoicert.client.models import CsrParams, InstallSpec, KeySourceChoice, RotateSpec
from gnoicert.client.signer import Signer
from gnoicert.client.sync import SyncCertClient
from gnoicert.common.address import format_host_port
from gnoicert.common.constants import DEFAULT_PORT, DEFAULT_TIMEOUT_S


def channel_options(task: Task) -> ChannelOptions:
    """The ChannelOptions of the task's host, from its fields and data."""
    host = task.host
    if not host.hostname:
        raise InputError(f"nornir host {host.name} has no hostname", field="hostname")
    server_name = host.get("server_name")
    if server_name:
        server_name = _render(task, "server_name", server_name)
    return ChannelOptions.from_files(
        format_host_port(host.hostname, host.port or DEFAULT_PORT),
        ca_file=host.get("ca_file"),
        cert_file=host.get("cert"),
        key_file=host.get("key"),
        server_name=server_name,
        username=host.username,
        password=host.password,
        timeout=float(host.get("timeout") or DEFAULT_TIMEOUT_S),
        insecure=bool(host.get("insecure") or False),
    )


def csr_params(task: Task, overrides: Mapping[str, Any] | None = None) -> CsrParams:
    """The host's `csr` data with the task's overrides on top, templates filled in."""
    values = {**(task.host.get("csr") or {}), **(overrides or {})}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        try:
            checked[key] = check_csr_value(key, value)
        except ValueError as exc:
            raise InputError(f"{task.host.name}: csr.{key}: {exc}", field=f"csr.{key}") from None
        if isinstance(checked[key], str) and key != "key_type":
            checked[key] = _render(task, f"csr.{key}", checked[key])
    return CsrParams(**checked)


def _render(task: Task, key: str, text: str) -> str:
    try:
        check_template(text)
    except ValueError as exc:
        raise InputError(f"{task.host.name}: {key}: {exc}", field=key) from None
    return render(text, name=task.host.name, address=task.host.hostname or "")


def _certificate_id(task: Task, certificate_id: str | None) -> str:
    chosen = certificate_id or task.host.get("certificate_id")
    if not chosen:
        raise InputError(
            f"{task.host.name}: no certificate ID (pass certificate_id= or set the host's "
            "certificate_id data)",
            field="certificate_id",
        )
    return str(chosen)


def get_certificates(task: Task) -> Result:
    """GetCertificates: the Result holds a tuple of CertificateInfo."""
    with SyncCertClient(channel_options(task)) as client:
        return Result(host=task.host, result=client.get_certificates())


def install_certificate(
    task: Task,
    signer: Signer,
    certificate_id: str | None = None,
    csr: Mapping[str, Any] | None = None,
    ca_bundle_pem: bytes = b"",
    key_source: KeySourceChoice = "auto",
) -> Result:
    """Install a new certificate (InstallResult), signed by `signer`."""
    spec = InstallSpec(
        certificate_id=_certificate_id(task, certificate_id),
        csr=csr_params(task, csr),
        signer=signer,
        ca_bundle_pem=ca_bundle_pem,
        key_source=key_source,
    )
    with SyncCertClient(channel_options(task)) as client:
        return Result(host=task.host, result=client.install(spec), changed=True)


def rotate_certificate(
    task: Task,
    signer: Signer,
    certificate_id: str | None = None,
    csr: Mapping[str, Any] | None = None,
    ca_bundle_pem: bytes = b"",
    key_source: KeySourceChoice = "auto",
    check_served_certificate: bool = True,
) -> Result:
    """Rotate a certificate with validation before Finalize (RotateResult).

    `check_served_certificate=False` for a certificate the gRPC server does not present.
    """
    spec = RotateSpec(
        certificate_id=_certificate_id(task, certificate_id),
        csr=csr_params(task, csr),
        signer=signer,
        ca_bundle_pem=ca_bundle_pem,
        key_source=key_source,
        check_served_certificate=check_served_certificate,
    )
    with SyncCertClient(channel_options(task)) as client:
        result = client.rotate(spec)
    return Result(host=task.host, result=result, changed=result.finalized)


def revoke_certificates(task: Task, certificate_ids: Sequence[str] | None = None) -> Result:
    """RevokeCertificates (RevokeResult); failed when any ID could not be revoked."""
    ids = list(certificate_ids) if certificate_ids else [_certificate_id(task, None)]
    with SyncCertClient(channel_options(task)) as client:
        result = client.revoke(ids)
    return Result(host=task.host, result=result, changed=bool(result.revoked), failed=not result.ok)

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

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, TypeVar, Unpack

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


SpecT = TypeVar("SpecT", InstallSpec, RotateSpec)


class InstallOptions(TypedDict, total=False):
    """The optional keywords of install_certificate (Nornir passes them through nr.run)."""

    certificate_id: str | None  # default: the host's certificate_id data
    csr: Mapping[str, Any] | None  # CsrParams fields over the host's csr data
    ca_bundle_pem: bytes
    key_source: KeySourceChoice


class RotateOptions(InstallOptions, total=False):
    """install_certificate's keywords, and whether the gRPC server presents the certificate."""

    check_served_certificate: bool


def install_certificate(task: Task, signer: Signer, **options: Unpack[InstallOptions]) -> Result:
    """Install a new certificate (InstallResult), signed by `signer`."""
    spec = _spec(InstallSpec, task, signer, options)
    with SyncCertClient(channel_options(task)) as client:
        return Result(host=task.host, result=client.install(spec), changed=True)


def rotate_certificate(task: Task, signer: Signer, **options: Unpack[RotateOptions]) -> Result:
    """Rotate a certificate with validation before Finalize (RotateResult).

    `check_served_certificate=False` for a certificate the gRPC server does not present.
    """
    spec = dataclasses.replace(
        _spec(RotateSpec, task, signer, options),
        check_served_certificate=options.get("check_served_certificate", True),
    )
    with SyncCertClient(channel_options(task)) as client:
        result = client.rotate(spec)
    return Result(host=task.host, result=result, changed=result.finalized)


def _spec(kind: type[SpecT], task: Task, signer: Signer, options: InstallOptions) -> SpecT:
    """The fields both tasks share, with the host's data filled in."""
    return kind(
        certificate_id=_certificate_id(task, options.get("certificate_id")),
        csr=csr_params(task, options.get("csr")),
        signer=signer,
        ca_bundle_pem=options.get("ca_bundle_pem", b""),
        key_source=options.get("key_source", "auto"),
    )


def revoke_certificates(task: Task, certificate_ids: Sequence[str] | None = None) -> Result:
    """RevokeCertificates (RevokeResult); failed when any ID could not be revoked."""
    ids = list(certificate_ids) if certificate_ids else [_certificate_id(task, None)]
    with SyncCertClient(channel_options(task)) as client:
        result = client.revoke(ids)
    return Result(host=task.host, result=result, changed=bool(result.revoked), failed=not result.ok)

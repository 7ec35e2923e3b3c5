"""Provisioning: the lab CA, the operator's credentials and each device's configuration and store.

A device's store is written in-process through the pki Store API before any server starts: the
same committed state an Install with a client-made key and a CA bundle would leave
(docs/behaviour.md §3), in milliseconds instead of a TLS session per device. Everything that
exists already is reused as it is, so a lab restarted on the same directory keeps its state.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from gnoicert.client.ca import LocalCA, write_private_file, write_public_file
from gnoicert.client.errors import InputError
from gnoicert.common.address import format_host_port
from gnoicert.common.files import PRIVATE_MODE, write_atomic
from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome
from gnoicert.daemon.auth import hash_password
from gnoicert.daemon.config import Config
from gnoicert.daemon.startup import ensure_factory_certificate
from gnoicert.lab.layout import CERTIFICATE_ID, USER, DevicePaths, LabLayout
from gnoicert.pki import crypto
from gnoicert.pki.store import KeyOrigin, Store

LOOPBACK = "127.0.0.1"
_RECORD_VERSION = 1
_PROVISION_THREADS = 8  # store commits wait on fsync, not on the GIL
_CA_NAME = "gnoicert lab CA"
# scrypt's N for the lab's password hash: a device pays one verification per client per minute,
# and a lab's devices share one CPU, so 1,000 devices at the daemon's N (about 35 ms each) would
# cost the first fleet command half a minute of CPU. 2**10 costs about 2 ms.
LAB_SCRYPT_COST = 2**10


@dataclass(frozen=True, slots=True)
class LabSecrets:
    """What every device shares: the CA that signs their certificates, and the password."""

    ca: LocalCA
    password: str


def prepare_lab(layout: LabLayout, *, factory: bool) -> LabSecrets:
    """Make (or reuse) the lab's record, CA, password and operator credentials.

    Raises InputError when DIR holds a lab of the other kind (factory or provisioned): its
    devices' state says otherwise, and silently changing it would surprise.
    """
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_record(layout, factory=factory)
    if (layout.ca_dir / "ca.pem").exists():
        ca = LocalCA.open(layout.ca_dir)
    else:
        ca = LocalCA.init(layout.ca_dir, intermediate=True, key_type="ecdsa", common_name=_CA_NAME)
    if layout.password.exists():
        password = layout.password.read_text(encoding="utf-8").splitlines()[0]
    else:
        password = secrets.token_urlsafe(18)
        write_private_file(layout.password, (password + "\n").encode())
    if not (layout.operator_pem.exists() and layout.operator_key.exists()):
        key_pem, signed = ca.issue(USER, key_type="ecdsa")
        write_private_file(layout.operator_key, key_pem, replace=True)
        write_public_file(
            layout.operator_pem, signed.certificate_pem + signed.chain_pem, replace=True
        )
    return LabSecrets(ca=ca, password=password)


def _check_record(layout: LabLayout, *, factory: bool) -> None:
    kind = "factory" if factory else "provisioned"
    if layout.record.exists():
        try:
            recorded = json.loads(layout.record.read_text(encoding="utf-8"))["kind"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{layout.record} is not a lab record ({exc}); use an empty directory",
                field="workdir",
                path=str(layout.record),
            ) from None
        if recorded != kind:
            flag = "with" if recorded == "factory" else "without"
            raise InputError(
                f"{layout.root} holds a {recorded} lab: run it {flag} --factory, "
                "or use another directory",
                field="factory",
                check="lab-kind",
                path=str(layout.root),
            )
        return
    if layout.root.exists() and (layout.root / "devices").exists():
        raise InputError(
            f"{layout.root} holds devices but no {layout.record.name}: not a lab directory",
            field="workdir",
            path=str(layout.root),
        )
    record = {"version": _RECORD_VERSION, "kind": kind}
    write_atomic(layout.record, json.dumps(record).encode() + b"\n")


def provision_devices(
    devices: Sequence[DevicePaths], secrets_: LabSecrets, *, factory: bool
) -> int:
    """Provision every device that has no configuration yet; returns how many were made."""
    missing = [device for device in devices if not device.config.exists()]
    if not missing:
        return 0
    password_hash = hash_password(secrets_.password, cost=LAB_SCRYPT_COST)  # shared

    def provision(device: DevicePaths) -> None:
        device.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_state(device, None if factory else secrets_.ca)
        # Written last: a configuration file marks a device as complete.
        write_config(device, password_hash, port=0)

    with ThreadPoolExecutor(_PROVISION_THREADS) as pool:
        for _ in pool.map(provision, missing):
            pass
    return len(missing)


def make_state(device: DevicePaths, ca: LocalCA | None) -> None:
    """The device's store: its factory certificate (made here, in a worker thread, rather than
    by the daemon at its first start, which would make them one after another), and with a CA
    its provisioned server certificate."""
    store = Store.open(device.state)
    try:
        ensure_factory_certificate(store, Config(source=None, state_dir=device.state))
        if ca is not None:
            install_server_certificate(store, device, ca)
    finally:
        store.close()


def install_server_certificate(store: Store, device: DevicePaths, ca: LocalCA) -> None:
    """Commit the device's server certificate (ECDSA P-256, naming 127.0.0.1 and the device)
    and the lab CA bundle, as one transaction: the target then serves it over mutual TLS."""
    key_pem, signed = ca.issue(
        device.name, dns_names=[device.name], ip_addresses=[LOOPBACK], key_type="ecdsa"
    )
    with store.begin() as txn:
        txn.lock(CERTIFICATE_ID)
        entity = txn.put(
            CERTIFICATE_ID,
            certificate_pem=signed.certificate_pem,
            chain_pem=signed.chain_pem,
            private_key_pem=key_pem,
            key_origin=KeyOrigin.CLIENT,
        )
        txn.lock_bundle()
        txn.replace_bundle(ca.bundle_pem)
        txn.commit()
    audit = AuditLog(device.audit_log)
    try:
        audit.record(
            AuditRecord(
                event=Event.INSTALL,
                rpc="",
                outcome=Outcome.COMMITTED,
                certificate_id=CERTIFICATE_ID,
                new_fingerprint=crypto.fingerprint(entity.certificate),
                detail="provisioned by gnoicert lab, with the lab CA bundle",
            )
        )
    finally:
        audit.close()


def write_config(device: DevicePaths, password_hash: str, *, port: int) -> None:
    """The device's gnoicertd configuration; relative paths, so DIR may move."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"gnoicert lab device {device.name}; runs alone with:"))
    doc.add(tomlkit.comment("  gnoicertd serve --config THIS_FILE  (stop the lab's copy first)"))
    doc["state_dir"] = "state"
    doc["audit_log"] = "audit.log"
    grpc = tomlkit.table()
    grpc["listen"] = format_host_port(LOOPBACK, port)
    grpc["local_certificate"] = CERTIFICATE_ID
    grpc["shutdown_grace_s"] = 2
    doc["grpc"] = grpc
    users = tomlkit.aot()
    user = tomlkit.table()
    user["name"] = USER
    user["password_hash"] = password_hash
    user["role"] = "admin"
    users.append(user)
    doc["users"] = users
    write_atomic(device.config, tomlkit.dumps(doc).encode(), mode=PRIVATE_MODE)


def record_port(device: DevicePaths, port: int) -> None:
    """Keep the bound port in the configuration, so a restart (in the lab or alone) serves the
    address the inventory names. Only grpc.listen changes; the rest stays as written."""
    doc = tomlkit.parse(device.config.read_text(encoding="utf-8"))
    grpc = doc["grpc"]
    listen = format_host_port(LOOPBACK, port)
    if not isinstance(grpc, dict) or grpc.get("listen") == listen:
        return
    grpc["listen"] = listen
    write_atomic(device.config, tomlkit.dumps(doc).encode(), mode=PRIVATE_MODE)


def export_factory_certificate(device: DevicePaths, certificate_pem: bytes) -> Path:
    """DIR/devices/NAME/factory.pem, rewritten only when it changed (a factory reset)."""
    path = device.factory_pem
    if not path.exists() or path.read_bytes() != certificate_pem:
        write_atomic(path, certificate_pem)
    return path

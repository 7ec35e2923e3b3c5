"""What the daemon reads and repairs before it serves: the key secret, the external client CA,
the factory certificate of a first start, and the audit outcome of changes a crash interrupted.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome, open_changes
from gnoicert.daemon.config import Config, ConfigError
from gnoicert.pki import crypto
from gnoicert.pki.store import Store, StoreView

log = logging.getLogger("gnoicertd")


def read_key_secret(config: Config) -> bytes | None:
    if config.key_secret_file is None:
        return None
    try:
        secret = config.key_secret_file.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"key_secret_file: cannot read {config.key_secret_file}: {exc}") from exc
    if len(secret) < 16:
        raise ConfigError(f"key_secret_file: {config.key_secret_file} holds under 16 bytes")
    return secret


def read_external_ca(config: Config) -> bytes:
    stanza = config.grpc.mutual_authentication
    if stanza is None or stanza.uses_ca_bundle:
        return b""
    path = Path(stanza.certificate_authority)
    try:
        data = path.read_bytes()
        crypto.load_certificates(data)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"grpc.mutual_authentication.certificate_authority: cannot use {path}: {exc}"
        ) from exc
    return data


def check_listen_address(host: str, port: int) -> None:
    """OSError with one clear line if the listen address cannot be bound (a port in use).

    A bind test like grpc's own (SO_REUSEADDR, so a port in TIME_WAIT passes as it would for
    grpc); port 0 picks a free port and always works.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as exc:
                why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise OSError(f"cannot listen on {host}:{port}: {why}") from None


def check_referenced_files(config: Config) -> None:
    """The files the configuration names, every fault at once (`config check`)."""
    problems: list[str] = []
    for read in (read_external_ca, read_key_secret):
        try:
            read(config)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(*problems)


def ensure_factory_certificate(store: Store, config: Config) -> None:
    """First start: a self-signed certificate so the factory state still encrypts."""
    if store.factory_credentials() is not None:
        return
    key = ec.generate_private_key(ec.SECP256R1())
    hostname = socket.gethostname()
    ips = {"127.0.0.1", "::1"}
    names = {"localhost", hostname}
    host = config.grpc.listen_host
    try:
        ipaddress.ip_address(host)
        ips.add(host)
    except ValueError:
        names.add(host)
    cert = crypto.make_self_signed_certificate(
        key,
        common_name=f"gnoicertd factory certificate ({hostname})",
        dns_names=sorted(names),
        ip_addresses=sorted(ips),
    )
    store.save_factory_credentials(
        crypto.certificates_to_pem([cert]), crypto.private_key_to_pem(key)
    )
    log.info("made the factory certificate (SHA-256 %s)", crypto.fingerprint(cert))


def record_crash_outcomes(store: Store, audit: AuditLog) -> None:
    """Close, in the audit log, every change a crash left open (docs/behaviour.md §8).

    A Rotate between load and Finalize ("applied") lives in memory only, so the store has
    already dropped it; any other change ("intent") may have committed just before the crash.
    Either way the store says how it ended: the new state is there (committed, only its record
    was lost) or it is not (rolled back).
    """
    if audit.path is None:
        return
    committed = store.committed_view()
    for opened in open_changes(audit.path):
        cert_id = str(opened["certificate_id"])
        event = str(opened.get("event") or "change")
        landed = _in_store(committed, opened)
        if landed:
            log.warning("the %s of '%s' committed just before a crash", event, cert_id)
        else:
            log.warning("the %s of '%s' was interrupted by a crash; rolled back", event, cert_id)
        audit.record(
            AuditRecord(
                event=Event.COMMIT if landed else Event.ROLLBACK,
                rpc=str(opened.get("rpc") or ""),
                outcome=Outcome.COMMITTED if landed else Outcome.ROLLED_BACK,
                peer=str(opened.get("peer") or ""),
                identity=str(opened.get("identity") or ""),
                certificate_id=cert_id,
                old_fingerprint=str(opened.get("old_fingerprint") or ""),
                new_fingerprint=str(opened.get("new_fingerprint") or ""),
                reason="" if landed else "CRASH",
                detail=(
                    "found committed at restart after a crash"
                    if landed
                    else "rolled back at restart after a crash"
                ),
            )
        )


def _in_store(view: StoreView, opened: dict[str, Any]) -> bool:
    """Whether the committed store holds the state the opened change was making."""
    cert_id = str(opened["certificate_id"])
    new = str(opened.get("new_fingerprint") or "")
    event = opened.get("event")
    if event == Event.BUNDLE_LOAD:
        return crypto.bundle_fingerprint(view.ca_bundle_pem) == new
    if event == Event.REVOKE:
        if cert_id == crypto.CA_BUNDLE_ID:
            return not view.ca_bundle_pem.strip()
        return cert_id not in view.entities
    entity = view.entities.get(cert_id)  # install, load, rotate: the new certificate is there
    return entity is not None and bool(new) and entity.fingerprint == new

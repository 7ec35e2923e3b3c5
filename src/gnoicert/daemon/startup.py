"""What the daemon reads and repairs before it serves: the key secret, the external client CA,
the factory certificate of a first start, and the audit outcome of Rotates a crash interrupted.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome, unfinished_rotations
from gnoicert.daemon.config import Config, ConfigError
from gnoicert.pki import crypto
from gnoicert.pki.store import Store

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
    """Close, in the audit log, the Rotates a crash interrupted between load and Finalize.

    The store already dropped their uncommitted change (applied changes live in memory only),
    but the log's last word on them is "applied". Where the committed certificate is the new
    one, the crash came after the commit and only its record was lost.
    """
    if audit.path is None:
        return
    committed = store.committed_view().entities
    for applied in unfinished_rotations(audit.path):
        cert_id = str(applied["certificate_id"])
        entity = committed.get(cert_id)
        new_fingerprint = str(applied.get("new_fingerprint") or "")
        landed = (
            entity is not None and bool(new_fingerprint) and (entity.fingerprint == new_fingerprint)
        )
        if landed:
            log.warning("the Rotate of '%s' committed just before a crash", cert_id)
        else:
            log.warning(
                "the Rotate of '%s' was not finalized when the daemon stopped; rolled back",
                cert_id,
            )
        audit.record(
            AuditRecord(
                event=Event.COMMIT if landed else Event.ROLLBACK,
                rpc=str(applied.get("rpc") or ""),
                outcome=Outcome.COMMITTED if landed else Outcome.ROLLED_BACK,
                peer=str(applied.get("peer") or ""),
                identity=str(applied.get("identity") or ""),
                certificate_id=cert_id,
                old_fingerprint=str(applied.get("old_fingerprint") or ""),
                new_fingerprint=new_fingerprint,
                reason="" if landed else "CRASH",
                detail=(
                    "found committed at restart after a crash"
                    if landed
                    else "rolled back at restart after a crash"
                ),
            )
        )

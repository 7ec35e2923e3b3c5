"""Reading a state directory back: crash recovery at open, and private keys at rest.

Recovery keeps exactly what `current` names and removes everything a crash can leave behind
(uncommitted or old generations, temp files, expired or already consumed pending keys). It
returns plain data; `store.py` turns it into entities and views.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gnoicert.common.files import TMP_PREFIX, fsync_directory
from gnoicert.pki import _store_files as files
from gnoicert.pki import crypto
from gnoicert.pki.errors import PkiError, StoreFailure

_LOG = logging.getLogger("gnoicert.pki.store")

_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class KeyCodec:
    """Private keys as stored: as given, or encrypted with the machine's key_secret."""

    def __init__(self, secret: bytes | None) -> None:
        if secret is not None and not secret:
            raise ValueError("key_secret must not be empty (pass None for unencrypted keys)")
        self._secret = secret

    def encode(self, private_key_pem: bytes) -> bytes:
        if self._secret is None:
            return private_key_pem
        try:
            key = serialization.load_pem_private_key(
                private_key_pem, None, unsafe_skip_rsa_key_validation=True
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise StoreFailure("a private key to store is not an unencrypted PEM key") from None
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._secret),
        )

    def decode(self, stored: bytes, where: str) -> bytes:
        """The unencrypted PKCS#8 PEM; StoreFailure when the secret is missing or wrong."""
        encrypted = _ENCRYPTED_PEM in stored
        if self._secret is None:
            if encrypted:
                raise StoreFailure(f"{where} is encrypted: the key_secret is missing or wrong")
            return stored
        if not encrypted:
            raise StoreFailure(
                f"{where} is not encrypted but a key_secret was given: the key_secret is "
                "missing or wrong"
            )
        try:
            # Keys this process wrote itself: skip the slow RSA consistency check (36 ms a key).
            key = serialization.load_pem_private_key(
                stored, self._secret, unsafe_skip_rsa_key_validation=True
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise StoreFailure(
                f"cannot decrypt {where}: the key_secret is missing or wrong"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise StoreFailure(f"{where} holds an unsupported key type")
        return crypto.private_key_to_pem(key)


@dataclass(slots=True)
class Recovered:
    """The committed state found on disk (keys decoded), plus pending keys and factory pair."""

    generation: int = 0
    manifest: files.Manifest = files.EMPTY_MANIFEST
    entities: dict[str, files.EntityFiles] = field(default_factory=dict)
    bundle_pem: bytes = b""
    pending: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # expires_ns, key PEM
    factory: tuple[bytes, bytes] | None = None


def recover(state_dir: Path, codec: KeyCodec) -> Recovered:
    """Clean up after any crash and read the committed state.

    Raises CorruptState for a directory no crash can produce (edited or damaged by hand),
    StoreFailure for a key that cannot be decrypted, OSError when the disk fails.
    """
    generations = state_dir / files.GENERATIONS_NAME
    removed = False
    for entry in os.listdir(state_dir):
        if entry.startswith(TMP_PREFIX):
            files.remove_path(state_dir / entry)
            removed = True
    files.ensure_dir(generations)
    current = files.read_current(state_dir)
    for entry in os.listdir(generations):
        if entry != str(current):
            # Uncommitted (a crash before the swap) or old (a crash before its removal).
            _LOG.info("recovery: removing %s/%s", files.GENERATIONS_NAME, entry)
            files.remove_path(generations / entry)
            removed = True
    if removed:
        fsync_directory(generations)
        fsync_directory(state_dir)
    found = Recovered(generation=current)
    if current:
        content = files.read_generation(generations / str(current), current)
        found.manifest, found.bundle_pem = content.manifest, content.bundle_pem
        for cert_id, stored in content.files.items():
            where = (
                f"the key of certificate ID {cert_id!r} ({files.GENERATIONS_NAME}/{current}/"
                f"{files.CERTIFICATES_NAME}/{cert_id}/{files.KEY_FILE})"
            )
            key_pem = codec.decode(stored.key, where)
            found.entities[cert_id] = files.EntityFiles(stored.certificate, stored.chain, key_pem)
    installed = {stored.key for stored in found.entities.values()}
    pending_dir = state_dir / files.PENDING_NAME
    files.ensure_dir(pending_dir)
    found.pending = _recover_pending(pending_dir, codec, installed)
    factory_dir = state_dir / files.FACTORY_NAME
    files.ensure_dir(factory_dir)
    found.factory = _recover_factory(factory_dir, codec)
    return found


def _recover_pending(
    pending_dir: Path, codec: KeyCodec, installed: set[bytes]
) -> dict[str, tuple[int, bytes]]:
    now = time.time_ns()
    pending: dict[str, tuple[int, bytes]] = {}
    removed = False
    for entry in sorted(os.listdir(pending_dir)):
        path = pending_dir / entry
        cert_id = entry.removesuffix(".json")
        if entry.startswith(TMP_PREFIX):
            files.remove_path(path)
            removed = True
            continue
        try:
            crypto.validate_certificate_id(cert_id)
            if not entry.endswith(".json"):
                raise ValueError(entry)
        except (PkiError, ValueError):
            _LOG.warning("recovery: ignoring unexpected file %s/%s", files.PENDING_NAME, entry)
            continue
        try:
            expires_ns, stored = files.read_pending(path)
        except files.CorruptState as exc:
            _LOG.warning("recovery: removing %s", exc)
            files.remove_path(path)
            removed = True
            continue
        if expires_ns <= now:
            files.remove_path(path)
            removed = True
            continue
        key_pem = codec.decode(stored, f"the pending key of certificate ID {cert_id!r}")
        if key_pem in installed:
            # Consumed by a commit that crashed before removing it: never reuse a key.
            files.remove_path(path)
            removed = True
            continue
        pending[cert_id] = (expires_ns, key_pem)
    if removed:
        fsync_directory(pending_dir)
    return pending


def _recover_factory(factory_dir: Path, codec: KeyCodec) -> tuple[bytes, bytes] | None:
    removed = False
    for entry in os.listdir(factory_dir):
        if entry.startswith(TMP_PREFIX):
            files.remove_path(factory_dir / entry)
            removed = True
    if removed:
        fsync_directory(factory_dir)
    try:
        certificate_pem = (factory_dir / files.CERTIFICATE_FILE).read_bytes()
        stored_key = (factory_dir / files.KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None
    key_pem = codec.decode(stored_key, f"the factory key ({files.FACTORY_NAME}/{files.KEY_FILE})")
    try:
        key = serialization.load_pem_private_key(key_pem, None, unsafe_skip_rsa_key_validation=True)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("unsupported key type")
        crypto.check_key_matches(crypto.load_certificates(certificate_pem)[0], key)
    except (PkiError, ValueError, TypeError, UnsupportedAlgorithm):
        # Only an interrupted save gets here; the server makes new factory credentials.
        _LOG.warning("recovery: factory certificate and key do not form a pair; ignoring them")
        return None
    return certificate_pem, key_pem

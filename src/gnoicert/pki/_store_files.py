"""The store's state directory on disk: durable file primitives, generations and manifests.

Everything here is plain file work with no knowledge of transactions; `store.py` decides what to
write and when. Files are immutable once written (a new generation links the unchanged ones), so
every change is a fresh file, fsynced, then made visible by one atomic rename or symlink swap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gnoicert.common.files import (
    TMP_PREFIX,
    fsync_all,
    fsync_directory,
    removed_on_failure,
    write_atomic,
)

DIR_MODE = 0o700
PUBLIC_MODE = 0o644
SECRET_MODE = 0o600
MANIFEST_FORMAT = 1

LOCK_NAME = "LOCK"
CURRENT_NAME = "current"
GENERATIONS_NAME = "generations"
PENDING_NAME = "pending"
FACTORY_NAME = "factory"
MANIFEST_NAME = "manifest.json"
CERTIFICATES_NAME = "certificates"
BUNDLE_NAME = "gnoi-ca-bundle.pem"
CERTIFICATE_FILE = "certificate.pem"
CHAIN_FILE = "chain.pem"
KEY_FILE = "key.pem"
ENTITY_FILES: tuple[tuple[str, int], ...] = (
    (CERTIFICATE_FILE, PUBLIC_MODE),
    (CHAIN_FILE, PUBLIC_MODE),
    (KEY_FILE, SECRET_MODE),
)

_CURRENT_TARGET = re.compile(rf"{GENERATIONS_NAME}/([1-9][0-9]*)")
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


class CorruptState(Exception):
    """The state directory does not describe a committed generation (never from a crash)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def count_certificates(bundle_pem: bytes) -> int:
    """PEM blocks in a bundle, without parsing 20,000 certificates just to count them."""
    return bundle_pem.count(_PEM_CERTIFICATE)


def tmp_name(label: str) -> str:
    return f"{TMP_PREFIX}-{label}-{secrets.token_hex(6)}"


# --- durable primitives -----------------------------------------------------------------------


def make_dir(path: Path) -> None:
    os.mkdir(path, DIR_MODE)
    os.chmod(path, DIR_MODE)  # the umask may have narrowed it; never wider than 0700


def ensure_dir(path: Path) -> None:
    """Create path 0700 if missing (the parent is fsynced); tighten an existing one to 0700."""
    try:
        make_dir(path)
    except FileExistsError:
        if not path.is_dir() or path.is_symlink():
            raise CorruptState(f"{path.name} is not a directory") from None
        os.chmod(path, DIR_MODE)
    else:
        fsync_directory(path.parent)


def write_new_file(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    """Create path (it must not exist) with exactly `mode` and write data; fsync it unless the
    caller makes it durable itself (with fsync_all, before anything names it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # before any byte of a secret is written
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def link_or_copy(src: Path, dst: Path, mode: int) -> None:
    """Hard-link an immutable file into a new generation; copy when the filesystem refuses."""
    try:
        os.link(src, dst)
    except OSError:
        write_new_file(dst, src.read_bytes(), mode)


def remove_path(path: Path) -> None:
    """Remove a file, symlink or directory tree; missing is fine, other errors propagate."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_file_durably(path: Path) -> bool:
    """Unlink path and fsync its directory; False when it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


# --- manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityRecord:
    """What the manifest says about one entity: bookkeeping plus the hash of each file."""

    created_ns: int
    modified_ns: int
    version: int
    key_origin: str
    fingerprint: str  # SHA-256 of the leaf's DER, as GetCertificates and audit records show it
    certificate_sha256: str
    chain_sha256: str
    key_sha256: str

    def file_hashes(self) -> dict[str, str]:
        return {
            CERTIFICATE_FILE: self.certificate_sha256,
            CHAIN_FILE: self.chain_sha256,
            KEY_FILE: self.key_sha256,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleRecord:
    sha256: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    generation: int
    entities: Mapping[str, EntityRecord]
    bundle: BundleRecord | None

    def to_json(self) -> bytes:
        doc = {
            "format": MANIFEST_FORMAT,
            "generation": self.generation,
            "entities": {
                cert_id: {
                    "created_ns": rec.created_ns,
                    "modified_ns": rec.modified_ns,
                    "version": rec.version,
                    "key_origin": rec.key_origin,
                    "fingerprint": rec.fingerprint,
                    "files": rec.file_hashes(),
                }
                for cert_id, rec in sorted(self.entities.items())
            },
            "ca_bundle": (
                None
                if self.bundle is None
                else {"sha256": self.bundle.sha256, "count": self.bundle.count}
            ),
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
            if doc["format"] != MANIFEST_FORMAT:
                raise CorruptState(f"{MANIFEST_NAME} has unknown format {doc['format']!r}")
            entities = {
                str(cert_id): EntityRecord(
                    created_ns=int(rec["created_ns"]),
                    modified_ns=int(rec["modified_ns"]),
                    version=int(rec["version"]),
                    key_origin=str(rec["key_origin"]),
                    fingerprint=str(rec["fingerprint"]),
                    certificate_sha256=str(rec["files"][CERTIFICATE_FILE]),
                    chain_sha256=str(rec["files"][CHAIN_FILE]),
                    key_sha256=str(rec["files"][KEY_FILE]),
                )
                for cert_id, rec in doc["entities"].items()
            }
            raw_bundle = doc["ca_bundle"]
            bundle = (
                None
                if raw_bundle is None
                else BundleRecord(sha256=str(raw_bundle["sha256"]), count=int(raw_bundle["count"]))
            )
            return cls(generation=int(doc["generation"]), entities=entities, bundle=bundle)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptState(f"{MANIFEST_NAME} is unreadable ({type(exc).__name__})") from None


EMPTY_MANIFEST = Manifest(generation=0, entities={}, bundle=None)


# --- generations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityFiles:
    """The bytes of one entity's files as they are on disk (the key possibly encrypted)."""

    certificate: bytes
    chain: bytes
    key: bytes

    def by_name(self) -> dict[str, bytes]:
        return {CERTIFICATE_FILE: self.certificate, CHAIN_FILE: self.chain, KEY_FILE: self.key}


def write_generation(
    generations_dir: Path,
    manifest: Manifest,
    new_files: Mapping[str, EntityFiles],
    bundle_pem: bytes | None,
    base_dir: Path | None,
) -> Path:
    """Build generations/<N> completely and durably; entities absent from new_files (and the
    bundle when bundle_pem is None) are linked from base_dir. Nothing is left behind on error.

    The directory is built under its final name: until `current` names it, it is an
    uncommitted generation, which recovery removes. Every file and directory written here is
    fsynced before this returns, all at once (fsync_all) rather than one after another.
    """
    final = generations_dir / str(manifest.generation)
    written: list[Path] = []
    make_dir(final)  # raises if it exists: never write into (or remove) another's directory
    try:
        certificates = final / CERTIFICATES_NAME
        make_dir(certificates)
        for cert_id in manifest.entities:
            entity_dir = certificates / cert_id
            make_dir(entity_dir)
            files = new_files.get(cert_id)
            for name, mode in ENTITY_FILES:
                if files is not None:
                    write_new_file(entity_dir / name, files.by_name()[name], mode, sync=False)
                    written.append(entity_dir / name)
                elif base_dir is not None:
                    link_or_copy(
                        base_dir / CERTIFICATES_NAME / cert_id / name, entity_dir / name, mode
                    )
                else:
                    raise ValueError(f"no content for certificate ID {cert_id!r}")
            written.append(entity_dir)
        written.append(certificates)
        if manifest.bundle is not None:
            if bundle_pem is not None:
                write_new_file(final / BUNDLE_NAME, bundle_pem, PUBLIC_MODE, sync=False)
                written.append(final / BUNDLE_NAME)
            elif base_dir is not None:
                link_or_copy(base_dir / BUNDLE_NAME, final / BUNDLE_NAME, PUBLIC_MODE)
            else:
                raise ValueError("no content for the CA bundle")
        write_new_file(final / MANIFEST_NAME, manifest.to_json(), PUBLIC_MODE, sync=False)
        written += [final / MANIFEST_NAME, final, generations_dir]
        fsync_all(written)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_path(final)
        raise
    return final


@dataclass(frozen=True, slots=True)
class GenerationContent:
    manifest: Manifest
    files: dict[str, EntityFiles]
    bundle_pem: bytes


def read_generation(gen_dir: Path, generation: int) -> GenerationContent:
    """Read one generation and check every file against its manifest (CorruptState if not)."""
    rel = f"{GENERATIONS_NAME}/{generation}"
    try:
        manifest = Manifest.from_json((gen_dir / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        raise CorruptState(f"{rel}/{MANIFEST_NAME} is missing") from None
    if manifest.generation != generation:
        raise CorruptState(f"{rel}/{MANIFEST_NAME} describes generation {manifest.generation}")
    certificates = gen_dir / CERTIFICATES_NAME
    try:
        on_disk = set(os.listdir(certificates))
    except FileNotFoundError:
        on_disk = set()
    if on_disk != set(manifest.entities):
        extra = sorted(on_disk - set(manifest.entities))
        missing = sorted(set(manifest.entities) - on_disk)
        raise CorruptState(
            f"{rel}/{CERTIFICATES_NAME} does not match the manifest "
            f"(not in manifest: {extra}, missing: {missing})"
        )
    files: dict[str, EntityFiles] = {}
    for cert_id, rec in manifest.entities.items():
        data: dict[str, bytes] = {}
        for name, expected in rec.file_hashes().items():
            path = certificates / cert_id / name
            try:
                data[name] = path.read_bytes()
            except FileNotFoundError:
                raise CorruptState(
                    f"{rel}/{CERTIFICATES_NAME}/{cert_id}/{name} is missing"
                ) from None
            if sha256_hex(data[name]) != expected:
                raise CorruptState(
                    f"{rel}/{CERTIFICATES_NAME}/{cert_id}/{name} does not match the manifest"
                )
        files[cert_id] = EntityFiles(data[CERTIFICATE_FILE], data[CHAIN_FILE], data[KEY_FILE])
    bundle_path = gen_dir / BUNDLE_NAME
    if manifest.bundle is None:
        if bundle_path.exists():
            raise CorruptState(f"{rel}/{BUNDLE_NAME} is present but not in the manifest")
        bundle_pem = b""
    else:
        try:
            bundle_pem = bundle_path.read_bytes()
        except FileNotFoundError:
            raise CorruptState(f"{rel}/{BUNDLE_NAME} is missing") from None
        if sha256_hex(bundle_pem) != manifest.bundle.sha256:
            raise CorruptState(f"{rel}/{BUNDLE_NAME} does not match the manifest")
    return GenerationContent(manifest, files, bundle_pem)


def read_current(state_dir: Path) -> int:
    """The committed generation `current` points at, 0 when there is none yet."""
    link = state_dir / CURRENT_NAME
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return 0
    except OSError:
        raise CorruptState(f"{CURRENT_NAME} is not a symlink") from None
    match = _CURRENT_TARGET.fullmatch(target)
    if match is None:
        raise CorruptState(f"{CURRENT_NAME} points to {target!r}, not to {GENERATIONS_NAME}/<N>")
    if not (state_dir / target).is_dir():
        raise CorruptState(f"{CURRENT_NAME} points to {target}, which does not exist")
    return int(match.group(1))


def point_current(state_dir: Path, generation: int) -> None:
    """Atomically make `current` name generations/<generation> (0: no committed generation)."""
    link = state_dir / CURRENT_NAME
    if generation == 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
    else:
        tmp = state_dir / tmp_name(CURRENT_NAME)
        os.symlink(f"{GENERATIONS_NAME}/{generation}", tmp)
        with removed_on_failure(tmp):
            os.replace(tmp, link)
    fsync_directory(state_dir)


# --- pending keys -----------------------------------------------------------------------------


def pending_path(pending_dir: Path, cert_id: str) -> Path:
    return pending_dir / f"{cert_id}.json"


def write_pending(pending_dir: Path, cert_id: str, expires_ns: int, key: bytes) -> None:
    doc = {"expires_ns": expires_ns, "key_pem": key.decode("ascii")}
    write_atomic(pending_path(pending_dir, cert_id), json.dumps(doc).encode(), mode=SECRET_MODE)


def read_pending(path: Path) -> tuple[int, bytes]:
    """(expires_ns, key bytes as stored); CorruptState when the file is not a pending key."""
    try:
        doc = json.loads(path.read_bytes())
        return int(doc["expires_ns"]), str(doc["key_pem"]).encode("ascii")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptState(
            f"{PENDING_NAME}/{path.name} is unreadable ({type(exc).__name__})"
        ) from None

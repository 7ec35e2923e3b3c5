"""What the store holds and shows its readers: certificate entities and immutable views."""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography import x509

from gnoicert.pki import crypto


class KeyOrigin(enum.StrEnum):
    """Who made the private key: the target (CSR flow) or the client (key pair sent)."""

    TARGET = "target"
    CLIENT = "client"


@functools.lru_cache(maxsize=1024)
def parse_leaf(certificate_pem: bytes) -> x509.Certificate:
    return crypto.load_certificates(certificate_pem)[0]


@functools.lru_cache(maxsize=1024)
def leaf_fingerprint(certificate_pem: bytes) -> str:
    return crypto.fingerprint(parse_leaf(certificate_pem))


# A bundle may hold 20,000 certificates: parse each distinct bundle once, keep only a couple.
@functools.lru_cache(maxsize=2)
def parse_bundle(bundle_pem: bytes) -> tuple[x509.Certificate, ...]:
    if not bundle_pem.strip():
        return ()
    return tuple(crypto.load_certificates(bundle_pem))


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEntity:
    """One certificate ID: leaf, intermediates, private key and bookkeeping."""

    cert_id: str
    certificate_pem: bytes  # the leaf, one PEM block
    chain_pem: bytes  # intermediates, zero or more PEM blocks, leaf excluded
    private_key_pem: bytes = field(repr=False)  # unencrypted PKCS#8 PEM (in memory only)
    key_origin: KeyOrigin
    created_ns: int
    modified_ns: int
    version: int  # 1 on install, +1 on every change

    @property
    def full_chain_pem(self) -> bytes:
        """Leaf then intermediates: what a TLS server presents."""
        if not self.chain_pem:
            return self.certificate_pem
        leaf = self.certificate_pem
        if not leaf.endswith(b"\n"):
            leaf += b"\n"
        return leaf + self.chain_pem

    @property
    def certificate(self) -> x509.Certificate:
        return parse_leaf(self.certificate_pem)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf (crypto.fingerprint)."""
        return leaf_fingerprint(self.certificate_pem)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreView:
    """An immutable snapshot: committed state, or committed plus applied transactions."""

    entities: Mapping[str, CertificateEntity]
    ca_bundle_pem: bytes  # b"" when no bundle is loaded
    generation: int  # committed generation this view is based on

    @property
    def ca_bundle(self) -> tuple[x509.Certificate, ...]:
        """Parsed bundle (parse once per view; a bundle may hold 20,000 certificates)."""
        return parse_bundle(self.ca_bundle_pem)


def make_view(
    entities: Mapping[str, CertificateEntity], ca_bundle_pem: bytes, generation: int
) -> StoreView:
    ordered = {cert_id: entities[cert_id] for cert_id in sorted(entities)}
    return StoreView(
        entities=MappingProxyType(ordered), ca_bundle_pem=ca_bundle_pem, generation=generation
    )


def same_content(a: StoreView, b: StoreView) -> bool:
    return a is b or (a.ca_bundle_pem == b.ca_bundle_pem and dict(a.entities) == dict(b.entities))

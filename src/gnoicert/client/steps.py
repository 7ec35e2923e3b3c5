"""The decisions inside Install and Rotate, as plain functions (no I/O, no event loop).

Who makes the key, what the signed material splits into (what is sent, what is trusted), and
whether the target answered with the message the step order calls for.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gnoicert.client.certinfo import issuer_of, subject_of
from gnoicert.client.errors import InputError, ProtocolError
from gnoicert.client.models import ClientKeyType, KeySource, KeySourceChoice, SignedCertificate
from gnoicert.pki.crypto import certificates_to_pem, load_certificates
from gnoicert.pki.errors import BadEncoding


def should_probe(choice: KeySourceChoice, key_type: ClientKeyType) -> bool:
    """Ask CanGenerateCSR only when the answer decides something: auto, with an RSA key."""
    return choice == "auto" and key_type == "rsa"


def choose_key_source(
    choice: KeySourceChoice, key_type: ClientKeyType, can_generate: bool | None
) -> KeySource:
    """Target-generated CSR by default; the client's own key when asked, for ECDSA (the wire
    has no ECDSA key type), or when the target says it cannot. None means "did not answer"
    (CanGenerateCSR unimplemented): try the target, and fall back if GenerateCSR is refused."""
    if choice == "client":
        return "client"
    if key_type != "rsa":
        if choice == "target":
            raise InputError(
                "the target can only be asked for RSA keys; let the client make the key "
                "(key source 'client')",
                field="key_source",
                check="rsa-only",
            )
        return "client"
    if choice == "target":
        return "target"
    return "client" if can_generate is False else "target"


def expect_case(case: str | None, expected: str) -> None:
    """Raise ProtocolError unless the response's oneof case is the one this step expects."""
    if case != expected:
        seen = case or "an empty message"
        raise ProtocolError(f"expected {expected} from the target, got {seen}")


def _is_self_signed(certificate: x509.Certificate) -> bool:
    if issuer_of(certificate) != subject_of(certificate):
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Material:
    """Signed material split by role.

    `leaf` and `intermediates` are sent as the certificate; `roots` (self-signed CAs from the
    signer's chain) plus `extra_anchors` are what the certificate should chain to; `bundle` is
    the CA bundle being sent (it replaces the target's when non-empty).
    """

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]
    bundle: tuple[x509.Certificate, ...]
    extra_anchors: tuple[x509.Certificate, ...]

    @property
    def certificate_pem(self) -> bytes:
        """What goes in LoadCertificateRequest.certificate: the leaf, then intermediates."""
        return certificates_to_pem([self.leaf, *self.intermediates])

    @property
    def bundle_pems(self) -> tuple[bytes, ...]:
        """One PEM per CA of the bundle being sent (one Certificate message each)."""
        return tuple(certificates_to_pem([ca]) for ca in self.bundle)

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """Where the chain must end: the bundle being sent, else the CAs the caller knows."""
        if self.bundle:
            return self.bundle
        return self.roots + self.extra_anchors

    def trust_pem(self) -> bytes:
        """What a new connection should trust to accept the new certificate: the bundle or roots
        plus the intermediates (in case the target presents the leaf alone)."""
        seen: list[x509.Certificate] = []
        for certificate in (*self.anchors, *self.intermediates, *self.roots):
            if certificate not in seen:
                seen.append(certificate)
        return certificates_to_pem(seen)


def _parse(data: bytes, what: str) -> list[x509.Certificate]:
    if not data.strip():
        return []
    try:
        return load_certificates(data)
    except BadEncoding as exc:
        raise InputError(f"the {what} is not usable: {exc}") from None


def split_material(
    signed: SignedCertificate, *, ca_bundle_pem: bytes = b"", trust_anchors_pem: bytes = b""
) -> Material:
    """Sort the signer's output (leaf first, then any chain) into a Material."""
    issued = _parse(signed.certificate_pem, "signed certificate")
    if not issued:
        raise InputError("the signer returned no certificate")
    chain = issued[1:] + _parse(signed.chain_pem, "certificate chain")
    intermediates: list[x509.Certificate] = []
    roots: list[x509.Certificate] = []
    for certificate in chain:
        target = roots if _is_self_signed(certificate) else intermediates
        if certificate not in target:
            target.append(certificate)
    return Material(
        leaf=issued[0],
        intermediates=tuple(intermediates),
        roots=tuple(roots),
        bundle=tuple(_parse(ca_bundle_pem, "CA bundle")),
        extra_anchors=tuple(_parse(trust_anchors_pem, "CA file")),
    )

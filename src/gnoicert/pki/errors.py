"""The PKI's refusals: one small tree, so callers can catch one base or one precise case.

Each class is a distinct reason an operator can act on; `target/errors.py` maps them to gRPC
status codes and ErrorInfo reasons. Messages name IDs and fingerprints, never key material.
"""

from __future__ import annotations


class PkiError(Exception):
    """Base for every refusal of the PKI domain: the material or the state says no."""


class InvalidCertificateId(PkiError, ValueError):
    """A certificate ID outside 1-64 characters of A-Z a-z 0-9 . _ - (or starting with '.')."""


class CertificateNotFound(PkiError, LookupError):
    """The certificate ID does not exist (Rotate needs an existing ID)."""


class CertificateExists(PkiError):
    """The certificate ID already exists (Install needs a new ID)."""


class ResourceBusy(PkiError):
    """Another open transaction holds this certificate ID or the CA bundle."""


class InvalidMaterial(PkiError, ValueError):
    """Certificates, keys or CSR parameters that cannot be used as given."""


class BadEncoding(InvalidMaterial):
    """Unparsable or unsupported PEM/DER (certificate, key, bundle)."""


class KeyMismatch(InvalidMaterial):
    """The private key does not belong to the certificate."""


class CsrKeyMismatch(InvalidMaterial):
    """The certificate's public key is not the key of the pending CSR."""


class InvalidCsrParameters(InvalidMaterial):
    """CSR parameters that cannot go into a CSR (bad country code, IP address, e-mail)."""


class EmptyBundle(InvalidMaterial):
    """A CA bundle with no certificate in it."""


class CertificateRejected(PkiError):
    """A well-formed certificate that policy refuses to install."""


class ChainVerificationFailed(CertificateRejected):
    """The certificate does not chain to a trusted CA."""


class CertificateExpired(CertificateRejected):
    """The certificate's notAfter is in the past (beyond the allowed clock skew)."""


class CertificateNotYetValid(CertificateRejected):
    """The certificate's notBefore is in the future (beyond the allowed clock skew)."""


class BadKeyUsage(CertificateRejected):
    """A CA certificate offered as a leaf, or key usage / EKU that excludes TLS."""


class UnsupportedKey(PkiError):
    """A key type, certificate type or key size the target cannot generate."""


class StoreFailure(PkiError):
    """The durable store could not be read or written; nothing was changed."""


class StoreInUse(StoreFailure):
    """Another process holds the state directory's lock (a second daemon on the same state)."""

"""What the client library takes and gives back: frozen dataclasses, free of protobuf and gRPC.

The CLI renders these same objects (rich tables, or JSON through `output.to_jsonable`), so a
field added here shows up in the JSON output without further work. GetCertificates' types live
in listing.py (re-exported here): `gnoicert get` creates only those (issue 13's start-up budget).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

from gnoicert.client.listing import CertificateInfo as CertificateInfo
from gnoicert.client.listing import CertificateListing as CertificateListing
from gnoicert.client.listing import Endpoint as Endpoint
from gnoicert.pki.crypto import DEFAULT_RSA_KEY_SIZE, CsrSubject, subject_fields

if TYPE_CHECKING:
    import grpc.aio

    from gnoicert.client.signer import Signer

KeySource: TypeAlias = Literal["target", "client"]
"""Who made the key pair: the target (GenerateCSR) or this client (sent as a KeyPair)."""
KeySourceChoice: TypeAlias = Literal["auto", "target", "client"]
ClientKeyType: TypeAlias = Literal["rsa", "ecdsa"]
CheckStatus: TypeAlias = Literal["pass", "fail", "warn", "skip"]

Probe: TypeAlias = "Callable[[grpc.aio.Channel, tuple[tuple[str, str], ...]], Awaitable[str]]"
"""A caller-supplied liveness check for the rotate validation step.

It gets the *new* channel (which trusts only the new chain) and the call metadata, and returns a
short description of what it checked; raising anything means the check failed.
"""


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class CsrParams(CsrSubject):
    """What a CSR should hold, wherever it is made (CSRParams, docs/behaviour.md §5): the
    subject fields of CsrSubject plus the key.

    `key_size` is the minimum size asked of the target, and the RSA size of a client-made key;
    `key_type` "ecdsa" can only be made by the client (the wire has no ECDSA key type).
    """

    key_type: ClientKeyType = "rsa"
    key_size: int = DEFAULT_RSA_KEY_SIZE

    def subject(self) -> CsrSubject:
        """The subject fields alone, as the PKI helpers take them."""
        return CsrSubject(**subject_fields(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSpec:
    """Everything an Install needs; see `CertClient.install`.

    `ca_bundle_pem`, when non-empty, replaces the target's CA bundle (the first one switches the
    target to mutual TLS). `trust_anchors_pem` adds CA certificates for the preflight chain check
    when no bundle is sent. `require_san` makes "the SANs cover the dialled address" an error
    instead of a warning (set it for the certificate the gRPC server will present).
    """

    certificate_id: str
    csr: CsrParams
    signer: Signer
    ca_bundle_pem: bytes = b""
    key_source: KeySourceChoice = "auto"
    trust_anchors_pem: bytes = b""
    require_san: bool = False
    preflight: bool = True
    dry_run: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateSpec(InstallSpec):
    """Everything a Rotate needs; see `CertClient.rotate`.

    `check_served_certificate` (the default) expects the rotated certificate to be the one the
    gRPC server presents, and checks its fingerprint on a new connection; turn it off when
    rotating a certificate used by another endpoint. `infer_server_role` turns both it and
    `require_san` off when the target's listing shows the ID is not the server's (no
    `grpc-server` endpoint, and not the certificate a new connection gets). `expect_name` is the
    name the new certificate must carry for the validation session and the SAN check (default:
    the name the client checks, so a certificate loaded with a wrong name can be repaired).
    `probe` replaces the System/Time call.
    """

    require_san: bool = True
    check_served_certificate: bool = True
    infer_server_role: bool = True
    expect_name: str | None = None
    probe: Probe | None = field(default=None, compare=False)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One preflight or validation check: its name, its verdict and what was seen."""

    name: str
    status: CheckStatus
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PreflightReport:
    """The checks run on the material before anything was sent; `ok` unless one failed."""

    checks: tuple[CheckResult, ...]
    ok: bool

    @classmethod
    def from_checks(cls, checks: Sequence[CheckResult]) -> PreflightReport:
        return cls(checks=tuple(checks), ok=all(check.status != "fail" for check in checks))

    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if check.status == "fail")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedCertificate:
    """What a signer returns: the leaf, and the CA chain above it (intermediates, then root).

    `certificate_pem` may carry intermediates after the leaf; the workflows normalise both.
    """

    certificate_pem: bytes
    chain_pem: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallResult:
    """A finished (or dry-run) Install."""

    target: str
    certificate_id: str
    fingerprint: str
    subject: str
    not_after: dt.datetime
    key_source: KeySource
    ca_bundle_size: int
    preflight: PreflightReport
    dry_run: bool
    elapsed_s: float
    not_checked: tuple[str, ...] = ()
    client_certificates_required: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateResult:
    """A finished (or dry-run) Rotate: `validation` lists what was checked before Finalize."""

    target: str
    certificate_id: str
    fingerprint: str
    subject: str
    not_after: dt.datetime
    key_source: KeySource
    ca_bundle_size: int
    preflight: PreflightReport
    validation: tuple[CheckResult, ...]
    finalized: bool
    dry_run: bool
    elapsed_s: float
    not_checked: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationError:
    certificate_id: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeResult:
    """RevokeCertificates: the RPC succeeds even when some IDs fail; `ok` says whether all did.

    `not_present` lists the IDs GetCertificates did not list before the call (the target counts
    them as revoked, docs/behaviour.md §4); they are not in `revoked`.
    `client_certificates_required` is set after the CA bundle was revoked (None: not asked).
    """

    target: str
    revoked: tuple[str, ...]
    errors: tuple[RevocationError, ...]
    ok: bool
    not_present: tuple[str, ...] = ()
    client_certificates_required: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedCsr:
    """A CSR made by the target (unary GenerateCSR); its key stays pending on the target."""

    target: str
    certificate_id: str
    csr_pem: str
    subject: str
    sans: tuple[str, ...]
    key_type: str
    key_size: int
    saved_to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """A unary LoadCertificate."""

    target: str
    certificate_id: str
    fingerprint: str
    key_source: KeySource
    ca_bundle_size: int
    preflight: PreflightReport
    dry_run: bool
    not_checked: tuple[str, ...] = ()
    client_certificates_required: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaBundleResult:
    """A LoadCertificateAuthorityBundle: how many CAs, and which; whether a new connection
    without a client certificate is now refused (None: could not tell)."""

    target: str
    size: int
    fingerprints: tuple[str, ...]
    subjects: tuple[str, ...]
    client_certificates_required: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CsrCapability:
    """The CanGenerateCSR answer for one (key type, certificate type, key size)."""

    target: str
    key_type: str
    certificate_type: str
    key_size: int
    can_generate: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetTime:
    """System/Time: the target's clock, the round trip, and the offset from this host's clock."""

    target: str
    time_ns: int
    time: dt.datetime
    round_trip_s: float
    offset_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CaInfo:
    """A local CA directory: what `gnoicert ca init` made."""

    directory: str
    bundle_path: str
    root_subject: str
    root_fingerprint: str
    intermediate_subject: str | None
    key_type: str
    not_after: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCertificate:
    """A certificate the local CA signed (`gnoicert ca sign`)."""

    subject: str
    sans: tuple[str, ...]
    fingerprint: str
    not_after: dt.datetime
    certificate_pem: str
    chain_pem: str
    path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoStep:
    title: str
    detail: str
    elapsed_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What `gnoicert demo` did, step by step."""

    steps: tuple[DemoStep, ...]
    ok: bool
    elapsed_s: float
    workdir: str | None = None

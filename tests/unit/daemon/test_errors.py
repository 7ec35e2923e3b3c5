"""The error → status table of daemon/errors.py (docs/behaviour.md §2), without a server.

The expected table is written out here on its own, so a change to either side shows.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from gnoicert.daemon import errors
from gnoicert.pki import errors as pki

Code = grpc.StatusCode
TABLE: dict[type[Exception], tuple[grpc.StatusCode, str]] = {
    errors.MalformedRequest: (Code.INVALID_ARGUMENT, "MALFORMED_REQUEST"),
    errors.UndecodableRequest: (Code.INVALID_ARGUMENT, "MALFORMED_REQUEST"),
    errors.AuthModeChange: (Code.FAILED_PRECONDITION, "AUTH_MODE_CHANGE"),
    errors.Lockout: (Code.FAILED_PRECONDITION, "LOCKOUT"),
    errors.NotFinalized: (Code.ABORTED, "NOT_FINALIZED"),
    errors.FinalizeTimeout: (Code.ABORTED, "FINALIZE_TIMEOUT"),
    errors.Unauthenticated: (Code.UNAUTHENTICATED, "BAD_CREDENTIALS"),
    errors.RateLimited: (Code.UNAUTHENTICATED, "RATE_LIMITED"),
    errors.NotAuthorized: (Code.PERMISSION_DENIED, "NOT_AUTHORIZED"),
    errors.ShuttingDown: (Code.UNAVAILABLE, "SHUTTING_DOWN"),
    pki.InvalidCertificateId: (Code.INVALID_ARGUMENT, "BAD_CERT_ID"),
    pki.CertificateNotFound: (Code.NOT_FOUND, "CERT_ID_NOT_FOUND"),
    pki.CertificateExists: (Code.ALREADY_EXISTS, "CERT_ID_EXISTS"),
    pki.ResourceBusy: (Code.ABORTED, "OPERATION_IN_PROGRESS"),
    pki.InvalidMaterial: (Code.INVALID_ARGUMENT, "BAD_ENCODING"),
    pki.BadEncoding: (Code.INVALID_ARGUMENT, "BAD_ENCODING"),
    pki.KeyMismatch: (Code.INVALID_ARGUMENT, "KEY_MISMATCH"),
    pki.CsrKeyMismatch: (Code.INVALID_ARGUMENT, "CSR_KEY_MISMATCH"),
    pki.InvalidCsrParameters: (Code.INVALID_ARGUMENT, "MALFORMED_REQUEST"),
    pki.EmptyBundle: (Code.INVALID_ARGUMENT, "EMPTY_BUNDLE"),
    pki.CertificateRejected: (Code.FAILED_PRECONDITION, "CHAIN_VERIFY_FAILED"),
    pki.ChainVerificationFailed: (Code.FAILED_PRECONDITION, "CHAIN_VERIFY_FAILED"),
    pki.CertificateExpired: (Code.FAILED_PRECONDITION, "EXPIRED"),
    pki.CertificateNotYetValid: (Code.FAILED_PRECONDITION, "NOT_YET_VALID"),
    pki.BadKeyUsage: (Code.FAILED_PRECONDITION, "BAD_KEY_USAGE"),
    pki.UnsupportedKey: (Code.UNIMPLEMENTED, "UNSUPPORTED_KEY"),
    pki.StoreFailure: (Code.INTERNAL, "STORE_FAILURE"),
    pki.StoreInUse: (Code.INTERNAL, "STORE_FAILURE"),
}
INTERNAL = (Code.INTERNAL, "INTERNAL_ERROR")


def all_subclasses(cls: type[Exception]) -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def decode(status: grpc.Status) -> tuple[status_pb2.Status, error_details_pb2.ErrorInfo]:
    """The google.rpc.Status a client reads from the trailers, and its one ErrorInfo."""
    trailers = dict(status.trailing_metadata)
    rich = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert rich.code == status.code.value[0]
    assert rich.message == status.details
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    return rich, info


def make(cls: type[Exception], message: str) -> Exception:
    if cls is errors.RateLimited:
        return errors.RateLimited(message, retry_after_s=7)
    return cls(message)


@pytest.mark.parametrize(("cls", "rule"), TABLE.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_every_entry(cls: type[Exception], rule: tuple[grpc.StatusCode, str]) -> None:
    exc = make(cls, "what went wrong")
    assert errors.status_for(exc) == rule
    assert errors.reason_for(exc) == rule[1]
    rich, info = decode(errors.to_rpc_status(exc))
    assert rich.code == rule[0].value[0]
    assert (info.reason, info.domain) == (rule[1], errors.DOMAIN)
    if rule == (Code.INTERNAL, "STORE_FAILURE"):
        return
    assert rich.message == errors.message_for(exc) == "what went wrong"


def test_every_error_class_of_ours_has_an_entry() -> None:
    ours = all_subclasses(errors.TargetError) | all_subclasses(pki.PkiError)
    assert ours == set(TABLE)


def test_most_specific_class_wins() -> None:
    # Each of these also inherits a class with a different rule (or ValueError/LookupError).
    assert errors.status_for(pki.BadEncoding("x")) == TABLE[pki.BadEncoding]
    assert errors.reason_for(pki.KeyMismatch("x")) == "KEY_MISMATCH"  # not BAD_ENCODING
    assert errors.reason_for(pki.CertificateExpired("x")) == "EXPIRED"  # not CHAIN_VERIFY_FAILED

    class Narrower(pki.CsrKeyMismatch):
        pass

    class Both(errors.Lockout, pki.ResourceBusy):
        pass

    assert errors.status_for(Narrower("x")) == TABLE[pki.CsrKeyMismatch]
    assert errors.status_for(Both("x")) == TABLE[errors.Lockout]  # first in the MRO


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("boom at 0xdeadbeef"),
        ValueError("secret internals"),
        LookupError("lookup-detail-42"),
        KeyError("key-detail-42"),
        OSError(5, "disk-detail-42"),
        errors.TargetError("a bare base class"),
        pki.PkiError("a bare base class"),
        AssertionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_unknown_errors_are_internal_and_hide_their_text(exc: Exception) -> None:
    assert errors.status_for(exc) == INTERNAL
    rich, info = decode(errors.to_rpc_status(exc))
    assert rich.code == Code.INTERNAL.value[0]
    assert info.reason == "INTERNAL_ERROR"
    assert str(exc) not in rich.message or not str(exc)
    assert "rolled back" in rich.message


def test_never_unknown() -> None:
    for cls in (*TABLE, Exception, BaseException, KeyboardInterrupt, SystemExit):
        code, _reason = errors.status_for(make(cls, "x"))
        assert code is not Code.UNKNOWN
        assert code is not Code.OK


def test_only_the_rate_limit_adds_retry_info() -> None:
    rich, _ = decode(errors.to_rpc_status(errors.RateLimited("wait", retry_after_s=7)))
    retry = error_details_pb2.RetryInfo()
    assert len(rich.details) == 2
    assert rich.details[1].Unpack(retry)
    assert retry.retry_delay.seconds == 7
    plain, _ = decode(errors.to_rpc_status(errors.Unauthenticated("no")))
    assert len(plain.details) == 1

"""The one place where errors become gRPC statuses (code + google.rpc.ErrorInfo reason).

Handlers raise PKI or target errors; `abort_with` turns them into a rich status. The most
specific class in the table wins (walk of type(exc).__mro__), and anything unknown becomes
INTERNAL: no request may end in UNKNOWN.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gnoicert.pki import errors as pki

DOMAIN = "gnoicert"


class TargetError(Exception):
    """Base for the target's own refusals (protocol, authentication, policy)."""


class MalformedRequest(TargetError, ValueError):
    """Envelope with no oneof set, message out of order, missing or conflicting field."""


class UndecodableRequest(MalformedRequest):
    """Bytes that are not a valid protobuf of the request type (docs/behaviour.md §7)."""


class AuthModeChange(TargetError):
    """Rotate carrying the first CA bundle: it would switch TLS modes mid-stream."""


class Lockout(TargetError):
    """A CA bundle that would no longer verify the target's certificate or the caller's."""


class NotFinalized(TargetError):
    """The stream ended before the transaction could commit."""


class FinalizeTimeout(TargetError):
    """No Finalize arrived within the finalize deadline."""


class Unauthenticated(TargetError):
    """No credentials, or wrong ones."""


class RateLimited(Unauthenticated):
    """Too many failed attempts from the caller's host: refused without checking credentials.

    Carries the wait, sent as a google.rpc.RetryInfo detail so a client can say how long.
    """

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotAuthorized(TargetError):
    """Authenticated, but the role does not allow this RPC."""


class ShuttingDown(TargetError):
    """The daemon is stopping; the operation was rolled back."""


_RULES: dict[type[BaseException], tuple[grpc.StatusCode, str]] = {
    # target
    MalformedRequest: (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST"),
    UndecodableRequest: (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST"),
    AuthModeChange: (grpc.StatusCode.FAILED_PRECONDITION, "AUTH_MODE_CHANGE"),
    Lockout: (grpc.StatusCode.FAILED_PRECONDITION, "LOCKOUT"),
    NotFinalized: (grpc.StatusCode.ABORTED, "NOT_FINALIZED"),
    FinalizeTimeout: (grpc.StatusCode.ABORTED, "FINALIZE_TIMEOUT"),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, "BAD_CREDENTIALS"),
    RateLimited: (grpc.StatusCode.UNAUTHENTICATED, "RATE_LIMITED"),
    NotAuthorized: (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHORIZED"),
    ShuttingDown: (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN"),
    # pki
    pki.InvalidCertificateId: (grpc.StatusCode.INVALID_ARGUMENT, "BAD_CERT_ID"),
    pki.CertificateNotFound: (grpc.StatusCode.NOT_FOUND, "CERT_ID_NOT_FOUND"),
    pki.CertificateExists: (grpc.StatusCode.ALREADY_EXISTS, "CERT_ID_EXISTS"),
    pki.ResourceBusy: (grpc.StatusCode.ABORTED, "OPERATION_IN_PROGRESS"),
    pki.InvalidMaterial: (grpc.StatusCode.INVALID_ARGUMENT, "BAD_ENCODING"),
    pki.BadEncoding: (grpc.StatusCode.INVALID_ARGUMENT, "BAD_ENCODING"),
    pki.KeyMismatch: (grpc.StatusCode.INVALID_ARGUMENT, "KEY_MISMATCH"),
    pki.CsrKeyMismatch: (grpc.StatusCode.INVALID_ARGUMENT, "CSR_KEY_MISMATCH"),
    pki.InvalidCsrParameters: (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST"),
    pki.EmptyBundle: (grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_BUNDLE"),
    pki.CertificateRejected: (grpc.StatusCode.FAILED_PRECONDITION, "CHAIN_VERIFY_FAILED"),
    pki.ChainVerificationFailed: (grpc.StatusCode.FAILED_PRECONDITION, "CHAIN_VERIFY_FAILED"),
    pki.CertificateExpired: (grpc.StatusCode.FAILED_PRECONDITION, "EXPIRED"),
    pki.CertificateNotYetValid: (grpc.StatusCode.FAILED_PRECONDITION, "NOT_YET_VALID"),
    pki.BadKeyUsage: (grpc.StatusCode.FAILED_PRECONDITION, "BAD_KEY_USAGE"),
    pki.UnsupportedKey: (grpc.StatusCode.UNIMPLEMENTED, "UNSUPPORTED_KEY"),
    pki.StoreFailure: (grpc.StatusCode.INTERNAL, "STORE_FAILURE"),
    pki.StoreInUse: (grpc.StatusCode.INTERNAL, "STORE_FAILURE"),  # raised at open, never in an RPC
}
_INTERNAL = (grpc.StatusCode.INTERNAL, "INTERNAL_ERROR")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of the most specific rule for exc; INTERNAL if none."""
    for cls in type(exc).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return _INTERNAL


def reason_for(exc: BaseException) -> str:
    return status_for(exc)[1]


def message_for(exc: BaseException) -> str:
    """The person-readable message; unknown errors never show their internals."""
    if status_for(exc) is _INTERNAL:
        return "internal error in the certificate service; the operation was rolled back"
    return str(exc) or type(exc).__name__


def to_rpc_status(exc: BaseException) -> grpc.Status:
    """A rich status: code, message, an ErrorInfo{reason, domain} detail, and a RetryInfo
    detail when the caller should wait before trying again."""
    code, reason = status_for(exc)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    details = [detail]
    if isinstance(exc, RateLimited):
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay={"seconds": exc.retry_after_s}))
        details.append(retry)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=message_for(exc),
        details=details,
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def abort_with(
    context: grpc.aio.ServicerContext[object, object], exc: BaseException
) -> NoReturn:
    """End the RPC with the status that exc maps to."""
    status = to_rpc_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover

"""The client's error tree, and the one place where gRPC failures become it.

    GnoiCertError
    ├── RpcFailed              the target (or the transport) ended an RPC with a non-OK status
    │   └── RotateAborted      ... after the new certificate was loaded: the target rolled back
    ├── ValidationFailed       the rotate validation step failed; the client cancelled (rollback)
    ├── PreflightFailed        the material failed the client's checks; nothing was loaded
    ├── ProtocolError          the target answered out of order, or with an unexpected message
    ├── SignerError            the signer (local CA or external command) did not sign
    └── InputError             unreadable or unusable input files and options (also ValueError)

Every error carries the target it was about, the way httpx errors carry the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from gnoicert.client.models import CheckResult, PreflightReport

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class GnoiCertError(Exception):
    """Base of every error the client library raises on purpose."""

    def __init__(self, message: str, *, target: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.target = target


class RpcFailed(GnoiCertError):
    """An RPC ended with a non-OK status.

    `reason` is the google.rpc.ErrorInfo reason when the target sent one (gnoicertd does; other
    targets may not), else "". `rpc` is the method name ("Rotate", "Time" ...). `retry_after`
    is the google.rpc.RetryInfo delay in seconds when the target asked the caller to wait.
    """

    def __init__(
        self,
        *,
        code: grpc.StatusCode,
        details: str,
        reason: str = "",
        domain: str = "",
        target: str = "",
        rpc: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.details = details
        self.reason = reason
        self.domain = domain
        self.retry_after = retry_after
        self.rpc = str(rpc)  # a plain str, also when given a CertRpc member
        label = f"{code.name} ({reason})" if reason else code.name
        where = f"{rpc} " if rpc else ""
        super().__init__(f"{where}failed: {label}: {details}", target=target)

    @property
    def kind(self) -> FailureKind:
        """What went wrong, classified from the status code and grpcio's details text."""
        return failure_kind(self)

    @property
    def summary(self) -> str:
        """The failure in plain words (names the target, not any option that would fix it)."""
        return failure_summary(self)


class RotateAborted(RpcFailed):
    """The Rotate stream ended with an error after the load: the target rolled back."""


class FailureKind(StrEnum):
    """The RPC failures a person can act on; OTHER is everything else (see `details`)."""

    CONNECTION_REFUSED = "connection-refused"
    NAME_MISMATCH = "name-mismatch"
    UNTRUSTED_SERVER = "untrusted-server"
    NOT_TLS = "not-tls"
    CONNECTION_CLOSED = "connection-closed"
    NO_ANSWER = "no-answer"
    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"
    RATE_LIMITED = "rate-limited"
    PERMISSION_DENIED = "permission-denied"
    UNSUPPORTED_KEY = "unsupported-key"
    UNIMPLEMENTED = "unimplemented"
    DEADLINE = "deadline"
    ROLLED_BACK = "rolled-back"
    OTHER = "other"


# grpcio reports every connection-level failure as UNAVAILABLE with the C-core message in the
# details; these are the texts grpcio 1.8x produces (docs/platform-notes.md: a client refused by
# mutual TLS only sees "Socket closed" under TLS 1.3). First match wins.
_UNAVAILABLE_PATTERNS: tuple[tuple[tuple[str, ...], FailureKind], ...] = (
    (("connection refused",), FailureKind.CONNECTION_REFUSED),
    (("hostname verification", "no match found for server name"), FailureKind.NAME_MISMATCH),
    (
        ("certificate_verify_failed", "certificate verify failed"),
        FailureKind.UNTRUSTED_SERVER,
    ),
    (("wrong_version_number",), FailureKind.NOT_TLS),
    # A Go (crypto/tls) server that wants a client certificate ends the handshake with an alert
    # grpcio reports as "Unwrap failed (TSI_DATA_CORRUPTED)" rather than as a closed socket.
    (("socket closed", "connection reset", "tsi_data_corrupted"), FailureKind.CONNECTION_CLOSED),
    (("deadline", "timed out"), FailureKind.NO_ANSWER),
)

_KIND_OF_CODE: dict[grpc.StatusCode, FailureKind] = {
    grpc.StatusCode.UNAUTHENTICATED: FailureKind.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: FailureKind.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED: FailureKind.UNIMPLEMENTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: FailureKind.DEADLINE,
}


def failure_kind(exc: RpcFailed) -> FailureKind:
    """Classify an RPC failure (the basis of `summary` and of a front end's hints)."""
    if isinstance(exc, RotateAborted):
        return FailureKind.ROLLED_BACK
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        lowered = exc.details.lower()
        for patterns, kind in _UNAVAILABLE_PATTERNS:
            if any(pattern in lowered for pattern in patterns):
                return kind
        return FailureKind.UNAVAILABLE
    if exc.code == grpc.StatusCode.UNIMPLEMENTED and exc.reason == "UNSUPPORTED_KEY":
        return FailureKind.UNSUPPORTED_KEY
    if exc.code == grpc.StatusCode.UNAUTHENTICATED and (
        exc.reason == "RATE_LIMITED" or exc.retry_after is not None
    ):
        return FailureKind.RATE_LIMITED
    return _KIND_OF_CODE.get(exc.code, FailureKind.OTHER)


def failure_summary(exc: RpcFailed) -> str:
    """One line for a person; the target's details when the failure has no plainer words."""
    target = exc.target or "the target"
    details = exc.details
    wait = f"; retry in {exc.retry_after:g} s" if exc.retry_after is not None else ""
    summaries = {
        FailureKind.CONNECTION_REFUSED: f"connection refused by {target}",
        FailureKind.NAME_MISMATCH: f"TLS name mismatch: the certificate of {target} does not "
        "name the address dialled",
        FailureKind.UNTRUSTED_SERVER: f"untrusted server: the certificate of {target} does not "
        "chain to the trusted CAs",
        FailureKind.NOT_TLS: f"{target} did not answer TLS",
        FailureKind.CONNECTION_CLOSED: f"{target} closed the connection right after connecting",
        FailureKind.NO_ANSWER: f"{target} did not answer in time",
        FailureKind.UNAUTHENTICATED: f"authentication failed on {target}: {details}",
        FailureKind.RATE_LIMITED: f"{target} refuses logins from this host for a while after "
        f"too many failed attempts{wait}",
        FailureKind.PERMISSION_DENIED: f"not allowed on {target}: {details}",
        FailureKind.UNSUPPORTED_KEY: f"{target} cannot generate that key: {details}",
        FailureKind.UNIMPLEMENTED: f"the target does not implement {exc.rpc or 'this RPC'}",
        FailureKind.DEADLINE: f"{target} did not answer within the deadline",
    }
    # Otherwise the target's own words; the status code is the front end's to show, once.
    return summaries.get(exc.kind, f"{exc.rpc or 'the call'} failed on {target}: {details}")


class ValidationFailed(GnoiCertError):
    """The rotate validation step failed; the client cancelled the stream (target rolls back)."""

    def __init__(
        self, *, certificate_id: str, checks: tuple[CheckResult, ...], target: str = ""
    ) -> None:
        self.certificate_id = certificate_id
        self.checks = checks
        failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if c.status == "fail")
        super().__init__(
            f"validation of the new certificate for {certificate_id!r} failed ({failed}); "
            "the rotation was cancelled and the target rolls back",
            target=target,
        )


class PreflightFailed(GnoiCertError):
    """The certificate failed the client's own checks; nothing was loaded on the target (a
    stream already opened for a target-generated CSR was cancelled)."""

    def __init__(self, *, report: PreflightReport, target: str = "") -> None:
        self.report = report
        failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())
        super().__init__(f"preflight failed: {failed}", target=target)


class ProtocolError(GnoiCertError):
    """The target broke the message order of the service (wrong or missing response)."""


class SignerError(GnoiCertError):
    """The signer could not produce a certificate for the CSR."""


class InputError(GnoiCertError, ValueError):
    """An input file or option the client cannot use (missing, unreadable, wrong format).

    Structured so a front end can point at its own spelling of the option: `field` is the
    library's name for it ("ca_file", "key_source", ...), `check` names the rule that failed
    ("no-pem-certificate", "key-mismatch", ...), `path` the file involved and `detail` the
    variable part of the message (a subject, a list of files). All are "" when not relevant.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        check: str = "",
        path: str = "",
        detail: str = "",
        target: str = "",
    ) -> None:
        super().__init__(message, target=target)
        self.field = field
        self.check = check
        self.path = path
        self.detail = detail


def _status_details(exc: grpc.aio.AioRpcError) -> Iterator[any_pb2.Any]:
    """The details of the rich status in the trailing metadata (none when absent or unreadable).

    Parsed by hand rather than with grpc_status.rpc_status.from_call, which raises when the
    status message and the RPC details differ: a detail we cannot read is simply absent.
    """
    for key, value in exc.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return
        yield from status.details


def error_info(exc: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(reason, domain) of the google.rpc.ErrorInfo detail, or ("", "") when there is none."""
    for detail in _status_details(exc):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, info.domain
    return "", ""


def retry_delay(exc: grpc.aio.AioRpcError) -> float | None:
    """Seconds of the google.rpc.RetryInfo detail, or None when the target sent none."""
    for detail in _status_details(exc):
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                delay: float = info.retry_delay.ToTimedelta().total_seconds()
                return delay
    return None


def rpc_failed(
    exc: grpc.aio.AioRpcError, *, target: str, rpc: str, after_load: bool = False
) -> RpcFailed:
    """Translate one grpc.aio failure; `after_load` marks a Rotate that the target rolled back."""
    reason, domain = error_info(exc)
    cls = RotateAborted if after_load else RpcFailed
    return cls(
        code=exc.code(),
        details=exc.details() or "",
        reason=reason,
        domain=domain,
        target=target,
        rpc=rpc,
        retry_after=retry_delay(exc),
    )


@contextmanager
def translate_rpc_errors(*, target: str, rpc: str) -> Iterator[None]:
    """Turn grpc.aio.AioRpcError raised inside the block into RpcFailed (works across awaits)."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise rpc_failed(exc, target=target, rpc=rpc) from exc

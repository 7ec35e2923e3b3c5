"""Errors a person understands: the library's plain-words summary, and the option that fixes it.

The library classifies RPC failures (`RpcFailed.kind`, client/errors.py) and words them
(`RpcFailed.summary`); this module adds the hint, which names the command's flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from gnoicert.cli.errors import input_message
from gnoicert.client.errors import (
    FailureKind,
    GnoiCertError,
    InputError,
    PreflightFailed,
    ProtocolError,
    RpcFailed,
    SignerError,
    ValidationFailed,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialled:
    """The connection options the command was given: some failures need other words then
    (a name mismatch with --server-name, a closed connection after --insecure)."""

    server_name: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """A one-line summary for a person, and the hint that fixes it ("" when there is none)."""

    summary: str
    hint: str


def explain(exc: BaseException, dialled: Dialled | None = None) -> Explanation:
    """Summary and hint for any error the client raises (or an OSError from a file)."""
    if isinstance(exc, RpcFailed):
        return _explain_rpc(exc, dialled or Dialled())
    if isinstance(exc, ValidationFailed):
        return Explanation(
            summary=str(exc),
            hint="check that the new certificate's SANs cover the address you dial "
            "(or --server-name) and that the CA bundle trusts it; nothing was committed",
        )
    if isinstance(exc, PreflightFailed):
        return _explain_preflight(exc)
    if isinstance(exc, SignerError):
        return Explanation(summary=f"signing failed: {exc}", hint="check the CA or signer command")
    if isinstance(exc, ProtocolError):
        return Explanation(
            summary=f"unexpected answer from the target: {exc}",
            hint="the target does not follow the gNOI certificate message order",
        )
    if isinstance(exc, InputError):
        return Explanation(summary=input_message(exc), hint="")
    if isinstance(exc, GnoiCertError):
        return Explanation(summary=str(exc), hint="")
    if isinstance(exc, OSError):
        name = f" {exc.filename}" if exc.filename else ""
        return Explanation(summary=f"{exc.strerror or exc}{name}", hint="")
    return Explanation(summary=f"{type(exc).__name__}: {exc}", hint="")


# The option that fixes each kind of failure; the plain-words summary is the library's.
_HINTS: dict[FailureKind, str] = {
    FailureKind.ROLLED_BACK: "the target rolled the certificate back; it still serves the old one",
    FailureKind.CONNECTION_REFUSED: "is the target running, and listening on that address and "
    "port (--target)?",
    FailureKind.NAME_MISMATCH: "pass --server-name with a DNS name from the target "
    "certificate's SANs",
    FailureKind.UNTRUSTED_SERVER: "pass --ca-file with the CA (or factory certificate) that "
    "issued the target's certificate",
    FailureKind.NOT_TLS: "the target may serve plaintext; use --insecure only if that is intended",
    FailureKind.CONNECTION_CLOSED: "the server may require a client certificate from its CA "
    "bundle (mutual TLS): pass --cert and --key signed by a CA in that bundle",
    FailureKind.NO_ANSWER: "check the address and the network path; raise --timeout if it is slow",
    FailureKind.UNAVAILABLE: "check --target and the network path",
    FailureKind.UNAUTHENTICATED: "check --username and the password (--password-env VAR or "
    "--password-file FILE), or the client certificate (--cert/--key)",
    FailureKind.PERMISSION_DENIED: "this user's role does not allow the operation; use an "
    "account with the admin role",
    FailureKind.UNSUPPORTED_KEY: "use --key-source client (this client makes the key) or "
    "another --key-size",
    FailureKind.UNIMPLEMENTED: "this device does not support that gNOI operation",
    FailureKind.DEADLINE: "raise --timeout, or check that the target is not overloaded",
}

_HINTS_BY_CODE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.ALREADY_EXISTS: "use rotate to replace an existing certificate",
    grpc.StatusCode.NOT_FOUND: "use install for a new certificate ID",
}


def _explain_preflight(exc: PreflightFailed) -> Explanation:
    failed = {check.name: check.detail for check in exc.report.failures()}
    hint = "fix the certificate or the CA (nothing was loaded); --no-preflight skips these checks"
    detail = failed.get("certificate-id", "")
    if "gRPC server's certificate" in detail:
        hint = (
            "use rotate to replace the server's certificate (validated on a new connection, "
            "rolled back on failure); --force loads it anyway"
        )
    elif "already exists" in detail:
        hint = "use rotate to replace an existing certificate"
    elif "is not on the target" in detail:
        hint = "use install for a new certificate ID"
    return Explanation(summary=str(exc), hint=hint)


def _explain_rpc(exc: RpcFailed, dialled: Dialled) -> Explanation:
    kind, summary = exc.kind, exc.summary
    hint = _HINTS.get(kind) or _HINTS_BY_CODE.get(exc.code, "")
    if exc.code == grpc.StatusCode.ABORTED and exc.reason == "OPERATION_IN_PROGRESS":
        hint = "another operation holds that certificate ID or the CA bundle; retry later"
    if kind == FailureKind.RATE_LIMITED:
        wait = f"{exc.retry_after:g} s" if exc.retry_after is not None else "a while"
        hint = (
            f"wait {wait} before trying again: until then the target refuses every login "
            "from this host, the right password included"
        )
    elif kind == FailureKind.NAME_MISMATCH and dialled.server_name:
        target = exc.target or "the target"
        summary = (
            f"TLS name mismatch: {dialled.server_name!r} (--server-name) is not among the SANs "
            f"of the certificate of {target}"
        )
        hint = (
            "give --server-name a DNS name the certificate lists, or drop it to check the address"
        )
    elif dialled.insecure and kind in (FailureKind.CONNECTION_CLOSED, FailureKind.UNAVAILABLE):
        hint = "the target speaks TLS: drop --insecure and pass --ca-file with the CA that issued "
        hint += "its certificate"
    return Explanation(summary=summary, hint=hint)

"""Errors a person understands: what went wrong in plain words, and the option that fixes it.

grpcio reports every connection-level failure as UNAVAILABLE with the C-core message in the
details; the patterns below are the ones grpcio 1.8x produces (see docs/platform-notes.md: a client
refused by mutual TLS only sees "Socket closed" under TLS 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from gnoicert.cli.errors import input_message
from gnoicert.client.errors import (
    GnoiCertError,
    InputError,
    PreflightFailed,
    ProtocolError,
    RotateAborted,
    RpcFailed,
    SignerError,
    ValidationFailed,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """A one-line summary for a person, and the hint that fixes it ("" when there is none)."""

    summary: str
    hint: str


def explain(exc: BaseException) -> Explanation:
    """Summary and hint for any error the client raises (or an OSError from a file)."""
    if isinstance(exc, RpcFailed):
        return _explain_rpc(exc)
    if isinstance(exc, ValidationFailed):
        return Explanation(
            summary=str(exc),
            hint="check that the new certificate's SANs cover the address you dial "
            "(or --server-name) and that the CA bundle trusts it; nothing was committed",
        )
    if isinstance(exc, PreflightFailed):
        return Explanation(
            summary=str(exc),
            hint="fix the certificate or the CA (nothing was loaded); --no-preflight skips "
            "these checks",
        )
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


def _explain_rpc(exc: RpcFailed) -> Explanation:
    target = exc.target or "the target"
    details = exc.details
    lowered = details.lower()
    summary = str(exc)
    if isinstance(exc, RotateAborted):
        return Explanation(
            summary=summary,
            hint="the target rolled the certificate back; it still serves the old one",
        )
    code = exc.code
    if code == grpc.StatusCode.UNAVAILABLE:
        if "connection refused" in lowered:
            return Explanation(
                summary=f"connection refused by {target}",
                hint="is the target running, and listening on that address and port (--target)?",
            )
        if "hostname verification" in lowered or "no match found for server name" in lowered:
            return Explanation(
                summary=f"TLS name mismatch: the certificate of {target} does not name the "
                "address dialled",
                hint="pass --server-name with a DNS name from the target certificate's SANs",
            )
        if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
            return Explanation(
                summary=f"untrusted server: the certificate of {target} does not chain to the "
                "trusted CAs",
                hint="pass --ca-file with the CA (or factory certificate) that issued the "
                "target's certificate",
            )
        if "wrong_version_number" in lowered:
            return Explanation(
                summary=f"{target} did not answer TLS",
                hint="the target may serve plaintext; use --insecure only if that is intended",
            )
        if "socket closed" in lowered or "connection reset" in lowered:
            return Explanation(
                summary=f"{target} closed the connection right after connecting",
                hint="the server may require a client certificate from its CA bundle "
                "(mutual TLS): pass --cert and --key signed by a CA in that bundle",
            )
        if "deadline" in lowered or "timed out" in lowered:
            return Explanation(
                summary=f"{target} did not answer in time",
                hint="check the address and the network path; raise --timeout if it is slow",
            )
        return Explanation(summary=summary, hint="check --target and the network path")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Explanation(
            summary=f"authentication failed on {target}: {details}",
            hint="check --username and the password (--password-env VAR or --password-file "
            "FILE), or the client certificate (--cert/--key)",
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return Explanation(
            summary=f"not allowed on {target}: {details}",
            hint="this user's role does not allow the operation; use an account with the "
            "admin role",
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        what = exc.rpc or "this RPC"
        if exc.reason == "UNSUPPORTED_KEY":
            return Explanation(
                summary=f"{target} cannot generate that key: {details}",
                hint="use --key-source client (this client makes the key) or another --key-size",
            )
        return Explanation(
            summary=f"the target does not implement {what}",
            hint="this device does not support that gNOI operation",
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Explanation(
            summary=f"{target} did not answer within the deadline",
            hint="raise --timeout, or check that the target is not overloaded",
        )
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return Explanation(summary=summary, hint="use rotate to replace an existing certificate")
    if code == grpc.StatusCode.NOT_FOUND:
        return Explanation(summary=summary, hint="use install for a new certificate ID")
    if code == grpc.StatusCode.ABORTED:
        return Explanation(
            summary=summary,
            hint="another operation holds that certificate ID or the CA bundle; retry later"
            if exc.reason == "OPERATION_IN_PROGRESS"
            else "",
        )
    return Explanation(summary=summary, hint="")

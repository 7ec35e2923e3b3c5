"""gRPC failures become RpcFailed (with the ErrorInfo reason when sent); hints for people."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gnoicert.cli.hints import explain
from gnoicert.client.errors import (
    FailureKind,
    GnoiCertError,
    InputError,
    PreflightFailed,
    ProtocolError,
    RotateAborted,
    RpcFailed,
    SignerError,
    ValidationFailed,
    error_info,
    rpc_failed,
    translate_rpc_errors,
)
from gnoicert.client.models import CheckResult, PreflightReport


def _aio_error(
    code: grpc.StatusCode, details: str, *, reason: str | None = None, raw: bytes | None = None
) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if reason is not None:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="gnoicert"))
        status = status_pb2.Status(code=code.value[0], message=details, details=[info])
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    if raw is not None:
        trailing.add("grpc-status-details-bin", raw)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


class TestTranslation:
    def test_reason_from_error_info(self) -> None:
        exc = _aio_error(grpc.StatusCode.ALREADY_EXISTS, "exists", reason="CERT_ID_EXISTS")
        assert error_info(exc) == ("CERT_ID_EXISTS", "gnoicert")
        failed = rpc_failed(exc, target="t:1", rpc="Install")
        assert failed.code is grpc.StatusCode.ALREADY_EXISTS
        assert failed.reason == "CERT_ID_EXISTS"
        assert failed.details == "exists"
        assert failed.target == "t:1"
        assert str(failed) == "Install failed: ALREADY_EXISTS (CERT_ID_EXISTS): exists"

    def test_no_details_means_no_reason(self) -> None:
        # Other targets need not send ErrorInfo: the code and message still come through.
        failed = rpc_failed(_aio_error(grpc.StatusCode.INTERNAL, "boom"), target="t", rpc="X")
        assert failed.reason == ""
        assert str(failed) == "X failed: INTERNAL: boom"

    def test_undecodable_details_are_ignored(self) -> None:
        exc = _aio_error(grpc.StatusCode.INTERNAL, "boom", raw=b"\xff\xff\xff")
        assert error_info(exc) == ("", "")

    def test_status_without_error_info(self) -> None:
        status = status_pb2.Status(code=code_pb2.INTERNAL, message="boom")
        exc = _aio_error(grpc.StatusCode.INTERNAL, "boom", raw=status.SerializeToString())
        assert error_info(exc) == ("", "")

    def test_after_load_means_rotate_aborted(self) -> None:
        exc = _aio_error(grpc.StatusCode.ABORTED, "late", reason="FINALIZE_TIMEOUT")
        failed = rpc_failed(exc, target="t", rpc="Rotate", after_load=True)
        assert isinstance(failed, RotateAborted)
        assert isinstance(failed, RpcFailed)

    async def test_context_manager_translates_across_awaits(self) -> None:
        async def fail() -> None:
            raise _aio_error(grpc.StatusCode.NOT_FOUND, "gone", reason="CERT_ID_NOT_FOUND")

        with pytest.raises(RpcFailed) as caught, translate_rpc_errors(target="t", rpc="Rotate"):
            await fail()
        assert caught.value.reason == "CERT_ID_NOT_FOUND"
        assert caught.value.rpc == "Rotate"

    def test_one_base_for_everything(self) -> None:
        for cls in (
            RpcFailed,
            ValidationFailed,
            PreflightFailed,
            ProtocolError,
            SignerError,
            InputError,
        ):
            assert issubclass(cls, GnoiCertError)
        assert issubclass(InputError, ValueError)


def _rpc(code: grpc.StatusCode, details: str, reason: str = "", rpc: str = "Rotate") -> RpcFailed:
    return RpcFailed(code=code, details=details, reason=reason, target="192.0.2.1:9339", rpc=rpc)


class TestHints:
    @pytest.mark.parametrize(
        ("details", "summary", "hint"),
        [
            (
                "failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.1:9339: "
                "Failed to connect to remote host: Connection refused",
                "connection refused",
                "--target",
            ),
            (
                "failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:1: Custom "
                "verification check failed with error: UNAUTHENTICATED: Hostname Verification "
                "Check failed.",
                "TLS name mismatch",
                "--server-name",
            ),
            (
                "failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:1: Tls "
                "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
                "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer",
                "untrusted server",
                "--ca-file",
            ),
            (
                "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:1: "
                "Socket closed",
                "closed the connection",
                "client certificate",
            ),
            (
                "failed to connect to all addresses; last error: UNKNOWN: ... WRONG_VERSION_NUMBER",
                "did not answer TLS",
                "--insecure",
            ),
        ],
    )
    def test_connection_failures(self, details: str, summary: str, hint: str) -> None:
        explanation = explain(_rpc(grpc.StatusCode.UNAVAILABLE, details))
        assert summary in explanation.summary
        assert hint in explanation.hint

    def test_authentication(self) -> None:
        explanation = explain(
            _rpc(grpc.StatusCode.UNAUTHENTICATED, "bad password", "BAD_CREDENTIALS")
        )
        assert "authentication failed" in explanation.summary
        assert "--password-env" in explanation.hint

    @pytest.mark.parametrize("rpc", ["Rotate", "GetCertificates", "Time", "CanGenerateCSR"])
    def test_unimplemented_names_the_rpc(self, rpc: str) -> None:
        explanation = explain(_rpc(grpc.StatusCode.UNIMPLEMENTED, "Method not found!", rpc=rpc))
        assert explanation.summary == f"the target does not implement {rpc}"

    def test_unsupported_key_is_not_a_missing_rpc(self) -> None:
        exc = _rpc(grpc.StatusCode.UNIMPLEMENTED, "no 8192", "UNSUPPORTED_KEY", rpc="Install")
        assert "--key-source client" in explain(exc).hint

    @pytest.mark.parametrize(
        ("code", "reason", "hint"),
        [
            (grpc.StatusCode.ALREADY_EXISTS, "CERT_ID_EXISTS", "rotate"),
            (grpc.StatusCode.NOT_FOUND, "CERT_ID_NOT_FOUND", "install"),
            (grpc.StatusCode.ABORTED, "OPERATION_IN_PROGRESS", "retry"),
            (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHORIZED", "admin"),
            (grpc.StatusCode.DEADLINE_EXCEEDED, "", "--timeout"),
        ],
    )
    def test_refusals(self, code: grpc.StatusCode, reason: str, hint: str) -> None:
        assert hint in explain(_rpc(code, "details", reason)).hint

    def test_rotate_aborted_says_rolled_back(self) -> None:
        exc = RotateAborted(code=grpc.StatusCode.ABORTED, details="timeout", rpc="Rotate")
        assert "rolled" in explain(exc).hint

    def test_validation_and_preflight(self) -> None:
        failed = CheckResult(name="san", status="fail", detail="no DNS SAN matches r1")
        validation = ValidationFailed(certificate_id="gnoi-server", checks=(failed,), target="t")
        assert "no DNS SAN matches r1" in explain(validation).summary
        assert "rolls back" in str(validation)
        preflight = PreflightFailed(report=PreflightReport.from_checks([failed]))
        assert "preflight failed: san" in explain(preflight).summary
        assert "--no-preflight" in explain(preflight).hint

    def test_other_errors(self) -> None:
        assert "signing failed" in explain(SignerError("no")).summary
        assert explain(InputError("bad file")).summary == "bad file"
        assert "No such file" in explain(FileNotFoundError(2, "No such file", "x.pem")).summary
        assert explain(RuntimeError("odd")).summary == "RuntimeError: odd"


class TestSummary:
    """The library words a failure without naming any command-line flag."""

    @pytest.mark.parametrize(
        ("code", "details", "reason", "kind"),
        [
            (
                grpc.StatusCode.UNAVAILABLE,
                "x: Connection refused",
                "",
                FailureKind.CONNECTION_REFUSED,
            ),
            (
                grpc.StatusCode.UNAVAILABLE,
                "Hostname Verification Check failed",
                "",
                FailureKind.NAME_MISMATCH,
            ),
            (
                grpc.StatusCode.UNAVAILABLE,
                "CERTIFICATE_VERIFY_FAILED",
                "",
                FailureKind.UNTRUSTED_SERVER,
            ),
            (grpc.StatusCode.UNAVAILABLE, "WRONG_VERSION_NUMBER", "", FailureKind.NOT_TLS),
            (grpc.StatusCode.UNAVAILABLE, "Socket closed", "", FailureKind.CONNECTION_CLOSED),
            (grpc.StatusCode.UNAVAILABLE, "Deadline Exceeded", "", FailureKind.NO_ANSWER),
            (grpc.StatusCode.UNAVAILABLE, "something new", "", FailureKind.UNAVAILABLE),
            (grpc.StatusCode.UNAUTHENTICATED, "bad password", "", FailureKind.UNAUTHENTICATED),
            (grpc.StatusCode.PERMISSION_DENIED, "role", "", FailureKind.PERMISSION_DENIED),
            (grpc.StatusCode.UNIMPLEMENTED, "no", "UNSUPPORTED_KEY", FailureKind.UNSUPPORTED_KEY),
            (grpc.StatusCode.UNIMPLEMENTED, "", "", FailureKind.UNIMPLEMENTED),
            (grpc.StatusCode.DEADLINE_EXCEEDED, "", "", FailureKind.DEADLINE),
            (grpc.StatusCode.NOT_FOUND, "no such ID", "", FailureKind.OTHER),
        ],
    )
    def test_kinds_and_flag_free_summaries(
        self, code: grpc.StatusCode, details: str, reason: str, kind: FailureKind
    ) -> None:
        exc = RpcFailed(
            code=code, details=details, reason=reason, target="192.0.2.1:9339", rpc="Get"
        )
        assert exc.kind is kind
        assert "--" not in exc.summary
        if kind is FailureKind.OTHER:
            assert exc.summary == "Get failed on 192.0.2.1:9339: no such ID"
        else:
            assert "192.0.2.1:9339" in exc.summary or "Get" in exc.summary

    def test_rolled_back_keeps_the_status_text(self) -> None:
        exc = RotateAborted(code=grpc.StatusCode.INTERNAL, details="boom", rpc="Rotate")
        assert exc.kind is FailureKind.ROLLED_BACK
        assert exc.summary == "Rotate failed on the target: boom"

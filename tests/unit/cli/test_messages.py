"""Messages that fit the error: hints that depend on what was typed, the status printed once,
input refused before dialling, and gnoic habits answered with our option names."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gnoicert.cli.hints import Dialled, explain
from gnoicert.cli.main import EXIT_USAGE, main, status_line
from gnoicert.client.errors import RpcFailed

TARGET = "192.0.2.1:9339"
NAME_MISMATCH = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.1:9339: Custom "
    "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
)
SOCKET_CLOSED = "failed to connect to all addresses; last error: UNAVAILABLE: x: Socket closed"
GO_ALERT = (
    "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
    "Unwrap failed (TSI_DATA_CORRUPTED)"
)


def _rpc(
    code: grpc.StatusCode, details: str, reason: str = "", retry_after: float | None = None
) -> RpcFailed:
    return RpcFailed(
        code=code, details=details, reason=reason, target=TARGET, rpc="Time",
        retry_after=retry_after,
    )  # fmt: skip


class TestHints:
    def test_rate_limit_says_how_long_to_wait(self) -> None:
        exc = _rpc(grpc.StatusCode.UNAUTHENTICATED, "too many ...", "RATE_LIMITED", 42.0)
        explanation = explain(exc)
        assert "retry in 42 s" in explanation.summary
        assert explanation.hint.startswith("wait 42 s before trying again")
        assert "password" not in explanation.hint.replace("the right password included", "")

    def test_rate_limit_without_a_delay(self) -> None:
        exc = _rpc(grpc.StatusCode.UNAUTHENTICATED, "too many ...", "RATE_LIMITED")
        assert explain(exc).hint.startswith("wait a while")

    def test_name_mismatch_with_server_name_given(self) -> None:
        exc = _rpc(grpc.StatusCode.UNAVAILABLE, NAME_MISMATCH)
        explanation = explain(exc, Dialled(server_name="wrong.example.net"))
        assert "'wrong.example.net' (--server-name) is not among the SANs" in explanation.summary
        assert "pass --server-name" not in explanation.hint
        assert "pass --server-name" in explain(exc).hint  # without it, the advice stands

    def test_insecure_against_tls_is_about_tls(self) -> None:
        hint = explain(_rpc(grpc.StatusCode.UNAVAILABLE, SOCKET_CLOSED), Dialled(insecure=True))
        assert hint.hint.startswith("the target speaks TLS: drop --insecure and pass --ca-file")
        assert "client certificate" not in hint.hint

    def test_go_tls_alert_gets_the_mutual_tls_hint(self) -> None:
        assert "pass --cert and --key" in explain(_rpc(grpc.StatusCode.UNAVAILABLE, GO_ALERT)).hint


class TestStatusOnce:
    def test_details_in_the_summary_are_not_repeated(self) -> None:
        exc = _rpc(grpc.StatusCode.PERMISSION_DENIED, "role reader may not", "NOT_AUTHORIZED")
        summary = explain(exc).summary
        line = status_line(exc, summary)
        assert line == "  gRPC status: PERMISSION_DENIED (NOT_AUTHORIZED)"
        assert (summary + line).count("role reader may not") == 1

    def test_plain_status_of_an_unclassified_failure(self) -> None:
        exc = _rpc(grpc.StatusCode.NOT_FOUND, "no such ID", "CERT_ID_NOT_FOUND")
        summary = explain(exc).summary
        assert summary == f"Time failed on {TARGET}: no such ID"
        assert status_line(exc, summary) == "  gRPC status: NOT_FOUND (CERT_ID_NOT_FOUND)"

    def test_details_the_summary_leaves_out_are_shown(self) -> None:
        exc = _rpc(grpc.StatusCode.UNAVAILABLE, NAME_MISMATCH)
        assert status_line(exc, explain(exc).summary).endswith(NAME_MISMATCH)


class TestCaughtBeforeDialling:
    """A closed port: had the command dialled, it would say "connection refused" (exit 1)."""

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["install", "a/b", "--ca-dir", "ca"], "invalid certificate ID 'a/b'"),
            (["rotate", ".hidden", "--ca-dir", "ca"], "invalid certificate ID '.hidden'"),
            (["load", "x" * 65, "cert.pem"], "invalid certificate ID"),
            (["revoke", "ok", "bad id"], "invalid certificate ID 'bad id'"),
            (["generate-csr", "ok", "--country", "USA"], "--country 'USA' is not a two-letter"),
            (["install", "ok", "--ca-dir", "ca", "--country", "U"], "--country 'U'"),
            (["generate-csr", "ok", "--ip", "1.2.3"], "--ip-address '1.2.3' is not an IPv4"),
        ],
    )
    def test_refused_without_a_round_trip(
        self,
        argv: list[str],
        message: str,
        closed_port: int,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        code = main([*argv, "--target", f"127.0.0.1:{closed_port}", "--timeout", "5"])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, err
        assert message in err
        assert "connection refused" not in err

    def test_the_ca_bundle_id_may_be_revoked(
        self, closed_port: int, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["revoke", "gnoi-ca-bundle", "--target", f"127.0.0.1:{closed_port}"])
        assert code == 1  # dialled: the reserved ID is how a target leaves mutual TLS
        assert "connection refused" in capsys.readouterr().err

    def test_ca_issue_ip(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = ["--out-cert", str(tmp_path / "c.pem"), "--out-key", str(tmp_path / "c.key")]
        code = main(["ca", "issue", str(tmp_path / "ca"), "op", "--ip", "300.1.1.1", *out])
        assert code == EXIT_USAGE
        assert "--ip '300.1.1.1' is not an IPv4 or IPv6 address" in capsys.readouterr().err


class TestParserMessages:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["-a", "HOST", "get"], "unknown option -a; did you mean -t / --target?"),
            (["time", "-a", "HOST"], "unknown option -a; did you mean -t / --target?"),
            (["get", "--format", "json"], "unknown option --format; did you mean --json / "),
            (["--tls-ca", "ca.pem", "get"], "unknown option --tls-ca; did you mean --ca-file?"),
            (["get", "--timout", "3"], "unknown option --timout; did you mean --timeout?"),
            (["time", "--bogus"], "unknown option --bogus\n"),
        ],
    )
    def test_unknown_options(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(argv) == EXIT_USAGE
        assert f"gnoicert: error: {message}" in capsys.readouterr().err

    def test_known_short_clusters_are_not_unknown(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["-vv", "frobnicate"]) == EXIT_USAGE
        assert "invalid choice: 'frobnicate'" in capsys.readouterr().err

    def test_missing_args_file_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = tmp_path / "args.txt"
        assert main([f"@{missing}", "time"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err == f"gnoicert: cannot read args file {missing}: No such file or directory\n"

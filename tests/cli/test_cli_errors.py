"""Failures a person understands, usage errors, exit codes, and @args files for the CLI itself.

One gnoicertd in its factory state (server-only TLS); the refused connection uses a loopback
port that is bound but not listening, so it refuses for certain.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import (
    PASSWORD_ENV,
    Lab,
    cli_environment,
    expect,
    gnoicert_command,
    run_cli,
    start_lab,
)
from tests.support.pki import TestCA
from tests.support.target import PASSWORDS


@pytest.fixture(scope="module")
def factory(lab: Lab) -> tuple[str, ...]:
    """Server-only TLS trusting the factory certificate, as admin."""
    return lab.connection(lab.factory_pem)


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("foreign") / "ca"
    expect(run_cli("ca", "init", str(directory), "--key-type", "ecdsa"), 0)
    return directory / "ca.pem"


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound by this test but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def error_of(run_json: object) -> dict[str, str]:
    assert isinstance(run_json, dict)
    assert run_json["ok"] is False
    error = run_json["error"]
    assert isinstance(error, dict)
    return error


class TestErrorsAPersonUnderstands:
    def test_connection_refused(self, lab: Lab, refusing_port: int) -> None:
        run = expect(
            run_cli(
                "time", "--target", f"127.0.0.1:{refusing_port}",
                "--ca-file", str(lab.factory_pem), "--json",
            ),
            1,
        )  # fmt: skip
        error = error_of(run.json())
        assert error["message"] == f"connection refused by 127.0.0.1:{refusing_port}"
        assert error["code"] == "UNAVAILABLE"
        assert "is the target running" in error["hint"]
        assert f"gnoicert: connection refused by 127.0.0.1:{refusing_port}" in run.stderr
        assert "hint: is the target running, and listening on that address" in run.stderr

    def test_untrusted_server(self, lab: Lab, foreign_ca: Path) -> None:
        run = expect(run_cli("time", *lab.connection(foreign_ca)), 1)
        assert f"untrusted server: the certificate of {lab.address} does not chain" in run.stderr
        assert "hint: pass --ca-file with the CA (or factory certificate)" in run.stderr

    def test_tls_name_mismatch_with_server_name(self, factory: tuple[str, ...]) -> None:
        """The name was given: say it is not in the SANs, not "pass --server-name"."""
        run = expect(run_cli("time", *factory, "--server-name", "wrong.example.net"), 1)
        assert (
            "gnoicert: TLS name mismatch: 'wrong.example.net' (--server-name) is not among "
            f"the SANs of the certificate of {factory[1]}"
        ) in run.stderr
        assert "hint: give --server-name a DNS name the certificate lists" in run.stderr
        assert "pass --server-name" not in run.stderr

    def test_insecure_against_a_tls_target(self, lab: Lab) -> None:
        run = expect(run_cli("time", "--target", lab.address, "--insecure"), 1)
        assert "hint: the target speaks TLS: drop --insecure and pass --ca-file" in run.stderr
        assert "client certificate" not in run.stderr

    def test_summary_hint_and_status_once(self, lab: Lab) -> None:
        """One summary line, the status once (the details are in the summary), one hint."""
        run = expect(run_cli("revoke", "x", *lab.connection(lab.factory_pem, user="reader")), 1)
        lines = run.stderr.splitlines()
        assert len(lines) == 3, run.stderr
        assert lines[0].startswith(f"gnoicert: not allowed on {lab.address}: ")
        assert lines[1] == "  gRPC status: PERMISSION_DENIED (NOT_AUTHORIZED)"
        assert lines[2].startswith("  hint: ")
        assert run.stderr.count("PERMISSION_DENIED") == 1

    def test_authentication_failed(self, lab: Lab) -> None:
        run = expect(
            run_cli(
                "time", *lab.connection(lab.factory_pem), "--json",
                env={PASSWORD_ENV["admin"]: "not-the-password"},
            ),
            1,
        )  # fmt: skip
        error = error_of(run.json())
        assert (error["code"], error["reason"]) == ("UNAUTHENTICATED", "BAD_CREDENTIALS")
        assert error["message"].startswith(f"authentication failed on {lab.address}")
        assert "hint: check --username and the password" in run.stderr

    def test_no_credentials(self, lab: Lab) -> None:
        run = expect(run_cli("time", *lab.connection(lab.factory_pem, user=None)), 1)
        assert "authentication failed" in run.stderr
        assert "--username" in run.stderr

    def test_read_only_user_cannot_revoke(self, lab: Lab) -> None:
        run = expect(
            run_cli("revoke", "x", *lab.connection(lab.factory_pem, user="reader"), "--json"), 1
        )
        error = error_of(run.json())
        assert error["code"] == "PERMISSION_DENIED"
        assert "admin role" in error["hint"]

    def test_password_from_a_file(self, lab: Lab, tmp_path: Path) -> None:
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORDS["admin"] + "\n")
        password_file.chmod(0o600)
        expect(
            run_cli(
                "time", "--target", lab.address, "--ca-file", str(lab.factory_pem),
                "-u", "admin", "--password-file", str(password_file),
            ),
            0,
        )  # fmt: skip

    @pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
    def test_stdout_closed_early(self, factory: tuple[str, ...], buffered: bool) -> None:
        """`gnoicert get --json | head -0`: no traceback, a failure exit status, whether the
        write fails at once (PYTHONUNBUFFERED) or only when stdout is flushed at the end."""
        env = cli_environment()
        if buffered:
            env.pop("PYTHONUNBUFFERED", None)
        else:
            env["PYTHONUNBUFFERED"] = "1"
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            completed = subprocess.run(
                [*gnoicert_command(), "time", *factory, "--json"],
                stdout=write_end,
                stderr=subprocess.PIPE,
                env=env,
                timeout=60,
                check=False,
            )
        finally:
            os.close(write_end)
        assert completed.returncode == 1
        assert b"Traceback" not in completed.stderr
        assert b"Exception ignored" not in completed.stderr


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (("time", "--bogus"), "unknown option --bogus"),
            (("-a", "127.0.0.1:1", "time"), "unknown option -a; did you mean -t / --target?"),
            (("install",), "the following arguments are required: ID"),
            (("time", "--timeout", "-1"), "argument --timeout: must be positive"),
            (("get", "--expiring-within", "soon"), "'soon' is not a whole number"),
            (("frobnicate",), "invalid choice: 'frobnicate'"),
        ],
    )
    def test_parser_errors(self, argv: tuple[str, ...], message: str) -> None:
        run = expect(run_cli(*argv), 2)
        assert message in run.stderr
        assert run.stderr.startswith("usage: gnoicert")

    def test_missing_inputs(
        self, lab: Lab, factory: tuple[str, ...], foreign_ca: Path, tmp_path: Path
    ) -> None:
        no_target = expect(run_cli("time", "--json"), 2)
        assert error_of(no_target.json())["message"] == "no target: give --target HOST:PORT"
        unset = expect(
            run_cli(
                "time", "--target", lab.address, "--ca-file", str(lab.factory_pem),
                "-u", "admin", "--password-env", "GNOICERT_TEST_UNSET_VARIABLE",
            ),
            2,
        )  # fmt: skip
        assert "the environment variable GNOICERT_TEST_UNSET_VARIABLE is not set" in unset.stderr
        missing_ca = expect(
            run_cli("time", "--target", lab.address, "--ca-file", str(tmp_path / "none.pem")), 2
        )
        assert f"cannot read the CA file {tmp_path / 'none.pem'}" in missing_ca.stderr
        not_a_ca = expect(
            run_cli(
                "time", "--target", lab.address, "--ca-file", str(foreign_ca.parent / "ca.key")
            ),
            2,
        )
        assert "the CA file (--ca-file) holds no usable PEM certificate" in not_a_ca.stderr
        no_signer = expect(run_cli("install", "x", *factory), 2)
        assert "install needs a signer: --ca-dir DIR or --sign-command CMD" in no_signer.stderr


def test_a_client_key_that_does_not_match_its_certificate(
    factory: tuple[str, ...], tmp_path: Path
) -> None:
    """Caught before dialling: grpcio would only say "Failed to create security handshaker"."""
    ca = TestCA()
    chain, _ = ca.client_credentials("operator")
    _, other_key = ca.client_credentials("someone else")
    (tmp_path / "operator.pem").write_bytes(chain)
    (tmp_path / "other.key").write_bytes(other_key)
    (tmp_path / "other.key").chmod(0o600)
    run = expect(
        run_cli(
            "time", *factory, "--cert", str(tmp_path / "operator.pem"),
            "--key", str(tmp_path / "other.key"),
        ),
        2,
    )  # fmt: skip
    assert "the client key (--key) is not the key of the client certificate (--cert)" in run.stderr


class TestArgsFiles:
    def test_a_missing_args_file_is_one_line(self) -> None:
        run = expect(run_cli("@/nonexistent/args.txt", "time"), 2)
        assert run.stderr == (
            "gnoicert: cannot read args file /nonexistent/args.txt: No such file or directory\n"
        )

    def test_connection_options_from_a_file(self, lab: Lab, tmp_path: Path) -> None:
        args_file = tmp_path / "target.txt"
        args_file.write_text(
            "# lab target\n"
            "\n"
            f"--target {lab.address}\n"
            f'--ca-file "{lab.factory_pem}"   # the factory certificate\n'
            f"--username admin --password-env {PASSWORD_ENV['admin']}\n"
        )
        result = expect(run_cli(f"@{args_file}", "time", "--json"), 0).json()
        assert result["target"] == lab.address

    def test_command_and_its_options_from_files_with_overrides(
        self, lab: Lab, tmp_path: Path
    ) -> None:
        connection = tmp_path / "connection.txt"
        connection.write_text("\n".join(lab.connection(lab.factory_pem)) + "\n")
        command = tmp_path / "command.txt"
        command.write_text("can-generate-csr\n--key-size 4096\n--json\n")
        # Options after an @file override it.
        result = expect(run_cli(f"@{connection}", f"@{command}", "--key-size", "2048"), 0).json()
        assert (result["key_size"], result["can_generate"]) == (2048, True)


def test_after_the_rate_limit_the_hint_says_to_wait(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A daemon of its own: the limit counts failures per host, and every test dials from
    127.0.0.1. After the limit even the right password is refused: checking it is no help."""
    limited = start_lab(
        tmp_path_factory.mktemp("rate-limited"), top_lines=["auth_failure_limit = 2"]
    )
    try:
        wrong = {PASSWORD_ENV["admin"]: "not-the-password"}
        for _ in range(2):
            run = expect(run_cli("time", *limited.connection(limited.factory_pem), env=wrong), 1)
            assert "hint: check --username and the password" in run.stderr
        run = expect(run_cli("time", *limited.connection(limited.factory_pem), "--json"), 1)
        error = error_of(run.json())
        assert (error["code"], error["reason"]) == ("UNAUTHENTICATED", "RATE_LIMITED")
        assert "too many failed attempts" in error["message"]
        assert re.search(r"retry in \d+ s", error["message"]), error
        assert re.match(r"wait \d+ s before trying again", error["hint"]), error
        assert "--password" not in error["hint"]
    finally:
        assert limited.stop() == 0, limited.process.stderr_text()

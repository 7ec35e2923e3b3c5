"""What `gnoicert` prints: tables that fit the terminal, plain text in a pipe, the output formats,
and the versioned documents (errors included) that scripts read.

One gnoicertd serving its factory certificate (server-only TLS, the operator's CA bundle
loaded); two certificates with long IDs and SANs
are loaded with client-made keys, as an operator keeps a primary and a standby certificate.
Terminal runs go through a real pseudo-terminal with its window size set.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cli import (
    NO_CLIENT_CERTIFICATE,
    Lab,
    cli_environment,
    expect,
    gnoicert_command,
    run_cli,
)
from tests.support.schemas import validate_document

# Server-only TLS also once the operator's CA bundle is loaded.
GRPC_LINES = NO_CLIENT_CERTIFICATE
IDS = ("gnoi-server-primary", "gnoi-server-standby")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def factory(lab: Lab) -> tuple[str, ...]:
    """Server-only TLS trusting the factory certificate, as admin."""
    return lab.connection(lab.factory_pem)


@pytest.fixture(scope="module")
def loaded(lab: Lab, factory: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Both certificates on the target, as `get --details --json` lists them."""
    ca_dir = lab.workdir / "ca"
    expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa"), 0)
    expect(run_cli("load-ca", str(ca_dir / "bundle.pem"), *factory), 0)
    for certificate_id in IDS:
        name = f"{certificate_id}.routers.example.net"
        cert, key = lab.workdir / f"{certificate_id}.pem", lab.workdir / f"{certificate_id}.key"
        issued = expect(
            run_cli(
                "ca", "issue", str(ca_dir), name, "--dns", name, "--ip", "192.0.2.10",
                "--out-cert", str(cert), "--out-key", str(key), "--json",
            ),
            0,
        ).json()  # fmt: skip
        assert issued["command"] == "ca-issue"
        expect(run_cli("load", certificate_id, str(cert), "--private-key", str(key), *factory), 0)
    listed = expect(run_cli("get", "--details", "--json", *factory), 0).json()
    return {c["certificate_id"]: c for c in listed["certificates"]}


def run_in_terminal(argv: list[str], *, columns: int, timeout: float = 60.0) -> str:
    """Run argv with stdout, stderr and stdin on a pseudo-terminal `columns` wide; the text it
    printed, without colours."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = cli_environment({"TERM": "xterm-256color"})
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    process = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], deadline - time.monotonic())
            if not ready:
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, chunks
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return _ANSI.sub("", text)


class TestTables:
    @pytest.mark.parametrize("columns", [80, 120])
    def test_nothing_important_is_cut_on_a_terminal(
        self, factory: tuple[str, ...], loaded: dict[str, dict[str, str]], columns: int
    ) -> None:
        text = run_in_terminal([*gnoicert_command(), "get", *factory], columns=columns)
        lines = text.splitlines()
        assert all(len(line) <= columns for line in lines), text
        assert "…" not in text, text
        for certificate_id, info in loaded.items():
            row = next(line for line in lines if certificate_id in line)
            assert info["not_after"][:10] in row, text
            assert info["fingerprint"][:12] in row, text
        if columns >= 120:
            # Wide enough for every column, SANs (wrapped) included.
            assert "Endpoints" in text
            assert "SANs" in text
            assert "192.0.2.10" in text
            assert "not shown at this width" not in text
        else:
            assert "not shown at this width:" in text

    def test_a_pipe_gets_tab_separated_text(
        self, factory: tuple[str, ...], loaded: dict[str, dict[str, str]]
    ) -> None:
        plain = expect(run_cli("get", *factory), 0).stdout
        assert plain == expect(run_cli("get", "--output", "tsv", *factory), 0).stdout
        header, *rows = [line.split("\t") for line in plain.splitlines()]
        assert header[:2] == ["certificate_id", "common_name"]
        assert "certificate_pem" not in header
        assert all(len(row) == len(header) for row in rows)
        by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
        for certificate_id, info in loaded.items():
            assert by_id[certificate_id]["fingerprint"] == info["fingerprint"]
            assert by_id[certificate_id]["not_after"] == info["not_after"]
            assert by_id[certificate_id]["sans"] == ",".join(info["sans"])
        # What awk sees: the same columns, with or without -F'\t' (no empty fields).
        awk = subprocess.run(
            ["awk", "NR > 1 {print $1, NF}"], input=plain, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        assert {line.split()[0] for line in awk.stdout.splitlines()} >= set(IDS)
        assert {line.split()[1] for line in awk.stdout.splitlines()} == {str(len(header))}

    def test_notes_go_to_stderr_in_a_pipe(self, factory: tuple[str, ...], tmp_path: Path) -> None:
        run = expect(run_cli("get", "--expiring-within", "400", *factory), 4)  # found: exit 4
        assert run.stdout.splitlines()[0].startswith("certificate_id\t")
        assert "certificate(s) expiring within 400 days" in run.stderr


class TestFormats:
    def test_yaml_is_the_json_document(
        self, factory: tuple[str, ...], loaded: dict[str, dict[str, str]]
    ) -> None:
        as_yaml = yaml.safe_load(expect(run_cli("get", "-o", "yaml", *factory), 0).stdout)
        as_json = expect(run_cli("get", "--output", "json", *factory), 0).json()
        assert as_yaml == as_json
        assert as_json == expect(run_cli("--json", "get", *factory), 0).json()

    def test_the_environment_chooses_and_the_command_line_wins(
        self, factory: tuple[str, ...]
    ) -> None:
        from_env = expect(run_cli("time", *factory, env={"GNOICERT_OUTPUT": "json"}), 0).json()
        assert (from_env["schema"], from_env["command"], from_env["ok"]) == (1, "time", True)
        text = expect(run_cli("time", "-o", "table", *factory, env={"GNOICERT_OUTPUT": "json"}), 0)
        assert text.stdout.startswith(f"{factory[1]}: ")
        bad = expect(run_cli("time", *factory, env={"GNOICERT_OUTPUT": "xml"}), 2)
        assert "GNOICERT_OUTPUT='xml' is not an output format" in bad.stderr

    def test_tsv_of_a_single_answer(self, factory: tuple[str, ...]) -> None:
        header, row = [
            line.split("\t")
            for line in expect(run_cli("can-generate-csr", "-o", "tsv", *factory), 0).stdout
            .splitlines()
        ]  # fmt: skip
        assert dict(zip(header, row, strict=True))["can_generate"] in ("true", "false")

    def test_get_details_adds_the_parsed_certificate(
        self, factory: tuple[str, ...], loaded: dict[str, dict[str, str]]
    ) -> None:
        summary = expect(run_cli("get", "--json", *factory), 0).json()
        details = expect(run_cli("get", "--details", "--json", *factory), 0).json()
        assert summary["schema"] == details["schema"] == 1
        first = {c["certificate_id"]: c for c in summary["certificates"]}[IDS[0]]
        full = {c["certificate_id"]: c for c in details["certificates"]}[IDS[0]]
        for field in ("subject", "issuer", "not_before", "serial", "certificate_pem"):
            assert field not in first
            assert full[field]
        for field in ("sans", "key_type", "key_size", "not_after", "fingerprint", "endpoints"):
            assert first[field] == full[field]
        assert full["subject"] == f"CN={IDS[0]}.routers.example.net"
        assert (full["key_type"], full["key_size"]) == ("ECDSA", 256)


class TestErrorDocuments:
    @pytest.mark.parametrize(
        "argv",
        [
            ("--json", "time", "--bogus"),
            ("time", "--bogus", "--json"),
            ("--output", "json", "frobnicate"),
            ("get", "--expiring-within", "soon", "-o", "json"),
            ("install", "--json"),
        ],
    )
    def test_usage_errors_with_json_anywhere(self, argv: tuple[str, ...]) -> None:
        run = expect(run_cli(*argv), 2)
        document = run.json()
        assert document == {
            "schema": 1,
            "command": None,
            "ok": False,
            "exit_code": 2,
            "error": {
                "kind": "usage",
                "message": document["error"]["message"],
                "hint": document["error"]["hint"],
            },
        }
        assert document["error"]["message"] in run.stderr
        assert "--help" in document["error"]["hint"]
        assert run.stderr.startswith("usage: gnoicert")

    def test_usage_errors_with_json_in_an_args_file_or_the_environment(
        self, tmp_path: Path
    ) -> None:
        args_file = tmp_path / "output.args"
        args_file.write_text("--json\n")
        from_file = expect(run_cli(f"@{args_file}", "time", "--bogus"), 2).json()
        from_env = expect(run_cli("time", "--bogus", env={"GNOICERT_OUTPUT": "json"}), 2).json()
        assert from_file == from_env
        assert from_file["error"]["message"] == "unknown option --bogus"
        as_yaml = yaml.safe_load(expect(run_cli("time", "--bogus", "-o", "yaml"), 2).stdout)
        assert as_yaml == from_file

    def test_without_json_a_usage_error_prints_nothing_on_stdout(self) -> None:
        run = expect(run_cli("time", "--bogus"), 2)
        assert run.stdout == ""
        assert "gnoicert: error: unknown option --bogus" in run.stderr

    def test_rpc_and_input_errors(self, lab: Lab, factory: tuple[str, ...]) -> None:
        refused = expect(run_cli("revoke", "x", *lab.connection(lab.factory_pem, user="reader"),
                                 "--json"), 1).json()  # fmt: skip
        assert (refused["command"], refused["target"]) == ("revoke", lab.address)
        error = refused["error"]
        assert (error["kind"], error["code"], error["rpc"]) == (
            "rpc",
            "PERMISSION_DENIED",
            "RevokeCertificates",
        )
        assert error["failure"] == "permission-denied"
        no_target = expect(run_cli("time", "--json"), 2).json()
        assert no_target["error"] == {
            "kind": "input",
            "message": "no target: give --target HOST:PORT",
            "hint": "",
        }
        missing_file = expect(run_cli("load", "x", "/nonexistent.pem", *factory, "--json"), 2)
        assert missing_file.json()["error"]["kind"] == "input"


def test_a_document_that_breaks_its_schema_is_caught() -> None:
    """The check every CLI test runs on the documents it sees can fail."""
    good = {"schema": 1, "command": "time", "ok": True, "exit_code": 0, "target": "t:1",
            "time_ns": 1, "time": "2027-01-02T03:04:05+00:00", "round_trip_s": 0.1,
            "offset_s": 0.0}  # fmt: skip
    validate_document(good)
    for broken in (
        {key: value for key, value in good.items() if key != "schema"},
        {**good, "exit_code": "0"},
        {**good, "surprise": 1},
        {**good, "error": {"kind": "usage", "message": "m", "hint": ""}},
    ):
        with pytest.raises(AssertionError):
            validate_document(broken)
    assert json.loads(json.dumps(good)) == good

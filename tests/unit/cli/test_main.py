"""The gnoicert command line: parsing (@args files), passwords, exit codes, JSON, CA commands.

Commands that need a target run against a closed loopback port (connection refused) or stop
before the network (--dry-run with a client-made key): the daemon is not needed here.
"""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest

from gnoicert import __version__
from gnoicert.cli.commands import read_password
from gnoicert.cli.config import apply_settings
from gnoicert.cli.documents import RPC_COMMANDS
from gnoicert.cli.main import (
    EXIT_FAILED,
    EXIT_USAGE,
    EXIT_VALIDATION,
    build_parser,
    exit_code_for,
    main,
)
from gnoicert.client.ca import LocalCA
from gnoicert.client.errors import (
    InputError,
    PreflightFailed,
    RpcFailed,
    SignerError,
    ValidationFailed,
)
from gnoicert.client.models import CsrParams, PreflightReport
from gnoicert.pki.crypto import build_csr, load_certificates
from tests.support.cli import SUBCOMMANDS
from tests.unit.conftest import ec_key


@pytest.fixture(autouse=True)
def _quiet_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_VERBOSITY", "NONE")


def parse(*argv: str) -> argparse.Namespace:
    """Parsed, then completed from the built-in defaults (no GNOICERT_*, no config file)."""
    args = build_parser().parse_args(list(argv))
    apply_settings(args, {"XDG_CONFIG_HOME": "/nonexistent-gnoicert-config"})
    return args


class TestParsing:
    def test_global_options_before_or_after_the_command(self) -> None:
        before = parse("--target", "a:1", "--json", "time")
        after = parse("time", "--target", "a:1", "--json")
        for args in (before, after):
            assert args.target == "a:1"
            assert args.output == "json"
            assert args.command == "time"
        # --output is the long form, in either place; the last one given wins.
        assert parse("-o", "yaml", "time").output == "yaml"
        assert parse("time", "--output", "tsv").output == "tsv"
        assert parse("--json", "time", "-o", "table").output == "table"

    def test_after_the_command_wins(self) -> None:
        assert parse("--timeout", "3", "time", "--timeout", "7").timeout == 7.0

    def test_defaults_survive_subcommands(self) -> None:
        args = parse("time")
        assert (args.target, args.output, args.verbose, args.insecure) == (None, None, 0, False)
        assert args.timeout == 10.0

    def test_args_file_junos_style(self, tmp_path: Path) -> None:
        args_file = tmp_path / "args.txt"
        args_file.write_text(
            "# install options\n"
            "\n"
            "--target 192.0.2.1:9339\n"
            '--organization "Example Networks"   # quoted, with a comment\n'
            "--cn r1.example.net --country US\n"
            "   --ca-dir   ca   \n",
            encoding="utf-8",
        )
        # Subcommand options in the file: the file goes after the command name.
        args = parse("install", "gnoi-server", f"@{args_file}", "--country", "DE")
        assert args.target == "192.0.2.1:9339"
        assert args.organization == "Example Networks"
        assert args.common_name == "r1.example.net"
        assert args.country == "DE"  # a later option overrides the file
        assert args.ca_dir == "ca"
        assert args.certificate_id == "gnoi-server"

    def test_args_file_holding_the_whole_command(self, tmp_path: Path) -> None:
        args_file = tmp_path / "rotate.txt"
        args_file.write_text(
            "rotate gnoi-server\n--target h:1\n--key-size 4096\n", encoding="utf-8"
        )
        args = parse(f"@{args_file}", "--timeout", "3")
        assert (args.command, args.certificate_id) == ("rotate", "gnoi-server")
        assert (args.target, args.key_size, args.timeout) == ("h:1", 4096, 3.0)

    def test_args_file_after_the_command(self, tmp_path: Path) -> None:
        args_file = tmp_path / "args.txt"
        args_file.write_text("--target h:1\n--key-size 4096\n", encoding="utf-8")
        args = parse("rotate", "x", f"@{args_file}")
        assert (args.target, args.key_size) == ("h:1", 4096)

    def test_version_and_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as version:
            main(["--version"])
        assert version.value.code == 0
        assert capsys.readouterr().out.strip() == f"gnoicert {__version__}"
        with pytest.raises(SystemExit) as help_exit:
            main(["--help"])
        assert help_exit.value.code == 0
        out = capsys.readouterr().out
        for command in SUBCOMMANDS:
            assert command in out

    @pytest.mark.parametrize(
        "argv",
        [
            [],
            ["nonsense"],
            ["time", "--password", "secret"],  # there is deliberately no such option
            ["install", "x", "--ca-dir", "d", "--sign-command", "c"],
            ["get", "--expiring-within", "-1"],
            ["time", "--timeout", "0"],
            ["ca"],
            ["ca", "issue", "dir", "name"],  # --out-cert/--out-key are required
        ],
    )
    def test_usage_errors_exit_2(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        assert main(argv) == EXIT_USAGE
        captured = capsys.readouterr()
        assert captured.err.startswith("usage: gnoicert")
        assert captured.out == ""
        # The same mistake with JSON asked for: a usage document on stdout as well.
        assert main([*argv, "--json"]) == EXIT_USAGE
        document = json.loads(capsys.readouterr().out)
        assert (document["ok"], document["exit_code"]) == (False, EXIT_USAGE)
        assert document["error"]["kind"] == "usage"


class TestExitCodes:
    def test_mapping(self) -> None:
        import grpc

        assert exit_code_for(ValidationFailed(certificate_id="a", checks=())) == EXIT_VALIDATION
        report = PreflightReport.from_checks([])
        assert exit_code_for(PreflightFailed(report=report)) == EXIT_VALIDATION
        assert exit_code_for(InputError("x")) == EXIT_USAGE
        assert exit_code_for(RpcFailed(code=grpc.StatusCode.ABORTED, details="")) == EXIT_FAILED
        assert exit_code_for(SignerError("x")) == EXIT_FAILED
        assert exit_code_for(OSError("x")) == EXIT_FAILED


class TestPassword:
    def _args(self, **values: str | None) -> argparse.Namespace:
        base: dict[str, str | None] = {
            "password_file": None,
            "password_env": None,
            "username": "ops",
            "target": "t:1",
        }
        base.update(values)
        return argparse.Namespace(**base)

    def test_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GNOI_PW", "s3cret")
        assert read_password(self._args(password_env="GNOI_PW")) == "s3cret"

    def test_missing_environment_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("GNOI_PW_MISSING", raising=False)
        with pytest.raises(InputError, match="GNOI_PW_MISSING is not set"):
            read_password(self._args(password_env="GNOI_PW_MISSING"))

    def test_from_file_first_line_only(self, tmp_path: Path) -> None:
        path = tmp_path / "pw"
        path.write_text("line one\nline two\n", encoding="utf-8")
        assert read_password(self._args(password_file=str(path))) == "line one"

    def test_no_terminal_no_prompt(self) -> None:
        # pytest's stdin is not a terminal: a script must not hang waiting for a password.
        with pytest.raises(InputError, match="--password-env"):
            read_password(self._args())

    def test_no_username_no_password(self) -> None:
        assert read_password(self._args(username=None)) is None


class TestRpcCommandsWithoutTarget:
    def test_connection_refused(self, closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["time", "--target", f"127.0.0.1:{closed_port}", "--timeout", "5"])
        assert code == EXIT_FAILED
        err = capsys.readouterr().err
        assert f"connection refused by 127.0.0.1:{closed_port}" in err
        assert "gRPC status: UNAVAILABLE" in err
        assert "hint:" in err

    def test_connection_refused_as_json(
        self, closed_port: int, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["--json", "get", "--target", f"127.0.0.1:{closed_port}"])
        assert code == EXIT_FAILED
        document = json.loads(capsys.readouterr().out)
        assert document["ok"] is False
        assert document["exit_code"] == EXIT_FAILED
        assert document["error"]["code"] == "UNAVAILABLE"
        assert document["error"]["rpc"] == "GetCertificates"
        assert document["error"]["hint"]

    def test_no_target(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["time"]) == EXIT_USAGE
        assert "--target" in capsys.readouterr().err

    def test_username_without_password_source(
        self, closed_port: int, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["time", "-t", f"127.0.0.1:{closed_port}", "-u", "ops"]) == EXIT_USAGE
        assert "--password-file" in capsys.readouterr().err

    def test_install_needs_a_signer(self, closed_port: int) -> None:
        assert main(["install", "x", "-t", f"127.0.0.1:{closed_port}"]) == EXIT_USAGE

    def test_dry_run_checks_the_connection(
        self, closed_port: int, root_ca: LocalCA, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # A dry run reads the target (connection, listing) before it signs anything.
        code = main([
            "--json", "install", "edge-1", "-t", f"127.0.0.1:{closed_port}",
            "--key-source", "client", "--key-type", "ecdsa", "--cn", "edge-1.example",
            "--ca-dir", str(root_ca.directory), "--ca-bundle", str(root_ca.bundle_path),
            "--dry-run",
        ])  # fmt: skip
        assert code == EXIT_FAILED
        result = json.loads(capsys.readouterr().out)
        assert result["error"]["rpc"] == "Time"

    def test_preflight_failure_exits_3(
        self,
        closed_port: int,
        root_ca: LocalCA,
        other_ca: LocalCA,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # install with a client key reaches preflight before dialling (rotate asks the
        # listing first, to tell whether the ID is the server's).
        code = main([
            "install", "edge-1", "-t", f"127.0.0.1:{closed_port}", "--key-source", "client",
            "--cn", "edge-1.example", "--ca-dir", str(root_ca.directory),
            "--ca-bundle", str(other_ca.bundle_path), "--require-san",
        ])  # fmt: skip
        assert code == EXIT_VALIDATION
        err = capsys.readouterr().err
        assert "chain: does not chain to the CA bundle being sent" in err
        assert "san: no IP SAN matches 127.0.0.1" in err

    def test_missing_ca_bundle_file(self, closed_port: int, root_ca: LocalCA) -> None:
        code = main([
            "install", "x", "-t", f"127.0.0.1:{closed_port}", "--ca-dir", str(root_ca.directory),
            "--ca-bundle", "/nonexistent/bundle.pem",
        ])  # fmt: skip
        assert code == EXIT_USAGE


class TestCaCommands:
    def test_init_sign_issue(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        ca_dir = tmp_path / "ca"
        assert (
            main(["--json", "ca", "init", str(ca_dir), "--intermediate", "--key-type", "ecdsa"])
            == 0
        )
        info = json.loads(capsys.readouterr().out)
        assert info["intermediate_subject"]
        assert info["key_type"] == "ECDSA-256"

        csr_file = tmp_path / "r1.csr"
        csr_file.write_bytes(build_csr(ec_key(), CsrParams(common_name="r1.example.net").subject()))
        out_file = tmp_path / "r1.pem"
        assert main(["ca", "sign", str(ca_dir), str(csr_file), "--days", "30",
                     "--out", str(out_file), "--json"]) == 0  # fmt: skip
        signed = json.loads(capsys.readouterr().out)
        assert signed["sans"] == ["DNS:r1.example.net"]
        assert signed["path"] == str(out_file)
        assert len(load_certificates(out_file.read_bytes())) == 3  # leaf, intermediate, root

        cert, key = tmp_path / "op.pem", tmp_path / "op.key"
        assert main(["ca", "issue", str(ca_dir), "operator", "--out-cert", str(cert),
                     "--out-key", str(key)]) == 0  # fmt: skip
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert "signed CN=operator" in capsys.readouterr().out

    def test_sign_to_stdout(
        self, tmp_path: Path, root_ca: LocalCA, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csr_file = tmp_path / "x.csr"
        csr_file.write_bytes(build_csr(ec_key(), CsrParams(common_name="x").subject()))
        assert main(["ca", "sign", str(root_ca.directory), str(csr_file)]) == 0
        assert len(load_certificates(capsys.readouterr().out.encode())) == 2

    def test_init_refuses_an_existing_ca(self, root_ca: LocalCA) -> None:
        assert main(["ca", "init", str(root_ca.directory)]) == EXIT_USAGE

    def test_sign_garbage(self, tmp_path: Path, root_ca: LocalCA) -> None:
        bad = tmp_path / "bad.csr"
        bad.write_text("nope", encoding="utf-8")
        assert main(["ca", "sign", str(root_ca.directory), str(bad)]) == EXIT_USAGE


def test_the_rpc_command_list_is_what_the_dispatcher_runs() -> None:
    # The early process end and the schema list rely on RPC_COMMANDS; commands.py runs them.
    from gnoicert.cli import commands

    assert set(RPC_COMMANDS) == set(commands._RPC_COMMANDS)


def test_the_parser_csr_defaults_name_every_csr_params_field() -> None:
    import dataclasses

    from gnoicert.cli import main as cli_main

    assert set(cli_main._CSR_DEFAULTS) == {f.name for f in dataclasses.fields(CsrParams)}

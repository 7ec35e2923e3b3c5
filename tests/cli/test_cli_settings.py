"""Connection settings from a config file profile and GNOICERT_* against a real gnoicertd, and
`-vv` showing every RPC with its time and status.

One gnoicertd in its factory state (server-only TLS, username and password, kept after a CA
bundle is loaded).
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import NO_CLIENT_CERTIFICATE, PASSWORD_ENV, Lab, expect, run_cli

# Server-only TLS stays after the Install below loads the first CA bundle.
GRPC_LINES = NO_CLIENT_CERTIFICATE
RPC_LINE = r"gnoicert: rpc {rpc} \d+\.\d ms {status}\n"


@pytest.fixture(scope="module")
def config(lab: Lab) -> Path:
    """A config file whose `lab` profile reaches the target; its paths are relative to it."""
    directory = lab.workdir / "settings"
    directory.mkdir()
    shutil.copy(lab.factory_pem, directory / "factory.pem")
    path = directory / "config.toml"
    path.write_text(
        "timeout = 20\n"
        'username = "reader"\n'
        f'password_env = "{PASSWORD_ENV["reader"]}"\n'
        "[profiles.lab]\n"
        f'target = "{lab.address}"\n'
        'ca_file = "factory.pem"\n'
        'username = "admin"\n'
        f'password_env = "{PASSWORD_ENV["admin"]}"\n'
        "[profiles.elsewhere]\n"
        'target = "127.0.0.1:1"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_profile_holds_the_whole_connection(config: Path, lab: Lab, tmp_path: Path) -> None:
    expect(run_cli("--config", str(config), "--profile", "lab", "time", cwd=tmp_path), 0)
    env = {"GNOICERT_CONFIG": str(config), "GNOICERT_PROFILE": "lab"}
    expect(run_cli("time", env=env, cwd=tmp_path), 0)


def test_the_default_file_under_xdg_config_home(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "xdg"
    (home / "gnoicert").mkdir(parents=True)
    shutil.copy(config, home / "gnoicert" / "config.toml")
    shutil.copy(config.parent / "factory.pem", home / "gnoicert" / "factory.pem")
    env = {"XDG_CONFIG_HOME": str(home), "GNOICERT_PROFILE": "lab"}
    expect(run_cli("get", env=env), 0)


def test_environment_beats_the_file_and_the_flag_beats_both(
    config: Path, lab: Lab, refusing_port: int
) -> None:
    env = {
        "GNOICERT_CONFIG": str(config),
        "GNOICERT_PROFILE": "lab",
        "GNOICERT_TARGET": f"127.0.0.1:{refusing_port}",
    }
    refused = expect(run_cli("time", env=env), 1)
    assert str(refusing_port) in refused.stderr
    expect(run_cli("time", "--target", lab.address, env=env), 0)
    # --profile beats GNOICERT_PROFILE: "elsewhere" names no CA file, so the target is untrusted
    run = expect(run_cli("--profile", "elsewhere", "time", "-t", lab.address, env=env), 1)
    assert "untrusted" in run.stderr


def test_profile_values_beat_the_top_level(config: Path) -> None:
    """The top level says reader (read-only), the profile says admin: revoke is allowed."""
    run = run_cli("--config", str(config), "--profile", "lab", "revoke", "absent-id", "--json")
    assert run.returncode in (0, 1), str(run)
    assert "PERMISSION_DENIED" not in run.stdout + run.stderr


def test_bad_settings_are_usage_errors(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[profiles.lab]\ntarget = "r1"\npassword = "in clear"\n', encoding="utf-8")
    run = expect(run_cli("--config", str(bad), "time"), 2)
    assert f"{bad}: profile 'lab': key 'password': a password in clear is refused" in run.stderr
    assert 'in clear"' not in run.stderr
    run = expect(run_cli("time", env={"GNOICERT_CONFIG": str(config), "GNOICERT_TIMEOUT": "x"}), 2)
    assert "GNOICERT_TIMEOUT" in run.stderr
    run = expect(run_cli("--config", str(config), "--profile", "nope", "time"), 2)
    assert "no profile 'nope' (profiles: elsewhere, lab)" in run.stderr


class TestRpcTiming:
    def lab_env(self, config: Path) -> dict[str, str]:
        return {"GNOICERT_CONFIG": str(config), "GNOICERT_PROFILE": "lab"}

    def test_vv_shows_each_unary_rpc_with_its_time(self, config: Path) -> None:
        run = expect(run_cli("-vv", "get", env=self.lab_env(config)), 0)
        assert re.search(RPC_LINE.format(rpc="GetCertificates", status="OK"), run.stderr), run
        run = expect(run_cli("time", "-vv", env=self.lab_env(config)), 0)
        assert re.search(RPC_LINE.format(rpc="Time", status="OK"), run.stderr), run

    def test_a_failed_rpc_shows_its_status(self, config: Path) -> None:
        reader = ("-u", "reader", "--password-env", PASSWORD_ENV["reader"])
        run = expect(run_cli(*reader, "-vv", "revoke", "x", env=self.lab_env(config)), 1)
        status = "PERMISSION_DENIED"
        assert re.search(RPC_LINE.format(rpc="RevokeCertificates", status=status), run.stderr)

    def test_vv_times_the_install_stream(self, config: Path, lab: Lab) -> None:
        ca_dir = lab.workdir / "timing-ca"
        expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa"), 0)
        run = expect(
            run_cli(
                "-vv",
                "install",
                "timed",
                "--ca-dir",
                str(ca_dir),
                "--cn",
                "timed.example",
                "--ca-bundle",
                str(ca_dir / "bundle.pem"),
                env=self.lab_env(config),
            ),
            0,
        )
        assert re.search(RPC_LINE.format(rpc="CanGenerateCSR", status="OK"), run.stderr), run
        assert re.search(RPC_LINE.format(rpc="Install", status="OK"), run.stderr), run

    def test_one_v_does_not_show_rpcs(self, config: Path) -> None:
        run = expect(run_cli("-v", "get", env=self.lab_env(config)), 0)
        assert "gnoicert: rpc " not in run.stderr

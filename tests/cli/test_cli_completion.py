"""`gnoicert completion SHELL`: static scripts that real shells accept and that complete the
command, and a completion library that no other command loads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import SUBCOMMANDS, cli_environment, expect, run_cli


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "gnoicert.bash"
    path.write_text(expect(run_cli("completion", "bash"), 0).stdout, encoding="utf-8")
    return path


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers after `gnoicert WORDS...` (the last word is the one being completed)."""
    line = " ".join(["gnoicert", *words])
    driver = (
        f"source {script}\n"
        f"COMP_WORDS=(gnoicert {' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words)}\n"
        f"COMP_LINE={line!r}\n"
        f"COMP_POINT={len(line)}\n"
        "_shtab_gnoicert gnoicert\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.splitlines() if word]


def test_bash_script_is_valid_bash(bash_script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bash_offers_every_subcommand(bash_script: Path) -> None:
    assert sorted(complete(bash_script, "")) == sorted(SUBCOMMANDS)
    assert sorted(complete(bash_script, "ge")) == ["generate-csr", "get"]
    assert sorted(complete(bash_script, "ca", "")) == ["init", "issue", "sign"]


def test_bash_offers_options_and_choices(bash_script: Path) -> None:
    assert "--expiring-within" in complete(bash_script, "get", "--")
    assert "--target" in complete(bash_script, "--t")
    assert complete(bash_script, "install", "x", "--key-source", "") == ["auto", "target", "client"]
    assert sorted(complete(bash_script, "completion", "")) == ["bash", "fish", "tcsh", "zsh"]


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])])
def test_other_shells(shell: str, check: list[str], tmp_path: Path) -> None:
    script = expect(run_cli("completion", shell), 0).stdout
    for command in SUBCOMMANDS:
        assert command in script
    if shutil.which(check[0]) is None:
        return  # the script is still generated; this machine has no such shell to parse it
    path = tmp_path / f"gnoicert.{shell}"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run([*check, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unknown_shell_is_a_usage_error() -> None:
    run = expect(run_cli("completion", "powershell"), 2)
    assert "invalid choice" in run.stderr


def test_a_broken_config_file_does_not_block_completion(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("password = 'x'\n", encoding="utf-8")
    expect(run_cli("completion", "bash", env={"GNOICERT_CONFIG": str(bad)}), 0)
    expect(run_cli("time", env={"GNOICERT_CONFIG": str(bad)}), 2)


@pytest.mark.parametrize("argv", [["--version"], ["get", "--help"], ["--help"]])
def test_only_the_completion_command_imports_shtab(argv: list[str]) -> None:
    """Start-up cost: `python -X importtime` lists every module the command loaded."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gnoicert.cli.main", *argv],
        capture_output=True,
        text=True,
        env=cli_environment(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "argparse" in imported
    assert "shtab" not in imported
    assert "grpc" not in imported

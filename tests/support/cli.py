"""The operator's side in tests: the `gnoicert` command as a subprocess, against a gnoicertd
subprocess on 127.0.0.1, with the files an operator keeps next to it (CA, trust file, client
certificate).

Passwords reach the command the way the CLI wants them: through --password-env and an
environment variable, never on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gnoicert.cli.config import VARIABLES
from tests.support.schemas import validate_document
from tests.support.target import (
    PASSWORDS,
    TargetProcess,
    served_fingerprint,
    spawn_target,
    write_config,
)

# Every `gnoicert` subcommand, written out (not read from the parser) so the tests can fail.
SUBCOMMANDS = (
    "install",
    "rotate",
    "revoke",
    "get",
    "generate-csr",
    "load",
    "load-ca",
    "can-generate-csr",
    "time",
    "ca",
    "demo",
    "lab",
    "report",
    "exporter",
    "completion",
)

# One environment variable per test user; run_cli sets them all.
PASSWORD_ENV = {user: f"GNOICERT_TEST_{user.upper()}_PASSWORD" for user in PASSWORDS}
SERVER_ID = "gnoi-server"
LOCAL_SERVER = f'local_certificate = "{SERVER_ID}"'
ONLY_2048 = "key_sizes = [2048]"
# Keeps server-only TLS with a CA bundle loaded (the explicit stanza wins over the implicit rule).
NO_CLIENT_CERTIFICATE = (
    "[grpc.mutual_authentication]",
    'certificate_authority = "gnoi-ca-bundle"',
    'client_certificate_request = "no-certificate"',
)


def gnoicert_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("gnoicert")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "gnoicert.cli.main"]


def cli_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment, without the caller's own gnoicert settings (GNOICERT_* and the
    config file): a test passes the settings it means in `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update({"GRPC_VERBOSITY": "NONE", "XDG_CONFIG_HOME": "/nonexistent-gnoicert-config"})
    env.update({PASSWORD_ENV[user]: password for user, password in PASSWORDS.items()})
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class CliRun:
    """One finished `gnoicert` run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> CliRun:
    completed = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env=cli_environment(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    run = CliRun(tuple(argv), completed.returncode, completed.stdout, completed.stderr)
    check_document(run, env or {})
    return run


def check_document(run: CliRun, env: Mapping[str, str]) -> None:
    """A run that printed a document (--json, --output json|yaml, GNOICERT_OUTPUT) must match
    the schema of its command: every document the CLI suites produce is checked."""
    if not any(word.endswith("gnoicert") or word == "gnoicert.cli.main" for word in run.argv[:3]):
        return
    fmt = env.get("GNOICERT_OUTPUT", "")
    for index, word in enumerate(run.argv):
        if word == "--json":
            fmt = "json"
        elif word in ("-o", "--output") and index + 1 < len(run.argv):
            fmt = run.argv[index + 1]
    if fmt not in ("json", "yaml") or not run.stdout.strip():
        return
    document = yaml.safe_load(run.stdout) if fmt == "yaml" else json.loads(run.stdout)
    validate_document(document)
    assert document["exit_code"] == run.returncode, str(run)


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> CliRun:
    """`gnoicert ARGS...` as a subprocess (every password variable of PASSWORD_ENV set)."""
    return run_command([*gnoicert_command(), *args], env=env, cwd=cwd, timeout=timeout)


def expect(run: CliRun, code: int) -> CliRun:
    assert run.returncode == code, str(run)
    assert "Traceback" not in run.stderr, str(run)
    return run


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "it") -> None:
    """Poll (bounded, backing off) until condition() is true; exceptions count as not yet."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            done = condition()
        except Exception:
            done = False
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


@dataclass
class Lab:
    """A gnoicertd subprocess (daemon/) and an operator's working directory (operator/)."""

    process: TargetProcess
    workdir: Path

    @property
    def address(self) -> str:
        return self.process.address

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def factory_pem(self) -> Path:
        """The factory certificate, as the daemon keeps it in its state directory."""
        return self.process.directory / "state" / "factory" / "certificate.pem"

    def served_fingerprint(self) -> str:
        return served_fingerprint(self.address)

    def audit(self, **match: str) -> list[dict[str, Any]]:
        path = self.process.audit_path
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    def connection(
        self,
        ca_file: Path,
        *,
        client: tuple[Path, Path] | None = None,
        user: str | None = "admin",
    ) -> tuple[str, ...]:
        """Global options for this target: TLS files and credentials."""
        options = ["--target", self.address, "--ca-file", str(ca_file)]
        if client is not None:
            options += ["--cert", str(client[0]), "--key", str(client[1])]
        if user is not None:
            options += ["--username", user, "--password-env", PASSWORD_ENV[user]]
        return tuple(options)

    def stop(self) -> int:
        if self.process.process.poll() is not None:
            return self.process.process.returncode
        return self.process.terminate()


def start_lab(
    directory: Path, *, grpc_lines: Sequence[str] = (), top_lines: Sequence[str] = ()
) -> Lab:
    """gnoicertd in its factory state (users admin and reader) in directory/daemon."""
    daemon_dir = directory / "daemon"
    workdir = directory / "operator"
    daemon_dir.mkdir(parents=True)
    workdir.mkdir(parents=True)
    process = spawn_target(write_config(daemon_dir, grpc_lines=grpc_lines, top_lines=top_lines))
    return Lab(process=process, workdir=workdir)


@dataclass
class CliOperator:
    """An operator running `gnoicert` against one lab with fixed connection options."""

    lab: Lab
    ca_dir: Path
    connection: tuple[str, ...]

    def run(self, *args: str, code: int = 0) -> CliRun:
        """`gnoicert ARGS... CONNECTION`, from the operator's directory; asserts the exit code."""
        return expect(run_cli(*args, *self.connection, cwd=self.lab.workdir), code)

    def json(self, *args: str, code: int = 0) -> Any:
        return self.run(*args, "--json", code=code).json()

    def listing(self) -> dict[str, dict[str, Any]]:
        """GetCertificates by ID, as `gnoicert get --details --json` reports it."""
        return {c["certificate_id"]: c for c in self.json("get", "--details")["certificates"]}

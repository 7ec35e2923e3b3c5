"""The three Junos-style examples, run with their shipped args files against gnoicertd.

The operator's directory is laid out as examples/README.md describes (factory.pem, ca/ from
`gnoicert ca init ca --intermediate`, operator.pem/.key from `gnoicert ca issue`), so the paths
in the args files hold as written; only the port and the user change, given after the @file.
The daemon serves "gnoi-server" once it exists (local_certificate), as the README's reload does.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.cli import (
    LOCAL_SERVER,
    SERVER_ID,
    CliOperator,
    CliRun,
    Lab,
    expect,
    run_cli,
    run_command,
    wait_until,
)
from tests.support.target import PASSWORDS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GRPC_LINES = [LOCAL_SERVER]
pytestmark = pytest.mark.usefixtures("workspace")


@pytest.fixture(scope="module")
def workspace(lab: Lab) -> Lab:
    """The operator's directory as examples/README.md lays it out."""
    workdir = lab.workdir
    shutil.copyfile(lab.factory_pem, workdir / "factory.pem")
    expect(run_cli("ca", "init", "ca", "--intermediate", cwd=workdir), 0)
    expect(
        run_cli(
            "ca", "issue", "ca", "ops", "--out-cert", "operator.pem", "--out-key", "operator.key",
            cwd=workdir,
        ),
        0,
    )  # fmt: skip
    return lab


def run_example(lab: Lab, script: str, args_file: str, *overrides: str) -> CliRun:
    """python examples/SCRIPT @examples/ARGS_FILE --port P --user_id admin OVERRIDES..."""
    return run_command(
        [
            sys.executable, str(EXAMPLES / script), f"@{EXAMPLES / args_file}",
            "--port", str(lab.port), "--user_id", "admin", *overrides,
        ],
        env={"GNOI_PASSWORD": PASSWORDS["admin"]},
        cwd=lab.workdir,
    )  # fmt: skip


def mutual_operator(lab: Lab) -> CliOperator:
    workdir = lab.workdir
    connection = lab.connection(
        workdir / "ca" / "ca.pem", client=(workdir / "operator.pem", workdir / "operator.key")
    )
    return CliOperator(lab=lab, ca_dir=workdir / "ca", connection=connection)


def printed_fingerprint(run: CliRun) -> str:
    lines = [line.split()[-1] for line in run.stdout.splitlines() if "sha256" in line]
    assert len(lines) == 1, str(run)
    return lines[0]


def test_args_files_name_the_readme_layout() -> None:
    install = (EXAMPLES / "args_cert_install_csr.txt").read_text()
    assert "--root_ca_cert factory.pem" in install
    assert "--ca_bundle ca/bundle.pem" in install
    assert "--password_env GNOI_PASSWORD" in install
    rotate = (EXAMPLES / "args_cert_rotate_csr.txt").read_text()
    assert "--client_cert operator.pem" in rotate


@pytest.fixture(scope="module")
def installed(lab: Lab) -> CliRun:
    """The install example, with the first CA bundle: the daemon switches to mutual TLS."""
    run = expect(run_example(lab, "install_certificate_csr.py", "args_cert_install_csr.txt"), 0)
    operator = mutual_operator(lab)
    wait_until(lambda: run_cli("time", *operator.connection).returncode == 0, what="mutual TLS")
    return run


def test_install_with_a_target_csr_and_the_first_bundle(lab: Lab, installed: CliRun) -> None:
    assert f"installed {SERVER_ID} on {lab.address}" in installed.stdout
    assert "CA bundle   2 certificate(s) loaded" in installed.stdout
    fingerprint = printed_fingerprint(installed)
    assert lab.served_fingerprint() == fingerprint
    listed = mutual_operator(lab).listing()[SERVER_ID]
    assert listed["fingerprint"] == fingerprint
    assert "O=Example Networks" in listed["subject"]
    assert set(listed["sans"]) >= {"DNS:localhost", "IP:127.0.0.1", "email:noc@example.net"}


def test_rotate_with_validation(lab: Lab, installed: CliRun) -> None:
    before = lab.served_fingerprint()
    rotated = expect(run_example(lab, "rotate_certificate_csr.py", "args_cert_rotate_csr.txt"), 0)
    assert "validation served-certificate: pass" in rotated.stdout
    assert "validation probe: pass" in rotated.stdout
    assert f"rotated {SERVER_ID} on {lab.address} and finalized" in rotated.stdout
    after = printed_fingerprint(rotated)
    assert after != before
    assert lab.served_fingerprint() == after
    assert mutual_operator(lab).listing()[SERVER_ID]["fingerprint"] == after


def test_revoke(lab: Lab, installed: CliRun) -> None:
    # The args file names two IDs: one installed here, one never there (counts as revoked).
    operator = mutual_operator(lab)
    operator.json("install", "old-cert", "--ca-dir", "ca", "--cn", "old", "--key-type", "ecdsa")
    revoked = expect(run_example(lab, "revoke_certificates.py", "args_cert_revoke.txt"), 0)
    assert revoked.stdout.splitlines() == ["revoked old-cert", "revoked unused-cert"]
    assert "old-cert" not in operator.listing()


def test_rotate_of_an_unknown_id_fails_with_a_hint(lab: Lab, installed: CliRun) -> None:
    run = expect(
        run_example(
            lab, "rotate_certificate_csr.py", "args_cert_rotate_csr.txt", "--cert_id", "nope"
        ),
        1,
    )
    assert "rotate failed:" in run.stderr
    assert "hint: use install for a new certificate ID" in run.stderr


@pytest.mark.parametrize(
    ("script", "args_file"),
    [
        ("install_certificate_csr.py", "args_cert_install_csr.txt"),
        ("rotate_certificate_csr.py", "args_cert_rotate_csr.txt"),
        ("revoke_certificates.py", "args_cert_revoke.txt"),
    ],
)
def test_an_unset_password_variable_is_a_usage_error(lab: Lab, script: str, args_file: str) -> None:
    run = expect(
        run_example(lab, script, args_file, "--password_env", "GNOICERT_TEST_UNSET_VARIABLE"), 2
    )
    assert "GNOICERT_TEST_UNSET_VARIABLE is not set" in run.stderr


def test_a_missing_ca_file_is_a_usage_error(lab: Lab) -> None:
    run = expect(
        run_example(
            lab, "install_certificate_csr.py", "args_cert_install_csr.txt",
            "--root_ca_cert", "missing.pem",
        ),
        2,
    )  # fmt: skip
    assert "install failed: cannot read the CA file missing.pem" in run.stderr

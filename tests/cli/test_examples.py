"""The Junos-named examples, run with their shipped args files against a real gnoicertd.

The operator's directory is laid out as examples/README.md's walk-through leaves it (factory.pem,
server-ca/, server-ca2/, client-ca/, operator.pem/.key), so the paths in the args files hold as
written; only the port and the user change, given after the @file. The daemon serves
"gnoi-server" once it exists (local_certificate), as the walk-through's reload does. The last
test runs the walk-through itself, as written, against its own gnoicertd.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

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
ADMIN_ENV = {"GNOI_PASSWORD": PASSWORDS["admin"]}

INSTALL = ("gnoi_cert_install_certificate_csr.py", "args_cert_install_csr.txt")
ROTATE = ("gnoi_cert_rotate_certificate_csr.py", "args_cert_rotate_csr.txt")
REVOKE = ("gnoi_cert_revoke_certificates.py", "args_cert_revoke_certificates.txt")

# A Junos-style script: it sits next to grpc_channel.py and imports it by name, then calls
# GetCertificates with username/password metadata (raw bytes: no generated stubs needed).
JUNOS_STYLE_SCRIPT = """
import sys
from grpc_channel import grpc_authenticate_channel_mutual

server, port, root_ca, key, cert, user, password = sys.argv[1:]
channel = grpc_authenticate_channel_mutual(server, port, root_ca, key, cert)
get = channel.unary_unary("/gnoi.certificate.CertificateManagement/GetCertificates")
response = get(b"", metadata=(("username", user), ("password", password)), timeout=10)
print(response.hex())
"""


@pytest.fixture(scope="module")
def workspace(lab: Lab) -> Lab:
    """The operator's directory as the README's walk-through lays it out."""
    workdir = lab.workdir
    shutil.copyfile(lab.factory_pem, workdir / "factory.pem")
    for ca in ("server-ca", "server-ca2", "client-ca"):
        expect(run_cli("ca", "init", ca, cwd=workdir), 0)
    expect(
        run_cli(
            "ca", "issue", "client-ca", "ops", "--out-cert", "operator.pem",
            "--out-key", "operator.key", cwd=workdir,
        ),
        0,
    )  # fmt: skip
    # The test's own view: it trusts both server CAs, before and after the rotate.
    roots = [(workdir / ca / "ca.pem").read_bytes() for ca in ("server-ca", "server-ca2")]
    (workdir / "both-server-cas.pem").write_bytes(b"".join(roots))
    return lab


def run_example(lab: Lab, example: tuple[str, str], *overrides: str) -> CliRun:
    """python examples/SCRIPT @examples/ARGS_FILE --port P --user_id admin OVERRIDES..."""
    script, args_file = example
    return run_command(
        [
            sys.executable, str(EXAMPLES / script), f"@{EXAMPLES / args_file}",
            "--port", str(lab.port), "--user_id", "admin", *overrides,
        ],
        env=ADMIN_ENV,
        cwd=lab.workdir,
    )  # fmt: skip


def mutual_operator(lab: Lab) -> CliOperator:
    workdir = lab.workdir
    connection = lab.connection(
        workdir / "both-server-cas.pem", client=(workdir / "operator.pem", workdir / "operator.key")
    )
    return CliOperator(lab=lab, ca_dir=workdir / "server-ca2", connection=connection)


def printed_fingerprint(run: CliRun) -> str:
    lines = [line.split()[-1] for line in run.stdout.splitlines() if "sha256" in line]
    assert len(lines) == 1, str(run)
    return lines[0]


def issuer_of_served(lab: Lab, ca: str) -> bool:
    """Whether the served certificate was issued by the root in WORKDIR/CA/ca.pem."""
    listed = mutual_operator(lab).listing()[SERVER_ID]
    root = x509.load_pem_x509_certificate((lab.workdir / ca / "ca.pem").read_bytes())
    return bool(listed["issuer"] == root.subject.rfc4514_string()) and (
        listed["fingerprint"] == lab.served_fingerprint()
    )


@pytest.fixture(scope="module")
def installed(workspace: Lab) -> CliRun:
    """The install example, with the first CA bundle: the daemon switches to mutual TLS."""
    lab = workspace
    run = expect(run_example(lab, INSTALL), 0)
    operator = mutual_operator(lab)
    wait_until(lambda: run_cli("time", *operator.connection).returncode == 0, what="mutual TLS")
    return run


@pytest.fixture(scope="module")
def rotated(installed: CliRun, workspace: Lab) -> CliRun:
    return expect(run_example(workspace, ROTATE), 0)


def test_install_with_a_target_csr_and_the_first_bundle(workspace: Lab, installed: CliRun) -> None:
    lab = workspace
    assert f"installed {SERVER_ID} on {lab.address}" in installed.stdout
    # --server_root_ca1 and --client_root_ca: two roots in the bundle.
    assert "CA bundle   2 certificate(s) loaded" in installed.stdout
    listed = mutual_operator(lab).listing()[SERVER_ID]
    assert listed["fingerprint"] == printed_fingerprint(installed)
    assert "O=Example Networks" in listed["subject"]
    assert set(listed["sans"]) >= {"DNS:localhost", "IP:127.0.0.1", "email:noc@example.net"}


def test_rotate_validates_over_a_new_grpc_channel_session(
    workspace: Lab, installed: CliRun, rotated: CliRun
) -> None:
    lab = workspace
    assert "validation served-certificate: pass" in rotated.stdout
    assert (
        "validation probe: pass (System/Time over a new session trusting server-ca2/ca.pem:"
        in rotated.stdout
    )
    assert f"rotated {SERVER_ID} on {lab.address} and finalized" in rotated.stdout
    after = printed_fingerprint(rotated)
    assert after != printed_fingerprint(installed)
    assert lab.served_fingerprint() == after
    assert issuer_of_served(lab, "server-ca2")


def test_a_junos_style_script_imports_grpc_channel(workspace: Lab, rotated: CliRun) -> None:
    """`from grpc_channel import grpc_authenticate_channel_mutual`, run from examples/: the
    channel trusts the server's new root CA (now in the bundle) and carries the client cert."""
    workdir = workspace.workdir
    run = run_command(
        [
            sys.executable, "-c", JUNOS_STYLE_SCRIPT, "127.0.0.1", str(workspace.port),
            str(workdir / "server-ca2" / "ca.pem"), str(workdir / "operator.key"),
            str(workdir / "operator.pem"), "admin", PASSWORDS["admin"],
        ],
        cwd=EXAMPLES,
    )  # fmt: skip
    expect(run, 0)
    response = bytes.fromhex(run.stdout.strip())
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", response, re.S)
    fingerprints = {
        hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).hexdigest()
        for pem in pems
    }
    assert workspace.served_fingerprint() in fingerprints


def test_grpc_channel_refuses_a_missing_file_before_dialling(tmp_path: Path) -> None:
    script = (
        "from grpc_channel import grpc_authenticate_channel_mutual as mutual\n"
        "try:\n"
        f"    mutual('127.0.0.1', 9, {str(tmp_path / 'ca.pem')!r}, 'client.key', 'client.pem')\n"
        "except FileNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    run = expect(run_command([sys.executable, "-c", script], cwd=EXAMPLES), 0)
    assert run.stdout.startswith("root_ca_cert: cannot read ")


def test_revoke_of_one_existing_and_one_absent_id(workspace: Lab, rotated: CliRun) -> None:
    operator = mutual_operator(workspace)
    operator.json("install", "old-cert", "--ca-dir", "server-ca2", "--cn", "old")
    revoked = expect(run_example(workspace, REVOKE), 0)
    assert revoked.stdout.splitlines() == ["revoked old-cert", "not present unused-cert"]
    assert "old-cert" not in operator.listing()


def test_rotate_of_an_unknown_id_fails(workspace: Lab, rotated: CliRun) -> None:
    run = expect(
        run_example(workspace, ROTATE, "--root_ca_cert", "server-ca2/ca.pem", "--cert_id", "nope"),
        1,
    )
    assert "rotate failed:" in run.stderr
    assert "nope" in run.stderr


def test_a_password_file_replaces_the_args_files_variable(workspace: Lab, rotated: CliRun) -> None:
    password_file = workspace.workdir / "password.txt"
    password_file.write_text(PASSWORDS["admin"] + "\n")
    run = run_example(
        workspace, REVOKE, "--password_file", str(password_file), "--password_env", "UNSET_VAR"
    )
    # The previous test revoked old-cert: both are gone now.
    assert expect(run, 0).stdout.splitlines() == [
        "not present old-cert",
        "not present unused-cert",
    ]


@pytest.mark.parametrize("example", [INSTALL, ROTATE, REVOKE])
def test_an_unset_password_variable_is_a_usage_error(
    workspace: Lab, example: tuple[str, str]
) -> None:
    run = expect(
        run_example(workspace, example, "--password_env", "GNOICERT_TEST_UNSET_VARIABLE"), 2
    )
    assert "GNOICERT_TEST_UNSET_VARIABLE is not set" in run.stderr


def test_a_missing_ca_file_is_a_usage_error(workspace: Lab) -> None:
    run = expect(run_example(workspace, INSTALL, "--root_ca_cert", "missing.pem"), 2)
    assert "install failed: cannot read the CA file missing.pem" in run.stderr


# -- the README walk-through --------------------------------------------------------------------


def readme_walkthrough() -> str:
    """The last ```sh block of examples/README.md, the walk-through."""
    blocks = re.findall(r"^```sh\n(.*?)^```", (EXAMPLES / "README.md").read_text(), re.M | re.S)
    assert blocks, "examples/README.md has no sh block"
    return str(blocks[-1])


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(EXAMPLES)  # as in the repository root it runs from
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": "0",  # the walk-through reads the port the daemon got from its ready file
    }
    process = subprocess.Popen(
        ["bash", "-c", readme_walkthrough()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background gnoicertd can be stopped with it
    )
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None or _session_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "installed gnoi-server on 127.0.0.1:" in stdout
    assert "validation probe: pass (System/Time over a new session trusting server-ca2" in stdout
    assert "and finalized" in stdout
    assert stdout.splitlines()[-2:] == ["revoked old-cert", "not present unused-cert"]
    assert "stopped" in stderr  # the walk-through's last step stops its daemon cleanly


def _session_alive(session: int) -> bool:
    try:
        os.killpg(session, 0)
    except ProcessLookupError:
        return False
    return True

"""ExternalCommandSigner: a real child process (a small Python script) as the site's CA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gnoicert.client.ca import LocalCA
from gnoicert.client.errors import SignerError
from gnoicert.client.models import CsrParams
from gnoicert.client.signer import ExternalCommandSigner, Signer
from gnoicert.pki.crypto import build_csr, load_certificates
from tests.unit.conftest import ec_key

# A signer script as a site might write one: CSR on stdin, certificate and chain on stdout.
_SIGN_WITH_LOCAL_CA = """
import sys
from gnoicert.client.ca import LocalCA
signed = LocalCA.open(sys.argv[1]).sign(sys.stdin.buffer.read())
sys.stdout.buffer.write(signed.certificate_pem + signed.chain_pem)
"""


@pytest.fixture(scope="module")
def csr() -> bytes:
    return build_csr(ec_key(), CsrParams(common_name="r1.example.net").subject())


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "signer.py"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_signs_through_the_command(tmp_path: Path, chained_ca: LocalCA, csr: bytes) -> None:
    signer = ExternalCommandSigner(
        [sys.executable, _script(tmp_path, _SIGN_WITH_LOCAL_CA), str(chained_ca.directory)]
    )
    assert isinstance(signer, Signer)
    signed = signer.sign(csr)
    leaf = load_certificates(signed.certificate_pem)
    assert len(leaf) == 1
    assert leaf[0].subject.rfc4514_string() == "CN=r1.example.net"
    assert load_certificates(signed.chain_pem) == [chained_ca.intermediate, chained_ca.root]


def test_command_as_a_shell_style_string(tmp_path: Path, root_ca: LocalCA, csr: bytes) -> None:
    script = _script(tmp_path, _SIGN_WITH_LOCAL_CA)
    signer = ExternalCommandSigner(f"'{sys.executable}' '{script}' '{root_ca.directory}'")
    assert signer.command == (sys.executable, script, str(root_ca.directory))
    assert load_certificates(signer.sign(csr).chain_pem) == [root_ca.root]


def test_non_zero_exit_carries_stderr(tmp_path: Path, csr: bytes) -> None:
    body = (
        "import sys; sys.stdin.read(); sys.stderr.write('CA says: profile not allowed'); "
        "sys.exit(4)"
    )
    signer = ExternalCommandSigner([sys.executable, _script(tmp_path, body)])
    with pytest.raises(SignerError, match="status 4: CA says: profile not allowed"):
        signer.sign(csr)


def test_output_without_a_certificate(tmp_path: Path, csr: bytes) -> None:
    body = "import sys; sys.stdin.read(); print('queued for approval')"
    signer = ExternalCommandSigner([sys.executable, _script(tmp_path, body)])
    with pytest.raises(SignerError, match="printed no PEM certificate"):
        signer.sign(csr)


def test_the_csr_arrives_on_stdin(tmp_path: Path, csr: bytes) -> None:
    # The script echoes what it got to stderr and fails: the error shows the CSR arrived.
    body = (
        "import sys; data = sys.stdin.read(); sys.stderr.write(data.splitlines()[0]); sys.exit(1)"
    )
    signer = ExternalCommandSigner([sys.executable, _script(tmp_path, body)])
    with pytest.raises(SignerError, match="BEGIN CERTIFICATE REQUEST"):
        signer.sign(csr)


def test_missing_command(csr: bytes, tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="not found"):
        ExternalCommandSigner([str(tmp_path / "no-such-signer")]).sign(csr)


def test_timeout(tmp_path: Path, csr: bytes) -> None:
    body = "import sys, time; sys.stdin.read(); time.sleep(30)"
    signer = ExternalCommandSigner([sys.executable, _script(tmp_path, body)], timeout=0.5)
    with pytest.raises(SignerError, match=r"did not finish within 0\.5 s"):
        signer.sign(csr)


def test_empty_command() -> None:
    with pytest.raises(SignerError, match="empty"):
        ExternalCommandSigner("")

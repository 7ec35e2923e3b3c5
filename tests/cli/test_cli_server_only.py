"""Every subcommand over server-only TLS: the client trusts the factory certificate, read from
the daemon's state directory, and authenticates with username and password only.

The daemon keeps server-only TLS with a CA bundle loaded (an explicit mutual_authentication
stanza with client_certificate_request = "no-certificate"), serves its factory certificate
throughout (no local_certificate), and generates RSA-2048 keys only.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pytest

from tests.cli.suite import CliSuite
from tests.support.cli import (
    NO_CLIENT_CERTIFICATE,
    ONLY_2048,
    CliOperator,
    Lab,
    expect,
    run_cli,
)

GRPC_LINES = [ONLY_2048, *NO_CLIENT_CERTIFICATE]


@pytest.fixture(scope="module")
def operator(lab: Lab) -> CliOperator:
    """An ECDSA root CA, loaded as the bundle with `gnoicert load-ca` over server-only TLS."""
    ca_dir = lab.workdir / "ca"
    made = expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa", "--json"), 0).json()
    assert (made["key_type"], made["intermediate_subject"]) == ("ECDSA-256", None)
    operator = CliOperator(lab=lab, ca_dir=ca_dir, connection=lab.connection(lab.factory_pem))
    loaded = operator.json("load-ca", str(ca_dir / "bundle.pem"))
    assert (loaded["size"], loaded["fingerprints"]) == (1, [made["root_fingerprint"]])
    return operator


class TestServerOnlyTls(CliSuite):
    def test_the_factory_certificate_is_served_and_no_client_certificate_is_asked(
        self, operator: CliOperator
    ) -> None:
        factory_der = ssl.PEM_cert_to_DER_cert(operator.lab.factory_pem.read_text())
        assert operator.lab.served_fingerprint() == hashlib.sha256(factory_der).hexdigest()
        assert "--cert" not in operator.connection
        operator.run("time")

    def test_factory_trust_is_all_the_client_was_given(self, operator: CliOperator) -> None:
        ca_file = Path(operator.connection[operator.connection.index("--ca-file") + 1])
        assert ca_file == operator.lab.factory_pem

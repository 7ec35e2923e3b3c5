"""What a gnoicertd holds after a peer's run, read three independent ways: GetCertificates over
a fresh mutual-TLS connection (the store), a fresh TLS handshake (the served certificate) and the
audit log. A transaction is consistent when the three agree (docs/behaviour.md §3, §8)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from gnoicert.proto import cert_pb2, cert_pb2_grpc
from tests.support.cli import Lab, wait_until
from tests.support.flows import fingerprint_of
from tests.support.target import credentials

TERMINAL = ("committed", "rolled_back")


@dataclass(frozen=True)
class MutualClient:
    """The TLS files a verifier uses to read a target in mutual mode (admin credentials)."""

    root: Path
    cert: Path
    key: Path
    server_name: str | None = None

    def store(self, address: str) -> dict[str, bytes]:
        """GetCertificates: certificate PEM by ID, over a brand-new connection."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.root.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )
        options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        with grpc.secure_channel(address, creds, options=options) as channel:
            stub = cert_pb2_grpc.CertificateManagementStub(channel)
            response = stub.GetCertificates(
                cert_pb2.GetCertificatesRequest(), metadata=credentials("admin"), timeout=10
            )
        return {
            info.certificate_id: bytes(info.certificate.certificate)
            for info in response.certificate_info
        }

    def fingerprints(self, address: str) -> dict[str, str]:
        return {cid: fingerprint_of(pem) for cid, pem in self.store(address).items()}


def rsa_bits(pem: bytes) -> int:
    key = x509.load_pem_x509_certificates(pem)[0].public_key()
    size: int = getattr(key, "key_size", 0)
    return size


def terminal_records(lab: Lab, event: str, certificate_id: str) -> list[dict[str, Any]]:
    """The records that close a stream for certificate_id (committed or rolled back)."""
    return [
        r for r in lab.audit(event=event, certificate_id=certificate_id) if r["outcome"] in TERMINAL
    ]


def next_terminal_record(
    lab: Lab, event: str, certificate_id: str, seen: int, timeout: float = 15.0
) -> dict[str, Any]:
    """The record that closes the stream after the first `seen` ones (waits for the target)."""
    wait_until(
        lambda: len(terminal_records(lab, event, certificate_id)) > seen,
        timeout=timeout,
        what=f"the audit record that ends {event} #{seen + 1} of {certificate_id}",
    )
    records = terminal_records(lab, event, certificate_id)
    assert len(records) == seen + 1, records[seen:]
    return records[seen]


def assert_consistent(
    lab: Lab, verifier: MutualClient, certificate_id: str, record: dict[str, Any]
) -> str:
    """The store, the served certificate and the audit record agree on the outcome.

    Returns the fingerprint now in effect. A rollback leaves the old certificate everywhere;
    a commit the new one.
    """
    expected = (
        record["new_fingerprint"] if record["outcome"] == "committed" else record["old_fingerprint"]
    )
    assert expected, record
    wait_until(
        lambda: lab.served_fingerprint() == expected,
        timeout=10,
        what=f"the served certificate to be the {record['outcome']} one",
    )
    listed = verifier.fingerprints(lab.address)
    assert listed.get(certificate_id) == expected, (record, listed)
    return str(expected)

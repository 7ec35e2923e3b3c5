"""The unary RPCs (docs/behaviour.md §4), CSR contents (section 5) and System/Time."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gnoicert.daemon.policy import TlsMode
from gnoicert.pki import crypto
from gnoicert.pki.store import KeyOrigin
from gnoicert.proto import cert_pb2
from tests.support.gnoi import (
    LOCAL_SRV,
    SERVER_ID,
    Launcher,
    Operator,
    audit,
    csr_public_der,
    gen,
    ins,
    leaf_fingerprint,
    load,
    params,
    rot,
)
from tests.support.pki import TestCA
from tests.support.status import expect
from tests.support.target import served_fingerprint, wait_for, write_config

MALFORMED = (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def generate(operator: Operator, cert_id: str, *, bits: int = 1024) -> bytes:
    reply = await operator.stub.GenerateCSR(gen(cert_id, bits=bits), metadata=operator.metadata)
    assert reply.csr.type == cert_pb2.CT_X509
    return bytes(reply.csr.csr)


async def test_generate_csr_keeps_a_durable_pending_key(launcher: Launcher) -> None:
    operator = await launcher.provision()
    csr = await generate(operator, "pending")
    pending = operator.target.directory / "state" / "pending" / "pending.json"
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    assert "pending" not in await operator.listing()  # a pending key is not an entity

    # Survives a restart: the key is on disk, not only in the daemon's memory.
    await operator.target.close()
    restarted = await launcher.restart(operator.target)
    operator = Operator(
        restarted,
        operator.ca,
        client_chain_pem=operator.client_chain_pem,
        client_key_pem=operator.client_key_pem,
    )
    signed = operator.ca.sign_csr(csr)
    await operator.stub.LoadCertificate(load(signed, "pending"), metadata=operator.metadata)
    entity = operator.store.committed_view().entities["pending"]
    assert entity.key_origin is KeyOrigin.TARGET
    assert entity.fingerprint == leaf_fingerprint(signed)

    # Consumed: the same load again has no key to use.
    await expect(
        operator.stub.LoadCertificate(load(signed, "pending"), metadata=operator.metadata),
        *MALFORMED,
    )
    assert not pending.exists()


async def test_a_pending_key_expires(launcher: Launcher) -> None:
    """Kept for a configurable time (docs/behaviour.md §4); after it, the load has no key."""
    operator = await launcher.provision(grpc_lines=["pending_key_lifetime_s = 0.3"])
    csr = await generate(operator, "short-lived")
    expires = time.monotonic() + 0.3
    await wait_for(lambda: time.monotonic() > expires, what="the pending key's lifetime")
    refused = await expect(
        operator.stub.LoadCertificate(
            load(operator.ca.sign_csr(csr), "short-lived"), metadata=operator.metadata
        ),
        *MALFORMED,
    )
    assert "expired" in refused.message
    assert "short-lived" not in operator.store.view().entities


async def test_a_later_generate_csr_replaces_the_pending_key(operator: Operator) -> None:
    first = await generate(operator, "twice")
    second = await generate(operator, "twice")
    assert csr_public_der(first) != csr_public_der(second)  # a fresh key every time
    await expect(
        operator.stub.LoadCertificate(
            load(operator.ca.sign_csr(first), "twice"), metadata=operator.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CSR_KEY_MISMATCH",
    )
    signed = operator.ca.sign_csr(second)
    await operator.stub.LoadCertificate(load(signed, "twice"), metadata=operator.metadata)
    assert operator.store.committed_view().entities["twice"].fingerprint == leaf_fingerprint(signed)


async def test_load_certificate_replaces_an_existing_id(operator: Operator) -> None:
    """No test step and no Finalize: a rotation that commits at once."""
    old = operator.state().entity(SERVER_ID)
    assert old is not None
    signed = operator.ca.sign_csr(await generate(operator, SERVER_ID, bits=2048))
    assert operator.state().entity(SERVER_ID) == old  # GenerateCSR alone changes nothing
    await operator.stub.LoadCertificate(load(signed, SERVER_ID), metadata=operator.metadata)
    new = operator.state().entity(SERVER_ID)
    assert new is not None
    assert (new.fingerprint, new.version) == (leaf_fingerprint(signed), old.version + 1)
    assert served_fingerprint(operator.target.address) == new.fingerprint
    listing = await operator.listing()
    assert leaf_fingerprint(listing[SERVER_ID].certificate.certificate) == new.fingerprint


async def test_load_certificate_with_a_client_key_replaces_an_existing_id(
    operator: Operator,
) -> None:
    """As the pending-key path does: an atomic replacement, audited with both fingerprints."""
    first, first_fp = operator.key_load("peer")
    await operator.stub.LoadCertificate(first, metadata=operator.metadata)
    second, second_fp = operator.key_load("peer")
    await operator.stub.LoadCertificate(second, metadata=operator.metadata)
    entity = operator.store.committed_view().entities["peer"]
    assert (entity.fingerprint, entity.key_origin) == (second_fp, KeyOrigin.CLIENT)
    [record] = audit(operator.target, event="load", certificate_id="peer", detail="replaced")
    assert (record["old_fingerprint"], record["new_fingerprint"]) == (first_fp, second_fp)

    # The server's own certificate: new handshakes get the new one at once.
    old = operator.state().entity(SERVER_ID)
    assert old is not None
    request, new_fp = operator.key_load(SERVER_ID)
    await operator.stub.LoadCertificate(request, metadata=operator.metadata)
    new = operator.state().entity(SERVER_ID)
    assert new is not None
    assert (new.fingerprint, new.version) == (new_fp, old.version + 1)
    await wait_for(
        lambda: served_fingerprint(operator.target.address) == new_fp, what="the new certificate"
    )
    [record] = audit(operator.target, event="load", certificate_id=SERVER_ID, detail="replaced")
    assert (record["old_fingerprint"], record["new_fingerprint"]) == (old.fingerprint, new_fp)
    assert await operator.time(operator.new_channel()) > 0  # a new handshake, the new cert


async def test_a_client_key_replacement_is_validated_like_a_rotation(
    operator: Operator, foreign_ca: TestCA
) -> None:
    before = operator.state()
    served = served_fingerprint(operator.target.address)
    untrusted, _ = operator.key_load(SERVER_ID, ca=foreign_ca)
    await expect(
        operator.stub.LoadCertificate(untrusted, metadata=operator.metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHAIN_VERIFY_FAILED",
    )
    mismatched, _ = operator.key_load(SERVER_ID)
    mismatched.key_pair.private_key = operator.key_load(SERVER_ID)[0].key_pair.private_key
    await expect(
        operator.stub.LoadCertificate(mismatched, metadata=operator.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
        "KEY_MISMATCH",
    )
    # The server's certificate from the foreign CA, with a bundle of that CA only: the caller's
    # client certificate (from the test CA) would no longer verify.
    locking, _ = operator.key_load(SERVER_ID, ca=foreign_ca, bundle=[foreign_ca.bundle_pem])
    await expect(
        operator.stub.LoadCertificate(locking, metadata=operator.metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LOCKOUT",
    )
    assert operator.state() == before
    assert served_fingerprint(operator.target.address) == served
    assert audit(operator.target, event="load", outcome="committed") == []


async def test_get_certificates(operator: Operator) -> None:
    chained = TestCA(name="chained root", intermediate=True)
    started = time.time_ns()
    await operator.install("b-leaf")
    await operator.install(
        "a-chain", ca=chained, bundle=[operator.ca.bundle_pem, chained.bundle_pem]
    )
    finished = time.time_ns()

    reply = await operator.stub.GetCertificates(
        cert_pb2.GetCertificatesRequest(), metadata=operator.metadata
    )
    infos = list(reply.certificate_info)
    assert [i.certificate_id for i in infos] == ["a-chain", "b-leaf", SERVER_ID]
    by_id = {i.certificate_id: i for i in infos}
    for cert_id in ("a-chain", "b-leaf"):
        assert started <= by_id[cert_id].modification_time <= finished
        assert list(by_id[cert_id].endpoints) == []
        assert by_id[cert_id].certificate.type == cert_pb2.CT_X509
    [endpoint] = by_id[SERVER_ID].endpoints
    assert (endpoint.type, endpoint.endpoint) == (cert_pb2.Endpoint.EP_DAEMON, "grpc-server")
    srv = operator.store.committed_view().entities[SERVER_ID]
    assert by_id[SERVER_ID].modification_time == srv.modified_ns
    # Leaf first, then the intermediates.
    chain = x509.load_pem_x509_certificates(by_id["a-chain"].certificate.certificate)
    assert len(chain) == 2
    assert chain[0].issuer == chained.issuer.subject
    assert chain[1] == chained.issuer


async def test_get_certificates_without_local_certificate(launcher: Launcher) -> None:
    operator = await launcher.provision(local_certificate=False)
    listing = await operator.listing()
    assert list(listing[SERVER_ID].endpoints) == []


async def test_revoke_certificates(operator: Operator) -> None:
    await operator.install("gone")
    entity_dir = operator.target.directory / "state" / "current" / "certificates" / "gone"
    assert entity_dir.exists()
    reply = await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=["gone", "never-was"]),
        metadata=operator.metadata,
    )
    assert list(reply.revoked_certificate_id) == ["gone", "never-was"]
    assert list(reply.certificate_revocation_error) == []
    assert "gone" not in await operator.listing()
    assert "gone" not in operator.store.view().entities
    assert not (operator.target.directory / "state" / "current" / "certificates" / "gone").exists()


async def test_revoking_the_server_certificate(operator: Operator) -> None:
    factory = x509.load_pem_x509_certificate(operator.target.factory_pem)
    await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=[SERVER_ID]),
        metadata=operator.metadata,
    )
    # New handshakes get the factory certificate; the caller's session goes on.
    assert served_fingerprint(operator.target.address) == factory.fingerprint(hashes.SHA256()).hex()
    assert await operator.time() > 0
    assert SERVER_ID not in await operator.listing()
    assert await operator.time(operator.new_channel()) > 0


async def test_revoking_the_bundle_empties_it(operator: Operator) -> None:
    reply = await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=[crypto.CA_BUNDLE_ID]),
        metadata=operator.metadata,
    )
    assert list(reply.revoked_certificate_id) == [crypto.CA_BUNDLE_ID]
    assert operator.store.committed_view().ca_bundle_pem == b""
    # Entities stay. (Not asked over this connection: the mode switch closes it.)
    assert SERVER_ID in operator.store.committed_view().entities
    daemon = operator.target.daemon
    await wait_for(lambda: daemon.listener_mode is TlsMode.SERVER_ONLY, what="server-only TLS")
    assert await Operator(operator.target, operator.ca).time() > 0


async def test_revoking_the_bundle_is_refused_when_nobody_could_log_in_after(
    operator: Operator,
) -> None:
    """Without users, server-only TLS admits nobody: emptying the bundle would lock out all."""
    target = operator.target
    write_config(target.directory, users=(), grpc_lines=[LOCAL_SRV])
    assert await target.daemon.reload(target.config_path)
    before = operator.state()
    reply = await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=[crypto.CA_BUNDLE_ID]),
        metadata=(),  # mutual TLS without users: the client certificate is the identity
    )
    [error] = reply.certificate_revocation_error
    assert error.certificate_id == crypto.CA_BUNDLE_ID
    assert "users" in error.error_message
    assert list(reply.revoked_certificate_id) == []
    assert operator.state() == before
    assert target.daemon.listener_mode is TlsMode.MUTUAL


CAN_GENERATE = [  # (key_type, certificate_type, key_size, can_generate); 0 means "unset"
    # key_size is a minimum: 0 through the largest configured size (4096) is met.
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 1, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 1000, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 1024, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 2047, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 2048, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 3072, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 4096, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 0, True),
    (cert_pb2.KT_UNKNOWN, cert_pb2.CT_UNKNOWN, 2048, True),
    (cert_pb2.KT_UNKNOWN, cert_pb2.CT_X509, 0, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_UNKNOWN, 1024, True),
    (cert_pb2.KT_UNKNOWN, cert_pb2.CT_UNKNOWN, 4096, True),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 4097, False),
    (cert_pb2.KT_RSA, cert_pb2.CT_X509, 8192, False),
    (cert_pb2.KT_UNKNOWN, cert_pb2.CT_UNKNOWN, 4097, False),
    (2, cert_pb2.CT_X509, 2048, False),
    (cert_pb2.KT_RSA, 2, 2048, False),
]


async def can_generate_table(
    operator: Operator, table: Sequence[tuple[int, int, int, bool]]
) -> list[tuple[int, int, int, bool]]:
    """The rows whose answer differs from the table's."""
    wrong = []
    for key_type, certificate_type, key_size, expected in table:
        reply = await operator.stub.CanGenerateCSR(
            cert_pb2.CanGenerateCSRRequest(
                key_type=key_type,  # type: ignore[arg-type]
                certificate_type=certificate_type,  # type: ignore[arg-type]
                key_size=key_size,
            ),
            metadata=operator.metadata,
        )
        if reply.can_generate is not expected:
            wrong.append((key_type, certificate_type, key_size, reply.can_generate))
    return wrong


async def test_can_generate_csr(operator: Operator) -> None:
    assert await can_generate_table(operator, CAN_GENERATE) == []


async def test_csr_contents(operator: Operator) -> None:
    csr_params = params(
        "router1.example.net",
        bits=1024,
        ip_address="192.0.2.1",
        country="US",
        state="California",
        city="Sunnyvale",
        organization="Example Networks",
        organizational_unit="Ops",
        email_id="ops@example.net",
    )
    reply = await operator.stub.GenerateCSR(gen("contents", csr_params), metadata=operator.metadata)
    csr = x509.load_pem_x509_csr(reply.csr.csr)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    subject = {attr.oid: attr.value for attr in csr.subject}
    assert subject == {
        NameOID.COMMON_NAME: "router1.example.net",
        NameOID.COUNTRY_NAME: "US",
        NameOID.STATE_OR_PROVINCE_NAME: "California",
        NameOID.LOCALITY_NAME: "Sunnyvale",
        NameOID.ORGANIZATION_NAME: "Example Networks",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "Ops",
        NameOID.EMAIL_ADDRESS: "ops@example.net",
    }
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["router1.example.net"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.1")]
    assert sans.get_values_for_type(x509.RFC822Name) == ["ops@example.net"]
    key = csr.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048  # min_key_size 1024 asked; the default size is the floor


async def test_csr_common_name_that_is_an_address_is_no_dns_name(operator: Operator) -> None:
    reply = await operator.stub.GenerateCSR(
        gen("by-ip", params("127.0.0.1", bits=1024, ip_address="")), metadata=operator.metadata
    )
    csr = x509.load_pem_x509_csr(reply.csr.csr)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "127.0.0.1"
    with pytest.raises(x509.ExtensionNotFound):
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


async def csr_key_sizes(operator: Operator, minimums: tuple[int, ...]) -> dict[str, int]:
    """The key size the target makes for each min_key_size, by the unary GenerateCSR and by
    generate_csr on an Install stream (keyed "unary:N" and "stream:N")."""
    sizes = {}
    for min_key_size in minimums:
        request = gen("sized", params(bits=min_key_size))
        reply = await operator.stub.GenerateCSR(request, metadata=operator.metadata)
        sizes[f"unary:{min_key_size}"] = csr_key_size(reply.csr.csr)
        call = operator.stub.Install(metadata=operator.metadata)
        await call.write(ins(request))
        answer = await call.read()
        sizes[f"stream:{min_key_size}"] = csr_key_size(answer.generated_csr.csr.csr)
        call.cancel()
    await wait_for(lambda: not operator.store.is_locked("sized"), what="the streams ended")
    return sizes


def csr_key_size(csr_pem: bytes) -> int:
    key = x509.load_pem_x509_csr(csr_pem).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key.key_size


async def test_csr_key_is_the_smallest_configured_at_least_the_minimum_and_the_default(
    operator: Operator,
) -> None:
    """gnoic and gnxi ask min_key_size 1024 by default: that must not make a 1024-bit key."""
    sizes = await csr_key_sizes(operator, (0, 1000, 1024, 1025, 2049, 3072))
    expected = {0: 2048, 1000: 2048, 1024: 2048, 1025: 2048, 2049: 3072, 3072: 3072}
    assert sizes == {f"{how}:{k}": v for k, v in expected.items() for how in ("unary", "stream")}


async def test_min_key_size_above_the_largest_is_unimplemented(operator: Operator) -> None:
    code = (grpc.StatusCode.UNIMPLEMENTED, "UNSUPPORTED_KEY")
    request = gen("too-big", params(bits=4097))
    await expect(operator.stub.GenerateCSR(request, metadata=operator.metadata), *code)
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(request))
    await expect(call.read(), *code)
    assert "too-big" not in await operator.listing()


async def test_a_configured_default_key_size_is_the_floor(launcher: Launcher) -> None:
    operator = await launcher.provision(
        grpc_lines=["key_sizes = [1024, 2048, 3072]", "default_key_size = 3072"]
    )
    sizes = await csr_key_sizes(operator, (0, 1024, 2048))
    assert set(sizes.values()) == {3072}
    rsa_x509 = (cert_pb2.KT_RSA, cert_pb2.CT_X509)
    table = [(*rsa_x509, 1024, True), (*rsa_x509, 3072, True), (*rsa_x509, 3073, False)]
    assert await can_generate_table(operator, table) == []
    await expect(
        operator.stub.GenerateCSR(gen("big", bits=4096), metadata=operator.metadata),
        grpc.StatusCode.UNIMPLEMENTED,
        "UNSUPPORTED_KEY",
    )


async def test_every_generate_csr_in_a_stream_makes_a_fresh_key(operator: Operator) -> None:
    current = operator.store.committed_view().entities[SERVER_ID].certificate.public_key()
    seen = {current.public_bytes(*_SPKI)}
    for wrap, rpc in ((rot, "Rotate"), (rot, "Rotate"), (ins, "Install")):
        call = getattr(operator.stub, rpc)(metadata=operator.metadata)
        await call.write(wrap(gen(SERVER_ID if rpc == "Rotate" else "fresh", bits=1024)))
        reply = await call.read()
        public = csr_public_der(reply.generated_csr.csr.csr)
        assert public not in seen
        seen.add(public)
        call.cancel()
    await wait_for(lambda: not operator.store.is_locked(SERVER_ID), what="the streams ended")


async def test_time_is_nanoseconds_since_the_epoch(operator: Operator) -> None:
    before = time.time_ns()
    reported = await operator.time()
    after = time.time_ns()
    assert before - 10**9 <= reported <= after + 10**9


async def test_alpn_h2_is_negotiated(operator: Operator) -> None:
    """docs/behaviour.md §9: Go clients refuse a TLS server that does not select ALPN h2."""
    host, port = operator.target.address.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=operator.roots.decode())
    context.load_cert_chain(*_client_files(operator))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"


def _client_files(operator: Operator) -> tuple[str, str]:
    """The operator's client certificate and key as files (ssl loads them from paths only)."""
    assert operator.client_chain_pem is not None
    assert operator.client_key_pem is not None
    directory = Path(operator.target.directory)
    chain, key = directory / "client-chain.pem", directory / "client-key.pem"
    chain.write_bytes(operator.client_chain_pem)
    key.touch(mode=0o600)
    key.write_bytes(operator.client_key_pem)
    return str(chain), str(key)

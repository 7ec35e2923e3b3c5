"""Install (docs/wire.md 5.2) over a raw grpcio stream: both key cases, every place of the ID."""

from __future__ import annotations

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gnoicert.pki.store import KeyOrigin
from gnoicert.proto import cert_pb2
from tests.support.gnoi import (
    ID_PLACES,
    IdPlace,
    Operator,
    audit,
    client_key_pair,
    csr_public_der,
    gen,
    ins,
    leaf_fingerprint,
    load,
    pem_csr,
    split_id,
)
from tests.support.pki import PrivateKey, TestCA, cert_pem, rsa_key
from tests.support.status import expect, final_code
from tests.support.target import wait_for
from tests.vectors import load_vector

DER = serialization.Encoding.DER
_SPKI = (DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(*_SPKI)


@pytest.mark.parametrize("place", ID_PLACES)
async def test_install_with_target_key(operator: Operator, place: IdPlace) -> None:
    gen_id, load_id = split_id("web", place)
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(gen(gen_id)))
    reply = await call.read()
    assert reply.WhichOneof("install_response") == "generated_csr"
    csr = reply.generated_csr.csr
    assert csr.type == cert_pb2.CT_X509
    assert csr.csr.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    signed = operator.ca.sign_csr(csr.csr)
    await call.write(ins(load(signed, load_id)))
    reply = await call.read()
    assert reply.WhichOneof("install_response") == "load_certificate"
    assert await final_code(call) is grpc.StatusCode.OK

    listing = await operator.listing()
    assert leaf_fingerprint(listing["web"].certificate.certificate) == leaf_fingerprint(signed)
    entity = operator.store.committed_view().entities["web"]
    assert entity.key_origin is KeyOrigin.TARGET
    assert entity.version == 1
    assert entity.certificate.public_key().public_bytes(*_SPKI) == csr_public_der(csr.csr)
    [record] = audit(operator.target, event="install", certificate_id="web", outcome="committed")
    assert record["new_fingerprint"] == leaf_fingerprint(signed)


@pytest.mark.parametrize("kind", ["rsa-pkcs1", "rsa-pkcs8", "ec-p256"])
async def test_install_with_client_key(
    operator: Operator, client_keys: dict[str, PrivateKey], kind: str
) -> None:
    key = client_keys[kind]
    private, public = client_key_pair(kind, key)
    signed = operator.ca.sign_csr(pem_csr(key))
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(load(signed, f"client-{kind}", private_key=private, public_key=public)))
    reply = await call.read()
    assert reply.WhichOneof("install_response") == "load_certificate"
    assert await final_code(call) is grpc.StatusCode.OK

    entity = operator.store.committed_view().entities[f"client-{kind}"]
    assert entity.key_origin is KeyOrigin.CLIENT
    stored = serialization.load_pem_private_key(entity.private_key_pem, None)
    assert stored.public_key().public_bytes(*_SPKI) == _public_der(key)
    assert f"client-{kind}" in await operator.listing()


async def test_install_ids_in_both_messages_must_agree(operator: Operator) -> None:
    before = operator.state()
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(gen("one")))
    reply = await call.read()
    signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(ins(load(signed, "two")))
    failure = await expect(call.read(), grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert "'two'" in failure.message
    assert "'one'" in failure.message
    assert operator.state() == before
    await wait_for(lambda: not operator.store.is_locked("one"), what="lock of 'one' released")
    await operator.install("one")
    await operator.install("two")


async def test_install_cancelled_right_after_load_response_stays_installed(
    operator: Operator,
) -> None:
    """docs/behaviour.md §9: a common CLI never half-closes; it reads the load response and
    cancels. Install commits at load, so the certificate stays."""
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(gen("kept")))
    reply = await call.read()
    signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(ins(load(signed, "kept")))
    reply = await call.read()
    assert reply.WhichOneof("install_response") == "load_certificate"
    call.cancel()
    await wait_for(lambda: not operator.store.is_locked("kept"), what="lock released")
    listing = await operator.listing()
    assert leaf_fingerprint(listing["kept"].certificate.certificate) == leaf_fingerprint(signed)
    assert not audit(operator.target, certificate_id="kept", outcome="rolled_back")


async def test_install_with_bundle_replaces_the_bundle(operator: Operator) -> None:
    """A non-empty ca_certificates replaces the whole bundle (docs/behaviour.md §3)."""
    extra = x509.load_pem_x509_certificate(operator.ca.bundle_pem)
    bundle = [operator.ca.bundle_pem, TestCA(name="second root").bundle_pem]
    await operator.install("with-bundle", bundle=bundle)
    stored = x509.load_pem_x509_certificates(operator.store.committed_view().ca_bundle_pem)
    assert len(stored) == 2
    assert stored[0] == extra
    # An empty list leaves the bundle as it is.
    before = operator.store.committed_view().ca_bundle_pem
    await operator.install("no-bundle")
    assert operator.store.committed_view().ca_bundle_pem == before


async def test_install_material_as_clients_send_it(operator: Operator) -> None:
    """docs/behaviour.md §6, with keys and certificates made by OpenSSL, not by us."""
    ca = operator.ca
    # The fallback of a client whose CanGenerateCSR(1024) said no: PKCS#1 RSA-1024 key, its DER
    # CSR in public_key.
    csr = x509.load_der_x509_csr(load_vector("rsa1024_csr.der"))
    signed = cert_pem(ca.issue(csr.public_key()))  # type: ignore[arg-type]
    private = load_vector("rsa1024_pkcs1.pem")
    await install_loaded(
        operator, load(signed, "fallback", private_key=private, public_key=csr.public_bytes(DER))
    )
    # An OpenSSL root (no keyUsage) and its leaf, a SEC1 EC key, the root sent along.
    request = load(
        load_vector("openssl_leaf.pem"),
        "openssl",
        private_key=load_vector("ec_p256_sec1.pem"),
        bundle=[ca.bundle_pem, load_vector("openssl_root.pem")],
    )
    await install_loaded(operator, request)
    # One DER certificate, a DER PKCS#8 key, type CT_UNKNOWN (read as X.509).
    key = ec.generate_private_key(ec.SECP384R1())
    request = cert_pb2.LoadCertificateRequest(
        certificate=cert_pb2.Certificate(
            type=cert_pb2.CT_UNKNOWN, certificate=ca.issue(key.public_key()).public_bytes(DER)
        ),
        certificate_id="der-p384",
    )
    request.key_pair.private_key = key.private_bytes(
        DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    await install_loaded(operator, request)
    # An RSA-1024 CA (the chain check's library refuses it: the target walks the chain itself).
    weak = TestCA(name="rsa-1024 root", key=rsa_key(1024))
    request, _ = operator.key_load(
        "weak-issuer",
        ca=weak,
        bundle=[ca.bundle_pem, load_vector("openssl_root.pem"), weak.bundle_pem],
    )
    await install_loaded(operator, request)
    listing = await operator.listing()
    assert {"fallback", "openssl", "der-p384", "weak-issuer"} <= set(listing)
    # Whatever came in, the listing gives PEM.
    assert listing["der-p384"].certificate.certificate.startswith(b"-----BEGIN CERTIFICATE-----")


async def install_loaded(operator: Operator, request: cert_pb2.LoadCertificateRequest) -> None:
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(request))
    reply = await call.read()
    assert reply.WhichOneof("install_response") == "load_certificate", await call.details()
    assert await final_code(call) is grpc.StatusCode.OK
    assert request.certificate_id in operator.store.committed_view().entities

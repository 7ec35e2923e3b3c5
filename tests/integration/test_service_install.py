"""Install (wire.md 5.2) over a raw grpcio stream: both key cases, every place of the ID."""

from __future__ import annotations

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gnoicert.pki.store import KeyOrigin
from gnoicert.proto import cert_pb2
from tests.support.gnoi import (
    ID_PLACES,
    IdPlace,
    Operator,
    audit,
    csr_public_der,
    der_csr,
    gen,
    ins,
    leaf_fingerprint,
    load,
    split_id,
)
from tests.support.pki import PrivateKey, key_pem
from tests.support.status import expect, final_code
from tests.support.target import wait_for

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(*_SPKI)


def client_key_pair(kind: str, key: PrivateKey) -> tuple[bytes, bytes]:
    """(private_key, public_key) the way different clients fill KeyPair."""
    if kind == "rsa-pkcs1":
        # gnoic's fallback: PKCS#1 "RSA PRIVATE KEY" PEM, and its DER CSR in public_key.
        assert isinstance(key, rsa.RSAPrivateKey)
        return key_pem(key, pkcs1=True), der_csr(key)
    if kind == "rsa-pkcs8":
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return key_pem(key), public
    return key_pem(key), b""


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
    [record] = audit(operator.target, event="install", certificate_id="web")
    assert record["outcome"] == "committed"
    assert record["new_fingerprint"] == leaf_fingerprint(signed)


@pytest.mark.parametrize("kind", ["rsa-pkcs1", "rsa-pkcs8", "ec-p256"])
async def test_install_with_client_key(
    operator: Operator, client_keys: dict[str, PrivateKey], kind: str
) -> None:
    key = client_keys[kind]
    private, public = client_key_pair(kind, key)
    signed = operator.ca.sign_csr(
        x509.load_der_x509_csr(der_csr(key)).public_bytes(serialization.Encoding.PEM)
    )
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
    assert "'two'" in failure.message and "'one'" in failure.message
    assert operator.state() == before
    await wait_for(lambda: not operator.store.is_locked("one"), what="lock of 'one' released")
    await operator.install("one")
    await operator.install("two")


async def test_install_cancelled_right_after_load_response_stays_installed(
    operator: Operator,
) -> None:
    """Semantics section 9: a common CLI never half-closes; it reads the load response and
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
    """A non-empty ca_certificates replaces the whole bundle (semantics section 3)."""
    extra = x509.load_pem_x509_certificate(operator.ca.bundle_pem)
    bundle = [operator.ca.bundle_pem, _other_root_pem()]
    await operator.install("with-bundle", bundle=bundle)
    stored = x509.load_pem_x509_certificates(operator.store.committed_view().ca_bundle_pem)
    assert len(stored) == 2
    assert stored[0] == extra
    # An empty list leaves the bundle as it is.
    before = operator.store.committed_view().ca_bundle_pem
    await operator.install("no-bundle")
    assert operator.store.committed_view().ca_bundle_pem == before


def _other_root_pem() -> bytes:
    from tests.support.pki import TestCA

    return TestCA(name="second root").bundle_pem

"""Per-ID locks and the single CA-bundle lock (docs/behaviour.md §3, "Locks")."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from cryptography import x509

from gnoicert.pki import crypto
from gnoicert.proto import cert_pb2
from tests.support.bundle import Bundle
from tests.support.gnoi import (
    FINALIZE,
    SERVER_ID,
    Operator,
    certificate,
    gen,
    ins,
    open_rotation,
    rot,
)
from tests.support.pki import TestCA
from tests.support.status import expect, final_code
from tests.support.target import wait_for

BUSY = (grpc.StatusCode.ABORTED, "OPERATION_IN_PROGRESS")


async def test_second_rotate_on_the_same_id_is_aborted_at_its_first_message(
    operator: Operator,
) -> None:
    first, new = await open_rotation(operator)

    second = operator.stub.Rotate(metadata=operator.metadata)
    await second.write(rot(gen(SERVER_ID)))
    failure = await expect(second.read(), *BUSY)
    assert f"'{SERVER_ID}'" in failure.message

    # A client-key Rotate names the ID only in its load: refused there.
    third = operator.stub.Rotate(metadata=operator.metadata)
    request, _ = operator.key_load(SERVER_ID)
    await third.write(rot(request))
    assert f"'{SERVER_ID}'" in (await expect(third.read(), *BUSY)).message

    # An Install naming the ID waits for nobody either.
    install = operator.stub.Install(metadata=operator.metadata)
    await install.write(ins(gen(SERVER_ID)))
    await expect(install.read(), *BUSY)

    # The refused streams changed nothing; the first one still commits.
    await first.write(FINALIZE)
    assert await final_code(first) is grpc.StatusCode.OK
    assert operator.store.committed_view().entities[SERVER_ID].fingerprint == new
    await operator.rotate(SERVER_ID)


async def test_two_installs_of_one_new_id(operator: Operator) -> None:
    first = operator.stub.Install(metadata=operator.metadata)
    await first.write(ins(gen("new")))
    await first.read()
    second = operator.stub.Install(metadata=operator.metadata)
    request, _ = operator.key_load("new")
    await second.write(ins(request))
    await expect(second.read(), *BUSY)
    first.cancel()
    await operator.install("new")


async def test_rotates_of_different_ids_run_side_by_side(operator: Operator) -> None:
    await operator.install("web")
    results = await asyncio.gather(operator.rotate(SERVER_ID), operator.rotate("web"))
    entities = operator.store.committed_view().entities
    assert [entities[SERVER_ID].fingerprint, entities["web"].fingerprint] == list(results)


async def test_revoke_reports_a_locked_id_and_succeeds_for_the_rest(operator: Operator) -> None:
    await operator.install("web")
    call, new = await open_rotation(operator)
    reply = await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=[SERVER_ID, "web", "absent"]),
        metadata=operator.metadata,
    )
    assert list(reply.revoked_certificate_id) == ["web", "absent"]
    [error] = reply.certificate_revocation_error
    assert error.certificate_id == SERVER_ID
    assert SERVER_ID in error.error_message
    assert set(operator.store.committed_view().entities) == {SERVER_ID}

    await call.write(FINALIZE)
    assert await final_code(call) is grpc.StatusCode.OK
    assert operator.store.committed_view().entities[SERVER_ID].fingerprint == new


async def test_unary_calls_on_a_locked_id_are_aborted(operator: Operator) -> None:
    call, _ = await open_rotation(operator)
    before = operator.state()
    await expect(operator.stub.GenerateCSR(gen(SERVER_ID), metadata=operator.metadata), *BUSY)
    request, _ = operator.key_load(SERVER_ID)
    await expect(operator.stub.LoadCertificate(request, metadata=operator.metadata), *BUSY)
    assert operator.state() == before
    call.cancel()


async def test_one_bundle_change_at_a_time(operator: Operator) -> None:
    """A Rotate carrying ca_certificates holds the bundle until it ends."""
    second_root = TestCA(name="second root").bundle_pem
    await operator.install("web")
    bundle = [operator.ca.bundle_pem, second_root]
    request, new = operator.key_load(SERVER_ID, bundle=bundle)
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(request))
    await call.read()
    before = operator.state()

    unary = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(operator.ca.bundle_pem)]
    )
    failure = await expect(
        operator.stub.LoadCertificateAuthorityBundle(unary, metadata=operator.metadata), *BUSY
    )
    assert crypto.CA_BUNDLE_ID in failure.message
    other = operator.stub.Rotate(metadata=operator.metadata)
    other_request, _ = operator.key_load("web", bundle=[operator.ca.bundle_pem])
    await other.write(rot(other_request))
    await expect(other.read(), *BUSY)
    install = operator.stub.Install(metadata=operator.metadata)
    install_request, _ = operator.key_load("fresh", bundle=[operator.ca.bundle_pem])
    await install.write(ins(install_request))
    await expect(install.read(), *BUSY)
    revoke = await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=[crypto.CA_BUNDLE_ID]),
        metadata=operator.metadata,
    )
    assert [e.certificate_id for e in revoke.certificate_revocation_error] == [crypto.CA_BUNDLE_ID]
    assert operator.state() == before

    await call.write(FINALIZE)
    assert await final_code(call) is grpc.StatusCode.OK
    committed = operator.store.committed_view()
    assert committed.entities[SERVER_ID].fingerprint == new
    assert len(x509.load_pem_x509_certificates(committed.ca_bundle_pem)) == 2
    # Free again: the unary bundle load now goes through.
    await operator.stub.LoadCertificateAuthorityBundle(unary, metadata=operator.metadata)
    assert operator.store.committed_view().ca_bundle_pem == operator.ca.bundle_pem


@pytest.mark.parametrize("rpc", ["Rotate", "LoadCertificate"])
async def test_a_load_carrying_a_bundle_holds_it_while_being_validated(
    operator: Operator, big_bundle: Bundle, foreign_ca: TestCA, rpc: str
) -> None:
    """The lockout and mode checks judge the bundle being replaced: no other bundle change may
    land between them and the stage. A 20,000-CA bundle keeps the validation busy long enough
    to look."""
    bundle = [operator.ca.bundle_pem, *big_bundle.pems]
    cert_id = SERVER_ID if rpc == "Rotate" else "web"
    request, _ = operator.key_load(cert_id, bundle=bundle)  # the ID only in the load
    if rpc == "Rotate":
        call = operator.stub.Rotate(metadata=operator.metadata)
        await call.write(rot(request))
    else:
        unary = asyncio.ensure_future(
            operator.stub.LoadCertificate(request, metadata=operator.metadata)
        )
    store = operator.store
    await wait_for(lambda: store.is_locked(cert_id), what="the load being processed")
    # A bundle change that fails its own checks, and would change nothing, shows who holds it.
    probe = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(foreign_ca.bundle_pem)]
    )
    load_bundle = operator.stub.LoadCertificateAuthorityBundle
    await expect(load_bundle(probe, metadata=operator.metadata), *BUSY)
    if rpc == "Rotate":
        reply = await call.read()
        assert reply.WhichOneof("rotate_response") == "load_certificate"
        call.cancel()
    else:
        await unary
    await wait_for(lambda: not store.is_locked(cert_id), what="the load ended")
    await expect(
        load_bundle(probe, metadata=operator.metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LOCKOUT",
    )


async def test_a_bundle_change_during_a_rotation_keeps_both_server_certificates_verifiable(
    operator: Operator,
) -> None:
    """While a Rotate of the server's certificate is in effect, either certificate may end up
    served: the new one if it commits, the old one if it rolls back. A new bundle must verify
    both, or the rollback would leave a server that no client trusting the bundle can verify."""
    second = TestCA(name="second root")
    both = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(operator.ca.bundle_pem), certificate(second.bundle_pem)]
    )
    await operator.stub.LoadCertificateAuthorityBundle(both, metadata=operator.metadata)
    # From now on the client certificate and the new server certificate come from `second`.
    operator.client_chain_pem, operator.client_key_pem = second.client_credentials()
    operator.channel = operator.target.channel(
        operator.roots + second.bundle_pem,
        client_chain_pem=operator.client_chain_pem,
        client_key_pem=operator.client_key_pem,
    )
    request, new = operator.key_load(SERVER_ID, ca=second)
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(request))
    await call.read()
    before = operator.state()

    only_second = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(second.bundle_pem)]
    )
    refused = await expect(
        operator.stub.LoadCertificateAuthorityBundle(only_second, metadata=operator.metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LOCKOUT",
    )
    assert "server certificate" in refused.message
    assert operator.state() == before
    call.cancel()
    await wait_for(lambda: not operator.store.is_locked(SERVER_ID), what="the rollback")
    old = operator.store.committed_view().entities[SERVER_ID]
    assert old.fingerprint != new
    # After the rollback the old certificate is served again: the bundle still verifies it.
    bundle = x509.load_pem_x509_certificates(operator.store.committed_view().ca_bundle_pem)
    assert old.certificate.issuer in [ca.subject for ca in bundle]

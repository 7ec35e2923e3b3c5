"""Every row of the status table (docs/behaviour.md §2): code, ErrorInfo reason, domain, and
no change to the store. OPERATION_IN_PROGRESS is asserted in test_service_concurrency,
NOT_FINALIZED and FINALIZE_TIMEOUT in test_service_rotate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from gnoicert.daemon.policy import TlsMode
from gnoicert.pki import crypto
from gnoicert.proto import cert_pb2, system_pb2
from tests.support.faults import Fsync
from tests.support.gnoi import (
    FINALIZE,
    READER,
    SERVER_ID,
    Launcher,
    Operator,
    audit,
    certificate,
    gen,
    ins,
    leaf_fingerprint,
    load,
    params,
    rot,
)
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem, now
from tests.support.status import Failure, expect, failure
from tests.support.target import served_fingerprint, wait_for
from tests.vectors import load_vector

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
MALFORMED = (INVALID, "MALFORMED_REQUEST")
BAD_ID = (INVALID, "BAD_CERT_ID")
BAD_ENCODING = (INVALID, "BAD_ENCODING")
Reply = Any
Message = Any  # an envelope, or a callable building one from the previous reply


async def stream_failure(operator: Operator, rpc: str, *messages: Message) -> Failure:
    """Send messages on a new Install/Rotate stream, reading a reply after each; the failure
    that ends it (the test fails if the stream does not fail)."""
    call = getattr(operator.stub, rpc)(metadata=operator.metadata)
    reply: Reply = None
    for message in messages:
        envelope = message(reply) if callable(message) else message
        try:
            await call.write(envelope)
            reply = await call.read()
        except grpc.aio.AioRpcError:
            break  # ended by the target: its status is read below
    return await failure(call.read())


def signed(
    operator: Operator, wrap: Callable[..., Any], cert_id: str = "", *, by: TestCA | None = None
) -> Message:
    """A load_certificate carrying a certificate for the CSR just received (by the test CA)."""
    issuer = by or operator.ca
    return lambda reply: wrap(load(issuer.sign_csr(reply.generated_csr.csr.csr), cert_id))


def client_material(issuer: TestCA, /, **issue: Any) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM) of a fresh client key, issued by issuer."""
    key = ec_key()
    return cert_pem(issuer.issue(key.public_key(), **issue)) + issuer.chain_pem, key_pem(key)


@pytest.fixture
def op(operator: Operator) -> Iterator[Operator]:
    """The operator, and a check that the test left the store and every lock as it was."""
    before = operator.state()
    yield operator
    assert operator.state() == before
    for cert_id in (SERVER_ID, "new", "absent"):
        assert not operator.store.is_locked(cert_id), cert_id


# -- existence ------------------------------------------------------------------------------------


async def test_cert_id_exists(op: Operator) -> None:
    code = (grpc.StatusCode.ALREADY_EXISTS, "CERT_ID_EXISTS")
    refused = await stream_failure(op, "Install", ins(gen(SERVER_ID)))
    assert "Rotate" in refused.expect(*code).message
    chain, key = client_material(op.ca)
    (await stream_failure(op, "Install", ins(load(chain, SERVER_ID, private_key=key)))).expect(
        *code
    )
    # (A unary LoadCertificate onto an existing ID replaces it: test_service_unary.py.)


async def test_cert_id_not_found(op: Operator) -> None:
    code = (grpc.StatusCode.NOT_FOUND, "CERT_ID_NOT_FOUND")
    (await stream_failure(op, "Rotate", rot(gen("absent")))).expect(*code)
    chain, key = client_material(op.ca)
    (await stream_failure(op, "Rotate", rot(load(chain, "absent", private_key=key)))).expect(*code)


# -- malformed requests --------------------------------------------------------------------------


@pytest.mark.parametrize("rpc", ["Rotate", "Install"])
async def test_empty_envelope(op: Operator, rpc: str) -> None:
    wrap = rot if rpc == "Rotate" else ins
    cert_id = SERVER_ID if rpc == "Rotate" else "new"
    (await stream_failure(op, rpc, wrap())).expect(*MALFORMED)
    (await stream_failure(op, rpc, wrap(gen(cert_id)), wrap())).expect(*MALFORMED)


async def test_messages_out_of_order(op: Operator) -> None:
    chain, key = client_material(op.ca)
    with_key = load(chain, SERVER_ID, private_key=key)
    cases: list[tuple[str, tuple[Message, ...]]] = [
        ("Rotate", (FINALIZE,)),
        ("Rotate", (rot(gen(SERVER_ID)), FINALIZE)),
        ("Rotate", (rot(with_key), rot(gen(SERVER_ID)))),
    ]
    for rpc, messages in cases:
        (await stream_failure(op, rpc, *messages)).expect(*MALFORMED)


async def test_duplicate_messages(op: Operator) -> None:
    chain, key = client_material(op.ca)
    with_key = load(chain, SERVER_ID, private_key=key)
    cases: list[tuple[str, tuple[Message, ...]]] = [
        ("Rotate", (rot(gen(SERVER_ID)), rot(gen(SERVER_ID)))),
        ("Install", (ins(gen("new")), ins(gen("new")))),
        ("Rotate", (rot(with_key), rot(with_key))),
    ]
    for rpc, messages in cases:
        (await stream_failure(op, rpc, *messages)).expect(*MALFORMED)


async def test_missing_fields(op: Operator) -> None:
    chain, key = client_material(op.ca)
    no_certificate = cert_pb2.LoadCertificateRequest(certificate_id="new")
    no_certificate.key_pair.private_key = key
    cases: list[tuple[str, tuple[Message, ...]]] = [
        ("Install", (ins(no_certificate),)),  # no certificate
        ("Install", (ins(gen()), signed(op, ins))),  # no ID anywhere
        ("Install", (ins(load(chain, "new")),)),  # no key: no CSR, no key pair
        ("Rotate", (rot(load(chain, SERVER_ID)),)),
        ("Install", (ins(load(b"", "new", private_key=key)),)),  # empty certificate bytes
    ]
    for rpc, messages in cases:
        (await stream_failure(op, rpc, *messages)).expect(*MALFORMED)
    # proto3 cannot tell an empty ID from a missing one (docs/wire.md 4.3).
    await expect(op.stub.GenerateCSR(gen(""), metadata=op.metadata), *MALFORMED)
    await expect(op.stub.LoadCertificate(load(chain, ""), metadata=op.metadata), *MALFORMED)
    # Unary LoadCertificate without a key pair needs a pending key from GenerateCSR.
    await expect(op.stub.LoadCertificate(load(chain, "new"), metadata=op.metadata), *MALFORMED)


async def test_ids_in_both_messages_differ(op: Operator) -> None:
    for rpc, wrap, first, second in (
        ("Rotate", rot, SERVER_ID, "new"),
        ("Install", ins, "new", "absent"),
    ):
        refused = await stream_failure(op, rpc, wrap(gen(first)), signed(op, wrap, second))
        assert f"'{second}'" in refused.expect(*MALFORMED).message


async def test_messages_after_the_end_are_never_read(operator: Operator) -> None:
    """The end of a Rotate is Finalize (of an Install, the load): the target commits and ends
    the RPC with OK at once, so whatever the client writes after it changes nothing."""
    op = operator
    call = op.stub.Rotate(metadata=op.metadata)
    await call.write(rot(gen(SERVER_ID)))
    reply = await call.read()
    new = op.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(rot(load(new)))
    await call.read()
    await call.write(FINALIZE)
    for extra in (FINALIZE, rot(gen(SERVER_ID)), rot()):
        try:
            await call.write(extra)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError):
            break  # already ended
    assert await call.code() is grpc.StatusCode.OK
    await wait_for(lambda: not op.store.is_locked(SERVER_ID), what="the rotation ended")
    assert op.store.committed_view().entities[SERVER_ID].fingerprint == leaf_fingerprint(new)


# -- bad certificate IDs ---------------------------------------------------------------------


BAD_IDS = ["../x", "a/b", "x" * 65, ".hidden", "sp ace", "é", crypto.CA_BUNDLE_ID]


async def test_bad_cert_id(op: Operator) -> None:
    chain, key = client_material(op.ca)
    revoke = cert_pb2.RevokeCertificatesRequest(certificate_id=BAD_IDS[:-1])
    for bad_id in BAD_IDS:
        with_key = load(chain, bad_id, private_key=key)
        (await stream_failure(op, "Install", ins(gen(bad_id)))).expect(*BAD_ID)
        (await stream_failure(op, "Install", ins(with_key))).expect(*BAD_ID)
        (await stream_failure(op, "Rotate", rot(gen(bad_id)))).expect(*BAD_ID)
        (await stream_failure(op, "Rotate", rot(with_key))).expect(*BAD_ID)
        refused = await stream_failure(op, "Install", ins(gen(bits=1024)), signed(op, ins, bad_id))
        refused.expect(*BAD_ID)
        await expect(op.stub.GenerateCSR(gen(bad_id), metadata=op.metadata), *BAD_ID)
        await expect(op.stub.LoadCertificate(with_key, metadata=op.metadata), *BAD_ID)
    # Revoke reports bad IDs one by one (the bundle's own ID is valid there), and ends OK.
    reply = await op.stub.RevokeCertificates(revoke, metadata=op.metadata)
    assert [e.certificate_id for e in reply.certificate_revocation_error] == BAD_IDS[:-1]
    assert list(reply.revoked_certificate_id) == []


# -- material that does not parse or does not match ---------------------------------------------


async def test_bad_encoding(op: Operator) -> None:
    chain, key = client_material(op.ca)
    garbage_pem = (
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    encrypted = ec_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-password"),
    )
    bad_loads = [
        load(garbage_pem, "new", private_key=key),  # PEM framing, garbage inside
        load(b"\x30\x82garbage", "new", private_key=key),  # DER-looking garbage
        load(b"plain text", "new", private_key=key),
        load(chain, "new", private_key=b"garbage key"),
        load(
            chain,
            "new",
            private_key=b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
        load(chain, "new", private_key=encrypted),
        load(chain, "new", private_key=key, bundle=[garbage_pem]),
        # Keys the target refuses (OpenSSL-made): too weak, a curve or type grpcio cannot
        # serve, or encrypted.
        *(
            load(chain, "new", private_key=load_vector(name))
            for name in (
                "rsa512_pkcs1.pem",
                "ec_p521_sec1.pem",
                "ed25519_pkcs8.pem",
                "rsa1024_pkcs1_encrypted.pem",
                "rsa1024_pkcs8_encrypted.pem",
            )
        ),
    ]
    for request in bad_loads:
        refused = await stream_failure(op, "Install", ins(request))
        refused.expect(*BAD_ENCODING)
        assert "PRIVATE KEY" not in refused.message  # never echoes key material
        await expect(op.stub.LoadCertificate(request, metadata=op.metadata), *BAD_ENCODING)
    bundle = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(garbage_pem)]
    )
    await expect(
        op.stub.LoadCertificateAuthorityBundle(bundle, metadata=op.metadata), *BAD_ENCODING
    )


async def test_key_mismatch(op: Operator) -> None:
    chain, _ = client_material(op.ca)
    other = ec_key()
    code = (INVALID, "KEY_MISMATCH")
    request = load(chain, "new", private_key=key_pem(other))
    (await stream_failure(op, "Install", ins(request))).expect(*code)
    await expect(op.stub.LoadCertificate(request, metadata=op.metadata), *code)
    # public_key, when it parses as a public key, must belong to the private key.

    chain, key = client_material(op.ca)
    wrong_public = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = load(chain, "new", private_key=key, public_key=wrong_public)
    (await stream_failure(op, "Install", ins(request))).expect(*code)


async def test_csr_key_mismatch(op: Operator) -> None:
    chain, _ = client_material(op.ca)  # a certificate for some other key
    code = (INVALID, "CSR_KEY_MISMATCH")
    (await stream_failure(op, "Install", ins(gen("new")), ins(load(chain)))).expect(*code)
    (await stream_failure(op, "Rotate", rot(gen(SERVER_ID)), rot(load(chain)))).expect(*code)


async def test_csr_key_mismatch_unary(operator: Operator) -> None:
    op = operator
    await op.stub.GenerateCSR(gen("new", bits=1024), metadata=op.metadata)
    chain, _ = client_material(op.ca)
    await expect(
        op.stub.LoadCertificate(load(chain, "new"), metadata=op.metadata),
        INVALID,
        "CSR_KEY_MISMATCH",
    )
    assert "new" not in op.store.view().entities


# -- certificates the target refuses to install --------------------------------------------


async def test_chain_verify_failed(op: Operator, foreign_ca: TestCA) -> None:
    code = (PRECONDITION, "CHAIN_VERIFY_FAILED")
    chain, key = client_material(foreign_ca)
    (await stream_failure(op, "Install", ins(load(chain, "new", private_key=key)))).expect(*code)
    (await stream_failure(op, "Rotate", rot(load(chain, SERVER_ID, private_key=key)))).expect(*code)
    by_foreign = signed(op, ins, by=foreign_ca)
    (await stream_failure(op, "Install", ins(gen("new", bits=1024)), by_foreign)).expect(*code)
    # Another CA sent along does not help when it is not the issuer.
    other = load(chain, "new", private_key=key, bundle=[op.ca.bundle_pem])
    (await stream_failure(op, "Install", ins(other))).expect(*code)


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ((dt.timedelta(days=1), dt.timedelta(days=30)), "NOT_YET_VALID"),
        ((dt.timedelta(days=-30), dt.timedelta(days=-1)), "EXPIRED"),
    ],
)
async def test_validity_window(
    op: Operator, window: tuple[dt.timedelta, dt.timedelta], reason: str
) -> None:
    start, end = window
    chain, key = client_material(op.ca, not_before=now() + start, not_after=now() + end)
    (await stream_failure(op, "Install", ins(load(chain, "new", private_key=key)))).expect(
        PRECONDITION, reason
    )
    (await stream_failure(op, "Rotate", rot(load(chain, SERVER_ID, private_key=key)))).expect(
        PRECONDITION, reason
    )


async def test_clock_skew_of_five_minutes_is_allowed(operator: Operator) -> None:
    early, key = client_material(
        operator.ca, not_before=now() + dt.timedelta(minutes=3), not_after=now() + dt.timedelta(1)
    )
    await operator.stub.LoadCertificate(
        load(early, "early", private_key=key), metadata=operator.metadata
    )
    late, key = client_material(
        operator.ca, not_before=now() - dt.timedelta(1), not_after=now() - dt.timedelta(minutes=3)
    )
    await operator.stub.LoadCertificate(
        load(late, "late", private_key=key), metadata=operator.metadata
    )
    assert {"early", "late"} <= set(await operator.listing())


@pytest.mark.parametrize("kind", ["ca", "code-signing"])
async def test_bad_key_usage(op: Operator, kind: str) -> None:
    issue: dict[str, Any] = (
        {"ca": True} if kind == "ca" else {"eku": [ExtendedKeyUsageOID.CODE_SIGNING]}
    )
    chain, key = client_material(op.ca, **issue)
    code = (PRECONDITION, "BAD_KEY_USAGE")
    (await stream_failure(op, "Install", ins(load(chain, "new", private_key=key)))).expect(*code)
    (await stream_failure(op, "Rotate", rot(load(chain, SERVER_ID, private_key=key)))).expect(*code)
    await expect(
        op.stub.LoadCertificate(load(chain, "new", private_key=key), metadata=op.metadata), *code
    )


# -- CA bundle guards ------------------------------------------------------------------------


async def test_rotate_may_not_load_the_first_bundle(operator: Operator) -> None:
    op = operator
    revoked = await op.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=[crypto.CA_BUNDLE_ID]),
        metadata=op.metadata,
    )
    assert list(revoked.revoked_certificate_id) == [crypto.CA_BUNDLE_ID]
    daemon = op.target.daemon
    await wait_for(lambda: daemon.listener_mode is TlsMode.SERVER_ONLY, what="server-only TLS")
    server_only = Operator(op.target, op.ca)
    before = server_only.state()
    served = served_fingerprint(op.target.address)
    chain, key = client_material(op.ca)
    request = load(chain, SERVER_ID, private_key=key, bundle=[op.ca.bundle_pem])
    refused = await stream_failure(server_only, "Rotate", rot(request))
    assert (
        "LoadCertificateAuthorityBundle" in refused.expect(PRECONDITION, "AUTH_MODE_CHANGE").message
    )
    target_key = await stream_failure(
        server_only,
        "Rotate",
        rot(gen(SERVER_ID, bits=1024)),
        lambda reply: rot(
            load(op.ca.sign_csr(reply.generated_csr.csr.csr), bundle=[op.ca.bundle_pem])
        ),
    )
    target_key.expect(PRECONDITION, "AUTH_MODE_CHANGE")
    assert server_only.state() == before
    assert served_fingerprint(op.target.address) == served
    assert daemon.listener_mode is TlsMode.SERVER_ONLY
    assert await server_only.time() > 0


async def test_lockout_of_the_server_certificate(op: Operator, foreign_ca: TestCA) -> None:
    """`srv` is the server's certificate and issued by the test CA."""
    bundle = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(foreign_ca.bundle_pem)]
    )
    refused = await expect(
        op.stub.LoadCertificateAuthorityBundle(bundle, metadata=op.metadata),
        PRECONDITION,
        "LOCKOUT",
    )
    assert "server certificate" in refused.message
    # The same bundle sent along with an Install is refused for the same reason.
    chain, key = client_material(foreign_ca)
    request = load(chain, "new", private_key=key, bundle=[foreign_ca.bundle_pem])
    (await stream_failure(op, "Install", ins(request))).expect(PRECONDITION, "LOCKOUT")


async def test_lockout_of_the_caller(launcher: Launcher, foreign_ca: TestCA) -> None:
    """The server presents its factory certificate; the bundle must still verify the client."""
    op = await launcher.provision(local_certificate=False)
    before = op.state()
    bundle = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(foreign_ca.bundle_pem)]
    )
    refused = await expect(
        op.stub.LoadCertificateAuthorityBundle(bundle, metadata=op.metadata),
        PRECONDITION,
        "LOCKOUT",
    )
    assert "client certificate" in refused.message
    # Rotating the server's own certificate onto the foreign CA would lock the caller out too.
    chain, key = client_material(foreign_ca)
    request = load(chain, SERVER_ID, private_key=key, bundle=[foreign_ca.bundle_pem])
    (await stream_failure(op, "Rotate", rot(request))).expect(PRECONDITION, "LOCKOUT")
    # Both CAs: fine.
    both = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(op.ca.bundle_pem), certificate(foreign_ca.bundle_pem)]
    )
    assert op.state() == before
    await op.stub.LoadCertificateAuthorityBundle(both, metadata=op.metadata)


async def test_empty_bundle(op: Operator) -> None:
    await expect(
        op.stub.LoadCertificateAuthorityBundle(
            cert_pb2.LoadCertificateAuthorityBundleRequest(), metadata=op.metadata
        ),
        INVALID,
        "EMPTY_BUNDLE",
    )


# -- CSR parameters ---------------------------------------------------------------------------


async def test_csr_field_over_its_byte_limit(op: Operator) -> None:
    """17 four-byte characters: within 64 characters, over the common name's 64 UTF-8 bytes."""
    too_long = params("\U0001f600" * 17)
    failed = await expect(
        op.stub.GenerateCSR(gen("new", too_long), metadata=op.metadata), *MALFORMED
    )
    assert "68 bytes" in failed.message
    (await stream_failure(op, "Install", ins(gen("new", too_long)))).expect(*MALFORMED)


# -- key generation the target cannot do ------------------------------------------------------


UNSUPPORTED = [params(key_type=2), params(kind=2), params(bits=8192), params(bits=5000)]


async def test_unsupported_key(op: Operator) -> None:
    code = (grpc.StatusCode.UNIMPLEMENTED, "UNSUPPORTED_KEY")
    for csr_params in UNSUPPORTED:
        await expect(op.stub.GenerateCSR(gen("new", csr_params), metadata=op.metadata), *code)
        (await stream_failure(op, "Rotate", rot(gen(SERVER_ID, csr_params)))).expect(*code)
        (await stream_failure(op, "Install", ins(gen("new", csr_params)))).expect(*code)


# -- who may call ----------------------------------------------------------------------------


async def test_bad_credentials(op: Operator) -> None:
    code = (grpc.StatusCode.UNAUTHENTICATED, "BAD_CREDENTIALS")
    request = cert_pb2.GetCertificatesRequest()
    wrong = (("username", "admin"), ("password", "not-the-password"))
    unknown = (("username", "nobody"), ("password", "whatever-password"))
    for metadata in ((), wrong, unknown, (("username", "admin"),)):
        await expect(op.stub.GetCertificates(request, metadata=metadata), *code)
    # A stream is refused at admission, before any message is read. Writing first would race the
    # early status: grpc.aio's client then reports its own INTERNAL "Internal error from Core"
    # instead of the target's status (grpc/grpc issue 36066).
    call = op.stub.Rotate()
    await expect(call.read(), *code)
    system = op.target.system_stub(op.channel)
    await expect(system.Time(system_pb2.TimeRequest()), *code)


async def test_not_authorized(op: Operator) -> None:
    code = (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHORIZED")
    reader = Operator(
        op.target,
        op.ca,
        metadata=READER,
        client_chain_pem=op.client_chain_pem,
        client_key_pem=op.client_key_pem,
    )
    chain, key = client_material(op.ca)
    for rpc, wrap, message in (
        ("Install", ins, gen("new")),
        ("Rotate", rot, gen(SERVER_ID)),
        ("Install", ins, load(chain, "new", private_key=key)),
    ):
        (await stream_failure(reader, rpc, wrap(message))).expect(*code)
    stub, md = reader.stub, READER
    bundle = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(op.ca.bundle_pem)]
    )
    revoke = cert_pb2.RevokeCertificatesRequest(certificate_id=[SERVER_ID])
    await expect(stub.GenerateCSR(gen("new"), metadata=md), *code)
    await expect(stub.LoadCertificate(load(chain, "new", private_key=key), metadata=md), *code)
    await expect(stub.LoadCertificateAuthorityBundle(bundle, metadata=md), *code)
    await expect(stub.RevokeCertificates(revoke, metadata=md), *code)
    # Reading is what a read-only user is for.
    assert SERVER_ID in await reader.listing()
    can = cert_pb2.CanGenerateCSRRequest(key_type=cert_pb2.KT_RSA, key_size=2048)
    assert (await stub.CanGenerateCSR(can, metadata=md)).can_generate
    assert await reader.time() > 0


# -- storage failure -----------------------------------------------------------------------------


async def test_store_failure(op: Operator, fsync: Fsync) -> None:
    code = (grpc.StatusCode.INTERNAL, "STORE_FAILURE")
    served = served_fingerprint(op.target.address)
    # Install commits at load.
    chain, key = client_material(op.ca)
    fsync.fail()
    (await stream_failure(op, "Install", ins(load(chain, "new", private_key=key)))).expect(*code)
    await expect(
        op.stub.LoadCertificate(load(chain, "new", private_key=key), metadata=op.metadata), *code
    )
    fsync.release()
    # Rotate commits at Finalize: the new certificate was in effect, and is rolled back.
    call = op.stub.Rotate(metadata=op.metadata)
    chain, key = client_material(op.ca)
    await call.write(rot(load(chain, SERVER_ID, private_key=key)))
    await call.read()
    assert served_fingerprint(op.target.address) != served
    fsync.fail()
    await call.write(FINALIZE)
    await expect(call.read(), *code)
    fsync.release()
    assert fsync.calls >= 3
    assert served_fingerprint(op.target.address) == served
    # The disk works again: so does the target.
    await op.stub.LoadCertificate(load(chain, "new", private_key=key), metadata=op.metadata)
    await op.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=["new"]), metadata=op.metadata
    )


# -- audit ---------------------------------------------------------------------------------------


async def test_refusals_are_audited_without_key_material(op: Operator) -> None:
    chain, _ = client_material(op.ca)
    other = key_pem(ec_key())
    request = load(chain, "new", private_key=other)
    (await stream_failure(op, "Install", ins(request))).expect(INVALID, "KEY_MISMATCH")
    await expect(op.stub.GenerateCSR(gen("../x"), metadata=op.metadata), *BAD_ID)
    await expect(
        op.stub.GetCertificates(cert_pb2.GetCertificatesRequest(), metadata=()),
        grpc.StatusCode.UNAUTHENTICATED,
        "BAD_CREDENTIALS",
    )
    refused = {r["reason"]: r for r in audit(op.target, outcome="refused")}
    assert {"KEY_MISMATCH", "BAD_CERT_ID", "BAD_CREDENTIALS"} <= set(refused)
    for reason in ("KEY_MISMATCH", "BAD_CERT_ID"):
        record = refused[reason]
        assert record["identity"] == "user admin (CN=operator)"
        assert record["peer"].startswith("ipv4:127.0.0.1:")
        assert record["rpc"].startswith("/gnoi.certificate.CertificateManagement/")
        assert record["time"]
    text = op.target.audit_path.read_text()
    assert "PRIVATE KEY" not in text
    assert other.splitlines()[1].decode() not in text

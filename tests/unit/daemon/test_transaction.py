"""The Install/Rotate stream state machine without a server (docs/behaviour.md §3).

A real store in a temporary directory, real keys and certificates from a test CA, and the
StreamTransaction driven the way the service drives it: one message at a time, `end(error)` on
the first error, `end(None)` always. Only [generate_csr] → load_certificate (Install) and
[generate_csr] → load_certificate → finalize_rotation (Rotate) change the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnoicert.daemon import errors
from gnoicert.daemon.audit import AuditLog, Outcome, read_records
from gnoicert.daemon.config import GrpcConfig
from gnoicert.daemon.load_validation import Kind, subject_of
from gnoicert.daemon.read_ahead import ReadAhead
from gnoicert.daemon.runtime import Caller, Runtime
from gnoicert.daemon.transaction import StreamTransaction
from gnoicert.pki import crypto
from gnoicert.pki.store import KeyOrigin, Store, StoreView
from gnoicert.proto import cert_pb2
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem

CERT_ID = "dev"
CA = TestCA(name="transaction test root")
Message = str  # "csr", "load_csr", "load_key_pair", "finalize"
MESSAGES = ("csr", "load_csr", "load_key_pair", "finalize")


@dataclass
class Device:
    store: Store
    runtime: Runtime
    audit_path: Path


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    with open_device(tmp_path, rotate=True) as opened:
        yield opened


@contextlib.contextmanager
def open_device(
    directory: Path, *, rotate: bool, finalize_timeout_s: float = 300.0
) -> Iterator[Device]:
    """A store holding the CA bundle (and, for Rotate, the certificate being replaced)."""
    store = Store.open(directory / "state")
    with store.begin() as tx:
        tx.lock_bundle()
        tx.replace_bundle(CA.bundle_pem)
        if rotate:
            key = ec_key()
            tx.lock(CERT_ID)
            tx.put(
                CERT_ID,
                certificate_pem=cert_pem(CA.issue(key.public_key(), cn="old")),
                chain_pem=b"",
                private_key_pem=key_pem(key),
                key_origin=KeyOrigin.CLIENT,
            )
        tx.commit()
    audit_path = directory / "audit.jsonl"
    audit = AuditLog(audit_path)
    runtime = Runtime(
        store=store, audit=audit, grpc=GrpcConfig(finalize_timeout_s=finalize_timeout_s)
    )
    try:
        yield Device(store=store, runtime=runtime, audit_path=audit_path)
    finally:
        audit.close()
        store.close()


def caller(kind: Kind) -> Caller:
    rpc = f"/gnoi.certificate.CertificateManagement/{kind}"
    return Caller(rpc=rpc, peer="ipv4:127.0.0.1:1", identity="unit test", certificate=None)


def csr_request() -> cert_pb2.GenerateCSRRequest:
    params = cert_pb2.CSRParams(
        type=cert_pb2.CT_X509,
        min_key_size=1024,  # the smallest configured size: fast key generation
        key_type=cert_pb2.KT_RSA,
        common_name="dev.example",
    )
    return cert_pb2.GenerateCSRRequest(csr_params=params, certificate_id=CERT_ID)


def load_request(
    certificate_pem: bytes, private_key_pem: bytes = b""
) -> cert_pb2.LoadCertificateRequest:
    request = cert_pb2.LoadCertificateRequest(
        certificate=cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=certificate_pem),
        certificate_id=CERT_ID,
    )
    if private_key_pem:
        request.key_pair.private_key = private_key_pem
    return request


async def as_stream(items: Sequence[Message]) -> AsyncIterator[Message]:
    for item in items:
        yield item


@dataclass
class Ended:
    """How a driven stream ended: its error (None: success) and the fingerprint it loaded."""

    error: BaseException | None
    loaded_fingerprint: str = ""


async def drive(kind: Kind, runtime: Runtime, messages: Sequence[Message]) -> Ended:
    """What the service does with a stream of these messages (service._serve_stream)."""
    stream = StreamTransaction(kind, runtime, caller(kind))
    requests = ReadAhead(as_stream(messages))
    csr_pem = b""
    loaded = ""
    try:
        while True:
            message = await stream.next_request(requests)
            if message is None:
                raise errors.NotFinalized(f"the {kind} stream ended early")
            if message == "csr":
                csr_pem = (await stream.generate_csr(csr_request())).csr.csr
            elif message == "finalize":
                await stream.finalize()
                return Ended(None, loaded)
            else:
                if message == "load_csr":
                    # Signed for the CSR key; without a CSR, for a key the target never saw.
                    leaf_pem = CA.sign_csr(csr_pem) if csr_pem else _fresh_leaf()[0]
                    request = load_request(leaf_pem)
                else:
                    leaf_pem, private_pem = _fresh_leaf()
                    request = load_request(leaf_pem, private_pem)
                loaded = crypto.fingerprint(crypto.load_certificates(leaf_pem)[0])
                await stream.load(request)
                if kind is Kind.INSTALL:
                    return Ended(None, loaded)
    except Exception as exc:
        stream.end(exc)
        return Ended(exc, loaded)
    finally:
        requests.close()
        stream.end(None)


def _fresh_leaf() -> tuple[bytes, bytes]:
    key = ec_key()
    return cert_pem(CA.issue(key.public_key(), cn="new")), key_pem(key)


def expected(kind: Kind, messages: Sequence[Message]) -> str | None:
    """The reference model: None for success, else the ErrorInfo reason of the refusal."""
    step = "start"
    for message in messages:
        if message == "csr":
            if step != "start":
                return "MALFORMED_REQUEST"
            step = "csr"
        elif message in ("load_csr", "load_key_pair"):
            if step == "loaded" or (message == "load_csr" and step == "start"):
                return "MALFORMED_REQUEST"  # a second load, or no key for the certificate
            step = "loaded"
            if kind is Kind.INSTALL:
                return None  # Install commits at its load and reads no further
        elif message == "finalize":
            if kind is not Kind.ROTATE or step != "loaded":
                return "MALFORMED_REQUEST"
            return None
    return "NOT_FINALIZED"


def snapshot(view: StoreView) -> tuple[dict[str, str], bytes]:
    return {i: e.fingerprint for i, e in view.entities.items()}, view.ca_bundle_pem


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(list(Kind)),
    messages=st.lists(st.sampled_from(MESSAGES), max_size=5),
)
def test_only_the_documented_orders_commit(kind: Kind, messages: list[Message]) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        open_device(Path(directory), rotate=kind is Kind.ROTATE) as device,
    ):
        before = snapshot(device.store.committed_view())
        outcome = asyncio.run(drive(kind, device.runtime, messages))
        want = expected(kind, messages)
        committed = snapshot(device.store.committed_view())
        # Nothing applied is left behind, and no lock outlives the stream.
        assert snapshot(device.store.view()) == committed
        assert not device.store.is_locked(CERT_ID)
        records = read_records(device.audit_path)
        if want is None:
            assert outcome.error is None, outcome.error
            assert committed[0][CERT_ID] == outcome.loaded_fingerprint != before[0].get(CERT_ID)
            assert records[-1]["outcome"] == Outcome.COMMITTED
            return
        assert outcome.error is not None
        code, reason = errors.status_for(outcome.error)
        assert reason == want, outcome.error
        assert code is (
            grpc.StatusCode.INVALID_ARGUMENT
            if want == "MALFORMED_REQUEST"
            else grpc.StatusCode.ABORTED
        )
        assert committed == before
        if messages[:1] not in ([], ["finalize"]):  # only a stream that named the ID is audited
            assert records[-1]["outcome"] == Outcome.ROLLED_BACK
            assert records[-1]["reason"] == want
        assert not any(r["outcome"] == Outcome.COMMITTED for r in records)


@pytest.mark.parametrize(
    ("kind", "messages"),
    [
        (Kind.INSTALL, ["csr", "load_csr"]),
        (Kind.INSTALL, ["load_key_pair"]),
        (Kind.ROTATE, ["csr", "load_csr", "finalize"]),
        (Kind.ROTATE, ["load_key_pair", "finalize"]),
    ],
)
def test_the_documented_orders_are_the_model_successes(
    kind: Kind, messages: list[Message], tmp_path: Path
) -> None:
    """The property above holds for the right reason: the successes really happen."""
    assert expected(kind, messages) is None
    with open_device(tmp_path, rotate=kind is Kind.ROTATE) as device:
        outcome = asyncio.run(drive(kind, device.runtime, messages))
        assert outcome.error is None
        entity = device.store.committed_view().entities[CERT_ID]
        assert entity.fingerprint == outcome.loaded_fingerprint
        origin = KeyOrigin.TARGET if messages[0] == "csr" else KeyOrigin.CLIENT
        assert entity.key_origin is origin


def test_rotate_is_in_effect_but_not_committed_until_finalize(device: Device) -> None:
    async def run() -> None:
        stream = StreamTransaction(Kind.ROTATE, device.runtime, caller(Kind.ROTATE))
        old = device.store.committed_view().entities[CERT_ID].fingerprint
        leaf_pem, private_pem = _fresh_leaf()
        await stream.load(load_request(leaf_pem, private_pem))
        new = crypto.fingerprint(crypto.load_certificates(leaf_pem)[0])
        assert device.store.view().entities[CERT_ID].fingerprint == new
        assert device.store.committed_view().entities[CERT_ID].fingerprint == old
        stream.end(errors.NotFinalized("client went away"))
        stream.end(None)  # idempotent
        assert device.store.view().entities[CERT_ID].fingerprint == old

    asyncio.run(run())
    rollback = read_records(device.audit_path)[-1]
    assert (rollback["outcome"], rollback["reason"]) == (Outcome.ROLLED_BACK, "NOT_FINALIZED")


def test_finalize_deadline_rolls_back(tmp_path: Path) -> None:
    async def silent_after(
        first: cert_pb2.LoadCertificateRequest,
    ) -> AsyncGenerator[object, None]:
        yield first
        await asyncio.Event().wait()  # a client that stops talking without closing
        yield None  # pragma: no cover

    async def run(device: Device) -> BaseException:
        stream = StreamTransaction(Kind.ROTATE, device.runtime, caller(Kind.ROTATE))
        requests = ReadAhead(silent_after(load_request(*_fresh_leaf())))
        try:
            first = await stream.next_request(requests)
            assert isinstance(first, cert_pb2.LoadCertificateRequest)
            await stream.load(first)
            await stream.next_request(requests)
        except errors.FinalizeTimeout as exc:
            stream.end(exc)
            return exc
        finally:
            requests.close()
        raise AssertionError("no FinalizeTimeout")

    with open_device(tmp_path, rotate=True, finalize_timeout_s=0.2) as device:
        before = snapshot(device.store.committed_view())
        exc = asyncio.run(run(device))
        assert errors.status_for(exc) == (grpc.StatusCode.ABORTED, "FINALIZE_TIMEOUT")
        assert "rolled back" in str(exc)
        assert snapshot(device.store.view()) == snapshot(device.store.committed_view()) == before


def test_load_naming_another_id_than_generate_csr_is_malformed(device: Device) -> None:
    async def run() -> None:
        stream = StreamTransaction(Kind.ROTATE, device.runtime, caller(Kind.ROTATE))
        csr = await stream.generate_csr(csr_request())
        request = load_request(CA.sign_csr(csr.csr.csr))
        request.certificate_id = "other"
        with pytest.raises(errors.MalformedRequest, match="'other' but generate_csr named 'dev'"):
            await stream.load(request)
        stream.end(None)

    asyncio.run(run())
    assert not device.store.is_locked(CERT_ID)


def test_install_of_an_existing_id_and_rotate_of_a_missing_one_are_refused(
    device: Device,
) -> None:
    async def run(kind: Kind, cert_id: str) -> BaseException:
        stream = StreamTransaction(kind, device.runtime, caller(kind))
        request = load_request(*_fresh_leaf())
        request.certificate_id = cert_id
        try:
            await stream.load(request)
        except Exception as exc:
            stream.end(exc)
            return exc
        raise AssertionError("accepted")

    install = asyncio.run(run(Kind.INSTALL, CERT_ID))
    rotate = asyncio.run(run(Kind.ROTATE, "missing"))
    assert errors.status_for(install) == (grpc.StatusCode.ALREADY_EXISTS, "CERT_ID_EXISTS")
    assert errors.status_for(rotate) == (grpc.StatusCode.NOT_FOUND, "CERT_ID_NOT_FOUND")
    assert not device.store.is_locked(CERT_ID)
    assert not device.store.is_locked("missing")


def test_csr_subject_fields_come_from_csr_params_by_name() -> None:
    names = [
        "common_name",
        "country",
        "state",
        "city",
        "organization",
        "organizational_unit",
        "ip_address",
        "email_id",
    ]
    params = cert_pb2.CSRParams()
    for name in names:
        setattr(params, name, f"{name}-value")
    assert subject_of(params) == crypto.CsrSubject(**{name: f"{name}-value" for name in names})
    assert subject_of(cert_pb2.CSRParams()) == crypto.CsrSubject()


def test_a_cancel_after_the_commit_landed_but_before_the_handler_resumed_is_a_commit(
    device: Device,
) -> None:
    """grpcio can cancel the handler between the end of the commit and the handler's resuming
    (a client that cancels right after Finalize): the outcome recorded is the commit's."""

    async def run() -> None:
        stream = StreamTransaction(Kind.ROTATE, device.runtime, caller(Kind.ROTATE))
        await stream.load(load_request(*_fresh_leaf()))
        finalizing = asyncio.create_task(stream.finalize())
        while stream._commit is None:  # the commit has started in its thread
            await asyncio.sleep(0)
        # Runs after the handler's own wake-up was scheduled and before the handler runs.
        stream._commit.add_done_callback(lambda _: finalizing.cancel())
        with pytest.raises(asyncio.CancelledError):
            await finalizing
        stream.end(None)

    asyncio.run(run())
    new = device.store.committed_view().entities[CERT_ID].fingerprint
    rotations = [r for r in read_records(device.audit_path) if r["event"] == "rotate"]
    assert [(r["outcome"], r["new_fingerprint"]) for r in rotations] == [
        (Outcome.APPLIED, new),
        (Outcome.COMMITTED, new),
    ]

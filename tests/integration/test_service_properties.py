"""Random Install/Rotate streams against one target: never UNKNOWN, never a crash, and the
committed store changes exactly when (and as) a model of docs/behaviour.md §3 says it must."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gnoicert.pki import errors as pki
from gnoicert.pki.crypto import validate_certificate_id
from tests.support.gnoi import (
    FINALIZE,
    ID_PLACES,
    SERVER_ID,
    Launcher,
    Operator,
    StoreState,
    csr_public_der,
    gen,
    ins,
    leaf_fingerprint,
    load,
    params,
    rot,
    split_id,
)
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem, now
from tests.support.status import failure_of
from tests.support.target import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

IDS = ["", SERVER_ID, "a", "b", "c", "../x"]
CertChoice = Literal["csr", "k1", "k1-expired", "k1-foreign", "k2", "garbage", "empty"]
KeyChoice = Literal["none", "k1", "k2", "garbage"]
CaChoice = Literal["none", "root", "garbage"]
ParamChoice = Literal["ok", "unsupported", "bad-country"]


@dataclass(frozen=True)
class Gen:
    cert_id: str
    params: ParamChoice


@dataclass(frozen=True)
class Load:
    cert_id: str
    cert: CertChoice | bytes  # bytes: random garbage
    key: KeyChoice
    ca: CaChoice


@dataclass(frozen=True)
class Finalize:
    pass


@dataclass(frozen=True)
class Empty:
    pass


Message = Gen | Load | Finalize | Empty
Kind = Literal["Rotate", "Install"]


@dataclass
class Material:
    """Keys and certificates drawn from by the examples (made once)."""

    ca: TestCA
    keys: dict[str, bytes]
    certs: dict[str, bytes]


@pytest.fixture(scope="module")
def material(ca: TestCA, foreign_ca: TestCA) -> Material:
    k1, k2 = ec_key(), ec_key()
    past = now() - dt.timedelta(days=30)
    return Material(
        ca=ca,
        keys={"k1": key_pem(k1), "k2": key_pem(k2), "garbage": b"not a key"},
        certs={
            "k1": cert_pem(ca.issue(k1.public_key())),
            "k1-expired": cert_pem(
                ca.issue(k1.public_key(), not_before=past, not_after=past + dt.timedelta(1))
            ),
            "k1-foreign": cert_pem(foreign_ca.issue(k1.public_key())),
            "k2": cert_pem(ca.issue(k2.public_key())),
            "garbage": b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
            "empty": b"",
        },
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory, ca: TestCA) -> AsyncIterator[Operator]:
    """One target for every example: state carries over, as it would on a device."""
    launcher = Launcher(Path(tmp_path_factory.mktemp("properties")), ca)
    try:
        operator = await launcher.provision()
        await operator.install("a", bits=1024)
        yield operator
    finally:
        await launcher.close()


# -- the model ------------------------------------------------------------------------------


def _valid_id(cert_id: str) -> bool:
    try:
        validate_certificate_id(cert_id)
    except pki.InvalidCertificateId:
        return False
    return True


def _cert_key(cert: CertChoice | bytes) -> str | None:
    """Which key a certificate choice is for, when it is otherwise installable."""
    if cert in ("k1", "k2", "csr"):
        return str(cert)
    return None


def predict(kind: Kind, messages: list[Message], existing: set[str]) -> tuple[str, Load] | None:
    """(certificate ID, the committing load) if the stream must commit, else None."""
    started = loaded = False
    gen_id = ""
    csr = False

    def claimable(cert_id: str) -> bool:
        return _valid_id(cert_id) and (cert_id in existing) == (kind == "Rotate")

    for message in messages:
        if isinstance(message, Empty) or (isinstance(message, Finalize) and kind == "Install"):
            return None
        if isinstance(message, Gen):
            if started:
                return None
            if message.cert_id and not claimable(message.cert_id):
                return None
            if message.params != "ok":
                return None
            gen_id, csr, started = message.cert_id, True, True
        elif isinstance(message, Load):
            if loaded:
                return None
            if message.cert_id and gen_id and message.cert_id != gen_id:
                return None
            cert_id = gen_id or message.cert_id
            if not cert_id or (not gen_id and not claimable(cert_id)):
                return None
            key = message.key if message.key != "none" else ("csr" if csr else None)
            if key is None or key == "garbage" or _cert_key(message.cert) != key:
                return None
            if message.ca == "garbage":
                return None
            if kind == "Install":
                return cert_id, message
            loaded, started = True, True
        elif isinstance(message, Finalize):
            return (gen_id or _load_id(messages), _the_load(messages)) if loaded else None
    return None


def _the_load(messages: list[Message]) -> Load:
    return next(m for m in messages if isinstance(m, Load))


def _load_id(messages: list[Message]) -> str:
    return _the_load(messages).cert_id


# -- the driver -----------------------------------------------------------------------------


def _envelope(kind: Kind, message: Message, material: Material, csr_pem: bytes) -> Any:
    wrap = rot if kind == "Rotate" else ins
    if isinstance(message, Gen):
        choice = {
            "ok": params(bits=1024),
            "unsupported": params(key_type=2),
            "bad-country": params(bits=1024, country="not a country"),
        }[message.params]
        return wrap(gen(message.cert_id, choice))
    if isinstance(message, Load):
        if isinstance(message.cert, bytes):
            chain = message.cert
        elif message.cert == "csr":
            chain = material.ca.sign_csr(csr_pem) if csr_pem else b""
        else:
            chain = material.certs[message.cert]
        bundle = {"none": [], "root": [material.ca.bundle_pem], "garbage": [b"garbage"]}
        return wrap(
            load(
                chain,
                message.cert_id,
                private_key=material.keys.get(message.key, b""),
                bundle=bundle[message.ca],
            )
        )
    if isinstance(message, Finalize) and kind == "Rotate":
        return FINALIZE
    return wrap()


async def drive(
    operator: Operator, kind: Kind, messages: list[Message], material: Material
) -> tuple[grpc.StatusCode, bytes]:
    """Play the messages, reading after each; (final status, the certificate last loaded)."""
    call = getattr(operator.stub, kind)(metadata=operator.metadata)
    csr_pem = b""
    ended = False
    for message in messages:
        envelope = _envelope(kind, message, material, csr_pem)
        try:
            await call.write(envelope)
            reply = await call.read()
        except grpc.aio.AioRpcError:
            ended = True
            break
        if reply is grpc.aio.EOF:
            ended = True
            break
        if reply.WhichOneof(f"{kind.lower()}_response") == "generated_csr":
            csr_pem = bytes(reply.generated_csr.csr.csr)
        elif kind == "Install":
            ended = True  # an Install ends with its load response
            break
    if not ended:
        await call.done_writing()
    code: grpc.StatusCode = await call.code()
    if code is not grpc.StatusCode.OK:
        try:
            await call.read()
        except grpc.aio.AioRpcError as error:
            failure_of(error)  # a rich status with an ErrorInfo, never UNKNOWN
    return code, csr_pem


# -- strategies ----------------------------------------------------------------------------

ids = st.sampled_from(IDS)
cert_choices = st.one_of(
    st.sampled_from(["csr", "k1", "k1-expired", "k1-foreign", "k2", "garbage", "empty"]),
    st.binary(min_size=1, max_size=40),
)
key_choices = st.sampled_from(["none", "k1", "k2", "garbage"])
ca_choices = st.sampled_from(["none", "root", "garbage"])
messages = st.one_of(
    st.builds(Gen, ids, st.sampled_from(["ok", "unsupported", "bad-country"])),
    st.builds(Load, ids, cert_choices, key_choices, ca_choices),
    st.just(Finalize()),
    st.just(Empty()),
)
# Well-formed transactions are rare at random: offer them directly too (the kind, and so whether
# the ID must exist, is still drawn independently).
good_ids = st.sampled_from([SERVER_ID, "a", "b", "c"])
_GOOD_CAS: list[CaChoice] = ["none", "none", "root"]
_CLIENT_KEYS: list[Literal["k1", "k2"]] = ["k1", "k2"]
good_cas = st.sampled_from(_GOOD_CAS)


@st.composite
def target_key(draw: st.DrawFn) -> list[Message]:
    gen_id, load_id = split_id(draw(good_ids), draw(st.sampled_from(ID_PLACES)))
    return [Gen(gen_id, "ok"), Load(load_id, "csr", "none", draw(good_cas)), Finalize()]


@st.composite
def client_key(draw: st.DrawFn) -> list[Message]:
    key = draw(st.sampled_from(_CLIENT_KEYS))
    return [Load(draw(good_ids), key, key, draw(good_cas)), Finalize()]


sequences = st.tuples(
    st.sampled_from(["Rotate", "Install"]),
    st.one_of(st.lists(messages, max_size=4), target_key(), client_key()),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=sequences)
async def test_random_streams(
    shared: Operator, material: Material, sequence: tuple[Kind, list[Message]]
) -> None:
    operator = shared
    kind, plan = sequence
    before = operator.state()
    existing = {e.cert_id for e in before.committed}
    expected = predict(kind, plan, existing)

    code, csr_pem = await drive(operator, kind, plan, material)

    event(f"{kind}: {code.name}" + (" (commit expected)" if expected else ""))
    assert code is not grpc.StatusCode.UNKNOWN
    assert await operator.time() > 0  # the target still answers
    store = operator.store
    await wait_for(
        lambda: not any(store.is_locked(i) for i in IDS if i and i != "../x"),
        what="every lock released",
    )
    after = operator.state()
    assert after.committed == after.effective, "no uncommitted change may stay in effect"
    if expected is None:
        assert code is not grpc.StatusCode.OK, (kind, plan)
        assert after == before, (kind, plan)
        return
    assert code is grpc.StatusCode.OK, (kind, plan, code)
    cert_id, committed_load = expected
    _assert_changed_only(before, after, cert_id, kind)
    new = after.entity(cert_id)
    assert new is not None
    if isinstance(committed_load.cert, str) and committed_load.cert != "csr":
        assert new.fingerprint == leaf_fingerprint(material.certs[committed_load.cert])
    else:  # the certificate the driver signed for the stream's CSR
        entity = store.committed_view().entities[cert_id]
        assert entity.certificate.public_key().public_bytes(*_SPKI) == csr_public_der(csr_pem)


def _assert_changed_only(before: StoreState, after: StoreState, cert_id: str, kind: Kind) -> None:
    assert after.committed_bundle == before.committed_bundle
    old = {e.cert_id: e for e in before.committed}
    new = {e.cert_id: e for e in after.committed}
    assert set(new) == set(old) | {cert_id}
    for other in set(old) - {cert_id}:
        assert new[other] == old[other]
    version = old[cert_id].version + 1 if kind == "Rotate" else 1
    assert new[cert_id].version == version

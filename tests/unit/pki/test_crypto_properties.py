"""Property tests for the parsers and validators of gnoicert.pki.crypto: no input may escape
the documented outcomes (a result, or the one refusal the contract names)."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gnoicert.pki import crypto
from gnoicert.pki.crypto import CsrSubject
from gnoicert.pki.errors import BadEncoding, InvalidCertificateId, InvalidCsrParameters
from tests.vectors import load_vector

# Made once at import: hypothesis re-runs the test body, not fixtures.
_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_RSA_KEY = crypto.load_private_key(load_vector("rsa1024_pkcs1.pem"))
_CERT = crypto.make_self_signed_certificate(_EC_KEY, common_name="prop", dns_names=["prop"])
_CERT_DER = _CERT.public_bytes(serialization.Encoding.DER)
_CERT_PEM = _CERT.public_bytes(serialization.Encoding.PEM)
_KEY_DER = _RSA_KEY.private_bytes(
    serialization.Encoding.DER,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
_EC_KEY_PEM = crypto.private_key_to_pem(_EC_KEY)

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ID_LANGUAGE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """seed with a few bytes flipped, cut short or extended: inputs that get deep into a parser."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(0, 4))):
            index = draw(st.integers(0, len(data) - 1))
            data[index] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=8))

    return build()


def _pem_wrapped(label: str) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=300).map(
        lambda body: (
            b"-----BEGIN "
            + label.encode()
            + b"-----\n"
            + body
            + b"\n-----END "
            + label.encode()
            + b"-----\n"
        )
    )


def _check_refusal(refusal: BadEncoding) -> None:
    """A refusal carries neither the input nor the parser's exception along."""
    assert refusal.__cause__ is None
    assert refusal.__context__ is None or refusal.__suppress_context__
    assert len(str(refusal)) < 300


_ANY_BYTES = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(lambda tail: b"\x30" + tail),
    _pem_wrapped("CERTIFICATE"),
    _pem_wrapped("PRIVATE KEY"),
    _pem_wrapped("RSA PRIVATE KEY"),
    _pem_wrapped("PUBLIC KEY"),
)


@_SETTINGS
@given(st.one_of(_ANY_BYTES, _mutated(_CERT_DER), _mutated(_CERT_PEM)))
@example(b"")
@example(_CERT_DER)
@example(_CERT_PEM * 3)
def test_load_certificates_returns_or_refuses(data: bytes) -> None:
    refusal: BadEncoding | None = None
    try:
        certificates = crypto.load_certificates(data)
    except BadEncoding as exc:
        refusal = exc
    if refusal is not None:
        _check_refusal(refusal)
        return
    assert certificates
    assert all(isinstance(cert, x509.Certificate) for cert in certificates)


@_SETTINGS
@given(st.one_of(_ANY_BYTES, _mutated(_KEY_DER), _mutated(_EC_KEY_PEM)))
@example(b"")
@example(_KEY_DER)
def test_load_private_key_returns_or_refuses(data: bytes) -> None:
    refusal: BadEncoding | None = None
    try:
        key = crypto.load_private_key(data)
    except BadEncoding as exc:
        refusal = exc
    if refusal is not None:
        _check_refusal(refusal)
        return
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)


@_SETTINGS
@given(st.one_of(_ANY_BYTES, _mutated(_CERT_DER)))
def test_load_public_key_never_raises(data: bytes) -> None:
    key = crypto.load_public_key(data)
    assert key is None or isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)


_ID_CHARS = st.sampled_from("abcXYZ019._-/\\ :\n\x00é*~")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(_ID_CHARS, max_size=70),
        st.from_regex(_ID_LANGUAGE, fullmatch=True),
        st.text(max_size=70),
        st.just(crypto.CA_BUNDLE_ID),
    )
)
def test_certificate_id_language(cert_id: str) -> None:
    allowed = _ID_LANGUAGE.fullmatch(cert_id) is not None and cert_id != crypto.CA_BUNDLE_ID
    try:
        assert crypto.validate_certificate_id(cert_id) == cert_id
    except InvalidCertificateId:
        assert not allowed
    else:
        assert allowed


_FIELD = st.one_of(
    st.just(""),
    st.text(max_size=80),
    st.text(st.characters(codec="ascii"), max_size=20),
    st.from_regex(r"[a-z0-9.*-]{1,30}", fullmatch=True),
)


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        CsrSubject,
        common_name=_FIELD,
        country=st.one_of(_FIELD, st.from_regex(r"[A-Za-z]{2}", fullmatch=True)),
        state=_FIELD,
        city=_FIELD,
        organization=_FIELD,
        organizational_unit=_FIELD,
        ip_address=st.one_of(_FIELD, st.ip_addresses().map(str)),
        email_id=st.one_of(_FIELD, st.emails()),
    )
)
@example(CsrSubject(email_id="[@0"))  # passes a plain '@' check, not parseaddr
@example(CsrSubject(common_name="router1.example.net", ip_address="::1", email_id="a@b.c"))
def test_build_csr_returns_or_refuses(subject: CsrSubject) -> None:
    try:
        pem = crypto.build_csr(_EC_KEY, subject)
    except InvalidCsrParameters:
        return
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attr.value for attr in common_names] == (
        [subject.common_name] if subject.common_name else []
    )

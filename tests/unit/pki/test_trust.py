"""Trust decisions that agree with the TLS stack (docs/behaviour.md §3, trust).

X.509 v1 self-signed roots are anchors; the authority key identifier rules issuers out as
BoringSSL does; cryptography's verifier is consulted by exception type only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import VerificationError

from gnoicert.client.preflight import run_preflight
from gnoicert.client.steps import Material
from gnoicert.pki import chain as pki_chain
from gnoicert.pki.chain import acts_as_ca, chain_verifies, check_leaf
from gnoicert.pki.errors import ChainVerificationFailed
from tests.support.x509v1 import make_v1
from tests.unit.pki.conftest import DAY, Chain, Issue, Issued, Keys


@pytest.fixture(scope="module")
def v1_root(keys: Keys, ref: dt.datetime) -> Issued:
    return Issued(
        make_v1(keys.rsa_a, "Lab v1 Root", not_before=ref - DAY, not_after=ref + 30 * DAY),
        keys.rsa_a,
    )


class TestV1Roots:
    def test_leaf_of_a_v1_root(self, v1_root: Issued, issue_cert: Issue, keys: Keys) -> None:
        leaf = issue_cert(keys.p256_b, "target.lab", v1_root)
        check_leaf(leaf.cert, [], [v1_root.cert])
        assert chain_verifies(leaf.cert, [], [v1_root.cert])

    def test_v3_intermediate_under_a_v1_root(
        self, v1_root: Issued, issue_cert: Issue, keys: Keys
    ) -> None:
        intermediate = issue_cert(keys.p256_a, "Lab Issuing CA", v1_root, ca=True)
        leaf = issue_cert(keys.p384, "target.lab", intermediate)
        check_leaf(leaf.cert, [intermediate.cert], [v1_root.cert])
        assert chain_verifies(leaf.cert, [], [v1_root.cert, intermediate.cert])

    def test_rsa1024_v1_root(self, issue_cert: Issue, keys: Keys, ref: dt.datetime) -> None:
        root = make_v1(keys.rsa1024_a, "Old Lab Root", not_before=ref - DAY, not_after=ref + DAY)
        leaf = issue_cert(keys.rsa1024_b, "old.lab", Issued(root, keys.rsa1024_a))
        check_leaf(leaf.cert, [], [root])

    def test_v1_intermediate_is_refused(
        self, v1_root: Issued, issue_cert: Issue, keys: Keys, ref: dt.datetime
    ) -> None:
        middle = make_v1(
            keys.p256_a,
            "v1 Middle",
            (v1_root.cert, keys.rsa_a),
            not_before=ref - DAY,
            not_after=ref + DAY,
        )
        leaf = issue_cert(keys.p384, "target.lab", Issued(middle, keys.p256_a))
        with pytest.raises(ChainVerificationFailed, match=r"X\.509 v1"):
            check_leaf(leaf.cert, [middle], [v1_root.cert])
        assert not chain_verifies(leaf.cert, [middle], [v1_root.cert])

    def test_expired_v1_root(self, issue_cert: Issue, keys: Keys, ref: dt.datetime) -> None:
        root = make_v1(keys.rsa_b, "Gone Root", not_before=ref - 9 * DAY, not_after=ref - DAY)
        leaf = issue_cert(keys.p256_b, "target.lab", Issued(root, keys.rsa_b))
        assert not chain_verifies(leaf.cert, [], [root])

    def test_client_preflight_trusts_a_v1_root(
        self, v1_root: Issued, issue_cert: Issue, keys: Keys
    ) -> None:
        leaf = issue_cert(keys.p256_b, "target.lab", v1_root)
        material = Material(
            leaf=leaf.cert, intermediates=(), roots=(), bundle=(v1_root.cert,), extra_anchors=()
        )
        statuses = {check.name: check.status for check in run_preflight(material).checks}
        assert statuses["chain"] == "pass"
        assert statuses["bundle"] == "pass"

    def test_a_v1_root_acts_as_ca(self, v1_root: Issued, chain: Chain) -> None:
        assert acts_as_ca(v1_root.cert)
        assert acts_as_ca(chain.root.cert)
        assert not acts_as_ca(chain.leaf.cert)


def _aki(issuer: x509.Certificate, *, serial: int | None = None) -> x509.AuthorityKeyIdentifier:
    """Key ID, issuer name and serial of issuer (RFC 5280 4.2.1.1), the serial overridable."""
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier(
        ski.digest,
        [x509.DirectoryName(issuer.issuer)],
        issuer.serial_number if serial is None else serial,
    )


class TestAuthorityKeyIdentifier:
    def test_issuer_serial_must_match(self, chain: Chain, issue_cert: Issue, keys: Keys) -> None:
        # Same key, same name, another serial: BoringSSL refuses the chain, so must we.
        leaf = issue_cert(keys.p256_b, "caller", chain.root, extra=[_aki(chain.root.cert)])
        assert chain_verifies(leaf.cert, [], [chain.root.cert])
        reissued = issue_cert(keys.rsa_a, "Test Root CA", ca=True)
        assert reissued.cert.serial_number != chain.root.cert.serial_number
        assert not chain_verifies(leaf.cert, [], [reissued.cert])
        with pytest.raises(ChainVerificationFailed, match="serial"):
            check_leaf(leaf.cert, [], [reissued.cert])

    def test_issuer_name_must_match(self, chain: Chain, issue_cert: Issue, keys: Keys) -> None:
        aki = _aki(chain.root.cert)
        other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else")])
        wrong = x509.AuthorityKeyIdentifier(
            aki.key_identifier, [x509.DirectoryName(other)], aki.authority_cert_serial_number
        )
        leaf = issue_cert(keys.p256_b, "caller", chain.root, extra=[wrong])
        assert not chain_verifies(leaf.cert, [], [chain.root.cert])

    def test_key_id_must_match(self, chain: Chain, issue_cert: Issue, keys: Keys) -> None:
        wrong = x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)
        leaf = issue_cert(keys.p256_b, "caller", chain.root, extra=[wrong])
        assert not chain_verifies(leaf.cert, [], [chain.root.cert])
        with pytest.raises(ChainVerificationFailed, match="key identifier"):
            check_leaf(leaf.cert, [], [chain.root.cert])

    def test_the_matching_root_is_found_among_namesakes(
        self, chain: Chain, issue_cert: Issue, keys: Keys
    ) -> None:
        leaf = issue_cert(keys.p256_b, "caller", chain.root, extra=[_aki(chain.root.cert)])
        reissued = issue_cert(keys.rsa_a, "Test Root CA", ca=True)
        assert chain_verifies(leaf.cert, [], [reissued.cert, chain.root.cert])


class _Refusing:
    """Stands in for cryptography's PolicyBuilder: every verifier refuses, in words no code
    could expect; counts the calls."""

    calls = 0

    def __getattr__(self, _name: str) -> Any:
        return lambda *_args, **_kwargs: self

    def verify(self, *_args: object) -> None:
        type(self).calls += 1
        raise VerificationError("zzz: wording nobody matches")


class TestNoMessageMatching:
    """The verdict rests on what we check ourselves and on the verifier's exception type."""

    @pytest.fixture(autouse=True)
    def refusing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _Refusing.calls = 0
        monkeypatch.setattr(pki_chain, "PolicyBuilder", _Refusing)

    def test_a_refusal_in_unknown_words_refuses(self, chain: Chain) -> None:
        args = (chain.leaf.cert, [chain.intermediate.cert], [chain.root.cert])
        assert not chain_verifies(*args)
        with pytest.raises(ChainVerificationFailed, match="path validator refuses"):
            check_leaf(*args)
        assert _Refusing.calls == 2

    def test_outside_its_profile_the_verifier_is_not_asked(
        self, weak_chain: Chain, v1_root: Issued, issue_cert: Issue, keys: Keys
    ) -> None:
        check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], [weak_chain.root.cert])
        leaf = issue_cert(keys.p256_b, "target.lab", v1_root)
        assert chain_verifies(leaf.cert, [], [v1_root.cert])
        assert _Refusing.calls == 0

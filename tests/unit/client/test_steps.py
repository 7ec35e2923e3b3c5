"""The Install/Rotate decisions with no I/O: key source, material split, step order."""

from __future__ import annotations

import pytest
from cryptography import x509

from gnoicert.client.ca import LocalCA
from gnoicert.client.errors import InputError, ProtocolError
from gnoicert.client.models import (
    ClientKeyType,
    CsrParams,
    KeySource,
    KeySourceChoice,
    SignedCertificate,
)
from gnoicert.client.steps import choose_key_source, expect_case, should_probe, split_material
from gnoicert.pki.crypto import build_csr, load_certificates
from tests.unit.conftest import ec_key


class TestKeySource:
    @pytest.mark.parametrize(
        ("choice", "key_type", "can_generate", "expected"),
        [
            ("auto", "rsa", True, "target"),
            ("auto", "rsa", None, "target"),  # probe unimplemented: try the target first
            ("auto", "rsa", False, "client"),
            ("auto", "ecdsa", None, "client"),  # the wire has no ECDSA key type
            ("client", "rsa", True, "client"),
            ("target", "rsa", False, "target"),  # forced: the target's refusal will say why
        ],
    )
    def test_choice(
        self,
        choice: KeySourceChoice,
        key_type: ClientKeyType,
        can_generate: bool | None,
        expected: KeySource,
    ) -> None:
        assert choose_key_source(choice, key_type, can_generate) == expected

    def test_target_cannot_make_ecdsa(self) -> None:
        with pytest.raises(InputError, match="RSA"):
            choose_key_source("target", "ecdsa", None)

    @pytest.mark.parametrize(
        ("choice", "key_type", "expected"),
        [
            ("auto", "rsa", True),
            ("auto", "ecdsa", False),
            ("target", "rsa", False),
            ("client", "rsa", False),
        ],
    )
    def test_probe_only_when_it_decides(
        self, choice: KeySourceChoice, key_type: ClientKeyType, expected: bool
    ) -> None:
        assert should_probe(choice, key_type) is expected


class TestExpectCase:
    def test_expected_case_passes(self) -> None:
        expect_case("generated_csr", "generated_csr")

    @pytest.mark.parametrize("case", ["load_certificate", None])
    def test_other_case_is_a_protocol_error(self, case: str | None) -> None:
        with pytest.raises(ProtocolError, match="expected generated_csr"):
            expect_case(case, "generated_csr")


def _signed(ca: LocalCA) -> SignedCertificate:
    csr = build_csr(ec_key(), CsrParams(common_name="r1.example.net").subject())
    return ca.sign(csr)


class TestSplitMaterial:
    def test_root_only_chain(self, root_ca: LocalCA) -> None:
        material = split_material(_signed(root_ca))
        assert material.intermediates == ()
        assert material.roots == (root_ca.root,)
        assert material.anchors == (root_ca.root,)
        assert load_certificates(material.certificate_pem) == [material.leaf]

    def test_intermediate_goes_with_the_leaf(self, chained_ca: LocalCA) -> None:
        material = split_material(_signed(chained_ca))
        assert material.intermediates == (chained_ca.intermediate,)
        assert material.roots == (chained_ca.root,)
        sent = load_certificates(material.certificate_pem)
        assert sent == [material.leaf, chained_ca.intermediate]

    def test_chain_inside_certificate_pem_is_sorted_too(self, chained_ca: LocalCA) -> None:
        signed = _signed(chained_ca)
        material = split_material(
            SignedCertificate(certificate_pem=signed.certificate_pem + signed.chain_pem)
        )
        assert material.intermediates == (chained_ca.intermediate,)
        assert material.roots == (chained_ca.root,)

    def test_the_bundle_being_sent_is_what_the_chain_must_reach(
        self, root_ca: LocalCA, other_ca: LocalCA
    ) -> None:
        material = split_material(_signed(root_ca), ca_bundle_pem=other_ca.bundle_pem)
        assert material.bundle == (other_ca.root,)
        assert material.anchors == (other_ca.root,)
        assert material.bundle_pems == (other_ca.root_pem,)

    def test_extra_anchors_count_without_a_bundle(
        self, root_ca: LocalCA, other_ca: LocalCA
    ) -> None:
        signed = SignedCertificate(certificate_pem=_signed(root_ca).certificate_pem)
        material = split_material(signed, trust_anchors_pem=other_ca.root_pem)
        assert material.roots == ()
        assert material.anchors == (other_ca.root,)

    def test_trust_pem_holds_anchors_and_intermediates_once(self, chained_ca: LocalCA) -> None:
        material = split_material(_signed(chained_ca), ca_bundle_pem=chained_ca.bundle_pem)
        trusted = load_certificates(material.trust_pem())
        assert chained_ca.intermediate is not None
        assert sorted(c.subject.rfc4514_string() for c in trusted) == sorted(
            c.subject.rfc4514_string() for c in (chained_ca.root, chained_ca.intermediate)
        )
        assert len(trusted) == 2

    @pytest.mark.parametrize("field", ["certificate_pem", "chain_pem"])
    def test_unparsable_material_is_an_input_error(self, root_ca: LocalCA, field: str) -> None:
        good = _signed(root_ca)
        broken = {
            "certificate_pem": good.certificate_pem,
            "chain_pem": good.chain_pem,
            field: b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        }
        with pytest.raises(InputError, match="not usable"):
            split_material(SignedCertificate(**broken))

    def test_no_certificate_at_all(self) -> None:
        with pytest.raises(InputError, match="no certificate"):
            split_material(SignedCertificate(certificate_pem=b""))

    def test_leaf_is_first(self, root_ca: LocalCA) -> None:
        material = split_material(_signed(root_ca))
        assert isinstance(material.leaf, x509.Certificate)
        constraints = material.leaf.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca is False

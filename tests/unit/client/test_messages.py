"""Request building and response parsing (protobuf in and out), and certificate descriptions."""

from __future__ import annotations

import datetime as dt

from gnoicert.client import messages
from gnoicert.client.ca import LocalCA
from gnoicert.client.certinfo import days_left, describe_certificate, modified_time
from gnoicert.client.models import CsrParams
from gnoicert.pki.crypto import certificates_to_pem, fingerprint
from gnoicert.proto import cert_pb2
from tests.unit.conftest import DAY, NOW, ec_key, make_cert, pem

PARAMS = CsrParams(
    common_name="r1.example.net",
    country="US",
    state="CA",
    city="Sunnyvale",
    organization="Example",
    organizational_unit="NetOps",
    ip_address="192.0.2.1",
    email_id="noc@example.net",
    key_size=3072,
)


class TestRequests:
    def test_csr_params_carry_every_field(self) -> None:
        params = messages.csr_params(PARAMS)
        assert params.type == cert_pb2.CT_X509
        assert params.key_type == cert_pb2.KT_RSA
        assert params.min_key_size == 3072
        assert (params.common_name, params.country, params.state, params.city) == (
            "r1.example.net",
            "US",
            "CA",
            "Sunnyvale",
        )
        assert (params.organization, params.organizational_unit) == ("Example", "NetOps")
        assert (params.ip_address, params.email_id) == ("192.0.2.1", "noc@example.net")

    def test_the_id_travels_in_both_messages(self) -> None:
        # docs/behaviour.md §9: some targets read it from one message, some from the other.
        generate = messages.rotate_generate("gnoi-server", PARAMS)
        assert generate.WhichOneof("rotate_request") == "generate_csr"
        assert generate.generate_csr.certificate_id == "gnoi-server"
        load = messages.load_certificate_request("gnoi-server", b"PEM")
        assert load.certificate_id == "gnoi-server"
        assert messages.install_load(load).load_certificate.certificate_id == "gnoi-server"

    def test_key_pair_only_for_a_client_key(self) -> None:
        target_key = messages.load_certificate_request("a", b"PEM")
        assert not target_key.HasField("key_pair")
        client_key = messages.load_certificate_request(
            "a", b"PEM", private_key_pem=b"KEY", public_key_pem=b"PUB"
        )
        assert client_key.key_pair.private_key == b"KEY"
        assert client_key.key_pair.public_key == b"PUB"

    def test_one_certificate_message_per_ca(self, chained_ca: LocalCA) -> None:
        pems = [certificates_to_pem([chained_ca.intermediate]), chained_ca.root_pem]  # type: ignore[list-item]
        load = messages.load_certificate_request("a", b"PEM", ca_certificates=pems)
        assert [c.certificate for c in load.ca_certificates] == pems
        assert all(c.type == cert_pb2.CT_X509 for c in load.ca_certificates)
        bundle = messages.ca_bundle_request(pems)
        assert [c.certificate for c in bundle.ca_certificates] == pems

    def test_finalize_is_an_empty_but_selected_message(self) -> None:
        finalize = messages.rotate_finalize()
        assert finalize.WhichOneof("rotate_request") == "finalize_rotation"
        assert finalize.SerializeToString() == b"\x1a\x00"  # docs/wire.md 4.4

    def test_install_generate(self) -> None:
        request = messages.install_generate("new-id", PARAMS)
        assert request.WhichOneof("install_request") == "generate_csr"
        assert request.generate_csr.certificate_id == "new-id"

    def test_can_generate_probe(self) -> None:
        request = messages.can_generate_csr_request(2048)
        assert (request.key_type, request.certificate_type, request.key_size) == (
            cert_pb2.KT_RSA,
            cert_pb2.CT_X509,
            2048,
        )

    def test_enum_names_including_unknown_values(self) -> None:
        assert messages.key_type_name(cert_pb2.KT_RSA) == "KT_RSA"
        assert messages.key_type_name(77) == "KT_77"
        assert messages.certificate_type_name(cert_pb2.CT_X509) == "CT_X509"
        assert messages.certificate_type_name(600) == "CT_600"


class TestResponses:
    def test_certificates(self, chained_ca: LocalCA) -> None:
        key = ec_key()
        leaf = make_cert(
            key,
            issuer=(chained_ca.root, chained_ca._root_key),
            common_name="r1.example.net",
            sans=["r1.example.net", "192.0.2.1"],
        )
        modified_ns = 1_700_000_000_123_456_789
        response = cert_pb2.GetCertificatesResponse(
            certificate_info=[
                cert_pb2.CertificateInfo(
                    certificate_id="gnoi-server",
                    certificate=cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=pem(leaf)),
                    endpoints=[
                        cert_pb2.Endpoint(type=cert_pb2.Endpoint.EP_DAEMON, endpoint="grpc-server"),
                        cert_pb2.Endpoint(type=9, endpoint="future"),  # type: ignore[arg-type]
                    ],
                    modification_time=modified_ns,
                ),
                cert_pb2.CertificateInfo(
                    certificate_id="broken",
                    certificate=cert_pb2.Certificate(certificate=b"not a certificate"),
                ),
            ]
        )
        good, broken = messages.certificates_model(response, now=NOW)
        assert good.certificate_id == "gnoi-server"
        assert good.common_name == "r1.example.net"
        assert good.sans == ("DNS:r1.example.net", "IP:192.0.2.1")
        assert good.issuer == chained_ca.root.subject.rfc4514_string()
        assert (good.key_type, good.key_size) == ("ECDSA", 256)
        assert good.fingerprint == fingerprint(leaf)
        assert good.days_left == 30
        assert good.chain_length == 1
        assert [(e.type, e.endpoint) for e in good.endpoints] == [
            ("EP_DAEMON", "grpc-server"),
            ("EP_9", "future"),
        ]
        assert good.modified == dt.datetime.fromtimestamp(modified_ns / 1e9, tz=dt.UTC)
        assert good.parse_error == ""
        assert broken.parse_error
        assert broken.fingerprint == ""
        assert broken.modified is None

    def test_revoke_result(self) -> None:
        response = cert_pb2.RevokeCertificatesResponse(
            revoked_certificate_id=["a", "b"],
            certificate_revocation_error=[
                cert_pb2.CertificateRevocationError(certificate_id="c", error_message="busy")
            ],
        )
        result = messages.revoke_result_model(response, target="t:1")
        assert result.revoked == ("a", "b")
        assert [(e.certificate_id, e.message) for e in result.errors] == [("c", "busy")]
        assert result.ok is False
        clean = messages.revoke_result_model(
            cert_pb2.RevokeCertificatesResponse(revoked_certificate_id=["a"]), target="t:1"
        )
        assert clean.ok is True


class TestCertInfo:
    def test_days_left_rounds_down_and_goes_negative(self) -> None:
        assert days_left(NOW + DAY + dt.timedelta(hours=23), NOW) == 1
        assert days_left(NOW + dt.timedelta(hours=1), NOW) == 0
        assert days_left(NOW - dt.timedelta(hours=1), NOW) == -1

    def test_modified_time_zero_means_unknown(self) -> None:
        assert modified_time(0) is None
        assert modified_time(-5) is None

    def test_chain_length_and_rsa_key(self, root_ca: LocalCA) -> None:
        info = describe_certificate("ca", root_ca.bundle_pem + root_ca.root_pem, now=NOW)
        assert info.chain_length == 2
        assert (info.key_type, info.key_size) == ("RSA", 2048)
        assert info.sans == ()

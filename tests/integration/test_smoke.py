"""End-to-end smoke: the main flows over real TLS on loopback."""

from __future__ import annotations

import grpc
import pytest

from gnoicert.daemon.policy import TlsMode
from gnoicert.proto import cert_pb2, system_pb2
from tests.support.pki import TestCA
from tests.support.target import Target, credentials, served_fingerprint, wait_for

ADMIN = credentials("admin")


def gen(cert_id: str = "", cn: str = "127.0.0.1") -> cert_pb2.GenerateCSRRequest:
    return cert_pb2.GenerateCSRRequest(
        certificate_id=cert_id,
        csr_params=cert_pb2.CSRParams(
            type=cert_pb2.CT_X509,
            key_type=cert_pb2.KT_RSA,
            min_key_size=2048,
            common_name=cn,
            ip_address="127.0.0.1",
        ),
    )


async def test_time_over_server_only_tls(target: Target) -> None:
    reply = await target.system_stub().Time(system_pb2.TimeRequest(), metadata=ADMIN)
    assert reply.time > 1_700_000_000 * 10**9


async def test_install_with_bundle_switches_to_mutual_tls(target: Target, ca: TestCA) -> None:
    stub = target.cert_stub()
    call = stub.Install(metadata=ADMIN)
    await call.write(cert_pb2.InstallCertificateRequest(generate_csr=gen("srv")))
    reply = await call.read()
    csr = reply.generated_csr.csr.csr
    signed = ca.sign_csr(csr)
    await call.write(
        cert_pb2.InstallCertificateRequest(
            load_certificate=cert_pb2.LoadCertificateRequest(
                certificate=cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=signed),
                certificate_id="srv",
                ca_certificates=[
                    cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=ca.bundle_pem)
                ],
            )
        )
    )
    reply = await call.read()
    assert reply.WhichOneof("install_response") == "load_certificate"
    assert await call.code() == grpc.StatusCode.OK
    await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
    chain, key = ca.client_credentials()
    mtls = target.channel(client_chain_pem=chain, client_key_pem=key)
    listing = await target.cert_stub(mtls).GetCertificates(
        cert_pb2.GetCertificatesRequest(), metadata=ADMIN
    )
    assert [i.certificate_id for i in listing.certificate_info] == ["srv"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await target.system_stub(target.channel()).Time(system_pb2.TimeRequest(), metadata=ADMIN)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert served_fingerprint(target.address)  # still the factory certificate

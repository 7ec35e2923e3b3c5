"""The ceiling of our gRPC stack for bench/peers.py: a minimal grpcio asyncio servicer whose
GetCertificates returns one prebuilt response (mutual TLS with the bench's files, no auth gate).

Run by bench/peers.py: python bench/peers_ceiling.py 127.0.0.1:PORT FILES_DIR
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gnoicert.proto import cert_pb2, cert_pb2_grpc


class Ceiling(cert_pb2_grpc.CertificateManagementServicer):
    def __init__(self, response: cert_pb2.GetCertificatesResponse) -> None:
        self._response = response

    async def GetCertificates(  # the generated name
        self, request: cert_pb2.GetCertificatesRequest, context: grpc.aio.ServicerContext
    ) -> cert_pb2.GetCertificatesResponse:
        return self._response


async def serve(address: str, files: Path) -> None:
    server_pem = (files / "server.pem").read_bytes()
    response = cert_pb2.GetCertificatesResponse(
        certificate_info=[
            cert_pb2.CertificateInfo(
                certificate_id="gnoi-server",
                certificate=cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=server_pem),
            )
        ]
    )
    server = grpc.aio.server()
    cert_pb2_grpc.add_CertificateManagementServicer_to_server(Ceiling(response), server)
    credentials = grpc.ssl_server_credentials(
        [((files / "server.key").read_bytes(), server_pem)],
        root_certificates=(files / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server.add_secure_port(address, credentials)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))

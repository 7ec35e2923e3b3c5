"""GetCertificates answers from a kept response (daemon/listing.py): every committed change
reaches the next call, and a change that is applied but not committed never does."""

from __future__ import annotations

import grpc

from gnoicert.proto import cert_pb2
from tests.support.gnoi import FINALIZE, SERVER_ID, Operator, leaf_fingerprint, open_rotation


def fingerprints(listing: dict[str, cert_pb2.CertificateInfo]) -> dict[str, str]:
    return {cert_id: leaf_fingerprint(i.certificate.certificate) for cert_id, i in listing.items()}


async def test_every_commit_reaches_the_next_get_certificates(operator: Operator) -> None:
    first = fingerprints(await operator.listing())
    assert fingerprints(await operator.listing()) == first  # kept, and the same

    installed = await operator.install("extra")
    assert fingerprints(await operator.listing()) == {**first, "extra": installed}

    rotated = await operator.rotate("extra")
    assert fingerprints(await operator.listing()) == {**first, "extra": rotated}

    # A Rotate of the served certificate, loaded but not finalized: not listed until commit.
    call, new = await open_rotation(operator)
    assert fingerprints(await operator.listing())[SERVER_ID] == first[SERVER_ID]
    await call.write(FINALIZE)
    assert await call.code() == grpc.StatusCode.OK
    assert fingerprints(await operator.listing())[SERVER_ID] == new

    await operator.stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=["extra"]), metadata=operator.metadata
    )
    assert set(await operator.listing()) == {SERVER_ID}

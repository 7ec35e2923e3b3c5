"""The GetCertificates answer, built and serialised once per committed store view.

Every read of an unchanged store gets the same answer, and building it (one message per
certificate) and serialising it (every PEM copied again) cost about 1 ms each for 100
certificates: more than the rest of the call. The answer is kept for the committed view it was
built from (a view is immutable and every commit makes a new one) and the configured server
certificate ID; either changing builds a new one. `reuse_last_encoding` keeps the bytes of the
last message a method answered, so the kept answer is serialised once too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gnoicert.daemon import policy
from gnoicert.pki.store import StoreView
from gnoicert.proto import cert_pb2


def build_listing(view: StoreView, server_id: str | None) -> cert_pb2.GetCertificatesResponse:
    """Every committed certificate in ID order, the served one with its endpoint."""
    infos = []
    for cert_id, entity in sorted(view.entities.items()):
        endpoints = []
        if cert_id == server_id:
            endpoints.append(
                cert_pb2.Endpoint(type=cert_pb2.Endpoint.EP_DAEMON, endpoint=policy.SERVER_ENDPOINT)
            )
        infos.append(
            cert_pb2.CertificateInfo(
                certificate_id=cert_id,
                certificate=cert_pb2.Certificate(
                    type=cert_pb2.CT_X509, certificate=entity.full_chain_pem
                ),
                endpoints=endpoints,
                modification_time=entity.modified_ns,
            )
        )
    return cert_pb2.GetCertificatesResponse(certificate_info=infos)


class Listing:
    """The last answer and what it was built from. Used on the event loop thread only."""

    def __init__(self) -> None:
        self._view: StoreView | None = None
        self._server_id: str | None = None
        self._response = cert_pb2.GetCertificatesResponse()

    def response(self, view: StoreView, server_id: str | None) -> cert_pb2.GetCertificatesResponse:
        """The answer for view; never mutate it (it is shared by every call until a commit)."""
        if view is not self._view or server_id != self._server_id:
            self._response = build_listing(view, server_id)
            self._view, self._server_id = view, server_id
        return self._response


def reuse_last_encoding(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """serialize, remembering the last message and its bytes: the same message object (a kept
    answer, never mutated) is not serialised again. Holds one message per method."""
    last: tuple[object, bytes] = (None, b"")

    def encode(message: Any) -> bytes:
        nonlocal last
        kept, data = last
        if message is not kept:
            data = serialize(message)
            last = (message, data)
        return data

    return encode

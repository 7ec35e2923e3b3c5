"""The kept GetCertificates answer (daemon/listing.py): rebuilt for every new committed view or
server ID, shared otherwise, and serialised once."""

from __future__ import annotations

from gnoicert.daemon import policy
from gnoicert.daemon.listing import Listing, build_listing, reuse_last_encoding
from gnoicert.pki.store_view import CertificateEntity, KeyOrigin, StoreView, make_view
from gnoicert.proto import cert_pb2


def entity(cert_id: str, modified: int = 1) -> CertificateEntity:
    return CertificateEntity(
        cert_id=cert_id,
        certificate_pem=f"leaf {cert_id}\n".encode(),
        chain_pem=b"intermediate\n",
        private_key_pem=b"not listed",
        key_origin=KeyOrigin.CLIENT,
        created_ns=1,
        modified_ns=modified,
        version=1,
    )


def view(*entities: CertificateEntity, generation: int = 1) -> StoreView:
    return make_view({e.cert_id: e for e in entities}, b"", generation)


def test_the_answer_lists_every_certificate_in_id_order_with_the_served_endpoint() -> None:
    answer = build_listing(view(entity("b", 7), entity("a")), "b")
    assert [i.certificate_id for i in answer.certificate_info] == ["a", "b"]
    a, b = answer.certificate_info
    assert b.certificate.certificate == b"leaf b\nintermediate\n"
    assert b.certificate.type == cert_pb2.CT_X509
    assert b.modification_time == 7
    assert [e.endpoint for e in b.endpoints] == [policy.SERVER_ENDPOINT]
    assert b.endpoints[0].type == cert_pb2.Endpoint.EP_DAEMON
    assert not a.endpoints
    assert b"not listed" not in answer.SerializeToString()


def test_kept_for_the_same_view_and_id_rebuilt_when_either_changes() -> None:
    listing = Listing()
    first = view(entity("a"))
    kept = listing.response(first, "a")
    assert listing.response(first, "a") is kept
    # An equal but new view (a commit that changed nothing listed) still rebuilds: identity
    # is the cheap, safe test.
    second = view(entity("a", 2), generation=2)
    changed = listing.response(second, "a")
    assert changed is not kept
    assert changed.certificate_info[0].modification_time == 2
    unserved = listing.response(second, None)
    assert not unserved.certificate_info[0].endpoints
    assert listing.response(second, None) is unserved


def test_the_kept_answer_is_serialised_once() -> None:
    calls: list[object] = []

    def serialize(message: cert_pb2.GetCertificatesResponse) -> bytes:
        calls.append(message)
        return message.SerializeToString()

    encode = reuse_last_encoding(serialize)
    kept = build_listing(view(entity("a")), "a")
    assert encode(kept) == encode(kept) == kept.SerializeToString()
    assert calls == [kept]
    other = build_listing(view(entity("a")), "a")  # equal content, another message
    assert encode(other) == kept.SerializeToString()
    assert calls == [kept, other]

"""The TLS mode rules and the lockout guard (docs/behaviour.md §s 1 and 2), without a server.

Real certificates from two test CAs and a real store; check_lockout is the guard every bundle
load goes through (Install/Rotate with ca_certificates, LoadCertificateAuthorityBundle).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from gnoicert.daemon import errors, policy
from gnoicert.daemon.audit import AuditLog
from gnoicert.daemon.config import (
    CA_BUNDLE_AUTHORITY,
    ClientCertificateRequest,
    GrpcConfig,
    MutualAuthentication,
)
from gnoicert.daemon.load_validation import check_lockout
from gnoicert.daemon.runtime import Caller, Runtime
from gnoicert.pki import crypto
from gnoicert.pki.store import KeyOrigin, Store
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem

OLD = TestCA(name="policy old root", intermediate=True)
NEW = TestCA(name="policy new root")
SERVER_ID = "gnoi-server"
EXTERNAL_PEM = cert_pem(NEW.root)


def stanza(authority: str, request: ClientCertificateRequest) -> GrpcConfig:
    return GrpcConfig(
        mutual_authentication=MutualAuthentication(
            certificate_authority=authority, client_certificate_request=request
        )
    )


REQUIRE = ClientCertificateRequest.REQUIRE_AND_VERIFY


class TestModes:
    def test_without_a_stanza_a_non_empty_bundle_means_mutual(self) -> None:
        trust = policy.client_trust(GrpcConfig(), OLD.bundle_pem, EXTERNAL_PEM)
        assert trust == policy.ClientTrust(uses_store_bundle=True, ca_pem=OLD.bundle_pem)
        assert policy.tls_mode(trust, insecure=False) is policy.TlsMode.MUTUAL
        empty = policy.client_trust(GrpcConfig(), b"", EXTERNAL_PEM)
        assert policy.tls_mode(empty, insecure=False) is policy.TlsMode.SERVER_ONLY
        blank = policy.client_trust(GrpcConfig(), b" \n", EXTERNAL_PEM)
        assert policy.tls_mode(blank, insecure=False) is policy.TlsMode.SERVER_ONLY

    def test_the_stanza_wins_over_the_bundle(self) -> None:
        store_bundle = stanza(CA_BUNDLE_AUTHORITY, REQUIRE)
        trust = policy.client_trust(store_bundle, OLD.bundle_pem, EXTERNAL_PEM)
        assert trust == policy.ClientTrust(uses_store_bundle=True, ca_pem=OLD.bundle_pem)

        external = stanza("/etc/gnoicert/clients.pem", REQUIRE)
        trust = policy.client_trust(external, b"", EXTERNAL_PEM)
        assert trust == policy.ClientTrust(uses_store_bundle=False, ca_pem=EXTERNAL_PEM)
        assert policy.tls_mode(trust, insecure=False) is policy.TlsMode.MUTUAL

        never = stanza(CA_BUNDLE_AUTHORITY, ClientCertificateRequest.NO_CERTIFICATE)
        trust = policy.client_trust(never, OLD.bundle_pem, EXTERNAL_PEM)
        assert trust == policy.ClientTrust(uses_store_bundle=False, ca_pem=b"")
        assert policy.tls_mode(trust, insecure=False) is policy.TlsMode.SERVER_ONLY

    @pytest.mark.parametrize("bundle", [b"", OLD.bundle_pem])
    def test_insecure_wins_over_everything(self, bundle: bytes) -> None:
        trust = policy.client_trust(GrpcConfig(), bundle, b"")
        assert policy.tls_mode(trust, insecure=True) is policy.TlsMode.INSECURE

    def test_the_store_bundle_is_the_one_bundle_id(self) -> None:
        assert CA_BUNDLE_AUTHORITY == crypto.CA_BUNDLE_ID


def chain(ca: TestCA, cn: str = "target") -> tuple[x509.Certificate, ...]:
    leaf = ca.issue(ec_key().public_key(), cn=cn)
    return (leaf, ca.issuer) if ca.intermediate else (leaf,)


class TestBundleLocksOut:
    def test_the_server_chain_must_verify(self) -> None:
        reason = policy.bundle_locks_out(
            (NEW.root,),
            server_chain=chain(OLD),
            caller_certificate=None,
            bundle_verifies_clients=True,
        )
        assert reason is not None
        assert "server certificate" in reason
        assert (
            policy.bundle_locks_out(
                (OLD.root, NEW.root),
                server_chain=chain(OLD),
                caller_certificate=None,
                bundle_verifies_clients=True,
            )
            is None
        )

    def test_the_callers_certificate_must_verify_when_the_bundle_checks_clients(self) -> None:
        caller = chain(OLD, "operator")[0]
        reason = policy.bundle_locks_out(
            (NEW.root,), server_chain=None, caller_certificate=caller, bundle_verifies_clients=True
        )
        assert reason is not None
        assert "your own client certificate" in reason
        # Client certificates are checked elsewhere (external CA, or none asked): no lockout.
        assert (
            policy.bundle_locks_out(
                (NEW.root,),
                server_chain=None,
                caller_certificate=caller,
                bundle_verifies_clients=False,
            )
            is None
        )

    def test_the_new_bundle_alone_must_complete_the_callers_path(self) -> None:
        # The TLS stack shows only the caller's leaf; an intermediate that is only in the old
        # bundle is gone after the swap (docs/decisions.md, "Trust is decided as grpcio's").
        caller = chain(OLD, "operator")[0]  # signed by OLD's intermediate
        args = {"server_chain": None, "caller_certificate": caller, "bundle_verifies_clients": True}
        assert policy.bundle_locks_out((OLD.root,), **args) is not None  # type: ignore[arg-type]
        assert policy.bundle_locks_out((OLD.root, OLD.issuer), **args) is None  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "state")
    with opened.begin() as tx:
        tx.lock_bundle()
        tx.replace_bundle(OLD.bundle_pem)
        server = chain(OLD)
        key = ec_key()
        tx.lock(SERVER_ID)
        tx.put(
            SERVER_ID,
            certificate_pem=cert_pem(server[0]),
            chain_pem=cert_pem(*server[1:]),
            private_key_pem=key_pem(key),
            key_origin=KeyOrigin.CLIENT,
        )
        tx.commit()
    yield opened
    opened.close()


def runtime_for(store: Store, grpc_config: GrpcConfig) -> Runtime:
    return Runtime(store=store, audit=AuditLog(None), grpc=grpc_config)


def caller_with(certificate: x509.Certificate | None) -> Caller:
    return Caller(rpc="test", peer="test", identity="test", certificate=certificate)


class TestCheckLockout:
    def test_a_bundle_without_the_servers_ca_is_refused(self, store: Store) -> None:
        runtime = runtime_for(store, GrpcConfig(local_certificate=SERVER_ID))
        with pytest.raises(errors.Lockout, match="server certificate"):
            check_lockout((NEW.root,), runtime=runtime, view=store.view(), caller=caller_with(None))
        check_lockout(
            (OLD.root, NEW.root), runtime=runtime, view=store.view(), caller=caller_with(None)
        )

    def test_the_factory_certificate_is_not_guarded(self, store: Store) -> None:
        # No local_certificate: the server presents the factory certificate, which no
        # operator bundle is expected to verify.
        runtime = runtime_for(store, GrpcConfig())
        check_lockout((NEW.root,), runtime=runtime, view=store.view(), caller=caller_with(None))

    def test_replacing_the_server_certificate_judges_the_new_one(self, store: Store) -> None:
        runtime = runtime_for(store, GrpcConfig(local_certificate=SERVER_ID))
        replaced = (SERVER_ID, chain(NEW))
        check_lockout(
            (NEW.root,),
            runtime=runtime,
            view=store.view(),
            caller=caller_with(None),
            replaced=replaced,
        )
        with pytest.raises(errors.Lockout):
            check_lockout(
                (OLD.root,),
                runtime=runtime,
                view=store.view(),
                caller=caller_with(None),
                replaced=replaced,
            )

    def test_a_rotate_in_effect_must_verify_as_well_as_the_committed_one(
        self, store: Store
    ) -> None:
        runtime = runtime_for(store, GrpcConfig(local_certificate=SERVER_ID))
        applied = chain(NEW)
        with store.begin() as tx:
            tx.lock(SERVER_ID)
            tx.put(
                SERVER_ID,
                certificate_pem=cert_pem(applied[0]),
                chain_pem=b"",
                private_key_pem=key_pem(ec_key()),
                key_origin=KeyOrigin.CLIENT,
            )
            tx.apply()
            view = store.view()
            for bundle in ((NEW.root,), (OLD.root,)):  # either one alone fails the other
                with pytest.raises(errors.Lockout):
                    check_lockout(bundle, runtime=runtime, view=view, caller=caller_with(None))
            check_lockout(
                (OLD.root, NEW.root), runtime=runtime, view=view, caller=caller_with(None)
            )

    def test_the_caller_is_guarded_only_when_the_store_bundle_checks_clients(
        self, store: Store
    ) -> None:
        operator = caller_with(chain(OLD, "operator")[0])
        bundle = (OLD.root, OLD.issuer, NEW.root)
        implicit = runtime_for(store, GrpcConfig())
        check_lockout(bundle, runtime=implicit, view=store.view(), caller=operator)
        with pytest.raises(errors.Lockout, match="your own client certificate"):
            check_lockout((NEW.root,), runtime=implicit, view=store.view(), caller=operator)
        external = runtime_for(store, stanza("/etc/gnoicert/clients.pem", REQUIRE))
        external.external_client_ca_pem = EXTERNAL_PEM
        check_lockout((NEW.root,), runtime=external, view=store.view(), caller=operator)
        insecure = runtime_for(store, GrpcConfig())
        insecure.insecure = True
        check_lockout((NEW.root,), runtime=insecure, view=store.view(), caller=operator)

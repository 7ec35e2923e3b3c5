"""The durable store: transactions, views, locks, recovery, pending keys, secrets, failures.

Real files in a temporary state directory, real EC/RSA keys; disk failures are injected at the
os-call level (the only way to make a root-owned filesystem fail on cue).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gnoicert.pki import crypto
from gnoicert.pki.errors import BadEncoding, InvalidCertificateId, ResourceBusy, StoreFailure
from gnoicert.pki.store import (
    CertificateEntity,
    KeyOrigin,
    Store,
    StoreView,
    Transaction,
)

SECRET = b"machine secret for tests"


@dataclass(frozen=True, slots=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class Material:
    ca_pem: bytes
    other_ca_pem: bytes
    pairs: tuple[Pair, ...]
    rsa_pair: Pair

    def all_key_pems(self) -> list[bytes]:
        return [p.key_pem for p in (*self.pairs, self.rsa_pair)]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    cn: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cn: str,
    *,
    ca: bool,
) -> bytes:
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def material() -> Material:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    pairs = []
    for i in range(6):
        key = ec.generate_private_key(ec.SECP256R1())
        pairs.append(
            Pair(_certificate(key, f"leaf{i}", ca_key, "store CA", ca=False), _key_pem(key))
        )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Material(
        ca_pem=_certificate(ca_key, "store CA", ca_key, "store CA", ca=True),
        other_ca_pem=_certificate(other_key, "other CA", other_key, "other CA", ca=True),
        pairs=tuple(pairs),
        rsa_pair=Pair(
            _certificate(rsa_key, "rsa", ca_key, "store CA", ca=False), _key_pem(rsa_key)
        ),
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    opened = Store.open(state_dir)
    yield opened
    opened.close()


def put(
    txn: Transaction,
    cert_id: str,
    pair: Pair,
    *,
    chain: bytes = b"",
    origin: KeyOrigin = KeyOrigin.CLIENT,
) -> CertificateEntity:
    if not txn.holds(cert_id):
        txn.lock(cert_id)
    return txn.put(
        cert_id,
        certificate_pem=pair.cert_pem,
        chain_pem=chain,
        private_key_pem=pair.key_pem,
        key_origin=origin,
    )


def install(store: Store, cert_id: str, pair: Pair, **kwargs: Any) -> StoreView:
    with store.begin() as txn:
        put(txn, cert_id, pair, **kwargs)
        return txn.commit()


def set_bundle(store: Store, bundle: bytes) -> StoreView:
    with store.begin() as txn:
        txn.lock_bundle()
        txn.replace_bundle(bundle)
        return txn.commit()


def snapshot(view: StoreView) -> tuple[dict[str, tuple[Any, ...]], bytes]:
    """Everything a view says, for equality across reopen."""
    return (
        {cid: dataclasses.astuple(entity) for cid, entity in view.entities.items()},
        view.ca_bundle_pem,
    )


def content(view: StoreView) -> tuple[dict[str, tuple[Any, ...]], bytes]:
    """What a view says apart from timestamps (two stores built alike differ only in those)."""
    return (
        {
            cid: (e.certificate_pem, e.chain_pem, e.private_key_pem, e.key_origin, e.version)
            for cid, e in view.entities.items()
        },
        view.ca_bundle_pem,
    )


def reopen(store: Store, **kwargs: Any) -> Store:
    store.close()
    return Store.open(store.path, **kwargs)


def tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- entities and views ---------------------------------------------------------------------


class TestEntityAndView:
    def test_entity_properties(self, store: Store, material: Material) -> None:
        view = install(store, "a", material.pairs[0], chain=material.ca_pem)
        entity = view.entities["a"]
        leaf = x509.load_pem_x509_certificate(material.pairs[0].cert_pem)
        assert entity.certificate == leaf
        assert entity.fingerprint == crypto.fingerprint(leaf)
        assert entity.full_chain_pem == material.pairs[0].cert_pem + material.ca_pem
        assert crypto.load_certificates(entity.full_chain_pem)[1] == x509.load_pem_x509_certificate(
            material.ca_pem
        )
        assert entity.key_origin is KeyOrigin.CLIENT
        assert entity.version == 1
        assert entity.created_ns == entity.modified_ns

    def test_full_chain_inserts_missing_newline(self, store: Store, material: Material) -> None:
        leaf = material.pairs[0].cert_pem.rstrip(b"\n")
        with store.begin() as txn:
            txn.lock("a")
            entity = txn.put(
                "a",
                certificate_pem=leaf,
                chain_pem=material.ca_pem,
                private_key_pem=material.pairs[0].key_pem,
                key_origin=KeyOrigin.TARGET,
            )
        assert len(crypto.load_certificates(entity.full_chain_pem)) == 2
        assert entity.full_chain_pem.startswith(leaf + b"\n")

    def test_views_are_immutable(self, store: Store, material: Material) -> None:
        view = install(store, "a", material.pairs[0])
        with pytest.raises(TypeError):
            view.entities["b"] = view.entities["a"]  # type: ignore[index]
        with pytest.raises(dataclasses.FrozenInstanceError):
            view.generation = 7  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            view.entities["a"].version = 9  # type: ignore[misc]

    def test_entity_repr_has_no_key(self, store: Store, material: Material) -> None:
        view = install(store, "a", material.pairs[0])
        assert "PRIVATE KEY" not in repr(view.entities["a"])
        assert "PRIVATE KEY" not in repr(view)

    def test_ca_bundle_parsed_once_per_bundle(self, store: Store, material: Material) -> None:
        assert store.view().ca_bundle == ()
        view = set_bundle(store, material.ca_pem + material.other_ca_pem)
        parsed = view.ca_bundle
        assert [c.subject.rfc4514_string() for c in parsed] == ["CN=store CA", "CN=other CA"]
        assert store.view().ca_bundle is parsed

    def test_entities_sorted_by_id(self, store: Store, material: Material) -> None:
        for cid in ("c", "a", "b"):
            install(store, cid, material.pairs[0])
        assert list(store.view().entities) == ["a", "b", "c"]


# --- transactions ---------------------------------------------------------------------------


class TestTransactions:
    def test_install_commit(self, store: Store, material: Material) -> None:
        assert store.view().generation == 0
        before = time.time_ns()
        view = install(store, "a", material.pairs[0], origin=KeyOrigin.TARGET)
        entity = view.entities["a"]
        assert entity.private_key_pem == material.pairs[0].key_pem
        assert entity.key_origin is KeyOrigin.TARGET
        assert before <= entity.created_ns <= time.time_ns()
        assert view.generation == 1
        assert store.view() is store.committed_view() is view

    def test_replace_keeps_created_and_bumps_version(
        self, store: Store, material: Material
    ) -> None:
        first = install(store, "a", material.pairs[0]).entities["a"]
        second = install(store, "a", material.pairs[1]).entities["a"]
        third = install(store, "a", material.pairs[2]).entities["a"]
        assert (second.version, third.version) == (2, 3)
        assert first.created_ns == second.created_ns == third.created_ns
        assert first.modified_ns <= second.modified_ns <= third.modified_ns
        assert third.private_key_pem == material.pairs[2].key_pem

    def test_put_twice_in_one_transaction_is_one_change(
        self, store: Store, material: Material
    ) -> None:
        install(store, "a", material.pairs[0])
        with store.begin() as txn:
            put(txn, "a", material.pairs[1])
            entity = put(txn, "a", material.pairs[2])
            txn.commit()
        assert entity.version == 2
        assert store.view().entities["a"] == entity

    def test_delete(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        install(store, "b", material.pairs[1])
        with store.begin() as txn:
            txn.lock("a")
            txn.delete("a")
            assert txn.has_changes
            view = txn.commit()
        assert list(view.entities) == ["b"]
        assert not (store.path / "current" / "certificates" / "a").exists()

    def test_delete_absent_is_no_change(self, store: Store, material: Material) -> None:
        install(store, "b", material.pairs[1])
        generation = store.view().generation
        with store.begin() as txn:
            txn.lock("a")
            txn.delete("a")
            assert not txn.has_changes
            view = txn.commit()
            assert txn.closed
        assert view.generation == generation
        assert not store.is_locked("a")

    def test_put_then_delete_of_new_id_cancels(self, store: Store, material: Material) -> None:
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            txn.delete("a")
            assert not txn.has_changes

    def test_commit_without_changes_closes(self, store: Store) -> None:
        txn = store.begin()
        txn.lock("a")
        view = txn.commit()
        assert txn.closed
        assert view.generation == 0
        assert not store.is_locked("a")
        assert not (store.path / "current").exists()

    def test_bundle_replace_and_empty(self, store: Store, material: Material) -> None:
        view = set_bundle(store, material.ca_pem)
        assert view.ca_bundle_pem == material.ca_pem
        assert (store.path / "current" / "gnoi-ca-bundle.pem").read_bytes() == material.ca_pem
        view = set_bundle(store, b"")
        assert view.ca_bundle_pem == b""
        assert not (store.path / "current" / "gnoi-ca-bundle.pem").exists()

    def test_same_bundle_is_no_change(self, store: Store, material: Material) -> None:
        set_bundle(store, material.ca_pem)
        with store.begin() as txn:
            txn.lock_bundle()
            txn.replace_bundle(material.ca_pem)
            assert not txn.has_changes

    def test_apply_is_visible_but_not_committed(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        with store.begin() as txn:
            put(txn, "a", material.pairs[1])
            put(txn, "b", material.pairs[2])
            txn.lock_bundle()
            txn.replace_bundle(material.ca_pem)
            assert store.view().entities["a"].private_key_pem == material.pairs[0].key_pem
            applied = txn.apply()
            assert applied is store.view()
            assert applied.entities["a"].private_key_pem == material.pairs[1].key_pem
            assert applied.entities["a"].version == 2
            assert "b" in applied.entities
            assert applied.ca_bundle_pem == material.ca_pem
            committed = store.committed_view()
            assert list(committed.entities) == ["a"]
            assert committed.entities["a"].private_key_pem == material.pairs[0].key_pem
            assert committed.ca_bundle_pem == b""
            assert applied.generation == committed.generation
        # Leaving the block without commit rolled back.
        assert snapshot(store.view()) == snapshot(committed)

    def test_applied_changes_are_not_durable(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        txn = store.begin()
        put(txn, "a", material.pairs[1])
        txn.apply()
        store = reopen(store)  # close() rolls back open transactions
        try:
            assert txn.closed
            assert store.view().entities["a"].private_key_pem == material.pairs[0].key_pem
        finally:
            store.close()

    def test_two_transactions_are_isolated(self, store: Store, material: Material) -> None:
        t1, t2 = store.begin(), store.begin()
        put(t1, "a", material.pairs[0])
        put(t2, "b", material.pairs[1])
        t1.apply()
        view = t2.apply()
        assert list(view.entities) == ["a", "b"]
        t1.rollback()
        assert list(store.view().entities) == ["b"]
        committed = t2.commit()
        assert list(committed.entities) == ["b"]
        assert store.view() is committed

    def test_commit_under_another_applied_transaction(
        self, store: Store, material: Material
    ) -> None:
        t1, t2 = store.begin(), store.begin()
        put(t1, "a", material.pairs[0])
        t1.apply()
        put(t2, "b", material.pairs[1])
        t2.commit()
        assert list(store.committed_view().entities) == ["b"]
        assert list(store.view().entities) == ["a", "b"]
        assert store.view().generation == 1
        t1.rollback()
        assert list(store.view().entities) == ["b"]

    def test_reapply(self, store: Store, material: Material) -> None:
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            txn.apply()
            put(txn, "a", material.pairs[1])
            # Staged but not applied yet: the view keeps the first application.
            assert store.view().entities["a"].private_key_pem == material.pairs[0].key_pem
            txn.apply()
            assert store.view().entities["a"].private_key_pem == material.pairs[1].key_pem
            txn.delete("a")
            txn.apply()
            assert "a" not in store.view().entities

    def test_commit_includes_changes_staged_after_apply(
        self, store: Store, material: Material
    ) -> None:
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            txn.apply()
            put(txn, "b", material.pairs[1])
            view = txn.commit()
        assert list(view.entities) == ["a", "b"]
        assert store.view() is view

    def test_rollback_restores_view(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        set_bundle(store, material.ca_pem)
        before = store.view()
        txn = store.begin()
        put(txn, "a", material.pairs[1])
        txn.lock("a")
        txn.lock_bundle()
        txn.replace_bundle(material.other_ca_pem)
        txn.apply()
        assert snapshot(store.view()) != snapshot(before)
        txn.rollback()
        txn.rollback()  # idempotent
        assert store.view() is before
        assert txn.closed

    def test_closed_transaction_refuses(self, store: Store, material: Material) -> None:
        txn = store.begin()
        txn.rollback()
        for call in (
            lambda: txn.lock("a"),
            txn.lock_bundle,
            lambda: txn.put(
                "a",
                certificate_pem=material.pairs[0].cert_pem,
                chain_pem=b"",
                private_key_pem=material.pairs[0].key_pem,
                key_origin=KeyOrigin.CLIENT,
            ),
            txn.apply,
            txn.commit,
        ):
            with pytest.raises(RuntimeError, match="already committed or rolled back"):
                call()

    def test_staging_requires_the_lock(self, store: Store, material: Material) -> None:
        with store.begin() as txn:
            with pytest.raises(RuntimeError, match="lock"):
                txn.put(
                    "a",
                    certificate_pem=material.pairs[0].cert_pem,
                    chain_pem=b"",
                    private_key_pem=material.pairs[0].key_pem,
                    key_origin=KeyOrigin.CLIENT,
                )
            with pytest.raises(RuntimeError, match="lock"):
                txn.delete("a")
            with pytest.raises(RuntimeError, match="lock"):
                txn.consume_pending_key("a")
            with pytest.raises(RuntimeError, match="lock_bundle"):
                txn.replace_bundle(material.ca_pem)
            assert not txn.has_changes

    def test_put_refuses_unparsable_certificate(self, store: Store, material: Material) -> None:
        with store.begin() as txn:
            txn.lock("a")
            with pytest.raises(BadEncoding):
                txn.put(
                    "a",
                    certificate_pem=b"not a certificate",
                    chain_pem=b"",
                    private_key_pem=material.pairs[0].key_pem,
                    key_origin=KeyOrigin.CLIENT,
                )
            assert not txn.has_changes

    def test_concurrent_commits_from_threads(self, store: Store, material: Material) -> None:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(8):
                    install(store, f"t{n}", material.pairs[(n + i) % len(material.pairs)])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        view = store.view()
        assert view.generation == 32
        assert {cid: e.version for cid, e in view.entities.items()} == {
            f"t{n}": 8 for n in range(4)
        }
        expected = snapshot(view)
        store = reopen(store)
        try:
            assert snapshot(store.view()) == expected
        finally:
            store.close()


# --- locks ----------------------------------------------------------------------------------


class TestLocks:
    def test_id_lock_is_exclusive(self, store: Store) -> None:
        t1, t2 = store.begin(), store.begin()
        t1.lock("a")
        t1.lock("a")  # re-locking one's own ID is fine
        assert t1.holds("a")
        assert not t2.holds("a")
        assert store.is_locked("a")
        with pytest.raises(ResourceBusy) as info:
            t2.lock("a")
        assert str(info.value) == (
            "certificate ID 'a' is being changed by another operation; retry when it ends"
        )
        t2.lock("b")  # other IDs are free
        t1.rollback()
        assert not store.is_locked("a")
        t2.lock("a")
        t2.rollback()
        assert not store.is_locked("a")
        assert not store.is_locked("b")

    def test_lock_released_after_commit(self, store: Store, material: Material) -> None:
        t1 = store.begin()
        put(t1, "a", material.pairs[0])
        t1.lock_bundle()
        t1.commit()
        assert not store.is_locked("a")
        with store.begin() as t2:
            t2.lock("a")
            t2.lock_bundle()

    def test_bundle_lock_is_exclusive(self, store: Store) -> None:
        t1, t2 = store.begin(), store.begin()
        t1.lock_bundle()
        with pytest.raises(ResourceBusy, match="CA bundle"):
            t2.lock_bundle()
        t1.rollback()
        t2.lock_bundle()
        t2.rollback()

    @pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "../x", "x" * 65, "gnoi-ca-bundle"])
    def test_lock_validates_the_id(self, store: Store, bad: str) -> None:
        with store.begin() as txn, pytest.raises(InvalidCertificateId):
            txn.lock(bad)

    def test_busy_transaction_does_not_block_reads(self, store: Store, material: Material) -> None:
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            assert store.view().entities == {}


# --- subscribers ----------------------------------------------------------------------------


class TestSubscribers:
    def test_called_on_apply_commit_rollback(self, store: Store, material: Material) -> None:
        seen: list[StoreView] = []
        unsubscribe = store.subscribe(seen.append)
        t1 = store.begin()
        put(t1, "a", material.pairs[0])
        applied = t1.apply()
        assert seen == [applied]
        t1.rollback()
        assert len(seen) == 2
        assert seen[-1].entities == {}
        committed = install(store, "b", material.pairs[1])
        assert seen[-1] is committed
        # A rollback of a transaction never applied changes nothing: no call.
        with store.begin() as t2:
            put(t2, "b", material.pairs[2])
        assert len(seen) == 3
        unsubscribe()
        unsubscribe()  # idempotent
        install(store, "c", material.pairs[2])
        assert len(seen) == 3

    def test_commit_of_what_was_applied_calls_nobody(
        self, store: Store, material: Material
    ) -> None:
        """The effective view does not change: the TLS manager has nothing to reload."""
        seen: list[StoreView] = []
        store.subscribe(seen.append)
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            txn.apply()
            txn.commit()
        assert len(seen) == 1
        assert "a" in store.committed_view().entities

    def test_view_passed_is_the_effective_view(self, store: Store, material: Material) -> None:
        seen: list[StoreView] = []
        store.subscribe(seen.append)
        t1 = store.begin()
        put(t1, "a", material.pairs[0])
        t1.apply()
        install(store, "b", material.pairs[1])
        assert list(seen[-1].entities) == ["a", "b"]
        assert seen[-1] is store.view()
        t1.rollback()

    def test_subscriber_error_is_logged_not_raised(
        self, store: Store, material: Material, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[int] = []

        def broken(view: StoreView) -> None:
            raise ValueError("subscriber broke")

        store.subscribe(broken)
        store.subscribe(lambda view: calls.append(view.generation))
        with caplog.at_level(logging.ERROR, logger="gnoicert.pki.store"):
            view = install(store, "a", material.pairs[0])
        assert view.generation == 1
        assert calls == [1]
        assert any("subscriber" in r.getMessage() for r in caplog.records)

    def test_called_outside_the_store_lock(self, store: Store, material: Material) -> None:
        """A subscriber may read the store (and start a transaction) without deadlocking."""
        seen: list[list[str]] = []

        def reader(view: StoreView) -> None:
            seen.append(list(store.view().entities))
            with store.begin() as txn:
                txn.lock("other")

        store.subscribe(reader)
        install(store, "a", material.pairs[0])
        assert seen == [["a"]]


# --- durability and recovery ----------------------------------------------------------------


class TestDurability:
    def test_state_survives_reopen(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0], chain=material.ca_pem, origin=KeyOrigin.TARGET)
        install(store, "b", material.rsa_pair)
        install(store, "a", material.pairs[1])
        set_bundle(store, material.ca_pem + material.other_ca_pem)
        expected = store.view()
        store = reopen(store)
        try:
            view = store.view()
            assert snapshot(view) == snapshot(expected)
            assert view.generation == expected.generation == 4
            assert view.entities["a"].key_origin is KeyOrigin.CLIENT
            assert view.entities["a"].version == 2
            assert len(view.ca_bundle) == 2
            assert install(store, "c", material.pairs[2]).generation == 5
        finally:
            store.close()

    def test_layout(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0], chain=material.ca_pem)
        set_bundle(store, material.ca_pem)
        store.close()  # waits for the removal of generation 1
        assert os.readlink(store.path / "current") == "generations/2"
        assert sorted(p.name for p in (store.path / "generations").iterdir()) == ["2"]
        gen = store.path / "generations" / "2"
        entity_dir = gen / "certificates" / "a"
        assert (entity_dir / "certificate.pem").read_bytes() == material.pairs[0].cert_pem
        assert (entity_dir / "chain.pem").read_bytes() == material.ca_pem
        assert (entity_dir / "key.pem").read_bytes() == material.pairs[0].key_pem
        manifest = json.loads((gen / "manifest.json").read_text())
        assert manifest["generation"] == 2
        assert manifest["ca_bundle"]["count"] == 1
        record = manifest["entities"]["a"]
        assert record["version"] == 1
        assert record["key_origin"] == "client"
        assert record["fingerprint"] == store.view().entities["a"].fingerprint

    def test_old_generation_is_removed_after_the_commit_returns(
        self, store: Store, material: Material, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        install(store, "a", material.pairs[0])
        removing, release = threading.Event(), threading.Event()
        real_rmtree = shutil.rmtree

        def slow_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            removing.set()
            release.wait(timeout=30)
            real_rmtree(path, *args, **kwargs)

        monkeypatch.setattr(shutil, "rmtree", slow_rmtree)
        try:
            # The commit is durable and returns while generation 1 is still being removed.
            assert install(store, "b", material.pairs[1]).generation == 2
            assert removing.wait(timeout=30)
            assert os.readlink(store.path / "current") == "generations/2"
            closer = threading.Thread(target=store.close)
            closer.start()
            closer.join(timeout=0.2)
            assert closer.is_alive()  # close waits for the removal
        finally:
            release.set()
        closer.join(timeout=30)
        assert not closer.is_alive()
        assert sorted(p.name for p in (store.path / "generations").iterdir()) == ["2"]

    def test_unchanged_files_are_hard_links(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        key = store.path / "current" / "certificates" / "a" / "key.pem"
        inode = key.stat().st_ino
        install(store, "b", material.pairs[1])
        assert os.readlink(store.path / "current") == "generations/2"
        assert key.stat().st_ino == inode

    def test_second_open_is_refused(self, store: Store, state_dir: Path) -> None:
        with pytest.raises(StoreFailure, match="in use by another process"):
            Store.open(state_dir)
        store.close()
        Store.open(state_dir).close()

    def test_close_is_idempotent_and_final(self, store: Store) -> None:
        store.close()
        store.close()
        with pytest.raises(RuntimeError, match="closed"):
            store.begin()

    def test_recovery_removes_strays(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        set_bundle(store, material.ca_pem)
        expected = snapshot(store.view())
        store.close()
        root = store.path
        gens = root / "generations"
        # A complete but uncommitted generation (crash between its rename and the swap).
        shutil.copytree(gens / "2", gens / "3")
        (gens / ".tmp-4-abcdef").mkdir()
        (gens / ".tmp-4-abcdef" / "manifest.json").write_text("{")
        (gens / "1").mkdir()  # an old generation whose removal was interrupted
        os.symlink("generations/3", root / ".tmp-current-123")
        (root / "pending" / ".tmp-a.json-77").write_text("{}")
        (root / "factory" / ".tmp-key.pem-1").write_text("x")
        store = Store.open(root)
        try:
            assert snapshot(store.view()) == expected
            assert sorted(p.name for p in gens.iterdir()) == ["2"]
            leftovers = [p for p in tree(root) if p.name.startswith(".tmp")]
            assert leftovers == []
            assert install(store, "b", material.pairs[1]).generation == 3
        finally:
            store.close()

    @pytest.mark.parametrize(
        ("damage", "message"),
        [
            ("edit-cert", "certificate.pem does not match the manifest"),
            ("edit-key", "key.pem does not match the manifest"),
            ("extra-entity", "does not match the manifest"),
            ("missing-entity", "missing"),
            ("bundle", "gnoi-ca-bundle.pem does not match the manifest"),
            ("manifest", "manifest.json is unreadable"),
            ("current", "does not exist"),
        ],
    )
    def test_damaged_state_is_refused(
        self, store: Store, material: Material, damage: str, message: str
    ) -> None:
        install(store, "a", material.pairs[0])
        set_bundle(store, material.ca_pem)
        store.close()
        gen = store.path / "generations" / "2"
        entity = gen / "certificates" / "a"
        if damage == "edit-cert":
            (entity / "certificate.pem").write_bytes(material.pairs[1].cert_pem)
        elif damage == "edit-key":
            (entity / "key.pem").write_bytes(material.pairs[1].key_pem)
        elif damage == "extra-entity":
            (gen / "certificates" / "zz").mkdir()
        elif damage == "missing-entity":
            for child in entity.iterdir():
                child.unlink()
            entity.rmdir()
        elif damage == "bundle":
            (gen / "gnoi-ca-bundle.pem").write_bytes(material.other_ca_pem)
        elif damage == "manifest":
            (gen / "manifest.json").write_text("{not json")
        elif damage == "current":
            os.unlink(store.path / "current")
            os.symlink("generations/9", store.path / "current")
        with pytest.raises(StoreFailure, match="damaged") as info:
            Store.open(store.path)
        assert message in str(info.value)
        # The refusal released the directory lock: a second try is refused for the same reason.
        with pytest.raises(StoreFailure, match="damaged"):
            Store.open(store.path)

    def test_reads_do_not_wait_for_a_commit(
        self, store: Store, material: Material, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        install(store, "a", material.pairs[0])
        entered, release = threading.Event(), threading.Event()
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            if threading.current_thread() is not threading.main_thread():
                entered.set()
                release.wait(timeout=30)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", slow_fsync)
        result: list[StoreView] = []
        writer = threading.Thread(
            target=lambda: result.append(install(store, "b", material.pairs[1]))
        )
        writer.start()
        try:
            assert entered.wait(timeout=30)
            # The commit is stuck in fsync: readers still get the committed view at once.
            assert list(store.view().entities) == ["a"]
            assert list(store.committed_view().entities) == ["a"]
            assert store.is_locked("b")
        finally:
            release.set()
            writer.join(timeout=30)
        assert list(result[0].entities) == ["a", "b"]

    def test_rollback_waits_for_a_commit_in_flight(
        self, store: Store, material: Material, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        entered, release = threading.Event(), threading.Event()
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            if threading.current_thread() is not threading.main_thread():
                entered.set()
                release.wait(timeout=30)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", slow_fsync)
        txn = store.begin()
        put(txn, "a", material.pairs[0])
        writer = threading.Thread(target=txn.commit)
        writer.start()
        assert entered.wait(timeout=30)
        rolled_back = threading.Event()

        def roll_back() -> None:
            txn.rollback()
            rolled_back.set()

        roller = threading.Thread(target=roll_back)
        roller.start()
        assert not rolled_back.wait(timeout=0.05)  # blocked behind the commit
        release.set()
        writer.join(timeout=30)
        roller.join(timeout=30)
        assert rolled_back.is_set()
        assert "a" in store.committed_view().entities  # the commit landed, the rollback no-op


# --- pending keys ---------------------------------------------------------------------------


class TestPendingKeys:
    def test_put_get_replace(self, store: Store, material: Material) -> None:
        far = time.time_ns() + 3_600_000_000_000
        assert store.pending_key("a") is None
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=far)
        assert store.pending_key("a") == material.pairs[0].key_pem
        store.put_pending_key("a", material.pairs[1].key_pem, expires_ns=far)
        assert store.pending_key("a") == material.pairs[1].key_pem
        path = store.path / "pending" / "a.json"
        assert mode(path) == 0o600
        store = reopen(store)
        try:
            assert store.pending_key("a") == material.pairs[1].key_pem
        finally:
            store.close()

    def test_expiry(self, store: Store, material: Material) -> None:
        expires = time.time_ns() + 3_600_000_000_000
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=expires)
        assert store.pending_key("a", now_ns=expires - 1) == material.pairs[0].key_pem
        assert store.pending_key("a", now_ns=expires) is None
        assert not (store.path / "pending" / "a.json").exists()
        assert store.pending_key("a") is None

    def test_expired_keys_dropped_at_open(self, store: Store, material: Material) -> None:
        store.put_pending_key("old", material.pairs[0].key_pem, expires_ns=time.time_ns() - 1)
        store.put_pending_key("new", material.pairs[1].key_pem, expires_ns=time.time_ns() + 10**12)
        store = reopen(store)
        try:
            assert sorted(p.name for p in (store.path / "pending").iterdir()) == ["new.json"]
            assert store.pending_key("new") == material.pairs[1].key_pem
        finally:
            store.close()

    def test_consumed_at_commit(self, store: Store, material: Material) -> None:
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=time.time_ns() + 10**12)
        with store.begin() as txn:
            put(txn, "a", material.pairs[0], origin=KeyOrigin.TARGET)
            txn.consume_pending_key("a")
            assert store.pending_key("a") is not None  # until the commit
            txn.commit()
        assert store.pending_key("a") is None
        assert not (store.path / "pending" / "a.json").exists()

    def test_consume_alone_is_a_change(self, store: Store, material: Material) -> None:
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=time.time_ns() + 10**12)
        with store.begin() as txn:
            txn.lock("a")
            txn.consume_pending_key("a")
            assert txn.has_changes
            txn.commit()
        assert store.pending_key("a") is None

    def test_rollback_keeps_the_pending_key(self, store: Store, material: Material) -> None:
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=time.time_ns() + 10**12)
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            txn.consume_pending_key("a")
        assert store.pending_key("a") == material.pairs[0].key_pem

    def test_newer_pending_key_survives_commit(self, store: Store, material: Material) -> None:
        far = time.time_ns() + 10**12
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=far)
        with store.begin() as txn:
            put(txn, "a", material.pairs[0])
            txn.consume_pending_key("a")
            store.put_pending_key("a", material.pairs[1].key_pem, expires_ns=far)
            txn.commit()
        assert store.pending_key("a") == material.pairs[1].key_pem

    def test_consumed_key_left_by_a_crash_is_dropped_at_open(
        self, store: Store, material: Material
    ) -> None:
        """A crash between the swap and the removal must not let the installed key be reused."""
        far = time.time_ns() + 10**12
        store.put_pending_key("a", material.pairs[0].key_pem, expires_ns=far)
        saved = (store.path / "pending" / "a.json").read_bytes()
        with store.begin() as txn:
            put(txn, "a", material.pairs[0], origin=KeyOrigin.TARGET)
            txn.consume_pending_key("a")
            txn.commit()
        store.close()
        (store.path / "pending" / "a.json").write_bytes(saved)
        store = Store.open(store.path)
        try:
            assert store.pending_key("a") is None
            assert not (store.path / "pending" / "a.json").exists()
        finally:
            store.close()

    def test_bad_id_refused(self, store: Store, material: Material) -> None:
        with pytest.raises(InvalidCertificateId):
            store.put_pending_key("../x", material.pairs[0].key_pem, expires_ns=1)
        with pytest.raises(InvalidCertificateId):
            store.pending_key("../x")


# --- factory credentials and reset ----------------------------------------------------------


class TestFactory:
    def test_save_and_reload(self, store: Store, material: Material) -> None:
        assert store.factory_credentials() is None
        pair = material.rsa_pair
        store.save_factory_credentials(pair.cert_pem, pair.key_pem)
        assert store.factory_credentials() == (pair.cert_pem, pair.key_pem)
        assert mode(store.path / "factory" / "key.pem") == 0o600
        store = reopen(store)
        try:
            assert store.factory_credentials() == (pair.cert_pem, pair.key_pem)
        finally:
            store.close()

    def test_mismatched_pair_is_ignored(
        self, store: Store, material: Material, caplog: pytest.LogCaptureFixture
    ) -> None:
        store.save_factory_credentials(material.pairs[0].cert_pem, material.pairs[0].key_pem)
        store.close()
        # What a crash between the key and the certificate write of a second save leaves.
        (store.path / "factory" / "key.pem").write_bytes(material.pairs[1].key_pem)
        with caplog.at_level(logging.WARNING, logger="gnoicert.pki.store"):
            store = Store.open(store.path)
        try:
            assert store.factory_credentials() is None
            assert any("do not form a pair" in r.getMessage() for r in caplog.records)
        finally:
            store.close()

    def test_factory_reset(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        set_bundle(store, material.ca_pem)
        store.put_pending_key("b", material.pairs[1].key_pem, expires_ns=time.time_ns() + 10**12)
        store.save_factory_credentials(material.pairs[2].cert_pem, material.pairs[2].key_pem)
        seen: list[StoreView] = []
        store.subscribe(seen.append)
        store.factory_reset()
        for view in (store.view(), store.committed_view()):
            assert view.entities == {}
            assert view.ca_bundle_pem == b""
        assert seen[-1].entities == {}
        assert store.pending_key("b") is None
        assert store.factory_credentials() is None
        store = reopen(store)
        try:
            assert store.view().entities == {}
            assert store.view().ca_bundle_pem == b""
            assert store.pending_key("b") is None
            assert store.factory_credentials() is None
            keys = [p for p in tree(store.path) if p.is_file() and p.name != "LOCK"]
            assert [p.name for p in keys] == ["manifest.json"]
        finally:
            store.close()

    def test_factory_reset_refused_while_a_transaction_is_open(
        self, store: Store, material: Material
    ) -> None:
        install(store, "a", material.pairs[0])
        txn = store.begin()
        with pytest.raises(ResourceBusy, match="factory reset refused"):
            store.factory_reset()
        txn.rollback()
        store.factory_reset()
        assert store.view().entities == {}


# --- keys at rest ---------------------------------------------------------------------------


class TestKeySecret:
    def test_keys_encrypted_on_disk(self, state_dir: Path, material: Material) -> None:
        store = Store.open(state_dir, key_secret=SECRET)
        try:
            install(store, "ec", material.pairs[0])
            install(store, "rsa", material.rsa_pair)
            store.put_pending_key(
                "p", material.pairs[1].key_pem, expires_ns=time.time_ns() + 10**12
            )
            store.save_factory_credentials(material.pairs[2].cert_pem, material.pairs[2].key_pem)
            # In memory: the unencrypted PKCS#8 PEM, unchanged.
            assert store.view().entities["rsa"].private_key_pem == material.rsa_pair.key_pem
            store = reopen(store, key_secret=SECRET)
            view = store.view()
            assert view.entities["ec"].private_key_pem == material.pairs[0].key_pem
            assert view.entities["rsa"].private_key_pem == material.rsa_pair.key_pem
            assert store.pending_key("p") == material.pairs[1].key_pem
            assert store.factory_credentials() == (
                material.pairs[2].cert_pem,
                material.pairs[2].key_pem,
            )
        finally:
            store.close()
        key_files = [p for p in tree(state_dir) if p.name in ("key.pem", "p.json")]
        assert len(key_files) == 4
        for path in key_files:
            data = path.read_bytes()
            assert b"BEGIN PRIVATE KEY" not in data
            assert b"ENCRYPTED PRIVATE KEY" in data
            for pem in material.all_key_pems():
                body = b"".join(pem.splitlines()[1:-1])
                assert body[:40] not in data.replace(b"\n", b"").replace(b"\\n", b"")

    @pytest.mark.parametrize("second", [b"wrong secret", None])
    def test_wrong_or_missing_secret(
        self, state_dir: Path, material: Material, second: bytes | None
    ) -> None:
        store = Store.open(state_dir, key_secret=SECRET)
        install(store, "a", material.pairs[0])
        store.close()
        with pytest.raises(StoreFailure, match="key_secret is missing or wrong") as info:
            Store.open(state_dir, key_secret=second)
        assert SECRET.decode() not in str(info.value)
        Store.open(state_dir, key_secret=SECRET).close()  # the lock was released

    def test_secret_given_for_unencrypted_store(self, state_dir: Path, material: Material) -> None:
        store = Store.open(state_dir)
        install(store, "a", material.pairs[0])
        store.close()
        with pytest.raises(StoreFailure, match="key_secret"):
            Store.open(state_dir, key_secret=SECRET)

    def test_pending_key_with_wrong_secret(self, state_dir: Path, material: Material) -> None:
        store = Store.open(state_dir, key_secret=SECRET)
        store.put_pending_key("p", material.pairs[1].key_pem, expires_ns=time.time_ns() + 10**12)
        store.close()
        with pytest.raises(StoreFailure, match="pending key"):
            Store.open(state_dir, key_secret=b"other")

    def test_empty_secret_refused(self, state_dir: Path) -> None:
        with pytest.raises(ValueError, match="key_secret"):
            Store.open(state_dir, key_secret=b"")


# --- permissions ----------------------------------------------------------------------------


def test_permissions(state_dir: Path, material: Material) -> None:
    old_umask = os.umask(0)  # the store must set its modes itself, whatever the umask
    try:
        store = Store.open(state_dir)
        try:
            install(store, "a", material.pairs[0], chain=material.ca_pem)
            install(store, "b", material.pairs[1])
            install(store, "a", material.pairs[2])  # a changed entity next to a linked one
            set_bundle(store, material.ca_pem)
            store.put_pending_key(
                "c", material.pairs[3].key_pem, expires_ns=time.time_ns() + 10**12
            )
            store.save_factory_credentials(material.pairs[4].cert_pem, material.pairs[4].key_pem)
        finally:
            store.close()
    finally:
        os.umask(old_umask)
    secret_names = {"key.pem", "c.json", "LOCK"}
    checked = 0
    for path in [state_dir, *tree(state_dir)]:
        if path.is_symlink():
            assert path.name == "current"
            continue
        if path.is_dir():
            assert mode(path) == 0o700, path
        elif path.name in secret_names:
            assert mode(path) == 0o600, path
            checked += 1
        else:
            assert mode(path) == 0o644, path
            assert path.name in {
                "certificate.pem",
                "chain.pem",
                "manifest.json",
                "gnoi-ca-bundle.pem",
            }
    assert checked == 5  # a, b, factory keys + pending + LOCK


# --- failures -------------------------------------------------------------------------------


def _failing(
    name: str, real: Callable[..., Any], fail_at: int, counter: list[int]
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        if counter[0] == fail_at:
            raise OSError(errno.EIO, f"injected failure of os.{name}")
        return real(*args, **kwargs)

    return wrapper


_INJECTED = ("fsync", "rename", "replace", "symlink", "link", "mkdir", "write", "open", "unlink")


def _inject(monkeypatch: pytest.MonkeyPatch, fail_at: int) -> list[int]:
    """Make the fail_at-th call (counted across _INJECTED) of the os module raise EIO."""
    counter = [0]
    for name in _INJECTED:
        monkeypatch.setattr(os, name, _failing(name, getattr(os, name), fail_at, counter))
    return counter


class TestFailures:
    def test_fsync_failure_rolls_back(
        self,
        store: Store,
        material: Material,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        install(store, "a", material.pairs[0])
        before = store.view()
        seen: list[StoreView] = []
        store.subscribe(seen.append)

        def broken_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        txn = store.begin()
        put(txn, "a", material.pairs[1])
        put(txn, "b", material.pairs[2])
        txn.apply()
        assert len(seen) == 1
        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(StoreFailure) as info:
            txn.commit()
        monkeypatch.undo()
        assert isinstance(info.value.__cause__, OSError)
        assert "PRIVATE" not in str(info.value)
        assert txn.closed
        assert not store.is_locked("a")
        assert not store.is_locked("b")
        assert store.view() is before
        assert seen[-1] is before  # subscribers saw the rollback
        assert [p.name for p in (store.path / "generations").iterdir()] == ["1"]
        install(store, "b", material.pairs[2])  # the store still works
        store = reopen(store)
        try:
            assert list(store.view().entities) == ["a", "b"]
            assert store.view().entities["a"].private_key_pem == material.pairs[0].key_pem
        finally:
            store.close()

    def test_generation_name_taken(self, store: Store, material: Material) -> None:
        install(store, "a", material.pairs[0])
        blocker = store.path / "generations" / "2"
        blocker.write_text("in the way")
        with pytest.raises(StoreFailure, match="nothing changed"):
            install(store, "b", material.pairs[1])
        assert list(store.view().entities) == ["a"]
        assert os.readlink(store.path / "current") == "generations/1"
        blocker.unlink()
        assert install(store, "b", material.pairs[1]).generation == 3

    def test_every_failure_point(
        self, tmp_path: Path, material: Material, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Fail each os call of a commit in turn: memory and disk agree, old or new, every time."""

        def prepare(path: Path) -> Store:
            store = Store.open(path)
            install(store, "keep", material.pairs[0])
            install(store, "gone", material.pairs[1])
            set_bundle(store, material.ca_pem)
            store.put_pending_key(
                "new", material.pairs[2].key_pem, expires_ns=time.time_ns() + 10**12
            )
            return store

        def change(store: Store) -> StoreView:
            with store.begin() as txn:
                put(txn, "new", material.pairs[2], origin=KeyOrigin.TARGET)
                txn.consume_pending_key("new")
                txn.lock("gone")
                txn.delete("gone")
                txn.lock_bundle()
                txn.replace_bundle(material.other_ca_pem)
                return txn.commit()

        probe = prepare(tmp_path / "probe")
        old = content(probe.view())
        with monkeypatch.context() as patch:
            counter = _inject(patch, fail_at=0)
            new = content(change(probe))
        probe.close()
        total = counter[0]
        assert total > 20
        outcomes = {"failed": 0, "committed": 0}
        for fail_at in range(1, total + 1):
            store = prepare(tmp_path / f"s{fail_at}")
            with monkeypatch.context() as patch:
                _inject(patch, fail_at)
                try:
                    change(store)
                except StoreFailure:
                    outcomes["failed"] += 1
                    expected = old
                else:
                    outcomes["committed"] += 1  # a best-effort step after the swap failed
                    expected = new
            assert content(store.view()) == expected, fail_at
            assert not store.is_locked("new")
            store = reopen(store)
            try:
                assert content(store.view()) == expected, fail_at
                gens = list((store.path / "generations").iterdir())
                assert len(gens) == 1, fail_at
                assert [p for p in tree(store.path) if p.name.startswith(".tmp")] == []
                if expected == new:
                    assert store.pending_key("new") is None
            finally:
                store.close()
        assert outcomes["failed"] > 0, (total, outcomes)
        assert outcomes["committed"] > 0, (total, outcomes)


# --- no key material anywhere it should not be ----------------------------------------------


def test_no_key_material_in_logs_or_errors(
    state_dir: Path,
    material: Material,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        store = Store.open(state_dir, key_secret=SECRET)
        try:
            install(store, "a", material.pairs[0])
            install(store, "a", material.rsa_pair)
            store.put_pending_key(
                "p", material.pairs[1].key_pem, expires_ns=time.time_ns() + 10**12
            )
            with store.begin() as txn:
                put(txn, "p", material.pairs[1])
                txn.consume_pending_key("p")
                txn.commit()
            store.save_factory_credentials(material.pairs[2].cert_pem, material.pairs[2].key_pem)
            with monkeypatch.context() as patch:

                def broken(fd: int) -> None:
                    raise OSError(errno.ENOSPC, "No space left on device")

                patch.setattr(os, "fsync", broken)
                for call in (
                    lambda: install(store, "b", material.pairs[3]),
                    lambda: store.put_pending_key("q", material.pairs[3].key_pem, expires_ns=2**62),
                    lambda: store.save_factory_credentials(
                        material.pairs[3].cert_pem, material.pairs[3].key_pem
                    ),
                ):
                    with pytest.raises(StoreFailure) as info:
                        call()
                    texts.append(str(info.value))
                    texts.append(repr(info.value.__cause__))
            with store.begin() as txn:
                txn.lock("x")
                txn.put(
                    "x",
                    certificate_pem=material.pairs[3].cert_pem,
                    chain_pem=b"",
                    private_key_pem=b"-----BEGIN PRIVATE KEY-----\nMIIsecretbytes\n",
                    key_origin=KeyOrigin.CLIENT,
                )
                with pytest.raises(StoreFailure) as info:
                    txn.commit()
                texts.append(str(info.value))
            texts.append(repr(store.view()))
        finally:
            store.close()
        with pytest.raises(StoreFailure) as info:
            Store.open(state_dir, key_secret=b"wrong")
        texts.append(str(info.value))
    texts.extend(r.getMessage() for r in caplog.records)
    texts.extend(r.exc_text or "" for r in caplog.records)
    assert any("committed generation" in t for t in texts)
    secrets_ = [SECRET.decode(), "PRIVATE KEY", "MIIsecretbytes"]
    for pem in material.all_key_pems():
        secrets_.extend(line.decode() for line in pem.splitlines()[1:-1])
    for text in texts:
        for secret in secrets_:
            assert secret not in text

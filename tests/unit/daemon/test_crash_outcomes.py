"""Closing at restart the changes a crash left open in the audit log (docs/behaviour.md §8):
which records open and close a change, and how the store decides committed or rolled back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gnoicert.daemon.audit import AuditLog, open_changes, read_records
from gnoicert.daemon.startup import record_crash_outcomes
from gnoicert.pki import crypto
from gnoicert.pki.store import KeyOrigin, Store
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem

CA = TestCA()
BUNDLE = CA.bundle_pem


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store holding "kept" and the test CA as its bundle."""
    opened = Store.open(tmp_path / "state")
    key = ec_key()
    with opened.begin() as tx:
        tx.lock("kept")
        tx.lock_bundle()
        tx.put(
            "kept",
            certificate_pem=cert_pem(CA.issue(key.public_key())),
            chain_pem=b"",
            private_key_pem=key_pem(key),
            key_origin=KeyOrigin.CLIENT,
        )
        tx.replace_bundle(BUNDLE)
        tx.commit()
    try:
        yield opened
    finally:
        opened.close()


def record(event: str, outcome: str, cert_id: str, old: str = "", new: str = "") -> dict[str, Any]:
    return {
        "event": event,
        "rpc": f"/rpc/{event}",
        "outcome": outcome,
        "certificate_id": cert_id,
        "old_fingerprint": old,
        "new_fingerprint": new,
    }


def write(path: Path, *records: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def closings(path: Path) -> dict[str, tuple[str, str]]:
    return {
        r["certificate_id"]: (r["event"], r["outcome"])
        for r in read_records(path)
        if r["event"] in ("commit", "rollback")
    }


def test_open_changes_pairs_openings_with_closings_of_the_same_change(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write(
        log,
        record("rotate", "applied", "a", "1", "2"),
        record("rotate", "committed", "a", "1", "2"),
        record("load", "intent", "b", "", "3"),
        record("revoke", "refused", "b"),  # another request's refusal does not close b's change
        record("install", "intent", "c", "", "4"),
        record("install", "rolled_back", "c", "", "4"),
        record("bundle_load", "intent", crypto.CA_BUNDLE_ID, "5", "6"),
    )
    with log.open("a") as f:
        f.write('{"event":"load","outcome":"inte')  # torn by the crash
    assert [(r["certificate_id"], r["event"]) for r in open_changes(log)] == [
        ("b", "load"),
        (crypto.CA_BUNDLE_ID, "bundle_load"),
    ]


def test_restart_closes_each_open_change_as_the_store_shows_it(
    tmp_path: Path, store: Store
) -> None:
    kept = store.committed_view().entities["kept"].fingerprint
    held = crypto.bundle_fingerprint(BUNDLE)
    log = tmp_path / "audit.jsonl"
    write(
        log,
        record("install", "intent", "kept", "", kept),  # its commit landed
        record("load", "intent", "never", "", "ab" * 32),  # it did not
        record("revoke", "intent", "gone", "cd" * 32),  # landed: the ID is not there
        record("revoke", "intent", "kept", kept),  # not landed: still there
        record("bundle_load", "intent", crypto.CA_BUNDLE_ID, "", held),
    )
    audit = AuditLog(log)
    record_crash_outcomes(store, audit)
    record_crash_outcomes(store, audit)  # closed once: a second start adds nothing
    audit.close()
    closing = [
        (r["certificate_id"], r["event"], r["reason"])
        for r in read_records(log)
        if r["event"] in ("commit", "rollback")
    ]
    assert closing == [
        ("kept", "commit", ""),
        ("never", "rollback", "CRASH"),
        ("gone", "commit", ""),
        ("kept", "rollback", "CRASH"),
        (crypto.CA_BUNDLE_ID, "commit", ""),
    ]


def test_a_bundle_load_the_store_does_not_hold_is_rolled_back(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "audit.jsonl"
    other = crypto.bundle_fingerprint(BUNDLE + TestCA(name="other").bundle_pem)
    write(log, record("bundle_load", "intent", crypto.CA_BUNDLE_ID, "", other))
    with AuditLog(log) as audit:
        record_crash_outcomes(store, audit)
    assert closings(log) == {crypto.CA_BUNDLE_ID: ("rollback", "rolled_back")}

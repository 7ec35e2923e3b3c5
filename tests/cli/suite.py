"""Every `gnoicert` subcommand against a real gnoicertd, written once and run per TLS mode.

A test module subclasses CliSuite and provides the `operator` fixture: a daemon whose CA bundle
already holds the operator's CA (ca_dir), and the connection options of that mode. Each test
uses its own certificate IDs, so the tests share one daemon without depending on each other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shlex
import stat
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.support.cli import CliOperator, expect, gnoicert_command, run_cli


def pem_fingerprint(pem: str | bytes) -> str:
    data = pem.encode() if isinstance(pem, str) else pem
    leaf = x509.load_pem_x509_certificates(data)[0]
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()


def issue_client_key(operator: CliOperator, directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate and its (client-made, ECDSA) key from the operator's CA: `ca issue`."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    expect(
        run_cli(
            "ca", "issue", str(operator.ca_dir), name, "--dns", name,
            "--out-cert", str(cert), "--out-key", str(key),
        ),
        0,
    )  # fmt: skip
    return cert, key


def install_ecdsa(operator: CliOperator, certificate_id: str) -> dict[str, Any]:
    """The quickest install: a client-made P-256 key."""
    result: dict[str, Any] = operator.json(
        "install", certificate_id, "--ca-dir", str(operator.ca_dir),
        "--cn", f"{certificate_id}.example.net", "--key-type", "ecdsa",
    )  # fmt: skip
    assert result["key_source"] == "client"
    return result


class CliSuite:
    """The subcommands; subclasses provide the `operator` fixture."""

    def test_time(self, operator: CliOperator) -> None:
        before = time.time()
        result = operator.json("time")
        after = time.time()
        assert result["target"] == operator.lab.address
        assert before - 5 <= result["time_ns"] / 1e9 <= after + 5
        assert dt.datetime.fromisoformat(result["time"]).tzinfo is not None
        assert 0 <= result["round_trip_s"] <= after - before
        text = operator.run("time").stdout
        assert text.startswith(f"{operator.lab.address}: ")
        assert "round trip" in text

    def test_can_generate_csr(self, operator: CliOperator) -> None:
        # The daemon is configured with key_sizes = [2048]: a minimum of 1024 is met (by a
        # 2048-bit key), 3072 is not.
        yes = operator.json("can-generate-csr", "--key-size", "2048")
        small = operator.json("can-generate-csr", "--key-size", "1024")
        no = operator.json("can-generate-csr", "--key-size", "3072")
        assert (yes["can_generate"], small["can_generate"], no["can_generate"]) == (
            True,
            True,
            False,
        )
        assert (yes["key_type"], yes["certificate_type"], no["key_size"]) == (
            "KT_RSA",
            "CT_X509",
            3072,
        )

    def test_generate_csr_then_ca_sign_then_load(
        self, operator: CliOperator, tmp_path: Path
    ) -> None:
        csr_path, cert_path = tmp_path / "pending.csr", tmp_path / "pending.pem"
        made = operator.json(
            "generate-csr", "suite-pending", "--cn", "pending.example.net",
            "--org", "Example Networks", "--ip", "192.0.2.7", "--out", str(csr_path),
        )  # fmt: skip
        assert (made["saved_to"], made["key_type"], made["key_size"]) == (
            str(csr_path),
            "RSA",
            2048,
        )
        assert made["csr_pem"] == csr_path.read_text()
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
        assert csr.is_signature_valid
        assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
            "pending.example.net"
        )
        assert set(made["sans"]) == {"DNS:pending.example.net", "IP:192.0.2.7"}

        signed = expect(
            run_cli(
                "ca", "sign", str(operator.ca_dir), str(csr_path), "--out", str(cert_path),
                "--json",
            ),
            0,
        ).json()  # fmt: skip
        assert signed["fingerprint"] == pem_fingerprint(cert_path.read_bytes())
        loaded = operator.json("load", "suite-pending", str(cert_path))
        assert (loaded["key_source"], loaded["fingerprint"]) == ("target", signed["fingerprint"])
        assert loaded["preflight"]["ok"] is True
        listed = operator.listing()["suite-pending"]
        assert listed["fingerprint"] == signed["fingerprint"]
        assert "IP:192.0.2.7" in listed["sans"]

        # Without --out the CSR goes to stdout, as PEM.
        printed = operator.run("generate-csr", "suite-pending-stdout", "--cn", "x.example").stdout
        assert x509.load_pem_x509_csr(printed.encode()).is_signature_valid

    def test_load_with_a_client_key(self, operator: CliOperator, tmp_path: Path) -> None:
        cert, key = issue_client_key(operator, tmp_path, "suite-client-key")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        loaded = operator.json("load", "suite-client-key", str(cert), "--private-key", str(key))
        assert loaded["key_source"] == "client"
        listed = operator.listing()["suite-client-key"]
        assert listed["fingerprint"] == pem_fingerprint(cert.read_bytes()) == loaded["fingerprint"]
        assert (listed["key_type"], listed["key_size"]) == ("ECDSA", 256)

    def test_install_with_a_target_csr(self, operator: CliOperator) -> None:
        result = operator.json(
            "install", "suite-target", "--ca-dir", str(operator.ca_dir),
            "--cn", "target.example.net", "--org", "Example Networks", "--key-size", "2048",
        )  # fmt: skip
        assert result["key_source"] == "target"
        assert result["dry_run"] is False
        assert result["preflight"]["ok"] is True
        assert "CN=target.example.net" in result["subject"]
        listed = operator.listing()["suite-target"]
        assert listed["fingerprint"] == result["fingerprint"]
        assert (listed["key_type"], listed["key_size"]) == ("RSA", 2048)
        assert listed["days_left"] in (364, 365)

        again = operator.run(
            "install", "suite-target", "--ca-dir", str(operator.ca_dir), "--cn", "t", code=1
        )
        assert "ALREADY_EXISTS" in again.stderr
        assert "hint: use rotate" in again.stderr

    def test_install_makes_the_key_when_the_target_cannot(self, operator: CliOperator) -> None:
        # CanGenerateCSR(3072) is false on this daemon (key_sizes = [2048]): the client makes
        # an RSA-3072 key.
        result = operator.json(
            "install", "suite-rsa3072", "--ca-dir", str(operator.ca_dir),
            "--cn", "big.example.net", "--key-size", "3072",
        )  # fmt: skip
        assert result["key_source"] == "client"
        listed = operator.listing()["suite-rsa3072"]
        assert (listed["key_type"], listed["key_size"]) == ("RSA", 3072)
        assert listed["fingerprint"] == result["fingerprint"]

    def test_install_an_ecdsa_key(self, operator: CliOperator) -> None:
        result = install_ecdsa(operator, "suite-ecdsa")
        listed = operator.listing()["suite-ecdsa"]
        assert (listed["key_type"], listed["key_size"]) == ("ECDSA", 256)
        assert listed["fingerprint"] == result["fingerprint"]

    def test_install_through_an_external_sign_command(self, operator: CliOperator) -> None:
        # The site's "real CA" is `gnoicert ca sign` reading the CSR on stdin.
        command = shlex.join(
            [*gnoicert_command(), "ca", "sign", str(operator.ca_dir), "/dev/stdin"]
        )
        result = operator.json(
            "install", "suite-external", "--sign-command", command, "--cn", "ext.example.net"
        )
        assert result["key_source"] == "target"
        assert operator.listing()["suite-external"]["fingerprint"] == result["fingerprint"]

    def test_rotate_a_certificate_that_is_not_the_servers(self, operator: CliOperator) -> None:
        installed = install_ecdsa(operator, "suite-rotated")
        rotated = operator.json(
            "rotate", "suite-rotated", "--ca-dir", str(operator.ca_dir),
            "--cn", "suite-rotated.example.net", "--no-tls-check",
        )  # fmt: skip
        assert rotated["finalized"] is True
        assert rotated["key_source"] == "target"
        assert rotated["fingerprint"] != installed["fingerprint"]
        checks = {c["name"]: c["status"] for c in rotated["validation"]}
        assert checks == {"served-certificate": "skip", "probe": "pass"}
        assert operator.listing()["suite-rotated"]["fingerprint"] == rotated["fingerprint"]
        assert operator.lab.audit(
            event="rotate", certificate_id="suite-rotated", outcome="committed"
        )

    def test_rotate_an_unknown_id(self, operator: CliOperator) -> None:
        run = operator.run(
            "rotate", "suite-missing", "--ca-dir", str(operator.ca_dir), "--cn", "m",
            "--no-tls-check", "--json", code=1,
        )  # fmt: skip
        error = run.json()["error"]
        assert (error["code"], error["rpc"]) == ("NOT_FOUND", "Rotate")
        assert "hint: use install" in run.stderr

    def test_revoke(self, operator: CliOperator) -> None:
        install_ecdsa(operator, "suite-revoked")
        result = operator.json("revoke", "suite-revoked", "suite-never-installed")
        # The target counts an ID that is not there as revoked (docs/behaviour.md §4); the
        # command asked GetCertificates first and says which one was not present.
        assert result["revoked"] == ["suite-revoked"]
        assert result["not_present"] == ["suite-never-installed"]
        assert (result["errors"], result["ok"]) == ([], True)
        assert "suite-revoked" not in operator.listing()

        install_ecdsa(operator, "suite-revoked-text")
        text = operator.run("revoke", "suite-revoked-text", "suite-typo").stdout
        assert f"revoked on {operator.lab.address}: suite-revoked-text\n" in text
        assert "not present on" in text
        assert "suite-typo" in text.split("not present on", 1)[1]

        strict = operator.json("revoke", "suite-typo", "--strict", code=1)
        assert (strict["revoked"], strict["not_present"], strict["ok"]) == (
            [],
            ["suite-typo"],
            False,
        )

    def test_get_table_details_save_and_expiring(
        self, operator: CliOperator, tmp_path: Path
    ) -> None:
        install_ecdsa(operator, "suite-listed")
        certificates = operator.json("get", "--details")["certificates"]
        ids = [c["certificate_id"] for c in certificates]
        assert "suite-listed" in ids
        assert ids == sorted(ids)
        for info in certificates:
            leaf = x509.load_pem_x509_certificates(info["certificate_pem"].encode())[0]
            assert info["fingerprint"] == pem_fingerprint(info["certificate_pem"])
            assert info["subject"] == leaf.subject.rfc4514_string()
            assert info["issuer"] == leaf.issuer.rfc4514_string()
            assert dt.datetime.fromisoformat(info["not_after"]) == leaf.not_valid_after_utc
            assert dt.datetime.fromisoformat(info["modified"]) <= dt.datetime.now(dt.UTC)

        table = operator.run("get", "--output", "table").stdout
        assert f"certificates on {operator.lab.address}" in table
        assert all(certificate_id in table for certificate_id in ids)

        saved_to = tmp_path / "saved"
        details = operator.run("get", "--details", "--save", str(saved_to), "-o", "table").stdout
        assert all(c["fingerprint"] in details for c in certificates)
        assert "not after" in details
        assert f"saved {len(certificates)} certificate(s) to {saved_to}" in details
        for info in certificates:
            written = (saved_to / f"{info['certificate_id']}.pem").read_text()
            assert written == info["certificate_pem"]

        # Everything here is valid for about a year: nothing matches, exit 0, nothing saved.
        soon = operator.json("get", "--expiring-within", "30")
        assert (soon["certificates"], soon["expiring_within_days"]) == ([], 30)
        empty = tmp_path / "nothing-expiring"
        nothing = operator.run(
            "get", "--expiring-within", "30", "--save", str(empty), "-o", "table"
        ).stdout
        assert not empty.exists()
        assert "nothing to save" in nothing
        # Something matches: exit 4, as a monitoring script wants it.
        within_a_year = operator.run(
            "get", "--expiring-within", "400", "-o", "table", code=4
        ).stdout
        assert f"{len(certificates)} certificate(s) expiring within 400 days" in within_a_year
        assert all(certificate_id in within_a_year for certificate_id in ids)
        assert operator.json("get", "--expiring-within", "400", code=4)["certificates"]

    def test_dry_run_stops_after_preflight(self, operator: CliOperator, tmp_path: Path) -> None:
        install_ecdsa(operator, "suite-dry-existing")
        cert, key = issue_client_key(operator, tmp_path, "suite-dry-load")
        before = {i: (c["fingerprint"], c["modified"]) for i, c in operator.listing().items()}
        served = operator.lab.served_fingerprint()
        dry_ids = ("suite-dry-new", "suite-dry-existing", "suite-dry-load")
        commits = {
            i: len(operator.lab.audit(certificate_id=i, outcome="committed")) for i in dry_ids
        }
        assert commits == {"suite-dry-new": 0, "suite-dry-existing": 1, "suite-dry-load": 0}
        records = len(operator.lab.audit())

        dry_install = operator.json(
            "install", "suite-dry-new", "--ca-dir", str(operator.ca_dir), "--cn", "dry.example",
            "--dry-run",
        )  # fmt: skip
        assert (dry_install["dry_run"], dry_install["key_source"]) == (True, "target")
        assert dry_install["preflight"]["ok"] is True
        checked = {c["name"]: c["status"] for c in dry_install["preflight"]["checks"]}
        assert checked["connection"] == checked["certificate-id"] == checked["signer"] == "pass"
        assert checked["can-generate-csr"] == "pass"
        assert checked["key"] == "skip"  # the target's key: GenerateCSR is not sent
        assert any("GenerateCSR is not sent" in item for item in dry_install["not_checked"])
        dry_rotate = operator.json(
            "rotate", "suite-dry-existing", "--ca-dir", str(operator.ca_dir),
            "--cn", "dry.example", "--no-tls-check", "--dry-run",
        )  # fmt: skip
        assert (dry_rotate["dry_run"], dry_rotate["finalized"], dry_rotate["validation"]) == (
            True,
            False,
            [],
        )
        assert any("validation step" in item for item in dry_rotate["not_checked"])
        dry_client_key = operator.json(
            "rotate", "suite-dry-existing", "--ca-dir", str(operator.ca_dir),
            "--cn", "dry.example", "--key-type", "ecdsa", "--no-tls-check", "--dry-run",
        )  # fmt: skip
        client_checks = {c["name"]: c["status"] for c in dry_client_key["preflight"]["checks"]}
        assert (dry_client_key["key_source"], client_checks["key"]) == ("client", "pass")
        dry_load = operator.run(
            "load", "suite-dry-load", str(cert), "--private-key", str(key), "--dry-run"
        ).stdout
        assert "dry run: suite-dry-load passed the checks" in dry_load
        assert "connection: connected and authenticated" in dry_load
        assert "not checked:" in dry_load
        # A dry run of an ID that is not there fails as the real run would, before sending.
        missing = operator.json(
            "rotate", "suite-dry-missing", "--ca-dir", str(operator.ca_dir), "--cn", "m",
            "--no-tls-check", "--dry-run", code=3,
        )  # fmt: skip
        assert "suite-dry-missing is not on the target" in missing["error"]["message"]

        after = {i: (c["fingerprint"], c["modified"]) for i, c in operator.listing().items()}
        assert after == before
        assert operator.lab.served_fingerprint() == served
        assert commits == {
            i: len(operator.lab.audit(certificate_id=i, outcome="committed")) for i in dry_ids
        }
        # Nothing the target audits as a change: no stream opened, no GenerateCSR.
        assert operator.lab.audit()[records:] == []

    def test_load_ca(self, operator: CliOperator, tmp_path: Path) -> None:
        other = tmp_path / "other-ca"
        expect(run_cli("ca", "init", str(other), "--key-type", "ecdsa"), 0)
        ours = (operator.ca_dir / "bundle.pem").read_bytes()
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(ours + (other / "ca.pem").read_bytes())
        ours_count = len(x509.load_pem_x509_certificates(ours))
        loads = len(operator.lab.audit(event="bundle_load", outcome="committed"))
        try:
            result = operator.json("load-ca", str(bundle))
            assert result["size"] == ours_count + 1
            assert pem_fingerprint((other / "ca.pem").read_bytes()) in result["fingerprints"]
            assert len(operator.lab.audit(event="bundle_load", outcome="committed")) == loads + 1
        finally:
            restored = operator.run("load-ca", str(operator.ca_dir / "bundle.pem")).stdout
        assert f"loaded a CA bundle of {ours_count} certificate(s)" in restored

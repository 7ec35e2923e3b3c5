"""The client library (CertClient, SyncCertClient, LocalCA, ExternalCommandSigner) against a
real gnoicertd subprocess: every workflow, its typed result, and its failures.

The module's daemon serves "gnoi-server" once it exists and generates RSA-2048 keys only. The
sync client bootstraps it over server-only TLS (factory certificate) with the first CA bundle;
the async tests then work over mutual TLS. Two tests bring their own target: one with a short
finalize deadline (RotateAborted), one that implements no gNOI service at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gnoicert.cli.hints import explain
from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions, Metadata
from gnoicert.client.errors import (
    InputError,
    PreflightFailed,
    RotateAborted,
    RpcFailed,
    ValidationFailed,
)
from gnoicert.client.models import (
    CsrParams,
    Endpoint,
    InstallResult,
    InstallSpec,
    RotateSpec,
    SignedCertificate,
)
from gnoicert.client.signer import ExternalCommandSigner
from gnoicert.client.sync import SyncCertClient
from gnoicert.client.workflows import CertClient
from gnoicert.pki.crypto import fingerprint
from tests.support.cli import (
    LOCAL_SERVER,
    ONLY_2048,
    SERVER_ID,
    Lab,
    gnoicert_command,
    start_lab,
    wait_until,
)
from tests.support.pki import TestCA, cert_pem, ec_key, now
from tests.support.target import PASSWORDS

SERVER_CSR = CsrParams(common_name="localhost", ip_address="127.0.0.1")


@dataclass
class Setup:
    """A bootstrapped lab: the CA, both sets of channel options, and the first install."""

    lab: Lab
    ca: LocalCA
    server_only: ChannelOptions
    mutual: ChannelOptions
    installed: InstallResult


def answers(options: ChannelOptions) -> bool:
    with SyncCertClient(options) as client:
        client.time()
    return True


def bootstrap(lab: Lab, *, timeout: float = 10.0) -> Setup:
    """Install gnoi-server with the first CA bundle over server-only TLS (SyncCertClient)."""
    ca = LocalCA.init(lab.workdir / "ca", intermediate=True, key_type="ecdsa")
    key_pem, signed = ca.issue("operator")
    server_only = ChannelOptions.from_files(
        lab.address,
        ca_file=lab.factory_pem,
        username="admin",
        password=PASSWORDS["admin"],
        timeout=timeout,
    )
    with SyncCertClient(server_only) as client:
        installed = client.install(
            InstallSpec(
                certificate_id=SERVER_ID,
                csr=SERVER_CSR,
                signer=ca,
                ca_bundle_pem=ca.bundle_pem,
                require_san=True,
            )
        )
    mutual = ChannelOptions(
        target=lab.address,
        root_certificates=ca.root_pem,
        client_certificate=signed.certificate_pem + signed.chain_pem,
        client_key=key_pem,
        username="admin",
        password=PASSWORDS["admin"],
        timeout=timeout,
    )
    wait_until(lambda: answers(mutual), what="mutual TLS")
    return Setup(lab, ca, server_only, mutual, installed)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    lab = start_lab(tmp_path_factory.mktemp("workflows"), grpc_lines=[LOCAL_SERVER, ONLY_2048])
    try:
        yield bootstrap(lab)
    finally:
        assert lab.stop() == 0


@pytest.fixture
async def client(setup: Setup) -> AsyncIterator[CertClient]:
    async with await CertClient.connect(setup.mutual) as connected:
        yield connected


async def listed(client: CertClient) -> dict[str, Any]:
    return {info.certificate_id: info for info in await client.get_certificates()}


@dataclass
class OddSigner:
    """Signs with a test CA and whatever the test asks for: another key, dates, CA flag ..."""

    ca: TestCA
    options: dict[str, Any] = field(default_factory=dict)
    other_key: bool = False

    def sign(self, csr_pem: bytes) -> SignedCertificate:
        csr = x509.load_pem_x509_csr(csr_pem)
        public_key = ec_key().public_key() if self.other_key else csr.public_key()
        leaf = self.ca.issue(public_key, **self.options)  # type: ignore[arg-type]
        return SignedCertificate(certificate_pem=cert_pem(leaf), chain_pem=cert_pem(self.ca.root))


# -- the bootstrap, and the sync client -----------------------------------------------------------


def test_sync_client_bootstrap_switches_the_target_to_mutual_tls(setup: Setup) -> None:
    installed = setup.installed
    assert (installed.key_source, installed.ca_bundle_size, installed.dry_run) == (
        "target",
        2,
        False,
    )
    assert installed.preflight.ok
    assert setup.lab.served_fingerprint() == installed.fingerprint
    # A client without a certificate is now turned away, with the hint that fixes it.
    without_certificate = setup.server_only.trusting(setup.ca.root_pem)
    with SyncCertClient(without_certificate) as client, pytest.raises(RpcFailed) as caught:
        client.time()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "--cert and --key" in explain(caught.value).hint
    with SyncCertClient(setup.mutual) as client:
        assert SERVER_ID in {info.certificate_id for info in client.get_certificates()}


# -- unary RPCs -----------------------------------------------------------------------------------


async def test_time_and_can_generate_csr(client: CertClient) -> None:
    answer = await client.time()
    assert abs(answer.offset_s) < 5
    assert answer.time.tzinfo is not None
    assert answer.target == client.target
    assert (await client.can_generate_csr(key_size=2048)).can_generate is True
    # key_sizes = [2048]: a minimum of 1024 is met (by a 2048-bit key), 3072 is not.
    assert (await client.can_generate_csr(key_size=1024)).can_generate is True
    refused = await client.can_generate_csr(key_size=3072)
    assert (refused.can_generate, refused.key_type, refused.key_size) == (False, "KT_RSA", 3072)


async def test_generate_csr_then_load_onto_the_pending_key(
    client: CertClient, setup: Setup
) -> None:
    made = await client.generate_csr(
        "lib-pending", CsrParams(common_name="pending.example.net", organization="Example")
    )
    assert (made.key_type, made.key_size) == ("RSA", 2048)
    assert "CN=pending.example.net" in made.subject
    signed = setup.ca.sign(made.csr_pem.encode())
    loaded = await client.load_certificate("lib-pending", signed.certificate_pem + signed.chain_pem)
    assert loaded.key_source == "target"
    assert loaded.preflight.ok
    assert (await listed(client))["lib-pending"].fingerprint == loaded.fingerprint


async def test_load_certificate_with_a_client_key(client: CertClient, setup: Setup) -> None:
    key_pem, signed = setup.ca.issue("peer.example.net", dns_names=["peer.example.net"])
    loaded = await client.load_certificate(
        "lib-client-key", signed.certificate_pem + signed.chain_pem, private_key_pem=key_pem
    )
    assert loaded.key_source == "client"
    info = (await listed(client))["lib-client-key"]
    assert (info.fingerprint, info.key_type, info.key_size) == (loaded.fingerprint, "ECDSA", 256)


async def test_load_ca_bundle(client: CertClient, setup: Setup) -> None:
    other = LocalCA.init(setup.lab.workdir / "other-ca", key_type="ecdsa")
    try:
        result = await client.load_ca_bundle(setup.ca.bundle_pem + other.root_pem)
        assert result.size == 3
        assert fingerprint(other.root) in result.fingerprints
        assert other.root.subject.rfc4514_string() in result.subjects
    finally:
        restored = await client.load_ca_bundle(setup.ca.bundle_pem)
    assert restored.size == 2


async def test_get_certificates_is_parsed(client: CertClient, setup: Setup) -> None:
    info = (await listed(client))[SERVER_ID]
    served = setup.lab.served_fingerprint()
    assert info.fingerprint == served
    assert info.subject == "CN=localhost"
    assert info.common_name == "localhost"
    assert set(info.sans) == {"DNS:localhost", "IP:127.0.0.1"}
    assert setup.ca.intermediate is not None
    assert info.issuer == setup.ca.intermediate.subject.rfc4514_string()
    assert (info.key_type, info.key_size) == ("RSA", 2048)
    assert info.not_before is not None
    assert info.not_after is not None
    assert info.modified is not None
    current = dt.datetime.now(dt.UTC)
    assert info.not_before <= current < info.not_after
    assert info.days_left in (364, 365)
    assert current - dt.timedelta(minutes=5) < info.modified <= current
    assert info.endpoints == (Endpoint(type="EP_DAEMON", endpoint="grpc-server"),)
    assert info.chain_length == 2
    assert info.parse_error == ""
    leaf = x509.load_pem_x509_certificates(info.certificate_pem.encode())[0]
    assert fingerprint(leaf) == served


# -- install --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("certificate_id", "params", "key_source", "expected"),
    [
        ("lib-auto-2048", CsrParams(common_name="a.example", key_size=2048), "auto", "target"),
        # CanGenerateCSR(3072) is false on this daemon: the client makes the key.
        ("lib-auto-3072", CsrParams(common_name="b.example", key_size=3072), "auto", "client"),
        ("lib-ecdsa", CsrParams(common_name="c.example", key_type="ecdsa"), "auto", "client"),
        ("lib-client-rsa", CsrParams(common_name="d.example"), "client", "client"),
    ],
)
async def test_install_key_sources(
    client: CertClient,
    setup: Setup,
    certificate_id: str,
    params: CsrParams,
    key_source: Any,
    expected: str,
) -> None:
    result = await client.install(
        InstallSpec(
            certificate_id=certificate_id, csr=params, signer=setup.ca, key_source=key_source
        )
    )
    assert result.key_source == expected
    assert result.preflight.ok
    assert result.elapsed_s > 0
    info = (await listed(client))[certificate_id]
    assert info.fingerprint == result.fingerprint
    assert info.key_type == ("ECDSA" if params.key_type == "ecdsa" else "RSA")
    if params.key_type == "rsa":
        assert info.key_size == params.key_size


async def test_a_csr_field_over_its_byte_limit_is_an_input_error(
    client: CertClient, setup: Setup
) -> None:
    """17 four-byte characters in the common name: 68 UTF-8 bytes, over the limit of 64."""
    params = CsrParams(common_name="\U0001f600" * 17, key_type="ecdsa")
    spec = InstallSpec(certificate_id="lib-long-cn", csr=params, signer=setup.ca)
    with pytest.raises(InputError, match="common_name is 68 bytes"):
        await client.install(spec)
    assert "lib-long-cn" not in await listed(client)


async def test_install_through_an_external_command_signer(client: CertClient, setup: Setup) -> None:
    signer = ExternalCommandSigner(
        [*gnoicert_command(), "ca", "sign", str(setup.ca.directory), "/dev/stdin"]
    )
    result = await client.install(
        InstallSpec(
            certificate_id="lib-external", csr=CsrParams(common_name="ext.example"), signer=signer
        )
    )
    assert result.key_source == "target"
    assert (await listed(client))["lib-external"].fingerprint == result.fingerprint


@pytest.mark.parametrize(
    ("failing", "signer_options", "other_key", "require_san"),
    [
        ("key", {}, True, False),
        (
            "validity",
            {
                "not_before": now() - dt.timedelta(days=10),
                "not_after": now() - dt.timedelta(days=1),
            },
            False,
            False,
        ),
        ("ca", {"ca": True}, False, False),
        ("usage", {"eku": [ExtendedKeyUsageOID.CLIENT_AUTH]}, False, False),
        ("san", {"sans": ["elsewhere.example.net"]}, False, True),
    ],
)
async def test_preflight_refuses_before_anything_is_sent(
    client: CertClient,
    setup: Setup,
    ca: TestCA,
    failing: str,
    signer_options: dict[str, Any],
    other_key: bool,
    require_san: bool,
) -> None:
    certificate_id = f"lib-preflight-{failing}"
    spec = InstallSpec(
        certificate_id=certificate_id,
        csr=CsrParams(common_name="p.example", key_type="ecdsa"),
        signer=OddSigner(ca, signer_options, other_key),
        require_san=require_san,
    )
    with pytest.raises(PreflightFailed) as caught:
        await client.install(spec)
    assert [check.name for check in caught.value.report.failures()] == [failing]
    assert certificate_id not in await listed(client)
    assert setup.lab.audit(certificate_id=certificate_id) == []


async def test_preflight_checks_the_chain_against_the_bundle_sent(
    client: CertClient, setup: Setup, foreign_ca: TestCA
) -> None:
    spec = InstallSpec(
        certificate_id="lib-preflight-chain",
        csr=CsrParams(common_name="p.example", key_type="ecdsa"),
        signer=OddSigner(foreign_ca),
        ca_bundle_pem=setup.ca.bundle_pem,
    )
    with pytest.raises(PreflightFailed) as caught:
        await client.install(spec)
    assert [check.name for check in caught.value.report.failures()] == ["chain"]
    assert "lib-preflight-chain" not in await listed(client)


async def test_preflight_failure_after_a_target_csr_leaves_nothing_held(
    client: CertClient, setup: Setup, ca: TestCA
) -> None:
    """The stream that made the target's CSR is cancelled: the ID is free again at once."""
    bad = InstallSpec(
        certificate_id="lib-after-csr",
        csr=CsrParams(common_name="late.example"),
        signer=OddSigner(ca, {"ca": True}),
    )
    with pytest.raises(PreflightFailed):
        await client.install(bad)
    good = await client.install(
        InstallSpec(
            certificate_id="lib-after-csr",
            csr=CsrParams(common_name="late.example"),
            signer=setup.ca,
        )
    )
    assert good.key_source == "target"


async def test_dry_runs_change_nothing(client: CertClient, setup: Setup) -> None:
    before = {i: (c.fingerprint, c.modified) for i, c in (await listed(client)).items()}
    served = setup.lab.served_fingerprint()
    installed = await client.install(
        InstallSpec(
            certificate_id="lib-dry", csr=CsrParams(common_name="dry.example"), signer=setup.ca,
            dry_run=True,
        )
    )  # fmt: skip
    assert (installed.dry_run, installed.key_source, installed.preflight.ok) == (
        True,
        "target",
        True,
    )
    rotated = await client.rotate(
        RotateSpec(certificate_id=SERVER_ID, csr=SERVER_CSR, signer=setup.ca, dry_run=True)
    )
    assert (rotated.dry_run, rotated.finalized, rotated.validation) == (True, False, ())
    after = {i: (c.fingerprint, c.modified) for i, c in (await listed(client)).items()}
    assert after == before
    assert setup.lab.served_fingerprint() == served


# -- rotate ---------------------------------------------------------------------------------------


async def test_rotate_validates_the_new_certificate_before_finalize(
    client: CertClient, setup: Setup
) -> None:
    old = setup.lab.served_fingerprint()
    seen: list[tuple[str, Metadata]] = []

    async def probe(channel: grpc.aio.Channel, metadata: Metadata) -> str:
        # Runs while the new certificate is in effect but not committed.
        seen.append((setup.lab.served_fingerprint(), metadata))
        return "probe answered"

    result = await client.rotate(
        RotateSpec(certificate_id=SERVER_ID, csr=SERVER_CSR, signer=setup.ca, probe=probe)
    )
    assert result.finalized
    assert result.fingerprint != old
    assert [(c.name, c.status) for c in result.validation] == [
        ("served-certificate", "pass"),
        ("probe", "pass"),
    ]
    assert result.validation[1].detail == "probe answered"
    assert seen == [(result.fingerprint, setup.mutual.metadata())]
    assert setup.lab.served_fingerprint() == result.fingerprint
    assert (await listed(client))[SERVER_ID].fingerprint == result.fingerprint

    # The default probe is System/Time over the new chain.
    again = await client.rotate(
        RotateSpec(certificate_id=SERVER_ID, csr=SERVER_CSR, signer=setup.ca)
    )
    assert again.validation[1].detail.startswith("System/Time answered")


async def test_rotate_whose_probe_fails_is_rolled_back(client: CertClient, setup: Setup) -> None:
    old = setup.lab.served_fingerprint()

    async def probe(channel: grpc.aio.Channel, metadata: Metadata) -> str:
        raise RuntimeError("link down")

    with pytest.raises(ValidationFailed) as caught:
        await client.rotate(
            RotateSpec(certificate_id=SERVER_ID, csr=SERVER_CSR, signer=setup.ca, probe=probe)
        )
    checks = {check.name: check for check in caught.value.checks}
    assert (checks["served-certificate"].status, checks["probe"].status) == ("pass", "fail")
    assert "link down" in checks["probe"].detail
    assert checks["rollback"].status == "pass"
    assert setup.lab.served_fingerprint() == old
    assert (await listed(client))[SERVER_ID].fingerprint == old


async def test_rotate_holds_the_id_until_finalize(client: CertClient, setup: Setup) -> None:
    """A revoke during the validation step is refused for that ID; the rotation commits."""
    await client.install(
        InstallSpec(
            certificate_id="lib-held", csr=CsrParams(common_name="h.example", key_type="ecdsa"),
            signer=setup.ca,
        )
    )  # fmt: skip
    attempts = []

    async def revoke_meanwhile(channel: grpc.aio.Channel, metadata: Metadata) -> str:
        attempts.append(await client.revoke(["lib-held"]))
        return "revoke attempted"

    rotated = await client.rotate(
        RotateSpec(
            certificate_id="lib-held",
            csr=CsrParams(common_name="h.example", key_type="ecdsa"),
            signer=setup.ca,
            check_served_certificate=False,
            require_san=False,
            probe=revoke_meanwhile,
        )
    )
    refused = attempts[0]
    assert (refused.ok, refused.revoked) == (False, ())
    assert [error.certificate_id for error in refused.errors] == ["lib-held"]
    assert (await listed(client))["lib-held"].fingerprint == rotated.fingerprint
    revoked = await client.revoke(["lib-held"])
    assert (revoked.ok, revoked.revoked) == (True, ("lib-held",))


async def test_rotate_of_an_unknown_id(client: CertClient, setup: Setup) -> None:
    with pytest.raises(RpcFailed) as caught:
        await client.rotate(
            RotateSpec(
                certificate_id="lib-nowhere", csr=CsrParams(common_name="n.example"),
                signer=setup.ca, check_served_certificate=False, require_san=False,
            )
        )  # fmt: skip
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "CERT_ID_NOT_FOUND",
    )
    assert not isinstance(caught.value, RotateAborted)


async def test_finalize_after_the_deadline_is_reported_as_rolled_back(tmp_path: Path) -> None:
    """The target gives up waiting for Finalize (FINALIZE_TIMEOUT) while the probe runs: the
    client's late Finalize gets RotateAborted, and the old certificate stays."""
    lab = start_lab(tmp_path, grpc_lines=[LOCAL_SERVER, "finalize_timeout_s = 2"])
    try:
        setup = await asyncio.to_thread(bootstrap, lab)
        old = lab.served_fingerprint()

        async def outlast_the_deadline(channel: grpc.aio.Channel, metadata: Metadata) -> str:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while await asyncio.to_thread(lab.served_fingerprint) != old:
                assert loop.time() < deadline, "the target never rolled back"
                await asyncio.sleep(0.05)
            return "outlasted the finalize deadline"

        async with await CertClient.connect(setup.mutual) as client:
            with pytest.raises(RotateAborted) as caught:
                await client.rotate(
                    RotateSpec(
                        certificate_id=SERVER_ID, csr=SERVER_CSR, signer=setup.ca,
                        probe=outlast_the_deadline,
                    )
                )  # fmt: skip
            assert caught.value.code == grpc.StatusCode.ABORTED
            assert caught.value.reason == "FINALIZE_TIMEOUT"
            assert "rolled the certificate back" in explain(caught.value).hint
            assert (await listed(client))[SERVER_ID].fingerprint == old
    finally:
        assert lab.stop() == 0


# -- a target that is not gnoicertd ---------------------------------------------------------------


async def test_a_target_without_the_service_gets_clear_errors(ca: TestCA) -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        options = ChannelOptions(target=f"127.0.0.1:{port}", insecure=True, timeout=5)
        async with await CertClient.connect(options) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.get_certificates()
            assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
            assert explain(caught.value).summary == "the target does not implement GetCertificates"
            with pytest.raises(RpcFailed) as caught:
                await client.install(
                    InstallSpec(
                        certificate_id="x",
                        csr=CsrParams(common_name="x.example"),
                        signer=OddSigner(ca),
                    )
                )
            assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
            assert explain(caught.value).summary == "the target does not implement Install"
    finally:
        await server.stop(0)

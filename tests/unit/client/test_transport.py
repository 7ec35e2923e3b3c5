"""The client over real TLS against a bare gRPC server (a device that implements nothing).

Covers the served-certificate probe, the validation checks, the friendly errors for real
connection failures, UNIMPLEMENTED for every RPC, the Install fallback to a client key, dry
runs, and SyncCertClient. gnoicertd itself is exercised by the integration tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl

import grpc
import grpc.aio
import pytest

from gnoicert.cli.hints import explain
from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions, Metadata
from gnoicert.client.errors import PreflightFailed, RpcFailed
from gnoicert.client.models import CsrParams, InstallSpec, RotateSpec
from gnoicert.client.sync import SyncCertClient
from gnoicert.client.tlsprobe import fetch_served_certificate
from gnoicert.client.validation import (
    check_served,
    run_probe,
    validate_rotation,
    wait_for_rollback,
)
from gnoicert.client.workflows import CertClient
from tests.unit.conftest import BareServer, Identity, options_for


class TestServedCertificate:
    async def test_verified_handshake(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        der = await asyncio.to_thread(
            fetch_served_certificate, "127.0.0.1", bare_server.port, trust_pem=root_ca.root_pem
        )
        assert hashlib.sha256(der).hexdigest() == bare_server.identity.fingerprint

    async def test_name_is_checked(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(
                fetch_served_certificate,
                "127.0.0.1",
                bare_server.port,
                server_name="wrong.example",
                trust_pem=root_ca.root_pem,
            )
        der = await asyncio.to_thread(
            fetch_served_certificate,
            "127.0.0.1",
            bare_server.port,
            server_name="localhost",
            trust_pem=root_ca.root_pem,
        )
        assert hashlib.sha256(der).hexdigest() == bare_server.identity.fingerprint

    async def test_untrusted_chain(self, bare_server: BareServer, other_ca: LocalCA) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(
                fetch_served_certificate, "127.0.0.1", bare_server.port, trust_pem=other_ca.root_pem
            )
        der = await asyncio.to_thread(
            fetch_served_certificate, "127.0.0.1", bare_server.port, verify=False
        )
        assert hashlib.sha256(der).hexdigest() == bare_server.identity.fingerprint

    async def test_mutual_tls(
        self, mtls_server: BareServer, root_ca: LocalCA, client_identity: Identity
    ) -> None:
        der = await asyncio.to_thread(
            fetch_served_certificate,
            "127.0.0.1",
            mtls_server.port,
            trust_pem=root_ca.root_pem,
            client_certificate=client_identity.chain_pem,
            client_key=client_identity.key_pem,
        )
        assert hashlib.sha256(der).hexdigest() == mtls_server.identity.fingerprint

    def test_nothing_listening(self, closed_port: int) -> None:
        with pytest.raises(ConnectionRefusedError):
            fetch_served_certificate("127.0.0.1", closed_port, verify=False, timeout=5)


class TestValidationChecks:
    async def test_served_certificate_matches(
        self, bare_server: BareServer, root_ca: LocalCA
    ) -> None:
        check = await check_served(
            options_for(bare_server, root_ca), bare_server.identity.fingerprint
        )
        assert check.status == "pass"

    async def test_another_certificate_is_served(
        self, bare_server: BareServer, root_ca: LocalCA
    ) -> None:
        check = await check_served(options_for(bare_server, root_ca), "00" * 32)
        assert check.status == "fail"
        assert f"serves sha256 {bare_server.identity.fingerprint}" in check.detail

    async def test_untrusted_reports_what_is_served(
        self, bare_server: BareServer, other_ca: LocalCA
    ) -> None:
        check = await check_served(
            options_for(bare_server, other_ca), bare_server.identity.fingerprint
        )
        assert check.status == "fail"
        assert "does not accept the served certificate" in check.detail
        assert bare_server.identity.fingerprint in check.detail

    async def test_probe_on_a_target_without_system_time(
        self, bare_server: BareServer, root_ca: LocalCA
    ) -> None:
        # UNIMPLEMENTED came over a completed handshake with the new chain: that is the proof.
        check = await run_probe(options_for(bare_server, root_ca), None)
        assert check.status == "pass"
        assert check.detail.startswith("System/Time is not implemented; the UNIMPLEMENTED answer")

    async def test_caller_probe(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        seen: list[Metadata] = []

        async def probe(channel: grpc.aio.Channel, metadata: Metadata) -> str:
            await channel.channel_ready()
            seen.append(metadata)
            return "channel ready over the new chain"

        options = options_for(bare_server, root_ca, username="ops", password="pw")
        check = await run_probe(options, probe)
        assert (check.status, check.detail) == ("pass", "channel ready over the new chain")
        assert seen == [(("username", "ops"), ("password", "pw"))]

    async def test_failing_caller_probe(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        async def probe(channel: grpc.aio.Channel, metadata: Metadata) -> str:
            raise RuntimeError("interface down")

        check = await run_probe(options_for(bare_server, root_ca), probe)
        assert check.status == "fail"
        assert "interface down" in check.detail

    async def test_validate_rotation_trusts_only_the_given_chain(
        self, bare_server: BareServer, root_ca: LocalCA, other_ca: LocalCA
    ) -> None:
        async def probe(channel: grpc.aio.Channel, metadata: Metadata) -> str:
            await asyncio.wait_for(channel.channel_ready(), timeout=5)
            return "ready"

        # The channel options trust other_ca; the new chain (root_ca) is what counts.
        checks = await validate_rotation(
            options_for(bare_server, other_ca),
            expected_fingerprint=bare_server.identity.fingerprint,
            trust_pem=root_ca.root_pem,
            probe=probe,
        )
        assert [(c.name, c.status) for c in checks] == [
            ("served-certificate", "pass"),
            ("probe", "pass"),
        ]
        skipped = await validate_rotation(
            options_for(bare_server, root_ca),
            expected_fingerprint="00" * 32,
            trust_pem=root_ca.root_pem,
            check_served_certificate=False,
            probe=probe,
        )
        assert skipped[0].status == "skip"

    async def test_rollback_seen_at_once_when_another_certificate_is_served(
        self, bare_server: BareServer, root_ca: LocalCA
    ) -> None:
        check = await wait_for_rollback(options_for(bare_server, root_ca), "00" * 32)
        assert check.status == "pass"


class TestFriendlyErrors:
    async def test_connection_refused(self, closed_port: int) -> None:
        options = ChannelOptions(target=f"127.0.0.1:{closed_port}", timeout=5)
        async with await CertClient.connect(options) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.time()
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert "connection refused" in explain(caught.value).summary

    async def test_name_mismatch(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        options = options_for(bare_server, root_ca, server_name="wrong.example")
        async with await CertClient.connect(options) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.get_certificates()
        assert "TLS name mismatch" in explain(caught.value).summary
        assert "--server-name" in explain(caught.value).hint

    async def test_server_name_override_that_matches(
        self, bare_server: BareServer, root_ca: LocalCA
    ) -> None:
        options = options_for(bare_server, root_ca, server_name="localhost")
        async with await CertClient.connect(options) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.time()
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED  # connected: TLS was fine

    async def test_untrusted_server(self, bare_server: BareServer, other_ca: LocalCA) -> None:
        async with await CertClient.connect(options_for(bare_server, other_ca)) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.time()
        assert "untrusted server" in explain(caught.value).summary

    async def test_mutual_tls_without_a_client_certificate(
        self, mtls_server: BareServer, root_ca: LocalCA
    ) -> None:
        async with await CertClient.connect(options_for(mtls_server, root_ca)) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.time()
        explanation = explain(caught.value)
        assert "closed the connection" in explanation.summary
        assert "client certificate" in explanation.hint

    async def test_mutual_tls_with_a_client_certificate(
        self, mtls_server: BareServer, root_ca: LocalCA, client_identity: Identity
    ) -> None:
        options = options_for(
            mtls_server,
            root_ca,
            client_certificate=client_identity.chain_pem,
            client_key=client_identity.key_pem,
        )
        async with await CertClient.connect(options) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.time()
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED


class TestAgainstATargetThatImplementsNothing:
    @pytest.mark.parametrize(
        ("method", "rpc"),
        [
            ("time", "Time"),
            ("get_certificates", "GetCertificates"),
            ("can_generate_csr", "CanGenerateCSR"),
        ],
    )
    async def test_unary_rpcs(
        self, bare_server: BareServer, root_ca: LocalCA, method: str, rpc: str
    ) -> None:
        async with await CertClient.connect(options_for(bare_server, root_ca)) as client:
            with pytest.raises(RpcFailed) as caught:
                await getattr(client, method)()
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
        assert caught.value.rpc == rpc
        assert explain(caught.value).summary == f"the target does not implement {rpc}"

    async def test_revoke_and_bundle(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        async with await CertClient.connect(options_for(bare_server, root_ca)) as client:
            with pytest.raises(RpcFailed, match="RevokeCertificates"):
                await client.revoke(["a"])
            with pytest.raises(RpcFailed, match="LoadCertificateAuthorityBundle"):
                await client.load_ca_bundle(root_ca.bundle_pem)
            with pytest.raises(RpcFailed, match="GenerateCSR"):
                await client.generate_csr("a", CsrParams(common_name="a"))

    async def test_install_falls_back_to_a_client_key(
        self, bare_server: BareServer, root_ca: LocalCA, caplog: pytest.LogCaptureFixture
    ) -> None:
        # CanGenerateCSR unimplemented -> try GenerateCSR on the stream -> UNIMPLEMENTED ->
        # a new stream with a client key -> the load is refused (UNIMPLEMENTED) as well.
        caplog.set_level(logging.INFO, logger="gnoicert.client")
        spec = InstallSpec(
            certificate_id="edge-1", csr=CsrParams(common_name="localhost"), signer=root_ca
        )
        async with await CertClient.connect(options_for(bare_server, root_ca)) as client:
            with pytest.raises(RpcFailed) as caught:
                await client.install(spec)
        assert caught.value.rpc == "Install"
        # Writing the load to a stream the server already ended as UNIMPLEMENTED sometimes
        # surfaces as grpc core's INTERNAL "Internal error from Core" (a race inside grpcio).
        assert caught.value.code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL)
        messages = [record.getMessage() for record in caplog.records]
        assert "CanGenerateCSR is not implemented; trying GenerateCSR" in messages
        assert "Install: target cannot generate the key; making it here" in messages

    async def test_rotate_dry_run(self, bare_server: BareServer, root_ca: LocalCA) -> None:
        spec = RotateSpec(
            certificate_id="gnoi-server",
            csr=CsrParams(common_name="localhost", ip_address="127.0.0.1", key_type="ecdsa"),
            signer=root_ca,
            dry_run=True,
        )
        async with await CertClient.connect(options_for(bare_server, root_ca)) as client:
            result = await client.rotate(spec)
        assert result.dry_run is True
        assert result.finalized is False
        assert result.validation == ()
        assert result.key_source == "client"
        assert result.preflight.ok

    async def test_rotate_preflight_refuses_a_san_that_misses(
        self, bare_server: BareServer, root_ca: LocalCA
    ) -> None:
        spec = RotateSpec(
            certificate_id="gnoi-server",
            csr=CsrParams(common_name="elsewhere.example", key_type="ecdsa"),
            signer=root_ca,
        )
        async with await CertClient.connect(options_for(bare_server, root_ca)) as client:
            with pytest.raises(PreflightFailed) as caught:
                await client.rotate(spec)
        assert [c.name for c in caught.value.report.failures()] == ["san"]


class TestSyncClient:
    async def test_refuses_a_running_loop(self) -> None:
        with pytest.raises(RuntimeError, match="CertClient"):
            SyncCertClient(ChannelOptions(target="127.0.0.1:1"))

    def test_blocking_calls(self, closed_port: int) -> None:
        with SyncCertClient(ChannelOptions(target=f"127.0.0.1:{closed_port}", timeout=5)) as client:
            with pytest.raises(RpcFailed) as first:
                client.time()
            with pytest.raises(RpcFailed):  # the same loop serves the next call
                client.get_certificates()
        assert first.value.code == grpc.StatusCode.UNAVAILABLE

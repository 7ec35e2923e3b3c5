"""CertClient: every RPC of gnoi.certificate, and the Install and Rotate workflows, async.

A well-behaved client (docs/behaviour.md §9): the stream is opened before the CanGenerateCSR
probe on the same connection, the certificate ID travels in both generate_csr and
load_certificate, the client half-closes and reads to the final status after Install's load and
after Rotate's Finalize, and it cancels (never half-closes) a Rotate it does not want committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from cryptography.hazmat.primitives import serialization

from gnoicert.client import messages
from gnoicert.client.authmode import MODE_SWITCH_WAIT_S, client_certificates_required
from gnoicert.client.certinfo import key_description, load_csr, san_strings, subject_text
from gnoicert.client.channel import ChannelOptions, open_channel
from gnoicert.client.errors import (
    InputError,
    PreflightFailed,
    ProtocolError,
    RpcFailed,
    ValidationFailed,
    translate_rpc_errors,
)
from gnoicert.common.constants import CA_BUNDLE_ID, SERVER_ENDPOINT
from gnoicert.common.rpc import CertRpc, SystemRpc
from gnoicert.pki.crypto import (
    PrivateKey,
    PublicKey,
    build_csr,
    certificates_to_pem,
    fingerprint,
    load_certificates,
    load_private_key,
    private_key_to_pem,
)
from gnoicert.pki.errors import BadEncoding, PkiError
from gnoicert.proto import cert_pb2, cert_pb2_grpc, system_pb2, system_pb2_grpc

if TYPE_CHECKING:
    from gnoicert.client.models import (
        CaBundleResult,
        CertificateInfo,
        CheckResult,
        CheckStatus,
        CsrCapability,
        CsrParams,
        GeneratedCsr,
        InstallResult,
        InstallSpec,
        KeySource,
        LoadResult,
        PreflightReport,
        RevokeResult,
        RotateResult,
        RotateSpec,
        TargetTime,
    )
    from gnoicert.client.steps import Material
    from gnoicert.client.streams import Stream, StreamCall

_log = logging.getLogger("gnoicert.client")


@dataclass(frozen=True, slots=True)
class _Flavour:
    """What differs between the Install and Rotate streams."""

    rpc: str
    oneof: str
    generate: Callable[[str, CsrParams], Any]
    load: Callable[[cert_pb2.LoadCertificateRequest], Any]


_INSTALL = _Flavour(
    CertRpc.INSTALL, "install_response", messages.install_generate, messages.install_load
)
_ROTATE = _Flavour(
    CertRpc.ROTATE, "rotate_response", messages.rotate_generate, messages.rotate_load
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Loaded:
    """A stream after its load step; for a dry run no stream was ever opened."""

    stream: Stream | None
    material: Material
    key_source: KeySource
    preflight: PreflightReport
    dry_run: bool
    not_checked: tuple[str, ...] = ()


class CertClient:
    """The gNOI certificate client for one target (async; see SyncCertClient for scripts).

    Make one with `await CertClient.connect(options)` inside the event loop that will use it,
    and close it with `await client.aclose()` (or `async with`).
    """

    def __init__(self, options: ChannelOptions, channel: grpc.aio.Channel) -> None:
        self.options = options
        self._channel = channel
        self._cert = cert_pb2_grpc.CertificateManagementStub(channel)
        self._system = system_pb2_grpc.SystemStub(channel)

    @classmethod
    async def connect(cls, options: ChannelOptions, *, fresh: bool = False) -> CertClient:
        """A client with its channel (connects lazily, on the first RPC).

        `fresh` keeps grpcio from sharing a connection with other channels to the same target
        (after the target changed its credentials, say).
        """
        return cls(options, open_channel(options, fresh=fresh))

    async def aclose(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> CertClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def target(self) -> str:
        return self.options.address

    def __repr__(self) -> str:
        return f"CertClient({self.target!r})"

    # -- unary RPCs ------------------------------------------------------------------------------

    async def can_generate_csr(self, *, key_size: int = 2048) -> CsrCapability:
        """CanGenerateCSR for an RSA X.509 key of key_size bits."""
        from gnoicert.client.models import CsrCapability

        request = messages.can_generate_csr_request(key_size)
        with translate_rpc_errors(target=self.target, rpc=CertRpc.CAN_GENERATE_CSR):
            response = await self._cert.CanGenerateCSR(request, **self._call_options())
        return CsrCapability(
            target=self.target,
            key_type=messages.key_type_name(request.key_type),
            certificate_type=messages.certificate_type_name(request.certificate_type),
            key_size=key_size,
            can_generate=response.can_generate,
        )

    async def generate_csr(self, certificate_id: str, params: CsrParams) -> GeneratedCsr:
        """Unary GenerateCSR: the target keeps the key pending for a later LoadCertificate."""
        from gnoicert.client.models import GeneratedCsr

        if params.key_type != "rsa":
            raise InputError("the target can only be asked for RSA keys")
        request = messages.generate_csr_request(certificate_id, params)
        with translate_rpc_errors(target=self.target, rpc=CertRpc.GENERATE_CSR):
            response = await self._cert.GenerateCSR(request, **self._call_options())
        csr_pem = messages.csr_from_generated(response)
        try:
            csr = load_csr(csr_pem)
        except BadEncoding as exc:
            raise ProtocolError(
                f"the target's CSR is unusable: {exc}", target=self.target
            ) from None
        key_type, key_size = key_description(csr.public_key())
        return GeneratedCsr(
            target=self.target,
            certificate_id=certificate_id,
            csr_pem=csr_pem.decode("ascii", errors="replace"),
            subject=subject_text(csr),
            sans=san_strings(csr.extensions),
            key_type=key_type,
            key_size=key_size,
        )

    async def load_certificate(
        self,
        certificate_id: str,
        certificate_pem: bytes,
        *,
        private_key_pem: bytes | None = None,
        ca_bundle_pem: bytes = b"",
        trust_anchors_pem: bytes = b"",
        require_san: bool = False,
        preflight: bool = True,
        dry_run: bool = False,
        force: bool = False,
    ) -> LoadResult:
        """Unary LoadCertificate: with a private key (client key), else onto the key pending from
        an earlier GenerateCSR. `certificate_pem` is the leaf, then any chain.

        Refused (PreflightFailed, nothing sent) onto the ID of the gRPC server's certificate
        unless `force`: a unary load has no validation step and no rollback, so a wrong
        certificate there locks clients out; Rotate is the way to replace it. A dry run sends
        nothing that changes the target: it checks the connection and the listing as well.
        """
        from gnoicert.client.models import LoadResult, SignedCertificate
        from gnoicert.client.steps import split_material

        material = split_material(
            SignedCertificate(certificate_pem=certificate_pem),
            ca_bundle_pem=ca_bundle_pem,
            trust_anchors_pem=trust_anchors_pem,
        )
        key = _load_key(private_key_pem) if private_key_pem is not None else None
        target_checks: list[CheckResult] = []
        if dry_run:
            target_checks.append(await self._connection_check())
        target_checks.append(_load_target_check(certificate_id, await self._listing(), force=force))
        report = self._preflight(
            material,
            key=key,
            require_san=require_san,
            enabled=preflight,
            before=tuple(target_checks),
        )
        key_source: KeySource = "client" if key is not None else "target"
        not_checked: tuple[str, ...] = ()
        if dry_run:
            not_checked = (
                "the target's own checks at load (chain against its CA bundle, key, lock on "
                "the ID): only LoadCertificate can run them",
            )
            if key is None:
                not_checked += ("the key pending on the target from GenerateCSR",)
        if not dry_run:
            request = messages.load_certificate_request(
                certificate_id,
                material.certificate_pem,
                private_key_pem=private_key_to_pem(key) if key is not None else None,
                public_key_pem=_public_pem(key) if key is not None else None,
                ca_certificates=material.bundle_pems,
            )
            with translate_rpc_errors(target=self.target, rpc=CertRpc.LOAD_CERTIFICATE):
                await self._cert.LoadCertificate(request, **self._call_options())
        return LoadResult(
            target=self.target,
            certificate_id=certificate_id,
            fingerprint=fingerprint(material.leaf),
            key_source=key_source,
            ca_bundle_size=len(material.bundle),
            preflight=report,
            dry_run=dry_run,
            not_checked=not_checked,
        )

    async def load_ca_bundle(
        self, bundle_pem: bytes, *, mode_wait_s: float = MODE_SWITCH_WAIT_S
    ) -> CaBundleResult:
        """LoadCertificateAuthorityBundle: replaces the whole bundle (the first one turns on
        mutual TLS on gnoicertd; have a client certificate from this bundle ready). The result
        says whether the target now refuses connections without a client certificate."""
        from gnoicert.client.models import CaBundleResult

        try:
            cas = load_certificates(bundle_pem)
        except BadEncoding as exc:
            raise InputError(f"the CA bundle is not usable: {exc}") from None
        request = messages.ca_bundle_request([certificates_to_pem([ca]) for ca in cas])
        with translate_rpc_errors(
            target=self.target, rpc=CertRpc.LOAD_CERTIFICATE_AUTHORITY_BUNDLE
        ):
            await self._cert.LoadCertificateAuthorityBundle(request, **self._call_options())
        return CaBundleResult(
            target=self.target,
            size=len(cas),
            fingerprints=tuple(fingerprint(ca) for ca in cas),
            subjects=tuple(subject_text(ca) for ca in cas),
            client_certificates_required=await client_certificates_required(
                self.options, expect=bool(cas), within=mode_wait_s
            ),
        )

    async def get_certificates(self) -> tuple[CertificateInfo, ...]:
        """GetCertificates, each certificate parsed (subject, SANs, key, validity ...)."""
        with translate_rpc_errors(target=self.target, rpc=CertRpc.GET_CERTIFICATES):
            response = await self._cert.GetCertificates(
                cert_pb2.GetCertificatesRequest(), **self._call_options()
            )
        return messages.certificates_model(response)

    async def revoke(
        self, certificate_ids: Sequence[str], *, mode_wait_s: float = MODE_SWITCH_WAIT_S
    ) -> RevokeResult:
        """RevokeCertificates; per-ID failures are in the result (the RPC itself succeeds).

        GetCertificates is asked first: a target counts an ID it does not have as revoked
        (docs/behaviour.md §4), the result lists those as `not_present` instead. The CA bundle
        is not listed by GetCertificates; revoking it is reported with the new TLS mode.
        """
        if not certificate_ids:
            raise InputError("no certificate ID to revoke")
        listing = await self._listing()
        request = cert_pb2.RevokeCertificatesRequest(certificate_id=list(certificate_ids))
        with translate_rpc_errors(target=self.target, rpc=CertRpc.REVOKE_CERTIFICATES):
            response = await self._cert.RevokeCertificates(request, **self._call_options())
        result = messages.revoke_result_model(response, target=self.target)
        listed = {info.certificate_id for info in listing or ()}
        absent = tuple(
            i
            for i in result.revoked
            if listing is not None and i not in listed and i != CA_BUNDLE_ID
        )
        required = None
        if CA_BUNDLE_ID in result.revoked:
            required = await client_certificates_required(
                self.options, expect=False, within=mode_wait_s
            )
        return replace(
            result,
            revoked=tuple(i for i in result.revoked if i not in absent),
            not_present=absent,
            client_certificates_required=required,
        )

    async def time(self) -> TargetTime:
        """System/Time: the target's clock, and how far it is from this host's."""
        from gnoicert.client.models import TargetTime

        before = time.time_ns()
        started = time.monotonic()
        with translate_rpc_errors(target=self.target, rpc=SystemRpc.TIME):
            response = await self._system.Time(system_pb2.TimeRequest(), **self._call_options())
        round_trip = time.monotonic() - started
        midpoint_ns = before + int(round_trip * 1e9 / 2)
        return TargetTime(
            target=self.target,
            time_ns=response.time,
            time=dt.datetime.fromtimestamp(response.time / 1e9, tz=dt.UTC),
            round_trip_s=round_trip,
            offset_s=(response.time - midpoint_ns) / 1e9,
        )

    # -- workflows ---------------------------------------------------------------------------------

    async def install(self, spec: InstallSpec) -> InstallResult:
        """Install a certificate under a new ID.

        Probe CanGenerateCSR (auto mode), have the target make the key and CSR or make them here,
        sign through spec.signer, run preflight, load (with the CA bundle if given), then
        half-close and read to the final status: the target commits at load.
        """
        from gnoicert.client.models import InstallResult

        started = time.monotonic()
        loaded = await self._load_over_stream(_INSTALL, spec)
        if loaded.stream is not None:
            try:
                await loaded.stream.half_close()
                await loaded.stream.finish()
            finally:
                loaded.stream.cancel_if_running()
        leaf = loaded.material.leaf
        required = None
        if loaded.material.bundle and not loaded.dry_run:
            required = await client_certificates_required(self.options, expect=True)
        _log.info("Install %s: done (%s)", spec.certificate_id, fingerprint(leaf))
        return InstallResult(
            target=self.target,
            certificate_id=spec.certificate_id,
            fingerprint=fingerprint(leaf),
            subject=subject_text(leaf),
            not_after=leaf.not_valid_after_utc,
            key_source=loaded.key_source,
            ca_bundle_size=len(loaded.material.bundle),
            preflight=loaded.preflight,
            dry_run=loaded.dry_run,
            elapsed_s=time.monotonic() - started,
            not_checked=loaded.not_checked,
            client_certificates_required=required,
        )

    async def rotate(self, spec: RotateSpec) -> RotateResult:
        """Rotate the certificate of an existing ID, with the validation step.

        As install up to the load; then a new connection trusting only the new chain must get
        the new certificate (fingerprint) and System/Time (or spec.probe) must answer over it.
        Finalize only if every check passed, then wait for the final status; otherwise cancel the
        stream (the target rolls back) and raise ValidationFailed with the checks.
        """
        from gnoicert.client.models import RotateResult
        from gnoicert.client.validation import validate_rotation, wait_for_rollback

        started = time.monotonic()
        spec, notes = await self._server_role(spec)
        loaded = await self._load_over_stream(_ROTATE, spec)
        leaf = loaded.material.leaf
        new_fingerprint = fingerprint(leaf)
        checks: tuple[CheckResult, ...] = ()
        validation_options = self.options
        if spec.expect_name:
            validation_options = replace(self.options, server_name=spec.expect_name)
        try:
            if loaded.stream is not None:
                checks = await validate_rotation(
                    validation_options,
                    expected_fingerprint=new_fingerprint,
                    trust_pem=loaded.material.trust_pem(),
                    check_served_certificate=spec.check_served_certificate,
                    probe=spec.probe,
                )
                for check in checks:
                    _log.info(
                        "Rotate %s: %s %s: %s",
                        spec.certificate_id,
                        check.name,
                        check.status,
                        check.detail,
                    )
                if any(check.status == "fail" for check in checks):
                    loaded.stream.cancel_if_running()
                    if spec.check_served_certificate:
                        checks += (await wait_for_rollback(validation_options, new_fingerprint),)
                    raise ValidationFailed(
                        certificate_id=spec.certificate_id, checks=checks, target=self.target
                    )
                await self._finalize(loaded.stream)
        finally:
            if loaded.stream is not None:
                loaded.stream.cancel_if_running()
        _log.info("Rotate %s: done (%s)", spec.certificate_id, new_fingerprint)
        return RotateResult(
            target=self.target,
            certificate_id=spec.certificate_id,
            fingerprint=new_fingerprint,
            subject=subject_text(leaf),
            not_after=leaf.not_valid_after_utc,
            key_source=loaded.key_source,
            ca_bundle_size=len(loaded.material.bundle),
            preflight=loaded.preflight,
            validation=checks,
            finalized=not loaded.dry_run,
            dry_run=loaded.dry_run,
            elapsed_s=time.monotonic() - started,
            not_checked=loaded.not_checked,
            notes=notes,
        )

    async def _server_role(self, spec: RotateSpec) -> tuple[RotateSpec, tuple[str, ...]]:
        """Turn the served-certificate and SAN checks off when the listing shows the ID is not
        the gRPC server's: no `grpc-server` endpoint, and new connections get another
        certificate (docs/behaviour.md §4, GetCertificates)."""
        from gnoicert.client.validation import unverified_fingerprint

        if not (spec.infer_server_role and spec.check_served_certificate) or self.options.insecure:
            return spec, ()
        listing = await self._listing()
        if listing is None:
            return spec, ()  # no listing to infer from: keep the checks
        listed = {info.certificate_id: info for info in listing}
        info = listed.get(spec.certificate_id)
        if info is None or any(e.endpoint == SERVER_ENDPOINT for e in info.endpoints):
            return spec, ()  # absent: the target answers NOT_FOUND; or the server's own
        served = await unverified_fingerprint(self.options)
        if served in ("unknown", info.fingerprint):
            return spec, ()
        note = (
            f"{spec.certificate_id} is not the gRPC server's certificate (no {SERVER_ENDPOINT} "
            f"endpoint; new connections get sha256 {served}): the served-certificate and SAN "
            "checks are off"
        )
        _log.info("Rotate %s: %s", spec.certificate_id, note)
        return replace(spec, check_served_certificate=False, require_san=False), (note,)

    # -- stream steps ------------------------------------------------------------------------------

    def _call_options(self) -> dict[str, Any]:
        return {"metadata": self.options.metadata(), "timeout": self.options.timeout}

    def _open_stream(self, flavour: _Flavour) -> Stream:
        from gnoicert.client.rpclog import time_stream
        from gnoicert.client.streams import Stream

        method = self._cert.Install if flavour is _INSTALL else self._cert.Rotate
        call: StreamCall = method(
            metadata=self.options.metadata(), timeout=self.options.stream_timeout
        )
        time_stream(call, flavour.rpc)
        return Stream(call=call, target=self.target, rpc=flavour.rpc, timeout=self.options.timeout)

    async def _probe_can_generate(self, spec: InstallSpec) -> bool | None:
        """CanGenerateCSR on the same connection; None when the target does not implement it."""
        from gnoicert.client.steps import should_probe

        if not should_probe(spec.key_source, spec.csr.key_type):
            return None
        try:
            answer = (await self.can_generate_csr(key_size=spec.csr.key_size)).can_generate
        except RpcFailed as exc:
            if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            _log.info("CanGenerateCSR is not implemented; trying GenerateCSR")
            return None
        _log.info("CanGenerateCSR(RSA %d) -> %s", spec.csr.key_size, answer)
        return answer

    async def _load_over_stream(self, flavour: _Flavour, spec: InstallSpec) -> _Loaded:
        """Take a stream through key, CSR, signing, preflight and load.

        The stream opens only when its first message is ready: a stream left open during the
        CanGenerateCSR probe (or during client-side signing) to a target that does not serve
        it can end, in a race inside grpcio, as INTERNAL instead of UNIMPLEMENTED.
        """
        from gnoicert.client.steps import choose_key_source, expect_case, split_material

        if spec.dry_run:
            return await self._dry_run(flavour, spec)
        stream: Stream | None = None

        def opened() -> Stream:
            nonlocal stream
            if stream is None:
                stream = self._open_stream(flavour)
            return stream

        try:
            can_generate = await self._probe_can_generate(spec)
            key_source = choose_key_source(spec.key_source, spec.csr.key_type, can_generate)
            key: PrivateKey | None = None
            csr_public_key: PublicKey | None = None
            if key_source == "target":
                try:
                    csr_pem = await self._target_csr(opened(), flavour, spec)
                except RpcFailed as exc:
                    if exc.code != grpc.StatusCode.UNIMPLEMENTED or spec.key_source != "auto":
                        raise
                    _log.info("%s: target cannot generate the key; making it here", flavour.rpc)
                    opened().cancel_if_running()
                    stream = None
                    key_source = "client"
            if key_source == "client":
                key, csr_pem = await self._client_csr(spec.csr)
            else:
                csr_public_key = _csr_key(csr_pem, self.target)
            signed = await asyncio.to_thread(spec.signer.sign, csr_pem)
            _log.info("%s %s: signed by %r", flavour.rpc, spec.certificate_id, spec.signer)
            material = split_material(
                signed, ca_bundle_pem=spec.ca_bundle_pem, trust_anchors_pem=spec.trust_anchors_pem
            )
            report = self._preflight(
                material,
                key=key,
                csr_public_key=csr_public_key,
                require_san=spec.require_san,
                enabled=spec.preflight,
                dial_name=_expected_name(spec),
            )
            request = messages.load_certificate_request(
                spec.certificate_id,
                material.certificate_pem,
                private_key_pem=private_key_to_pem(key) if key is not None else None,
                public_key_pem=_public_pem(key) if key is not None else None,
                ca_certificates=material.bundle_pems,
            )
            await opened().write(flavour.load(request))
            response = await opened().read()
            expect_case(response.WhichOneof(flavour.oneof), "load_certificate")
            _log.info("%s %s: certificate loaded", flavour.rpc, spec.certificate_id)
        except BaseException:
            if stream is not None:
                stream.cancel_if_running()
            raise
        return _Loaded(
            stream=opened(),
            material=material,
            key_source=key_source,
            preflight=report,
            dry_run=False,
        )

    async def _dry_run(self, flavour: _Flavour, spec: InstallSpec) -> _Loaded:
        """Everything that can be checked without changing the target (docs/behaviour.md §8:
        GenerateCSR is a change, the target stores the key): the connection and clock,
        CanGenerateCSR, the ID in the listing, the signer (on a stand-in CSR of this client's
        when the target would make the key), and the preflight of what it signed."""
        from gnoicert.client.models import CheckResult
        from gnoicert.client.steps import choose_key_source, split_material

        checks = [await self._connection_check()]
        can_generate = await self._probe_can_generate(spec)
        key_source = choose_key_source(spec.key_source, spec.csr.key_type, can_generate)
        if can_generate is not None:
            answer = "can" if can_generate else "cannot"
            checks.append(
                CheckResult(
                    name="can-generate-csr",
                    status="pass",
                    detail=f"the target {answer} make an RSA-{spec.csr.key_size} key: the "
                    f"{key_source} would make it",
                )
            )
        checks.append(_id_check(flavour, spec.certificate_id, await self._listing()))
        key, csr_pem = await self._client_csr(spec.csr)
        signed = await asyncio.to_thread(spec.signer.sign, csr_pem)
        what = "the CSR" if key_source == "client" else "a stand-in CSR for a key of this client"
        checks.append(
            CheckResult(name="signer", status="pass", detail=f"{spec.signer!r} signed {what}")
        )
        material = split_material(
            signed, ca_bundle_pem=spec.ca_bundle_pem, trust_anchors_pem=spec.trust_anchors_pem
        )
        report = self._preflight(
            material,
            key=key if key_source == "client" else None,
            require_san=spec.require_san,
            enabled=spec.preflight,
            dial_name=_expected_name(spec),
            before=tuple(checks),
        )
        not_checked = [
            "the target's own checks at load (chain against its CA bundle, key, lock on the "
            "ID): only the load can run them",
        ]
        if key_source == "target":
            not_checked.insert(
                0,
                "the target's key pair and CSR: GenerateCSR is not sent (the target would "
                "store the key); the certificate checked was signed for a stand-in key",
            )
        if material.bundle:
            not_checked.append("the target's lockout guard on the new CA bundle")
        if flavour is _ROTATE:
            not_checked.append(
                "the validation step (a new connection getting the new certificate): it needs "
                "the load"
            )
        _log.info("%s %s: dry run; nothing was sent", flavour.rpc, spec.certificate_id)
        return _Loaded(
            stream=None,
            material=material,
            key_source=key_source,
            preflight=report,
            dry_run=True,
            not_checked=tuple(not_checked),
        )

    async def _listing(self) -> tuple[CertificateInfo, ...] | None:
        """GetCertificates, or None from a target that does not implement it."""
        try:
            return await self.get_certificates()
        except RpcFailed as exc:
            if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            _log.info("GetCertificates is not implemented; the ID cannot be checked")
            return None

    async def _connection_check(self) -> CheckResult:
        """System/Time: connection, authentication and clock (UNIMPLEMENTED still connected)."""
        from gnoicert.client.models import CheckResult

        name = "connection"
        try:
            answer = await self.time()
        except RpcFailed as exc:
            if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            return CheckResult(
                name=name, status="pass", detail="connected (System/Time is not implemented)"
            )
        if abs(answer.offset_s) > CLOCK_WARNING_S:
            return CheckResult(
                name=name,
                status="warn",
                detail=f"connected; the target's clock is {answer.offset_s:+.0f} s off this "
                "host's: validity there is judged by that clock",
            )
        return CheckResult(
            name=name,
            status="pass",
            detail=f"connected and authenticated; System/Time answered (offset "
            f"{answer.offset_s:+.3f} s)",
        )

    async def _target_csr(self, stream: Stream, flavour: _Flavour, spec: InstallSpec) -> bytes:
        from gnoicert.client.steps import expect_case

        await stream.write(flavour.generate(spec.certificate_id, spec.csr))
        response = await stream.read()
        expect_case(response.WhichOneof(flavour.oneof), "generated_csr")
        _log.info("%s %s: target generated the CSR", flavour.rpc, spec.certificate_id)
        return messages.csr_from_generated(response.generated_csr)

    async def _client_csr(self, params: CsrParams) -> tuple[PrivateKey, bytes]:
        from gnoicert.client.ca import new_key  # the local CA module only when a key is made

        key = await asyncio.to_thread(new_key, params.key_type, params.key_size)
        try:
            csr_pem = build_csr(key, params.subject())
        except PkiError as exc:
            raise InputError(f"bad CSR parameters: {exc}") from None
        return key, csr_pem

    def _preflight(
        self,
        material: Material,
        *,
        key: PrivateKey | None = None,
        csr_public_key: PublicKey | None = None,
        require_san: bool,
        enabled: bool,
        dial_name: str | None = None,
        before: tuple[CheckResult, ...] = (),
    ) -> PreflightReport:
        """The material's checks after `before` (the target checks of a dry run or a load);
        raises PreflightFailed when any of them failed."""
        from gnoicert.client.models import CheckResult, PreflightReport
        from gnoicert.client.preflight import run_preflight

        if not enabled:
            skipped = CheckResult(name="preflight", status="skip", detail="turned off")
            report = PreflightReport.from_checks([*before, skipped])
        else:
            material_report = run_preflight(
                material,
                key=key,
                csr_public_key=csr_public_key,
                dial_name=None if self.options.insecure else dial_name or self.options.verify_name,
                require_san=require_san,
            )
            report = PreflightReport.from_checks([*before, *material_report.checks])
        for check in report.checks:
            _log.info("preflight %s %s: %s", check.name, check.status, check.detail)
        if not report.ok:
            raise PreflightFailed(report=report, target=self.target)
        return report

    async def _finalize(self, stream: Stream) -> None:
        """Send Finalize, half-close, and wait for the final status (an error means rollback)."""
        await stream.write(messages.rotate_finalize(), after_load=True)
        await stream.half_close(after_load=True)
        await stream.finish(after_load=True)


CLOCK_WARNING_S = 60.0
"""A target clock further off than this gets a dry-run warning (validity is judged there)."""


def _expected_name(spec: InstallSpec) -> str | None:
    from gnoicert.client.models import RotateSpec

    return spec.expect_name if isinstance(spec, RotateSpec) else None


def _id_verdict(status: CheckStatus, detail: str) -> CheckResult:
    from gnoicert.client.models import CheckResult

    return CheckResult(name="certificate-id", status=status, detail=detail)


def _listed(certificate_id: str, listing: Sequence[CertificateInfo]) -> CertificateInfo | None:
    return next((i for i in listing if i.certificate_id == certificate_id), None)


def _id_check(
    flavour: _Flavour, certificate_id: str, listing: Sequence[CertificateInfo] | None
) -> CheckResult:
    """Install needs a new ID, Rotate an existing one (docs/behaviour.md §2)."""
    if listing is None:
        return _id_verdict("skip", "GetCertificates is not implemented")
    info = _listed(certificate_id, listing)
    if flavour is _INSTALL:
        if info is not None:
            return _id_verdict("fail", f"{certificate_id} already exists on the target")
        return _id_verdict("pass", f"{certificate_id} is a new ID")
    if info is None:
        return _id_verdict("fail", f"{certificate_id} is not on the target")
    return _id_verdict("pass", f"{certificate_id} is present (sha256 {info.fingerprint})")


def _load_target_check(
    certificate_id: str, listing: Sequence[CertificateInfo] | None, *, force: bool
) -> CheckResult:
    """A unary load onto the gRPC server's certificate is refused unless forced."""

    if listing is None:
        return _id_verdict("skip", "GetCertificates is not implemented")
    info = _listed(certificate_id, listing)
    if info is None:
        return _id_verdict("pass", f"{certificate_id} is a new ID")
    if any(e.endpoint == SERVER_ENDPOINT for e in info.endpoints):
        detail = (
            f"{certificate_id} is the gRPC server's certificate ({SERVER_ENDPOINT} endpoint): a "
            "unary load replaces it with no validation step and no rollback"
        )
        return _id_verdict("warn" if force else "fail", detail)
    return _id_verdict(
        "pass", f"replaces the certificate of {certificate_id} (sha256 {info.fingerprint})"
    )


def _load_key(private_key_pem: bytes) -> PrivateKey:
    try:
        return load_private_key(private_key_pem)
    except BadEncoding as exc:
        raise InputError(f"the private key is not usable: {exc}") from None


def _public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _csr_key(csr_pem: bytes, target: str) -> PublicKey:
    try:
        public_key = load_csr(csr_pem).public_key()
    except BadEncoding as exc:
        raise ProtocolError(f"the target's CSR is unusable: {exc}", target=target) from None
    if not isinstance(public_key, PublicKey):
        raise ProtocolError("the target's CSR has an unsupported key type", target=target)
    return public_key

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
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from cryptography.hazmat.primitives import serialization

from gnoicert.client import messages
from gnoicert.client.ca import new_key
from gnoicert.client.certinfo import key_description, load_csr, san_strings
from gnoicert.client.channel import ChannelOptions, open_channel
from gnoicert.client.errors import (
    InputError,
    PreflightFailed,
    ProtocolError,
    RpcFailed,
    ValidationFailed,
    translate_rpc_errors,
)
from gnoicert.client.models import (
    CaBundleResult,
    CertificateInfo,
    CheckResult,
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
    SignedCertificate,
    TargetTime,
)
from gnoicert.client.preflight import run_preflight
from gnoicert.client.steps import (
    Material,
    choose_key_source,
    expect_case,
    should_probe,
    split_material,
)
from gnoicert.client.streams import Stream, StreamCall
from gnoicert.client.validation import validate_rotation, wait_for_rollback
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
    """A stream after its load step (or after preflight, for a dry run)."""

    stream: Stream
    material: Material
    key_source: KeySource
    preflight: PreflightReport
    dry_run: bool


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
            subject=csr.subject.rfc4514_string(),
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
    ) -> LoadResult:
        """Unary LoadCertificate: with a private key (client key), else onto the key pending from
        an earlier GenerateCSR. `certificate_pem` is the leaf, then any chain."""
        material = split_material(
            SignedCertificate(certificate_pem=certificate_pem),
            ca_bundle_pem=ca_bundle_pem,
            trust_anchors_pem=trust_anchors_pem,
        )
        key = _load_key(private_key_pem) if private_key_pem is not None else None
        report = self._preflight(material, key=key, require_san=require_san, enabled=preflight)
        key_source: KeySource = "client" if key is not None else "target"
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
        )

    async def load_ca_bundle(self, bundle_pem: bytes) -> CaBundleResult:
        """LoadCertificateAuthorityBundle: replaces the whole bundle (the first one turns on
        mutual TLS on gnoicertd; have a client certificate from this bundle ready)."""
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
            subjects=tuple(ca.subject.rfc4514_string() for ca in cas),
        )

    async def get_certificates(self) -> tuple[CertificateInfo, ...]:
        """GetCertificates, each certificate parsed (subject, SANs, key, validity ...)."""
        with translate_rpc_errors(target=self.target, rpc=CertRpc.GET_CERTIFICATES):
            response = await self._cert.GetCertificates(
                cert_pb2.GetCertificatesRequest(), **self._call_options()
            )
        return messages.certificates_model(response)

    async def revoke(self, certificate_ids: Sequence[str]) -> RevokeResult:
        """RevokeCertificates; per-ID failures are in the result (the RPC itself succeeds)."""
        if not certificate_ids:
            raise InputError("no certificate ID to revoke")
        request = cert_pb2.RevokeCertificatesRequest(certificate_id=list(certificate_ids))
        with translate_rpc_errors(target=self.target, rpc=CertRpc.REVOKE_CERTIFICATES):
            response = await self._cert.RevokeCertificates(request, **self._call_options())
        return messages.revoke_result_model(response, target=self.target)

    async def time(self) -> TargetTime:
        """System/Time: the target's clock, and how far it is from this host's."""
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
        started = time.monotonic()
        loaded = await self._load_over_stream(_INSTALL, spec)
        try:
            if not loaded.dry_run:
                await loaded.stream.half_close()
                await loaded.stream.finish()
        finally:
            loaded.stream.cancel_if_running()
        leaf = loaded.material.leaf
        _log.info("Install %s: done (%s)", spec.certificate_id, fingerprint(leaf))
        return InstallResult(
            target=self.target,
            certificate_id=spec.certificate_id,
            fingerprint=fingerprint(leaf),
            subject=leaf.subject.rfc4514_string(),
            not_after=leaf.not_valid_after_utc,
            key_source=loaded.key_source,
            ca_bundle_size=len(loaded.material.bundle),
            preflight=loaded.preflight,
            dry_run=loaded.dry_run,
            elapsed_s=time.monotonic() - started,
        )

    async def rotate(self, spec: RotateSpec) -> RotateResult:
        """Rotate the certificate of an existing ID, with the validation step.

        As install up to the load; then a new connection trusting only the new chain must get
        the new certificate (fingerprint) and System/Time (or spec.probe) must answer over it.
        Finalize only if every check passed, then wait for the final status; otherwise cancel the
        stream (the target rolls back) and raise ValidationFailed with the checks.
        """
        started = time.monotonic()
        loaded = await self._load_over_stream(_ROTATE, spec)
        leaf = loaded.material.leaf
        new_fingerprint = fingerprint(leaf)
        checks: tuple[CheckResult, ...] = ()
        try:
            if not loaded.dry_run:
                checks = await validate_rotation(
                    self.options,
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
                        checks += (await wait_for_rollback(self.options, new_fingerprint),)
                    raise ValidationFailed(
                        certificate_id=spec.certificate_id, checks=checks, target=self.target
                    )
                await self._finalize(loaded.stream)
        finally:
            loaded.stream.cancel_if_running()
        _log.info("Rotate %s: done (%s)", spec.certificate_id, new_fingerprint)
        return RotateResult(
            target=self.target,
            certificate_id=spec.certificate_id,
            fingerprint=new_fingerprint,
            subject=leaf.subject.rfc4514_string(),
            not_after=leaf.not_valid_after_utc,
            key_source=loaded.key_source,
            ca_bundle_size=len(loaded.material.bundle),
            preflight=loaded.preflight,
            validation=checks,
            finalized=not loaded.dry_run,
            dry_run=loaded.dry_run,
            elapsed_s=time.monotonic() - started,
        )

    # -- stream steps ------------------------------------------------------------------------------

    def _call_options(self) -> dict[str, Any]:
        return {"metadata": self.options.metadata(), "timeout": self.options.timeout}

    def _open_stream(self, flavour: _Flavour) -> Stream:
        method = self._cert.Install if flavour is _INSTALL else self._cert.Rotate
        call: StreamCall = method(
            metadata=self.options.metadata(), timeout=self.options.stream_timeout
        )
        return Stream(call=call, target=self.target, rpc=flavour.rpc, timeout=self.options.timeout)

    async def _probe_can_generate(self, spec: InstallSpec) -> bool | None:
        """CanGenerateCSR on the same connection; None when the target does not implement it."""
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
            )
            if spec.dry_run:
                _log.info(
                    "%s %s: dry run, stopping after preflight", flavour.rpc, spec.certificate_id
                )
                opened().cancel_if_running()
                return _Loaded(
                    stream=opened(),
                    material=material,
                    key_source=key_source,
                    preflight=report,
                    dry_run=True,
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

    async def _target_csr(self, stream: Stream, flavour: _Flavour, spec: InstallSpec) -> bytes:
        await stream.write(flavour.generate(spec.certificate_id, spec.csr))
        response = await stream.read()
        expect_case(response.WhichOneof(flavour.oneof), "generated_csr")
        _log.info("%s %s: target generated the CSR", flavour.rpc, spec.certificate_id)
        return messages.csr_from_generated(response.generated_csr)

    async def _client_csr(self, params: CsrParams) -> tuple[PrivateKey, bytes]:
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
    ) -> PreflightReport:
        if not enabled:
            skipped = CheckResult(name="preflight", status="skip", detail="turned off")
            return PreflightReport.from_checks([skipped])
        report = run_preflight(
            material,
            key=key,
            csr_public_key=csr_public_key,
            dial_name=None if self.options.insecure else self.options.verify_name,
            require_san=require_san,
        )
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

"""SyncCertClient: CertClient for scripts, without asyncio in sight.

It owns an asyncio.Runner; the channel is made inside that runner and every call runs on the
same loop, so grpc.aio objects never cross loops. Not for use inside a running event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from gnoicert.client.channel import ChannelOptions
from gnoicert.client.models import (
    CaBundleResult,
    CertificateInfo,
    CsrCapability,
    CsrParams,
    GeneratedCsr,
    InstallResult,
    InstallSpec,
    LoadResult,
    RevokeResult,
    RotateResult,
    RotateSpec,
    TargetTime,
)
from gnoicert.client.workflows import CertClient

_T = TypeVar("_T")


def _refuse_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "SyncCertClient cannot run inside an event loop; use 'await CertClient.connect(...)'"
    )


class SyncCertClient:
    """Blocking twin of CertClient: same methods, same results."""

    def __init__(self, options: ChannelOptions) -> None:
        _refuse_running_loop()
        self._runner = asyncio.Runner()
        try:
            self._client = self._runner.run(CertClient.connect(options))
        except BaseException:
            self._runner.close()
            raise
        self.options = options

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        try:
            _refuse_running_loop()
        except RuntimeError:
            coroutine.close()
            raise
        return self._runner.run(coroutine)

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncCertClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncCertClient({self.options.address!r})"

    def can_generate_csr(self, *, key_size: int = 2048) -> CsrCapability:
        return self._run(self._client.can_generate_csr(key_size=key_size))

    def generate_csr(self, certificate_id: str, params: CsrParams) -> GeneratedCsr:
        return self._run(self._client.generate_csr(certificate_id, params))

    def load_certificate(
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
        return self._run(
            self._client.load_certificate(
                certificate_id,
                certificate_pem,
                private_key_pem=private_key_pem,
                ca_bundle_pem=ca_bundle_pem,
                trust_anchors_pem=trust_anchors_pem,
                require_san=require_san,
                preflight=preflight,
                dry_run=dry_run,
            )
        )

    def load_ca_bundle(self, bundle_pem: bytes) -> CaBundleResult:
        return self._run(self._client.load_ca_bundle(bundle_pem))

    def get_certificates(self) -> tuple[CertificateInfo, ...]:
        return self._run(self._client.get_certificates())

    def revoke(self, certificate_ids: Sequence[str]) -> RevokeResult:
        return self._run(self._client.revoke(certificate_ids))

    def time(self) -> TargetTime:
        return self._run(self._client.time())

    def install(self, spec: InstallSpec) -> InstallResult:
        return self._run(self._client.install(spec))

    def rotate(self, spec: RotateSpec) -> RotateResult:
        return self._run(self._client.rotate(spec))

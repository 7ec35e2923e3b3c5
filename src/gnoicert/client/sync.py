"""SyncCertClient: CertClient for scripts, without asyncio in sight.

It owns an asyncio.Runner; the channel is made inside that runner and every call runs on the
same loop, so grpc.aio objects never cross loops. Not for use inside a running event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from gnoicert.client.channel import ChannelOptions
from gnoicert.client.workflows import CertClient
from gnoicert.common.closeable import Closeable

_T = TypeVar("_T")
_P = ParamSpec("_P")


def _refuse_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "SyncCertClient cannot run inside an event loop; use 'await CertClient.connect(...)'"
    )


def _blocking(
    method: Callable[Concatenate[CertClient, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[SyncCertClient, _P], _T]:
    """The blocking twin of a CertClient method: same parameters, same docstring, one home."""

    @functools.wraps(method)
    def run(self: SyncCertClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return self._run(method(self._client, *args, **kwargs))

    run.__qualname__ = f"SyncCertClient.{method.__name__}"
    return run


class SyncCertClient(Closeable):
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

    def __repr__(self) -> str:
        return f"SyncCertClient({self.options.address!r})"

    can_generate_csr = _blocking(CertClient.can_generate_csr)
    generate_csr = _blocking(CertClient.generate_csr)
    load_certificate = _blocking(CertClient.load_certificate)
    load_ca_bundle = _blocking(CertClient.load_ca_bundle)
    get_certificates = _blocking(CertClient.get_certificates)
    revoke = _blocking(CertClient.revoke)
    time = _blocking(CertClient.time)
    install = _blocking(CertClient.install)
    rotate = _blocking(CertClient.rotate)

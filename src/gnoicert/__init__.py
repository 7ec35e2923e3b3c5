"""gnoicert: the gNOI CertificateManagement service, target daemon and operator client.

The public library surface is the operator's client (`gnoicert.client`). Its names load on
first use, so `import gnoicert` (and the `gnoicert` command's start-up, which must set
GRPC_VERBOSITY before grpcio loads) does not import grpcio.

    import gnoicert

    options = gnoicert.ChannelOptions.from_files("192.0.2.1:9339", ca_file="ca.pem")
    with gnoicert.SyncCertClient(options) as client:
        for info in client.get_certificates():
            print(info.certificate_id, info.days_left)
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

if _typing.TYPE_CHECKING:
    from gnoicert.client.ca import LocalCA
    from gnoicert.client.channel import ChannelOptions
    from gnoicert.client.errors import (
        FailureKind,
        GnoiCertError,
        InputError,
        PreflightFailed,
        ProtocolError,
        RotateAborted,
        RpcFailed,
        SignerError,
        ValidationFailed,
    )
    from gnoicert.client.models import (
        CaBundleResult,
        CaInfo,
        CertificateInfo,
        CheckResult,
        CsrCapability,
        CsrParams,
        Endpoint,
        GeneratedCsr,
        InstallResult,
        InstallSpec,
        IssuedCertificate,
        LoadResult,
        PreflightReport,
        RevocationError,
        RevokeResult,
        RotateResult,
        RotateSpec,
        SignedCertificate,
        TargetTime,
    )
    from gnoicert.client.signer import ExternalCommandSigner, Signer
    from gnoicert.client.sync import SyncCertClient
    from gnoicert.client.workflows import CertClient

# Public name -> the module that defines it (explicit, one entry per name).
_EXPORTS: dict[str, str] = {
    "CertClient": "gnoicert.client.workflows",
    "SyncCertClient": "gnoicert.client.sync",
    "ChannelOptions": "gnoicert.client.channel",
    "LocalCA": "gnoicert.client.ca",
    "Signer": "gnoicert.client.signer",
    "ExternalCommandSigner": "gnoicert.client.signer",
    "CsrParams": "gnoicert.client.models",
    "InstallSpec": "gnoicert.client.models",
    "RotateSpec": "gnoicert.client.models",
    "SignedCertificate": "gnoicert.client.models",
    "InstallResult": "gnoicert.client.models",
    "RotateResult": "gnoicert.client.models",
    "CheckResult": "gnoicert.client.models",
    "PreflightReport": "gnoicert.client.models",
    "CertificateInfo": "gnoicert.client.models",
    "Endpoint": "gnoicert.client.models",
    "RevokeResult": "gnoicert.client.models",
    "RevocationError": "gnoicert.client.models",
    "GeneratedCsr": "gnoicert.client.models",
    "LoadResult": "gnoicert.client.models",
    "CaBundleResult": "gnoicert.client.models",
    "CsrCapability": "gnoicert.client.models",
    "TargetTime": "gnoicert.client.models",
    "CaInfo": "gnoicert.client.models",
    "IssuedCertificate": "gnoicert.client.models",
    "GnoiCertError": "gnoicert.client.errors",
    "RpcFailed": "gnoicert.client.errors",
    "RotateAborted": "gnoicert.client.errors",
    "FailureKind": "gnoicert.client.errors",
    "ValidationFailed": "gnoicert.client.errors",
    "PreflightFailed": "gnoicert.client.errors",
    "ProtocolError": "gnoicert.client.errors",
    "SignerError": "gnoicert.client.errors",
    "InputError": "gnoicert.client.errors",
}

__all__ = (
    "__version__",
    # client
    "CertClient",
    "SyncCertClient",
    "ChannelOptions",
    # signing
    "Signer",
    "LocalCA",
    "ExternalCommandSigner",
    "SignedCertificate",
    # inputs
    "CsrParams",
    "InstallSpec",
    "RotateSpec",
    # results
    "InstallResult",
    "RotateResult",
    "CheckResult",
    "PreflightReport",
    "CertificateInfo",
    "Endpoint",
    "RevokeResult",
    "RevocationError",
    "GeneratedCsr",
    "LoadResult",
    "CaBundleResult",
    "CsrCapability",
    "TargetTime",
    "CaInfo",
    "IssuedCertificate",
    # errors
    "GnoiCertError",
    "RpcFailed",
    "RotateAborted",
    "FailureKind",
    "ValidationFailed",
    "PreflightFailed",
    "ProtocolError",
    "SignerError",
    "InputError",
)


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gnoicert' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

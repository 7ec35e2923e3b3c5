"""What each `gnoicert` subcommand does: parsed arguments in, a result model out.

Every RPC command opens one CertClient on one event loop (asyncio.run) and closes it; the CA
commands need no target. Printing happens in one place (`run_command`), through output.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gnoicert.cli.output import make_console, print_result
from gnoicert.client.certinfo import load_csr, san_strings, subject_text
from gnoicert.client.channel import ChannelOptions, read_pem_file
from gnoicert.client.errors import InputError
from gnoicert.client.listing import CertificateListing
from gnoicert.client.workflows import CertClient
from gnoicert.pki.crypto import fingerprint, load_certificates, subject_fields
from gnoicert.pki.errors import BadEncoding

if TYPE_CHECKING:
    from gnoicert.client.models import (
        CaBundleResult,
        CaInfo,
        CsrCapability,
        CsrParams,
        GeneratedCsr,
        InstallResult,
        InstallSpec,
        IssuedCertificate,
        LoadResult,
        RevokeResult,
        RotateResult,
        RotateSpec,
        TargetTime,
    )
    from gnoicert.client.signer import Signer


def read_password(args: argparse.Namespace) -> str | None:
    """The password: --password-file, else --password-env, else a prompt on a terminal.

    Never from the command line (it would show in `ps` and shell history).
    """
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"cannot read the password file {args.password_file}: {exc.strerror or exc}"
            ) from None
        return text.splitlines()[0] if text else ""
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise InputError(f"the environment variable {args.password_env} is not set")
        return value
    if not args.username:
        return None
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"password for {args.username}@{args.target}: ")
    raise InputError(
        "--username needs a password and there is no terminal to ask on: use "
        "--password-env VAR or --password-file FILE"
    )


def channel_options(args: argparse.Namespace) -> ChannelOptions:
    if not args.target:
        raise InputError("no target: give --target HOST:PORT")
    return ChannelOptions.from_settings(args.target, args, password=read_password(args))


def csr_params(args: argparse.Namespace) -> CsrParams:
    from gnoicert.client.models import CsrParams

    return CsrParams(**subject_fields(args), key_type=args.key_type, key_size=args.key_size)


def make_signer(args: argparse.Namespace) -> Signer:
    shared: Signer | None = getattr(args, "shared_signer", None)  # a fleet run's, made once
    if shared is not None:
        return shared
    # Imported here: `get` and `time` never sign (the start-up budget, docs/decisions.md).
    from gnoicert.client.ca import LocalCA
    from gnoicert.client.signer import ExternalCommandSigner

    if args.ca_dir:
        return LocalCA.open(args.ca_dir, days=args.days)
    if args.sign_command:
        return ExternalCommandSigner(args.sign_command, timeout=args.signer_timeout)
    raise InputError(f"{args.command} needs a signer: --ca-dir DIR or --sign-command CMD")


def _read_optional(path: str | None, what: str) -> bytes:
    return read_pem_file(path, what) if path else b""


_Spec = TypeVar("_Spec", "InstallSpec", "RotateSpec")


def _spec(kind: type[_Spec], args: argparse.Namespace, **specific: Any) -> _Spec:
    """The options Install and Rotate share, plus the ones `specific` to each."""
    return kind(
        certificate_id=args.certificate_id,
        csr=csr_params(args),
        signer=make_signer(args),
        ca_bundle_pem=_read_optional(args.ca_bundle, "CA bundle"),
        key_source=args.key_source,
        preflight=not args.no_preflight,
        dry_run=args.dry_run,
        **specific,
    )


def install_spec(args: argparse.Namespace) -> InstallSpec:
    from gnoicert.client.models import InstallSpec

    return _spec(InstallSpec, args, require_san=args.require_san)


def rotate_spec(args: argparse.Namespace) -> RotateSpec:
    from gnoicert.client.models import RotateSpec

    checked = not args.no_tls_check
    return _spec(
        RotateSpec,
        args,
        require_san=checked,
        check_served_certificate=checked,
        expect_name=args.expect_name,
    )


# -- RPC commands ---------------------------------------------------------------------------------


async def cmd_install(client: CertClient, args: argparse.Namespace) -> InstallResult:
    return await client.install(install_spec(args))


async def cmd_rotate(client: CertClient, args: argparse.Namespace) -> RotateResult:
    return await client.rotate(rotate_spec(args))


async def cmd_revoke(client: CertClient, args: argparse.Namespace) -> RevokeResult:
    result = await client.revoke(args.certificate_ids)
    if args.strict and result.not_present:
        result = dataclasses.replace(result, ok=False)
    return result


async def cmd_get(client: CertClient, args: argparse.Namespace) -> CertificateListing:
    certificates = await client.get_certificates()
    if args.expiring_within is not None:
        certificates = tuple(
            info
            for info in certificates
            if info.days_left is not None and info.days_left <= args.expiring_within
        )
    saved_to = None
    if args.save and (certificates or args.expiring_within is None):
        directory = Path(args.save)
        directory.mkdir(parents=True, exist_ok=True)
        for info in certificates:
            # IDs are [A-Za-z0-9._-] on conforming targets; keep any other target's IDs harmless.
            name = "".join(c if c.isalnum() or c in "._-" else "_" for c in info.certificate_id)
            (directory / f"{name.lstrip('.') or 'certificate'}.pem").write_text(
                info.certificate_pem, encoding="ascii"
            )
        saved_to = str(directory)
    return CertificateListing(
        target=client.target,
        certificates=certificates,
        expiring_within_days=args.expiring_within,
        saved_to=saved_to,
    )


async def cmd_generate_csr(client: CertClient, args: argparse.Namespace) -> GeneratedCsr:
    result = await client.generate_csr(args.certificate_id, csr_params(args))
    if args.out:
        Path(args.out).write_text(result.csr_pem, encoding="ascii")
        result = dataclasses.replace(result, saved_to=args.out)
    return result


async def cmd_load(client: CertClient, args: argparse.Namespace) -> LoadResult:
    return await client.load_certificate(
        args.certificate_id,
        read_pem_file(args.certificate_file, "certificate"),
        private_key_pem=_read_optional(args.private_key, "private key") or None,
        ca_bundle_pem=_read_optional(args.ca_bundle, "CA bundle"),
        preflight=not args.no_preflight,
        dry_run=args.dry_run,
        force=args.force,
    )


async def cmd_load_ca(client: CertClient, args: argparse.Namespace) -> CaBundleResult:
    return await client.load_ca_bundle(read_pem_file(args.bundle_file, "CA bundle"))


async def cmd_can_generate(client: CertClient, args: argparse.Namespace) -> CsrCapability:
    return await client.can_generate_csr(key_size=args.key_size)


async def cmd_time(client: CertClient, args: argparse.Namespace) -> TargetTime:
    return await client.time()


_RPC_COMMANDS: dict[str, Callable[[CertClient, argparse.Namespace], Awaitable[Any]]] = {
    "install": cmd_install,
    "rotate": cmd_rotate,
    "revoke": cmd_revoke,
    "get": cmd_get,
    "generate-csr": cmd_generate_csr,
    "load": cmd_load,
    "load-ca": cmd_load_ca,
    "can-generate-csr": cmd_can_generate,
    "time": cmd_time,
}


async def run_for_target(client: CertClient, args: argparse.Namespace) -> Any:
    """One RPC command on a connected client (a fleet run calls this per target)."""
    return await _RPC_COMMANDS[args.command](client, args)


async def _run_rpc(args: argparse.Namespace) -> Any:
    options = channel_options(args)
    async with await CertClient.connect(options) as client:
        return await _RPC_COMMANDS[args.command](client, args)


# -- CA commands ----------------------------------------------------------------------------------


def cmd_ca_init(args: argparse.Namespace) -> CaInfo:
    from gnoicert.client.ca import LocalCA

    ca = LocalCA.init(
        args.directory,
        intermediate=args.intermediate,
        key_type=args.key_type,
        key_size=args.key_size,
        common_name=args.common_name,
        days=args.days,
        force=args.force,
    )
    return ca.info()


def _issued(certificate_pem: bytes, chain_pem: bytes, path: str | None) -> IssuedCertificate:
    from gnoicert.client.models import IssuedCertificate

    try:
        leaf = load_certificates(certificate_pem)[0]
    except BadEncoding as exc:
        raise InputError(str(exc)) from None
    return IssuedCertificate(
        subject=subject_text(leaf),
        sans=san_strings(leaf.extensions),
        fingerprint=fingerprint(leaf),
        not_after=leaf.not_valid_after_utc,
        certificate_pem=certificate_pem.decode("ascii"),
        chain_pem=chain_pem.decode("ascii"),
        path=path,
    )


def cmd_ca_sign(args: argparse.Namespace) -> IssuedCertificate:
    from gnoicert.client.ca import LocalCA, write_public_file

    ca = LocalCA.open(args.directory, days=args.days)
    try:
        csr_pem = Path(args.csr_file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the CSR {args.csr_file}: {exc.strerror or exc}") from None
    try:
        load_csr(csr_pem)
    except BadEncoding as exc:
        raise InputError(f"{args.csr_file}: {exc}") from None
    signed = ca.sign_csr(csr_pem, days=args.days)
    if args.out:
        write_public_file(Path(args.out), signed.certificate_pem + signed.chain_pem, replace=True)
    return _issued(signed.certificate_pem, signed.chain_pem, args.out)


def cmd_ca_issue(args: argparse.Namespace) -> IssuedCertificate:
    from gnoicert.client.ca import LocalCA, write_private_file, write_public_file

    ca = LocalCA.open(args.directory, days=args.days)
    key_pem, signed = ca.issue(
        args.common_name,
        dns_names=args.dns,
        ip_addresses=args.ip,
        key_type=args.key_type,
        days=args.days,
    )
    write_private_file(Path(args.out_key), key_pem, replace=True)
    write_public_file(Path(args.out_cert), signed.certificate_pem + signed.chain_pem, replace=True)
    return _issued(signed.certificate_pem, signed.chain_pem, args.out_cert)


_CA_COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "init": cmd_ca_init,
    "sign": cmd_ca_sign,
    "issue": cmd_ca_issue,
}


# -- dispatch -------------------------------------------------------------------------------------


def execute(args: argparse.Namespace, *, structured: bool = False) -> Any:
    """Run the command; return its result model (raises the client's errors). A structured
    output (json, yaml) keeps stdout for the document: the demo does not narrate."""
    if args.command == "ca":
        return _CA_COMMANDS[args.ca_command](args)
    if args.command == "demo":
        from gnoicert.cli.demo import run_demo

        return run_demo(
            workdir=Path(args.workdir) if args.workdir else None,
            daemon_command=args.daemon,
            narrate=None if structured else _narrator(),
            timeout=args.timeout,
        )
    return asyncio.run(_run_rpc(args))


def _narrator() -> Callable[[str], None]:
    console = make_console()

    def narrate(text: str) -> None:
        console.print(text, markup=False)

    return narrate


def exit_code_of(result: Any) -> int:
    """Results that are answers but not successes: a revocation with per-ID errors."""
    if isinstance(result, CertificateListing):
        # Like grep, a filter says whether it matched: 4 when something expires soon.
        return 4 if result.expiring_within_days is not None and result.certificates else 0
    ok = getattr(result, "ok", True)
    return 0 if ok is True else 1


def run_command(args: argparse.Namespace, fmt: str) -> int:
    """Run the command and print its result in `fmt` (an output format, or "auto")."""
    from gnoicert.cli.documents import command_name

    result = execute(args, structured=fmt in ("json", "yaml"))
    code = exit_code_of(result)
    print_result(
        result,
        fmt=fmt,
        command=command_name(args),
        exit_code=code,
        details=bool(getattr(args, "details", False)),
    )
    return code

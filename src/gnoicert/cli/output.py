"""Rendering results: JSON for machines (every model), tables and short lines for people.

rich is imported only when a table or styled text is drawn, so `gnoicert --json ...` and the
library never pay for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gnoicert.client.models import (
    CaBundleResult,
    CaInfo,
    CertificateInfo,
    CertificateListing,
    CheckResult,
    CsrCapability,
    DemoResult,
    GeneratedCsr,
    InstallResult,
    IssuedCertificate,
    LoadResult,
    PreflightReport,
    RevokeResult,
    RotateResult,
    TargetTime,
)

if TYPE_CHECKING:
    from rich.console import Console

_PIPE_WIDTH = 160


def to_jsonable(value: Any) -> Any:
    """Plain JSON values for a model: datetimes as ISO 8601, bytes as text, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if not callable(getattr(value, field.name)) and field.name != "signer"
        }
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


def make_console(stream: IO[str] | None = None) -> Console:
    """A console for people; when not writing to a terminal, wide enough that tables of
    fingerprints and SANs are not folded."""
    from rich.console import Console

    console = Console(file=stream, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, _PIPE_WIDTH)
    return console


def render(result: Any, console: Console) -> None:
    """Human output for any result model."""
    renderer = _RENDERERS.get(type(result))
    if renderer is None:
        console.print(dumps(result), markup=False)
        return
    renderer(result, console)


def _date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


_MARKS = {
    "pass": ("ok", "green"),
    "fail": ("FAILED", "red"),
    "warn": ("warn", "yellow"),
    "skip": ("skip", ""),
}


def _mark(status: str) -> str:
    label, colour = _MARKS[status]
    padded = f"{label:<6}"
    return f"[{colour}]{padded}[/]" if colour else padded


def _checks(title: str, checks: tuple[CheckResult, ...], console: Console) -> None:
    from rich.markup import escape

    if not checks:
        return
    console.print(f"{title}:")
    for check in checks:
        console.print(f"  {_mark(check.status)} {check.name}: {escape(check.detail)}")


def _preflight(report: PreflightReport, console: Console) -> None:
    _checks("preflight", report.checks, console)


def _install(result: InstallResult, console: Console) -> None:
    from rich.markup import escape

    _preflight(result.preflight, console)
    if result.dry_run:
        console.print(
            f"dry run: {result.certificate_id} passed preflight for {result.target}; "
            "nothing was installed",
            markup=False,
        )
        return
    bundle = f", CA bundle of {result.ca_bundle_size} loaded" if result.ca_bundle_size else ""
    console.print(
        f"installed [bold]{escape(result.certificate_id)}[/] on {result.target}: "
        f"{escape(result.subject)}, key made by the {result.key_source}{bundle}"
    )
    console.print(f"  sha256 {result.fingerprint}, valid until {_date(result.not_after)}")


def _rotate(result: RotateResult, console: Console) -> None:
    from rich.markup import escape

    _preflight(result.preflight, console)
    if result.dry_run:
        console.print(
            f"dry run: {result.certificate_id} passed preflight for {result.target}; "
            "nothing was rotated",
            markup=False,
        )
        return
    _checks("validation", result.validation, console)
    bundle = f", CA bundle of {result.ca_bundle_size} loaded" if result.ca_bundle_size else ""
    console.print(
        f"rotated [bold]{escape(result.certificate_id)}[/] on {result.target} and finalized: "
        f"{escape(result.subject)}, key made by the {result.key_source}{bundle}"
    )
    console.print(f"  sha256 {result.fingerprint}, valid until {_date(result.not_after)}")


def _endpoints(info: CertificateInfo) -> str:
    return ", ".join(f"{e.endpoint} ({e.type})" for e in info.endpoints) or "-"


def _days(info: CertificateInfo) -> str:
    if info.days_left is None:
        return "-"
    if info.days_left < 0:
        return f"[red]expired[/] ({info.days_left})"
    if info.days_left < 30:
        return f"[yellow]{info.days_left}[/]"
    return str(info.days_left)


def _listing(listing: CertificateListing, console: Console, *, details: bool = False) -> None:
    from rich.markup import escape
    from rich.table import Table

    certificates = listing.certificates
    if listing.expiring_within_days is not None:
        console.print(
            f"{len(certificates)} certificate(s) expiring within "
            f"{listing.expiring_within_days} days on {listing.target}"
        )
    if not certificates:
        console.print("no certificates")
    elif details:
        for info in certificates:
            _details(info, console)
    else:
        table = Table(title=f"certificates on {listing.target}", title_justify="left")
        for column in (
            "ID",
            "Common name",
            "SANs",
            "Key",
            "Not after",
            "Days left",
            "Endpoints",
        ):
            table.add_column(column)
        for info in certificates:
            if info.parse_error:
                table.add_row(escape(info.certificate_id), f"[red]{escape(info.parse_error)}[/]")
                continue
            table.add_row(
                escape(info.certificate_id),
                escape(info.common_name),
                escape(", ".join(info.sans)) or "-",
                f"{info.key_type}-{info.key_size}",
                info.not_after.strftime("%Y-%m-%d") if info.not_after else "-",
                _days(info),
                escape(_endpoints(info)),
            )
        console.print(table)
    if listing.saved_to:
        console.print(f"saved {len(certificates)} certificate(s) to {listing.saved_to}")


def _details(info: CertificateInfo, console: Console) -> None:
    from rich.markup import escape

    console.print(f"[bold]{escape(info.certificate_id)}[/]")
    rows = [
        ("subject", info.subject),
        ("SANs", ", ".join(info.sans) or "-"),
        ("issuer", info.issuer),
        ("key", f"{info.key_type} {info.key_size} bits"),
        ("not before", _date(info.not_before)),
        ("not after", _date(info.not_after)),
        ("days left", "-" if info.days_left is None else str(info.days_left)),
        ("sha256", info.fingerprint),
        ("serial", info.serial),
        ("chain", f"{info.chain_length} certificate(s)"),
        ("endpoints", _endpoints(info)),
        ("modified", _date(info.modified)),
    ]
    if info.parse_error:
        rows = [("error", info.parse_error)]
    for label, value in rows:
        console.print(f"  {label:<11} {escape(value)}")


def _revoke(result: RevokeResult, console: Console) -> None:
    from rich.markup import escape

    if result.revoked:
        console.print(f"revoked on {result.target}: {', '.join(result.revoked)}", markup=False)
    for error in result.errors:
        console.print(
            f"[red]not revoked[/] {escape(error.certificate_id)}: {escape(error.message)}"
        )


def _pem_or_where(pem: str, saved_to: str | None, where: str, console: Console) -> None:
    """The PEM itself on standard output, or, when it went to a file, a line saying `where`."""
    console.print(where if saved_to else pem.rstrip(), markup=False)


def _csr(result: GeneratedCsr, console: Console) -> None:
    where = (
        f"CSR for {result.certificate_id} ({result.subject}, {result.key_type}-"
        f"{result.key_size}) written to {result.saved_to}"
    )
    _pem_or_where(result.csr_pem, result.saved_to, where, console)


def _load(result: LoadResult, console: Console) -> None:
    _preflight(result.preflight, console)
    if result.dry_run:
        console.print(
            f"dry run: {result.certificate_id} passed preflight for {result.target}; "
            "nothing was loaded",
            markup=False,
        )
        return
    bundle = f", CA bundle of {result.ca_bundle_size} loaded" if result.ca_bundle_size else ""
    console.print(
        f"loaded {result.certificate_id} on {result.target} (sha256 {result.fingerprint}){bundle}",
        markup=False,
    )


def _bundle(result: CaBundleResult, console: Console) -> None:
    console.print(f"loaded a CA bundle of {result.size} certificate(s) on {result.target}")
    for subject, fp in zip(result.subjects, result.fingerprints, strict=True):
        console.print(f"  {subject} (sha256 {fp})", markup=False)


def _capability(result: CsrCapability, console: Console) -> None:
    answer = "can" if result.can_generate else "cannot"
    console.print(
        f"{result.target} {answer} generate a CSR ({result.key_type}, "
        f"{result.certificate_type}, {result.key_size} bits)"
    )


def _time(result: TargetTime, console: Console) -> None:
    console.print(
        f"{result.target}: {result.time.isoformat()} (offset {result.offset_s:+.3f} s, "
        f"round trip {result.round_trip_s * 1000:.1f} ms)"
    )


def _ca(result: CaInfo, console: Console) -> None:
    console.print(
        f"CA in {result.directory}: {result.root_subject} ({result.key_type})", markup=False
    )
    if result.intermediate_subject:
        console.print(f"  issuing through {result.intermediate_subject}", markup=False)
    console.print(
        f"  CA bundle to send: {result.bundle_path} (sha256 {result.root_fingerprint})",
        markup=False,
    )


def _issued(result: IssuedCertificate, console: Console) -> None:
    where = (
        f"signed {result.subject} ({', '.join(result.sans) or 'no SANs'}), valid until "
        f"{_date(result.not_after)}: {result.path}"
    )
    _pem_or_where(result.certificate_pem + result.chain_pem, result.path, where, console)


def _demo(result: DemoResult, console: Console) -> None:
    verdict = "[green]finished[/]" if result.ok else "[red]failed[/]"
    console.print(f"demo {verdict} in {result.elapsed_s:.1f} s ({len(result.steps)} steps)")


_RENDERERS: dict[type, Callable[[Any, Console], None]] = {
    InstallResult: _install,
    RotateResult: _rotate,
    CertificateListing: _listing,
    RevokeResult: _revoke,
    GeneratedCsr: _csr,
    LoadResult: _load,
    CaBundleResult: _bundle,
    CsrCapability: _capability,
    TargetTime: _time,
    CaInfo: _ca,
    IssuedCertificate: _issued,
    DemoResult: _demo,
}


def render_listing(listing: CertificateListing, console: Console, *, details: bool) -> None:
    _listing(listing, console, details=details)

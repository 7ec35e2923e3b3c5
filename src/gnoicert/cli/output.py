"""Rendering results: JSON for machines (every model), tables and short lines for people.

rich is imported only when a table or styled text is drawn, so `gnoicert --json ...` and the
library never pay for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gnoicert.client.listing import CertificateInfo, CertificateListing
from gnoicert.common.constants import CA_BUNDLE_ID

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from gnoicert.client.models import (
        CaBundleResult,
        CaInfo,
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
    kind = type(result)
    renderer = _RENDERERS.get(kind.__name__) if kind.__module__.startswith("gnoicert.") else None
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


def _dry_run(result: InstallResult | RotateResult | LoadResult, console: Console) -> bool:
    """Print the preflight checks and, for a dry run, its verdict and what it could not check.

    True when it was a dry run: nothing was sent that changes the target, so nothing follows.
    """
    _preflight(result.preflight, console)
    if not result.dry_run:
        return False
    console.print(
        f"dry run: {result.certificate_id} passed the checks for {result.target}; nothing was "
        "sent that changes the target",
        markup=False,
    )
    if result.not_checked:
        console.print("not checked:")
        for item in result.not_checked:
            console.print(f"  - {item}", markup=False)
    return True


def _bundle_loaded(size: int) -> str:
    return f", CA bundle of {size} loaded" if size else ""


_NEXT_WITH_CERTIFICATE = (
    "the target now requires a client certificate that chains to its CA bundle: pass --cert "
    "FILE --key FILE on the next command (gnoicert ca issue makes one)"
)
_NEXT_WITHOUT_CERTIFICATE = (
    "the target no longer requires client certificates: --cert and --key are not needed "
    "any more (the username and password still are)"
)


def _mode(required: bool | None, *, expected: bool, console: Console) -> None:
    """Say what a bundle change did to the authentication mode, and what the next command
    needs (docs/behaviour.md §1, "Authentication mode")."""
    if required is None:
        console.print(
            "could not tell whether the target now requires client certificates", markup=False
        )
    elif required == expected:
        text = _NEXT_WITH_CERTIFICATE if required else _NEXT_WITHOUT_CERTIFICATE
        console.print(text, markup=False)
    elif required:
        console.print(
            "the target still requires client certificates (--cert and --key)", markup=False
        )
    else:
        console.print(
            "the target still accepts connections without a client certificate", markup=False
        )


def _install(result: InstallResult, console: Console) -> None:
    from rich.markup import escape

    if _dry_run(result, console):
        return
    bundle = _bundle_loaded(result.ca_bundle_size)
    console.print(
        f"installed [bold]{escape(result.certificate_id)}[/] on {result.target}: "
        f"{escape(result.subject)}, key made by the {result.key_source}{bundle}"
    )
    console.print(f"  sha256 {result.fingerprint}, valid until {_date(result.not_after)}")
    if result.ca_bundle_size:
        _mode(result.client_certificates_required, expected=True, console=console)


def _rotate(result: RotateResult, console: Console) -> None:
    from rich.markup import escape

    for note in result.notes:
        console.print(f"note: {note} (--no-tls-check inferred)", markup=False)
    if _dry_run(result, console):
        return
    _checks("validation", result.validation, console)
    bundle = _bundle_loaded(result.ca_bundle_size)
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
        console.print(listing_table(listing, console.width))
    if listing.saved_to:
        console.print(f"saved {len(certificates)} certificate(s) to {listing.saved_to}")
    elif not certificates and listing.expiring_within_days is not None:
        console.print("nothing to save", style="dim")


# Columns of the certificate table, most important first: when the console is too narrow, the
# last ones are left out rather than any ID, date or fingerprint prefix being cut.
# (header, kept whole, cell)
_FINGERPRINT_PREFIX = 12
_COLUMNS: tuple[tuple[str, bool, Callable[[CertificateInfo], str]], ...] = (
    ("ID", True, lambda info: info.certificate_id),
    (
        "Not after",
        True,
        lambda info: info.not_after.strftime("%Y-%m-%d") if info.not_after else "-",
    ),
    ("Days left", True, lambda info: _days(info)),
    ("Key", True, lambda info: f"{info.key_type}-{info.key_size}"),
    ("SHA-256", True, lambda info: info.fingerprint[:_FINGERPRINT_PREFIX] or "-"),
    ("SANs", False, lambda info: ", ".join(info.sans) or "-"),
    ("Common name", False, lambda info: info.common_name or "-"),
    ("Endpoints", False, _endpoints),
)
# A wrapped column still needs this many cells to be readable.
_MIN_WRAPPED = 12


def listing_table(listing: CertificateListing, width: int) -> Table:
    """The certificates as a table that fits `width` cells: whole IDs, dates and fingerprint
    prefixes; SANs, names and endpoints wrap, and the least important columns are dropped."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    rows = [
        [
            cell(info) if header == "Days left" else escape(cell(info))
            for header, _, cell in _COLUMNS
        ]
        for info in listing.certificates
        if not info.parse_error
    ]

    def needed(index: int) -> int:
        header, whole, _ = _COLUMNS[index]
        longest = max([len(header), *(Text.from_markup(row[index]).cell_len for row in rows)])
        return longest if whole else min(longest, max(_MIN_WRAPPED, len(header)))

    kept = list(range(len(_COLUMNS)))
    # Each column costs its padding (2) and a border (1); one more border closes the table.
    while len(kept) > 1 and sum(needed(i) + 3 for i in kept) + 1 > width:
        kept.pop()
    table = Table(title=f"certificates on {listing.target}", title_justify="left")
    for index in kept:
        header, whole, _ = _COLUMNS[index]
        if whole:
            table.add_column(header, no_wrap=True, min_width=needed(index))
        else:
            table.add_column(header, overflow="fold", min_width=min(needed(index), len(header)))
    # A certificate that does not parse shows its error in the first column that wraps.
    error_column = next(
        (n for n, i in enumerate(kept) if not _COLUMNS[i][1]), min(1, len(kept) - 1)
    )
    row_iter = iter(rows)
    for info in listing.certificates:
        if info.parse_error:
            cells = [escape(info.certificate_id)] + [""] * (len(kept) - 1)
            cells[error_column] = f"[red]{escape(info.parse_error)}[/]"
            table.add_row(*cells)
            continue
        row = next(row_iter)
        table.add_row(*(row[index] for index in kept))
    if len(kept) < len(_COLUMNS):
        left_out = ", ".join(_COLUMNS[i][0] for i in range(len(_COLUMNS)) if i not in kept)
        table.caption = f"not shown at this width: {left_out} (see --details)"
        table.caption_justify = "left"
    return table


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
    if result.not_present:
        console.print(
            f"not present on {result.target} (nothing to revoke): {', '.join(result.not_present)}",
            markup=False,
        )
    if result.client_certificates_required is not None or CA_BUNDLE_ID in result.revoked:
        _mode(result.client_certificates_required, expected=False, console=console)
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
    if _dry_run(result, console):
        return
    bundle = _bundle_loaded(result.ca_bundle_size)
    console.print(
        f"loaded {result.certificate_id} on {result.target} (sha256 {result.fingerprint}){bundle}",
        markup=False,
    )


def _bundle(result: CaBundleResult, console: Console) -> None:
    console.print(f"loaded a CA bundle of {result.size} certificate(s) on {result.target}")
    for subject, fp in zip(result.subjects, result.fingerprints, strict=True):
        console.print(f"  {subject} (sha256 {fp})", markup=False)
    _mode(result.client_certificates_required, expected=bool(result.size), console=console)


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


# Keyed by class name: the result types of other commands are not imported to print a listing.
_RENDERERS: dict[str, Callable[[Any, Console], None]] = {
    "InstallResult": _install,
    "RotateResult": _rotate,
    "CertificateListing": _listing,
    "RevokeResult": _revoke,
    "GeneratedCsr": _csr,
    "LoadResult": _load,
    "CaBundleResult": _bundle,
    "CsrCapability": _capability,
    "TargetTime": _time,
    "CaInfo": _ca,
    "IssuedCertificate": _issued,
    "DemoResult": _demo,
}


def render_listing(listing: CertificateListing, console: Console, *, details: bool) -> None:
    _listing(listing, console, details=details)


# -- output formats -------------------------------------------------------------------------------


def format_document(document: dict[str, Any], fmt: str) -> str:
    """A document as JSON or YAML text (YAML loads only when asked for)."""
    if fmt == "yaml":
        import yaml

        text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return text.rstrip("\n")
    return json.dumps(document, indent=2)


def print_result(
    result: Any, *, fmt: str, command: str | None, exit_code: int, details: bool = False
) -> None:
    """A finished command's result on stdout, in the format asked for."""
    from gnoicert.cli.documents import AUTO, is_structured, success_document

    if is_structured(fmt):
        document = success_document(
            command, to_jsonable(result), exit_code=exit_code, details=details
        )
        print(format_document(document, fmt))
        return
    plain = fmt == "tsv" or (fmt == AUTO and not _may_be_terminal())
    if isinstance(result, CertificateListing) and plain:
        _listing_tsv(result, details=details)
        return
    if fmt == "tsv":
        header, rows = _tsv_rows(to_jsonable(result))
        _print_tsv(header, rows)
        return
    console = make_console()
    if isinstance(result, CertificateListing) and fmt == AUTO and not console.is_terminal:
        _listing_tsv(result, details=details)
    elif isinstance(result, CertificateListing):
        _listing(result, console, details=details)
    else:
        render(result, console)


def _may_be_terminal() -> bool:
    """False only when rich would certainly not see a terminal: stdout is not a TTY and no
    variable forces one. A script's `gnoicert get` then prints TSV without loading rich."""
    variables = ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_COMPATIBLE")
    forced = any(os.environ.get(name) for name in variables)
    return forced or sys.stdout.isatty()


def _tsv_cell(value: Any) -> str:
    """One field for grep and awk: lists joined by commas, no tabs or newlines, "-" for none."""
    if isinstance(value, list):
        value = ",".join(
            f"{item['endpoint']}:{item['type']}" if isinstance(item, dict) else str(item)
            for item in value
        )
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())


def _print_tsv(header: list[str], rows: list[list[str]]) -> None:
    print("\t".join(header))
    for row in rows:
        print("\t".join(row))


def _listing_tsv(listing: CertificateListing, *, details: bool) -> None:
    """One line per certificate, the fields of `get --json` as columns; the notes that are not
    rows (how many matched, where they were saved) go to stderr."""
    from gnoicert.cli.documents import DETAIL_FIELDS

    certificates = to_jsonable(listing.certificates)
    header = [
        field.name
        for field in dataclasses.fields(CertificateInfo)
        if field.name != "certificate_pem" and (details or field.name not in DETAIL_FIELDS)
    ]
    _print_tsv(header, [[_tsv_cell(info[name]) for name in header] for info in certificates])
    if listing.expiring_within_days is not None:
        print(
            f"gnoicert: {len(listing.certificates)} certificate(s) expiring within "
            f"{listing.expiring_within_days} days on {listing.target}",
            file=sys.stderr,
        )
    if listing.saved_to:
        print(
            f"gnoicert: saved {len(listing.certificates)} certificate(s) to {listing.saved_to}",
            file=sys.stderr,
        )


def _tsv_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows of any other result: one per revoked ID or bundle certificate, else a single row of
    its plain fields (PEM text and nested objects are left to --output json)."""
    if "revoked" in result and "errors" in result:
        rows = [[certificate_id, "revoked", "-"] for certificate_id in result["revoked"]]
        rows += [[e["certificate_id"], "error", _tsv_cell(e["message"])] for e in result["errors"]]
        return ["certificate_id", "status", "message"], rows
    if "fingerprints" in result and "subjects" in result:
        pairs = zip(result["subjects"], result["fingerprints"], strict=True)
        return ["subject", "fingerprint"], [[_tsv_cell(s), f] for s, f in pairs]
    header = [
        name
        for name, value in result.items()
        if not name.endswith("_pem")
        and not isinstance(value, dict)
        and not (isinstance(value, list) and value and isinstance(value[0], dict))
    ]
    if "preflight" in result:
        header.append("preflight_ok")
        result = {**result, "preflight_ok": result["preflight"]["ok"]}
    return header, [[_tsv_cell(result[name]) for name in header]]

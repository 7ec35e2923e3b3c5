"""`gnoicert` over many targets: the inventory wiring, the runner, the report and the output.

A fleet run is any RPC command given `--inventory` or more than one `-t`. Each target runs the
same function a single-target run does (commands.py), with its own arguments; its record is the
single-target document plus the fleet fields (client/fleet/report.py). Progress goes to stderr
(a live display on a terminal, one line per target otherwise); the result (a table per target,
the expiring certificates, or the `--json` document) goes to stdout. See docs/operator-guide.md,
"Fleet".
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gnoicert.cli.documents import (
    ID_COMMANDS,
    SCHEMA_VERSION,
    error_document,
    error_fields,
    success_document,
)
from gnoicert.client.errors import InputError
from gnoicert.client.fleet import DEFAULT_CONCURRENCY, DEFAULT_TARGET_TIMEOUT_S
from gnoicert.client.fleet.inventory import (
    CSR_KEYS,
    LAYER_KEYS,
    Target,
    load_inventory,
    resolve_targets,
)
from gnoicert.client.fleet.report import (
    ReportWriter,
    SummaryRecord,
    TargetRecord,
    done_targets,
    not_after_text,
)
from gnoicert.client.fleet.rollout import Rollout
from gnoicert.client.fleet.runner import Ended, FleetRunner, RunResult, exit_code
from gnoicert.client.fleet.shard import parse_shard, take_shard

FLEET_COMMANDS = (
    "get",
    "time",
    "can-generate-csr",
    "install",
    "rotate",
    "revoke",
    "load-ca",
    "generate-csr",
)
CHANGE_COMMANDS = frozenset({"install", "rotate", "revoke", "load-ca"})


def is_fleet(args: argparse.Namespace) -> bool:
    """A fleet run: an inventory, or more than one target."""
    return bool(getattr(args, "inventory", None)) or len(getattr(args, "targets", ())) > 1


def fleet_targets(args: argparse.Namespace) -> tuple[Target, ...]:
    """The targets a fleet command acts on: selected (-t, --limit), sharded (--shard), each
    resolved through the layers: command line > target > groups > defaults > GNOICERT_* >
    configuration file. Raises InputError (exit 2) for a bad inventory or selection."""
    inventory = load_inventory(args.inventory) if args.inventory else None
    overrides: dict[str, Any] = {
        key: value for key, value in getattr(args, "flag_settings", {}).items() if key in LAYER_KEYS
    }
    csr = getattr(args, "csr_flags", None)
    if csr:
        overrides["csr"] = csr
    base = {
        key: value for key, value in getattr(args, "base_settings", {}).items() if key in LAYER_KEYS
    }
    targets = resolve_targets(
        inventory,
        targets=getattr(args, "targets", ()),
        limits=args.limit or (),
        overrides=overrides,
        base=base,
    )
    if args.shard:
        try:
            index, count = parse_shard(args.shard)
        except ValueError as exc:
            raise InputError(str(exc), field="shard", check="invalid") from None
        targets = tuple(take_shard(targets, index, count, name=lambda target: target.name))
    return targets


def rollout_of(args: argparse.Namespace) -> Rollout:
    return Rollout(
        concurrency=args.concurrency or DEFAULT_CONCURRENCY,
        canary=args.canary or 0,
        batch_size=args.batch_size,
        max_failures=args.max_failures,
        pause_s=args.pause or 0.0,
        target_timeout_s=args.target_timeout or DEFAULT_TARGET_TIMEOUT_S,
    )


def target_args(args: argparse.Namespace, target: Target) -> argparse.Namespace:
    """The arguments of one target's run: its address, ID, CSR parameters and output files."""
    own = argparse.Namespace(**vars(args))
    own.target = target.address
    own.server_name = target.server_name
    if args.command in ID_COMMANDS:
        own.certificate_id = args.certificate_id or target.certificate_id
    if hasattr(args, "key_size"):
        params = target.csr_params()
        for key in CSR_KEYS:
            if hasattr(args, key):
                setattr(own, key, getattr(params, key))
    if args.command == "generate-csr":
        own.out = str(Path(args.out) / f"{target.name}.csr")
    if args.command == "get" and args.save:
        own.save = str(Path(args.save) / target.name)
    return own


def _check(args: argparse.Namespace, targets: tuple[Target, ...]) -> None:
    if args.command not in FLEET_COMMANDS:
        raise InputError(
            f"{args.command} acts on one target; over a fleet use one of "
            f"{', '.join(FLEET_COMMANDS)}",
            field="inventory",
            check="not-fleet",
        )
    if args.command in ID_COMMANDS and not args.certificate_id:
        missing = [t.name for t in targets if not t.certificate_id]
        if missing:
            raise InputError(
                f"{args.command} needs a certificate ID: give ID, or certificate_id in the "
                f"inventory (missing for {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''})",
                field="certificate_id",
                check="missing",
            )
    if args.command == "generate-csr" and not args.out:
        raise InputError(
            "generate-csr over several targets writes one CSR per target: give --out DIR",
            field="out",
            check="missing",
        )


# -- records --------------------------------------------------------------------------------------


def target_record(ended: Ended, command: str) -> TargetRecord:
    """The report record of one target: its single-target document plus the fleet fields."""
    from gnoicert.cli.commands import exit_code_of
    from gnoicert.cli.output import to_jsonable
    from gnoicert.client.errors import RpcFailed

    target = ended.target
    code = reason = ""
    if ended.result is not None:
        document = success_document(
            command, to_jsonable(ended.result), exit_code=exit_code_of(ended.result)
        )
    elif ended.error is not None:
        document = _error_document(ended.error, command, target)
        if isinstance(ended.error, RpcFailed):
            code, reason = ended.error.code.name, ended.error.reason
    else:
        error = {"kind": "skipped", "message": "not started: the run stopped early", "hint": ""}
        document = error_document(command, exit_code=5, error=error, target=target.address)
    if ended.resolved:
        document = {**document, "resolved": True}
    result = ended.result
    fingerprint = getattr(result, "fingerprint", None) if command in ID_COMMANDS else None
    return TargetRecord(
        target=target.name,
        address=target.address,
        command=command,
        outcome=ended.outcome,
        code=code,
        reason=reason,
        old_fingerprint=ended.old_fingerprint,
        new_fingerprint=fingerprint if command != "generate-csr" else None,
        not_after=not_after_text(getattr(result, "not_after", None)),
        elapsed_s=round(ended.elapsed_s, 3),
        document=document,
    )


def _error_document(exc: BaseException, command: str, target: Target) -> dict[str, Any]:
    from gnoicert.cli.hints import Dialled, explain
    from gnoicert.cli.main import exit_code_for

    explanation = explain(exc, Dialled(server_name=target.server_name, insecure=target.insecure))
    error = error_fields(exc, message=explanation.summary, hint=explanation.hint)
    return error_document(command, exit_code=exit_code_for(exc), error=error, target=target.address)


# -- the run --------------------------------------------------------------------------------------


def run_fleet(args: argparse.Namespace, fmt: str) -> int:
    """Run the command over the fleet; print the result; return the exit code."""
    from gnoicert.cli.commands import make_signer
    from gnoicert.cli.fleetview import FleetView

    targets = fleet_targets(args)
    _check(args, targets)
    if args.command in ("install", "rotate"):
        args.shared_signer = make_signer(args)  # one CA (or command) for every target
    report_path = args.report or args.resume
    already: frozenset[str] = frozenset()
    if args.resume:
        if Path(args.resume).exists():
            already = done_targets(args.resume)
        targets = tuple(t for t in targets if t.name not in already)
    command = str(args.command)
    view = FleetView(fmt, total=len(targets), command=command, already=len(already))
    records: dict[str, TargetRecord] = {}
    writer = ReportWriter(report_path) if report_path else None

    def ended(end: Ended) -> None:
        record = target_record(end, command)
        records[record.target] = record
        if writer is not None:
            writer.write(record)
        view.ended(end, record)

    runner = FleetRunner(
        targets,
        _operation(args),
        rollout_of(args),
        change=command in CHANGE_COMMANDS,
        watch_id=_watch(args),
        on_start=view.started,
        on_end=ended,
    )
    try:
        with view:
            run = asyncio.run(_run_with_signals(runner))
        summary = SummaryRecord.of(records.values(), command=command, elapsed_s=run.elapsed_s)
        if writer is not None:
            writer.write(summary)
    finally:
        if writer is not None:
            writer.close()
    expiring = _expiring(args, run)
    code = exit_code(run.ended, stopped_by=run.stopped_by, expiring=bool(expiring))
    ordered = [records[t.name] for t in targets]
    view.finish(run, ordered, summary, code, expiring=expiring, already=sorted(already))
    return code


async def _run_with_signals(runner: FleetRunner) -> RunResult:
    """Ctrl-C stops starting targets (a second one cancels those in flight)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, runner.stop)
    except (NotImplementedError, RuntimeError):  # not the main thread: no handler
        return await runner.run()
    try:
        return await runner.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _operation(args: argparse.Namespace) -> Any:
    from gnoicert.cli.commands import run_for_target

    async def operation(client: Any, target: Target) -> Any:
        return await run_for_target(client, target_args(args, target))

    return operation


def _watch(args: argparse.Namespace) -> Any:
    if args.command not in ("install", "rotate") or getattr(args, "dry_run", False):
        return None

    def watch(target: Target) -> str | None:
        return str(args.certificate_id or target.certificate_id or "") or None

    return watch


def _expiring(args: argparse.Namespace, run: RunResult) -> list[tuple[str, Any]]:
    """(target, certificate) for each certificate `get --expiring-within` found."""
    if args.command != "get" or args.expiring_within is None:
        return []
    return [
        (end.target.name, info)
        for end in run.ended
        if end.result is not None
        for info in end.result.certificates
    ]


def fleet_document(
    records: list[TargetRecord], summary: SummaryRecord, code: int, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The `--json` document of a fleet run: the report's records and its summary."""
    fields = summary.to_json()
    fields.pop("record", None)
    return {
        "schema": SCHEMA_VERSION,
        "ok": code in (0, 4),
        "exit_code": code,
        "summary": {**fields, **extra},
        "targets": [record.to_json() for record in records],
    }

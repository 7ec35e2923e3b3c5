"""The versioned machine-readable documents of `gnoicert` (--output json|yaml): one per run.

Every document carries `schema` (SCHEMA_VERSION), `command`, `ok` and `exit_code`; a success
adds the result's fields, a failure adds `error` (see docs/operator-guide.md, "Machine-readable
output"). The JSON Schema of each command's document is in gnoicert/cli/schemas/, shipped with
the package. A document describes one target, so a multi-target run can list them unchanged.

Only the standard library is imported at module level: usage errors are reported from here
before anything heavier loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1

FORMATS = ("table", "json", "yaml", "tsv")
# The default: a table on a terminal; in a pipe, tab-separated text for listings.
AUTO = "auto"
OUTPUT_ENV = "GNOICERT_OUTPUT"

# The commands that make RPCs to a target (one each, or one per target of a fleet).
RPC_COMMANDS = (
    "install",
    "rotate",
    "revoke",
    "get",
    "generate-csr",
    "load",
    "load-ca",
    "can-generate-csr",
    "time",
)
# The commands that name one certificate ID (and report its new fingerprint).
ID_COMMANDS = frozenset({"install", "rotate", "generate-csr"})
# The commands with a schema file of their own (`ca init` is "ca-init").
COMMANDS = (*RPC_COMMANDS, "ca-init", "ca-sign", "ca-issue", "demo")

# Fields of a listed certificate that only `get --details` reports (the rest is the summary a
# table row shows).
DETAIL_FIELDS = ("subject", "issuer", "not_before", "serial", "chain_length", "certificate_pem")


def resolve_format(requested: str | None, environ: Mapping[str, str]) -> str:
    """The output format: the command line's, else GNOICERT_OUTPUT's, else "auto".

    Raises ValueError for a GNOICERT_OUTPUT that names no format.
    """
    if requested is not None:
        return requested
    from_env = environ.get(OUTPUT_ENV, "").strip().lower()
    if not from_env:
        return AUTO
    if from_env not in FORMATS:
        raise ValueError(
            f"{OUTPUT_ENV}={from_env!r} is not an output format (choose from {', '.join(FORMATS)})"
        )
    return from_env


def is_structured(fmt: str) -> bool:
    """Whether the format prints documents (json, yaml), for errors too."""
    return fmt in ("json", "yaml")


def command_name(args: argparse.Namespace | None) -> str | None:
    """The command as documents name it ("ca-init" for `ca init`); None before parsing."""
    command = getattr(args, "command", None)
    if args is None or command is None:
        return None
    if command == "ca":
        return f"ca-{args.ca_command}"
    return str(command)


def schema_text(command: str) -> str:
    """The JSON Schema of a command's document (`error` for the shared error document)."""
    from importlib import resources  # only here: importing it costs every command start-up

    return (resources.files("gnoicert.cli") / "schemas" / f"{command}.schema.json").read_text(
        encoding="utf-8"
    )


def success_document(
    command: str | None, result: dict[str, Any], *, exit_code: int, details: bool = False
) -> dict[str, Any]:
    """The document of a finished command, from its result as plain JSON values.

    `ok` is true when the command did what was asked: exit codes that report a finding rather
    than a failure (the answer "cannot" of can-generate-csr, say) keep it true; the result's own
    `ok` (revoke, demo) decides otherwise.
    """
    fields = dict(result)
    fields.pop("ok", None)
    if command == "get" and not details:
        fields["certificates"] = [
            {key: value for key, value in info.items() if key not in DETAIL_FIELDS}
            for info in fields.get("certificates", [])
        ]
    return {
        "schema": SCHEMA_VERSION,
        "command": command,
        "ok": result.get("ok", True) is True and exit_code in _SUCCESS_CODES,
        "exit_code": exit_code,
        **fields,
    }


# 4 is a finding, not a failure (`get --expiring-within` when something matches).
_SUCCESS_CODES = (0, 4)


def error_document(
    command: str | None, *, exit_code: int, error: dict[str, Any], target: str | None = None
) -> dict[str, Any]:
    """The document of a failed run: `error` holds kind, message and hint (and more by kind)."""
    document: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "command": command,
        "ok": False,
        "exit_code": exit_code,
    }
    if target:
        document["target"] = target
    document["error"] = error
    return document


def usage_error(message: str, hint: str) -> dict[str, Any]:
    return {"kind": "usage", "message": message, "hint": hint}


def error_fields(exc: BaseException, *, message: str, hint: str) -> dict[str, Any]:
    """`error` for an exception the client raised: its kind, the summary and hint a person
    reads on stderr, and the machine fields of that kind (gRPC code and reason, checks)."""
    from gnoicert.cli.errors import flag
    from gnoicert.cli.output import to_jsonable
    from gnoicert.client import errors as client_errors

    error: dict[str, Any] = {"kind": "other", "message": message, "hint": hint}
    if isinstance(exc, client_errors.RpcFailed):
        error.update(
            kind="rpc",
            rpc=exc.rpc,
            code=exc.code.name,
            reason=exc.reason,
            details=exc.details,
            failure=str(exc.kind),
        )
    elif isinstance(exc, client_errors.ValidationFailed):
        error.update(kind="validation", checks=to_jsonable(exc.checks))
    elif isinstance(exc, client_errors.PreflightFailed):
        error.update(kind="preflight", checks=to_jsonable(exc.report.checks))
    elif isinstance(exc, client_errors.InputError):
        error["kind"] = "input"
        if flag(exc.field):
            error["option"] = flag(exc.field)
        if exc.check:
            error["check"] = exc.check
    elif isinstance(exc, client_errors.SignerError):
        error["kind"] = "signer"
    elif isinstance(exc, client_errors.ProtocolError):
        error["kind"] = "protocol"
    elif isinstance(exc, OSError):
        error["kind"] = "io"
    elif isinstance(exc, KeyboardInterrupt):
        error["kind"] = "interrupted"
    return error

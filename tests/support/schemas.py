"""The JSON Schema of gnoicert's documents (gnoicert/cli/schemas/), as tests check them.

`validate_document` is called on every document a test's `gnoicert` run prints
(tests/support/cli.py), so the schema files are held against real output of every command the
CLI suites run.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gnoicert.cli.documents import COMMANDS, schema_text

SCHEMA_FILES = (*COMMANDS, "common", "error", "fleet")


@functools.cache
def _registry() -> Registry[Any]:
    """Every schema under its file name: the files refer to each other by relative name."""
    resources = [
        (f"{name}.schema.json", Resource.from_contents(json.loads(schema_text(name)), DRAFT202012))
        for name in SCHEMA_FILES
    ]
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads(schema_text(name))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(
        schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def validate_document(document: Any) -> str:
    """Raise unless the document matches the schema of its command; return that schema's name."""
    assert isinstance(document, dict), document
    command = document.get("command")
    name = "error" if command is None else str(command)
    if "targets" in document and "summary" in document:  # a run over several targets
        name = "fleet"
    assert name in SCHEMA_FILES, f"no schema for command {command!r}"
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{name}.schema.json: {'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )
    return name

"""`gnoicert exporter`: the inventory's targets, then the fleet expiry exporter until a signal.

The work is the library's (gnoicert.client.fleet.exporter); this module only turns the parsed
arguments into targets and prints the address it listens on.
"""

from __future__ import annotations

import argparse
import os

from gnoicert.client.errors import InputError
from gnoicert.client.fleet import DEFAULT_CONCURRENCY
from gnoicert.client.fleet.exporter import parse_listen, serve
from gnoicert.client.fleet.inventory import load_inventory, resolve_targets, split_values


def run_exporter(args: argparse.Namespace) -> int:
    """Exit 0 once SIGINT or SIGTERM stopped it; input errors raise InputError (exit 2)."""
    if not args.inventory:
        raise InputError("the exporter needs --inventory FILE", field="inventory", check="missing")
    try:
        listen = parse_listen(args.listen)
    except ValueError as exc:
        raise InputError(f"--listen: {exc}", field="listen", check="invalid") from None
    inventory = load_inventory(args.inventory)
    targets = resolve_targets(inventory, limits=split_values(args.limit or ()))
    for target in targets:  # a missing password file is a usage error now, not a silent `up 0`
        target.password(os.environ)

    def listening(address: str) -> None:
        print(
            f"listening: {address} (http://{address}/metrics); {len(targets)} targets "
            f"every {args.interval:g} s",
            flush=True,
        )

    serve(
        targets,
        listen=listen,
        interval=args.interval,
        concurrency=args.concurrency or DEFAULT_CONCURRENCY,
        on_listening=listening,
    )
    return 0

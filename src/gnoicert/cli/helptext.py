"""What `gnoicert COMMAND --help` says: a description and examples for every command.

Kept apart from the argument definitions (main.py) so the prose has one home. The examples
assume the connection options come from a config file profile or GNOICERT_* variables (see
`gnoicert --help`); the operator guide (docs/operator-guide.md §4) has the long form.
"""

from __future__ import annotations

from typing import NamedTuple

GLOBAL_NOTE = (
    "connection options (--target, --ca-file, --username, ...) and the config file:\n"
    "  see gnoicert --help; they go before or after the command name."
)


class CommandHelp(NamedTuple):
    """One line for the command list, a paragraph for its own --help, and examples."""

    summary: str
    description: str
    examples: tuple[str, ...]

    def epilog(self, *, connects: bool = True) -> str:
        lines = ["examples:", *(f"  {example}" for example in self.examples)]
        if connects:
            lines += ["", GLOBAL_NOTE]
        return "\n".join(lines)


COMMANDS: dict[str, CommandHelp] = {
    "install": CommandHelp(
        "install a certificate under a new ID",
        "Install a certificate under an ID the target does not hold yet, over one Install\n"
        "stream: the target (or, when it cannot, this client) makes the key pair and CSR, the\n"
        "CSR is signed (--ca-dir or --sign-command), checked (preflight), and loaded with the\n"
        "optional CA bundle. Nothing is committed when a step fails.",
        (
            "gnoicert install gnoi-server --ca-dir ca --cn r1.example.net --ip 192.0.2.1",
            "gnoicert install gnoi-server --ca-dir ca --cn r1 --ca-bundle ca/bundle.pem",
            "gnoicert install web --sign-command ./sign.sh --cn r1 --dry-run",
        ),
    ),
    "rotate": CommandHelp(
        "replace the certificate of an existing ID, with validation",
        "Replace the certificate of an ID the target holds, over one Rotate stream. Before\n"
        "finalizing, a new connection checks that the target serves the new certificate and\n"
        "that it is trusted; when that fails the stream is cancelled and the target rolls\n"
        "back to the old certificate.",
        (
            "gnoicert rotate gnoi-server --ca-dir ca --cn r1.example.net --ip 192.0.2.1",
            "gnoicert rotate client-auth --ca-dir ca --cn r1 --no-tls-check",
            "gnoicert --inventory fleet.yaml --canary 2 --batch-size 10% --max-failures 3 "
            "--report run.jsonl rotate --ca-dir ca",
            "gnoicert --inventory fleet.yaml --resume run.jsonl rotate --ca-dir ca",
        ),
    ),
    "revoke": CommandHelp(
        "revoke certificates by ID",
        "Revoke one or more certificates by ID (RevokeCertificates). The result of each ID\n"
        "is printed; an ID the target did not hold is reported as not present (the target\n"
        "counts it as revoked). Any per-ID error, or with --strict an ID not present, makes\n"
        "the exit code 1.",
        ("gnoicert revoke old-web", "gnoicert revoke web-1 web-2 --json --strict"),
    ),
    "get": CommandHelp(
        "list the certificates on the target",
        "List the certificates the target holds (GetCertificates): ID, subject, expiry and\n"
        "fingerprint, or every field with --details. With --expiring-within DAYS it exits 4\n"
        "when any certificate expires within DAYS (0 when none does), for cron and CI.",
        (
            "gnoicert get",
            "gnoicert get --details",
            "gnoicert get --expiring-within 30 --save expiring/",
            "gnoicert --inventory fleet.yaml --limit core get --expiring-within 30",
        ),
    ),
    "generate-csr": CommandHelp(
        "have the target make a key pair and a CSR (unary)",
        "Ask the target to generate a key pair and a CSR for ID (unary GenerateCSR). The\n"
        "target keeps the key; sign the CSR and load the certificate with `gnoicert load`.",
        (
            "gnoicert generate-csr web --cn r1.example.net --ip 192.0.2.1 --out web.csr",
            "gnoicert --inventory fleet.yaml generate-csr web --cn '{name}.example.net' "
            "--out csrs/",
            "gnoicert ca sign ca web.csr --out web.pem && gnoicert load web web.pem",
        ),
    ),
    "load": CommandHelp(
        "load a signed certificate (unary LoadCertificate)",
        "Load a signed certificate under ID (unary LoadCertificate): for a key the target\n"
        "generated with generate-csr, or with --private-key for a key made elsewhere. The\n"
        "certificate is checked (preflight) first.",
        (
            "gnoicert load web web.pem",
            "gnoicert load web web.pem --private-key web.key --ca-bundle ca/bundle.pem",
        ),
    ),
    "load-ca": CommandHelp(
        "replace the target's CA bundle",
        "Replace the target's CA bundle (LoadCertificateAuthorityBundle). The target refuses\n"
        "a bundle that would not verify its own server certificate.",
        ("gnoicert load-ca ca/bundle.pem",),
    ),
    "can-generate-csr": CommandHelp(
        "ask whether the target can generate a CSR",
        "Ask whether the target can generate a key pair and CSR of this RSA size\n"
        "(CanGenerateCSR). An answer of 'cannot' still exits 0.",
        ("gnoicert can-generate-csr", "gnoicert can-generate-csr --key-size 4096 --json"),
    ),
    "time": CommandHelp(
        "the target's clock (System/Time); a quick reachability check",
        "Read the target's clock (gnoi.system.System/Time) and show its offset from this\n"
        "machine's: a quick check of the connection, TLS and credentials.",
        ("gnoicert time", "gnoicert --profile lab -vv time"),
    ),
    "ca": CommandHelp(
        "a local CA for signing CSRs",
        "A local certificate authority kept in a directory: make it (init), sign CSRs with\n"
        "it (sign), or issue a key and certificate (issue). No target is contacted.",
        (
            "gnoicert ca init ca",
            "gnoicert ca sign ca web.csr --out web.pem",
            "gnoicert ca issue ca operator --out-cert operator.pem --out-key operator.key",
        ),
    ),
    "ca init": CommandHelp(
        "make a root CA in DIR (plus an intermediate with --intermediate)",
        "Make a root CA (and with --intermediate an issuing intermediate) in DIR: the\n"
        "certificates, bundle.pem to load as the target's CA bundle, and the keys (mode 0600).",
        ("gnoicert ca init ca", "gnoicert ca init ca --intermediate --key-type ecdsa --days 1825"),
    ),
    "ca sign": CommandHelp(
        "sign a CSR file with the CA in DIR",
        "Sign a PEM CSR with the CA in DIR; prints the certificate and its chain.",
        ("gnoicert ca sign ca web.csr --out web.pem", "gnoicert ca sign ca web.csr --days 90"),
    ),
    "ca issue": CommandHelp(
        "make a key and certificate (an operator's client certificate for mutual TLS, say)",
        "Make a key pair and a certificate signed by the CA in DIR, for NAME: an operator's\n"
        "client certificate for mutual TLS, or a test server's certificate.",
        (
            "gnoicert ca issue ca operator --out-cert operator.pem --out-key operator.key",
            "gnoicert ca issue ca r1 --dns r1.example.net --ip 192.0.2.1 "
            "--out-cert r1.pem --out-key r1.key",
        ),
    ),
    "demo": CommandHelp(
        "run a target on loopback and the whole lifecycle against it",
        "Start gnoicertd in its factory state on a free 127.0.0.1 port, then go through the\n"
        "lifecycle as an operator would: a CA, install with the first CA bundle (mutual TLS\n"
        "follows), rotate with validation, a client-made key, list, revoke, the audit log.",
        ("gnoicert demo", "gnoicert demo --workdir /tmp/gnoicert-demo"),
    ),
    "lab": CommandHelp(
        "run N provisioned targets on loopback until Ctrl-C (a fleet to try)",
        "Run N gnoicertd targets (dev0001...) in this process, each on its own 127.0.0.1\n"
        "port with its own state under DIR/devices/NAME, provisioned with a lab CA, mutual\n"
        "TLS and user ops (or left in their factory state with --factory). Writes\n"
        "DIR/inventory.yaml, DIR/operator.pem/.key and DIR/password, then prints a line\n"
        "starting 'ready:'. SIGINT or SIGTERM stops every device. DIR is reused.",
        (
            "gnoicert lab --devices 20 --workdir /tmp/lab",
            "gnoicert lab --devices 5 --workdir /tmp/factory-lab --factory",
        ),
    ),
    "report": CommandHelp(
        "work with fleet reports (--report FILE): merge shards and resumed runs",
        "Fleet reports are JSON Lines, one record per target and a summary (see the operator\n"
        "guide, Fleet). `report merge` keeps the last record of each target.",
        ("gnoicert report merge shard-1.jsonl shard-2.jsonl --output all.jsonl",),
    ),
    "exporter": CommandHelp(
        "export every target's certificate expiry to Prometheus",
        "Ask every inventory target for its certificates (GetCertificates) every --interval\n"
        "seconds, at most --concurrency at once, each within its inventory timeout, and serve\n"
        "gnoicert_target_certificate_not_after_seconds, gnoicert_target_up and\n"
        "gnoicert_target_scrape_duration_seconds on http://ADDR/metrics. A target that does\n"
        "not answer is up 0, without certificate series, until it answers again. Prints a\n"
        "line starting 'listening:'; SIGINT or SIGTERM stops it (exit 0).",
        (
            "gnoicert exporter --inventory fleet.yaml",
            "gnoicert exporter --inventory fleet.yaml --listen 127.0.0.1:0 --interval 300",
            "gnoicert exporter --inventory fleet.yaml --limit 'core-*' --listen [::1]:9793",
        ),
    ),
    "completion": CommandHelp(
        "print a shell completion script (bash, zsh, fish or tcsh)",
        "Print a static completion script for SHELL; nothing runs at shell start-up\n"
        "beyond sourcing it.",
        (
            "gnoicert completion bash > ~/.local/share/bash-completion/completions/gnoicert",
            "gnoicert completion zsh > ~/.zfunc/_gnoicert  # with fpath+=~/.zfunc",
            "gnoicert completion fish > ~/.config/fish/completions/gnoicert.fish",
        ),
    ),
}

"""gnoicertd as a real process: crash recovery (kill -9), signals (SIGTERM drain, SIGHUP
reload), the command line, and what a real run leaves on disk and in the logs."""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shlex
import signal
import stat
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from gnoicert import __version__
from gnoicert.daemon import config as config_module
from gnoicert.daemon import main as main_module
from gnoicert.proto import cert_pb2, system_pb2, system_pb2_grpc
from tests.support.daemon import (
    Clients,
    private_keys_on_disk,
    probe_fingerprint,
    run_gnoicertd,
    served_pem,
    text_of,
)
from tests.support.flows import (
    ADMIN,
    ServerCert,
    audit_records,
    cert_stub,
    error_reason,
    finalize,
    fingerprint_of,
    install,
    install_with_csr,
    issue_server_cert,
    key_fragments,
    listed,
    rotate_until_loaded,
    rotate_with_csr,
)
from tests.support.pki import TestCA
from tests.support.target import (
    TargetProcess,
    served_certificate_der,
    served_fingerprint,
    spawn_target,
    start_target,
    wait_for,
    write_config,
)

TIME = system_pb2.TimeRequest()
SERVE_SRV = 'local_certificate = "srv"'


def spawn(processes: list[TargetProcess], config: Path, *extra: str) -> TargetProcess:
    proc = spawn_target(config, extra=extra)
    processes.append(proc)
    return proc


async def provision_srv(clients: Clients, ca: TestCA) -> ServerCert:
    """Factory state -> mutual TLS serving "srv" (the config names it from the start)."""
    srv = issue_server_cert(ca)
    await install(cert_stub(clients.server_only()), "srv", srv, bundle_pem=ca.bundle_pem)
    await wait_for(lambda: probe_fingerprint(clients.address) == srv.fingerprint, what="srv served")
    return srv


async def wait_exit(proc: TargetProcess, timeout: float = 20.0) -> int:
    return await asyncio.to_thread(proc.process.wait, timeout)


# -- crash and signals --------------------------------------------------------------------------


async def test_kill_9_between_load_and_finalize_rolls_back_at_restart(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, grpc_lines=[SERVE_SRV])
    proc = spawn(processes, config)
    async with Clients(proc.address) as clients:
        srv = await provision_srv(clients, ca)
        new = issue_server_cert(ca)
        call = await rotate_until_loaded(cert_stub(clients.mutual(ca)), "srv", new)
        assert served_fingerprint(proc.address) == new.fingerprint
        proc.kill()
        assert await call.code() == grpc.StatusCode.UNAVAILABLE

    restarted = spawn(processes, config)
    assert served_fingerprint(restarted.address) == srv.fingerprint
    async with Clients(restarted.address) as clients:
        assert await listed(cert_stub(clients.mutual(ca))) == {"srv": srv.fingerprint}
    records = audit_records(tmp_path / "audit.jsonl", certificate_id="srv")
    rotate = [r for r in records if r["event"] in ("rotate", "rollback", "commit")]
    assert [(r["event"], r["outcome"]) for r in rotate] == [
        ("rotate", "applied"),
        ("rollback", "rolled_back"),
    ]
    rollback = rotate[-1]
    assert rollback["detail"] == "rolled back at restart after a crash"
    assert rollback["old_fingerprint"] == srv.fingerprint
    assert rollback["new_fingerprint"] == new.fingerprint
    assert rollback["identity"] == "user admin (CN=operator)"

    # A clean stop and a second start add nothing: the Rotate is closed in the log.
    assert restarted.terminate() == 0
    spawn(processes, config)
    again = audit_records(tmp_path / "audit.jsonl", event="rollback")
    assert len(again) == 1


async def test_sigterm_drains_then_rolls_back_the_open_rotate_and_exits_0(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    grace = 1.0
    config = write_config(tmp_path, grpc_lines=[SERVE_SRV, f"shutdown_grace_s = {grace}"])
    proc = spawn(processes, config)
    async with Clients(proc.address) as clients:
        srv = await provision_srv(clients, ca)
        call = await rotate_until_loaded(
            cert_stub(clients.mutual(ca)), "srv", issue_server_cert(ca)
        )
        started = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        assert await wait_exit(proc) == 0
        # The open Rotate kept the daemon draining for the whole grace period.
        assert time.monotonic() - started >= grace * 0.9
        assert await call.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    log = proc.stderr_text()
    assert "stopping: draining" in log
    rotations = audit_records(tmp_path / "audit.jsonl", event="rotate", certificate_id="srv")
    assert [r["outcome"] for r in rotations] == ["applied", "rolled_back"]

    restarted = spawn(processes, config)
    assert served_fingerprint(restarted.address) == srv.fingerprint
    assert audit_records(tmp_path / "audit.jsonl", event="rollback") == []


async def test_sigterm_lets_a_rotate_finalized_during_the_drain_commit(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, grpc_lines=[SERVE_SRV, "shutdown_grace_s = 10"])
    proc = spawn(processes, config)
    async with Clients(proc.address) as clients:
        await provision_srv(clients, ca)
        new = issue_server_cert(ca)
        call = await rotate_until_loaded(cert_stub(clients.mutual(ca)), "srv", new)
        proc.process.send_signal(signal.SIGTERM)
        await wait_for(lambda: "stopping: draining" in proc.stderr_text(), what="draining")
        assert await finalize(call) == grpc.StatusCode.OK
        assert await wait_exit(proc) == 0  # without waiting for the 10 s grace
    restarted = spawn(processes, config)
    assert served_fingerprint(restarted.address) == new.fingerprint


async def test_passwd_then_sighup_admits_the_new_user(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path)
    proc = spawn(processes, config)
    ops = (("username", "ops"), ("password", "ops-secret-42"))
    async with Clients(proc.address) as clients:
        stub = system_pb2_grpc.SystemStub(clients.server_only())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Time(TIME, metadata=ops)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        short = run_gnoicertd("passwd", "ops", "--config", str(config), stdin="short\n")
        assert short.returncode == 2
        assert "at least 8 characters" in short.stderr
        done = run_gnoicertd(
            "passwd", "ops", "--config", str(config), "--role", "read-only",
            stdin="ops-secret-42\n",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "ops-secret-42" not in config.read_text()
        assert run_gnoicertd("config", "check", str(config)).returncode == 0

        # A broken file on SIGHUP is refused; the daemon keeps running on the old one.
        good = config.read_text()
        config.write_text(good + "[grpc\n")
        proc.process.send_signal(signal.SIGHUP)
        await wait_for(
            lambda: bool(audit_records(proc.audit_path, event="config_reload")),
            what="the refused reload",
        )
        assert audit_records(proc.audit_path, event="config_reload")[0]["outcome"] == "refused"
        assert "configuration reload refused" in proc.stderr_text()
        config.write_text(good)

        proc.process.send_signal(signal.SIGHUP)
        await wait_for(
            lambda: bool(audit_records(proc.audit_path, event="config_reload", outcome="ok")),
            what="the reload",
        )
        assert (await stub.Time(TIME, metadata=ops)).time > 0
        # The role came with it: read-only.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cert_stub(clients.server_only()).GenerateCSR(
                cert_pb2.GenerateCSRRequest(certificate_id="x"), metadata=ops
            )
        assert error_reason(err.value) == "NOT_AUTHORIZED"
    assert proc.terminate() == 0


async def test_factory_reset_then_start_serves_a_new_factory_certificate(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path)
    proc = spawn(processes, config)
    first_factory = served_fingerprint(proc.address)
    async with Clients(proc.address) as clients:
        await install(
            cert_stub(clients.server_only()), "srv", issue_server_cert(ca), bundle_pem=ca.bundle_pem
        )
    assert proc.terminate() == 0

    refused = run_gnoicertd("factory-reset", "--config", str(config))  # stdin is not a tty
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    done = run_gnoicertd("factory-reset", "--config", str(config), "--yes")
    assert done.returncode == 0, done.stderr
    assert audit_records(tmp_path / "audit.jsonl", event="factory_reset", outcome="ok")

    proc = spawn(processes, config)
    served = x509.load_der_x509_certificate(served_certificate_der(proc.address))
    assert served.issuer == served.subject
    assert fingerprint_of(served_pem(proc.address)) != first_factory
    async with Clients(proc.address) as clients:  # server-only again: no bundle
        assert await listed(cert_stub(clients.server_only())) == {}


# -- the command line ---------------------------------------------------------------------------


def test_version_and_help() -> None:
    version = run_gnoicertd("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"gnoicertd {__version__}")
    helped = run_gnoicertd("--help")
    assert helped.returncode == 0
    for command in ("serve", "config", "passwd", "factory-reset"):
        assert command in helped.stdout


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        (["colour = 1"], "grpc.colour"),
        (["max_message_mib = 0"], "grpc.max_message_mib"),
        (
            [
                "[grpc.mutual_authentication]",
                'certificate_authority = "gnoi-ca-bundle"',
                'client_certificate_request = "request-certificate"',
            ],
            "grpc.mutual_authentication.client_certificate_request",
        ),
    ],
    ids=["unknown-key", "bad-value", "unsupported-level"],
)
def test_config_check(tmp_path: Path, lines: list[str], named: str) -> None:
    good = write_config(tmp_path)
    checked = run_gnoicertd("config", "check", str(good))
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stdout
    bad = tmp_path / "bad.toml"
    write_config(tmp_path, grpc_lines=lines).rename(bad)
    refused = run_gnoicertd("config", "check", str(bad))
    assert refused.returncode == 2
    assert named in refused.stderr
    assert str(bad) in refused.stderr


def test_serve_insecure_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    # TEST-NET-1: refused before any bind is tried.
    config.write_text(config.read_text().replace("127.0.0.1:0", "192.0.2.1:0"))
    refused = run_gnoicertd("serve", "--config", str(config), "--insecure")
    assert refused.returncode == 2
    assert "--insecure" in refused.stderr
    assert "loopback" in refused.stderr


async def test_serve_insecure_on_loopback_says_so_and_needs_no_credentials(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    proc = spawn(processes, write_config(tmp_path), "--insecure")
    assert "INSECURE" in proc.stderr_text()
    async with Clients(proc.address) as clients:
        assert (await system_pb2_grpc.SystemStub(clients.insecure()).Time(TIME)).time > 0
    assert proc.terminate() == 0


# -- what a real run leaves behind --------------------------------------------------------------


async def test_keys_are_0600_and_never_logged(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, grpc_lines=[SERVE_SRV])
    proc = spawn(processes, config)
    client_key = issue_server_cert(ca)
    async with Clients(proc.address) as clients:
        srv = await install_with_csr(
            cert_stub(clients.server_only()), "srv", ca, bundle_pem=ca.bundle_pem
        )
        await wait_for(lambda: probe_fingerprint(proc.address) == srv, what="srv served")
        stub = cert_stub(clients.mutual(ca))
        await rotate_with_csr(stub, "srv", ca)
        await install(stub, "client-key", client_key)
        call = await rotate_until_loaded(stub, "client-key", issue_server_cert(ca))
        call.cancel()
        await stub.GenerateCSR(
            cert_pb2.GenerateCSRRequest(
                certificate_id="pending",
                csr_params=cert_pb2.CSRParams(common_name="pending", min_key_size=2048),
            ),
            metadata=ADMIN,
        )
        assert set(await listed(stub)) == {"client-key", "srv"}
    assert proc.terminate() == 0

    state = tmp_path / "state"
    keys = private_keys_on_disk(state)
    kinds = {p.relative_to(state).parts[0] for p in keys}
    assert kinds == {"generations", "factory", "pending"}, keys.keys()
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in [state, *(p for p in state.rglob("*") if p.is_dir() and not p.is_symlink())]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    audit = tmp_path / "audit.jsonl"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600

    logs = text_of([audit, tmp_path / "gnoicertd.log"])
    assert '"event":"rotate","rpc":"/gnoi.certificate.CertificateManagement/Rotate"' in logs
    assert "committed" in logs  # the run was logged...
    assert "PRIVATE KEY" not in logs  # ... without key material
    for pem in [client_key.key_pem, *keys.values()]:
        for fragment in key_fragments(pem):
            assert fragment not in logs
    assert os.environ.get("GRPC_TRACE") is None  # trace output would not be our log


async def test_a_second_daemon_is_refused_cleanly(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path)
    first = spawn(processes, config)
    same_state = run_gnoicertd("serve", "--config", str(config))
    assert same_state.returncode == 1
    assert "in use by another process" in same_state.stderr
    assert "Traceback" not in same_state.stderr
    other = tmp_path / "other"
    other.mkdir()
    port = int(first.address.rsplit(":", 1)[1])
    same_port = run_gnoicertd("serve", "--config", str(write_config(other, port=port)))
    assert same_port.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in same_port.stderr
    assert "Traceback" not in same_port.stderr
    assert not (other / "state").exists()
    assert first.terminate() == 0


async def test_restart_closes_rotations_the_audit_log_left_open(tmp_path: Path, ca: TestCA) -> None:
    """What a crash can leave in the log: a Rotate whose commit landed but whose "committed"
    record did not, one that never committed, and a torn last line."""
    target = await start_target(tmp_path)
    srv = issue_server_cert(ca)
    try:
        await install(cert_stub(target.channel()), "srv", srv, bundle_pem=ca.bundle_pem)
    finally:
        await target.close()
    audit = tmp_path / "audit.jsonl"
    applied = {"event": "rotate", "rpc": "/gnoi.certificate.CertificateManagement/Rotate"}
    lines = [
        {
            **applied,
            "outcome": "applied",
            "certificate_id": "srv",
            "new_fingerprint": srv.fingerprint,
        },
        {**applied, "outcome": "applied", "certificate_id": "gone", "new_fingerprint": "ab" * 32},
    ]
    with audit.open("a") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
        f.write('{"event":"rotate","outcome":"appl')
    target = await start_target(tmp_path)
    await target.close()
    text = audit.read_text().splitlines()
    torn = text.index('{"event":"rotate","outcome":"appl')  # ended, not glued to a record
    records = [json.loads(line) for line in text[:torn] + text[torn + 1 :]]
    closing = [
        (r["event"], r["outcome"], r["certificate_id"], r["detail"])
        for r in records
        if r.get("event") in ("commit", "rollback")
    ]
    assert closing == [
        ("commit", "committed", "srv", "found committed at restart after a crash"),
        ("rollback", "rolled_back", "gone", "rolled back at restart after a crash"),
    ]


# -- packaging ----------------------------------------------------------------------------------

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def test_example_configuration_is_valid_and_documents_every_key() -> None:
    example = PACKAGING / "gnoicertd.toml.example"
    checked = run_gnoicertd("config", "check", str(example))
    assert checked.returncode == 0, checked.stderr
    text = example.read_text()
    keys = (
        config_module._TOP_KEYS
        + config_module._GRPC_KEYS
        + config_module._MUTUAL_KEYS
        + config_module._USER_KEYS
        + config_module._METRICS_KEYS
    )
    for key in keys:
        # A key line, or a table header ([grpc], [[users]], [grpc.mutual_authentication]).
        pattern = rf"^#? ?({key} = |\[\[?(grpc\.)?{key}\]\]?$)"
        assert re.search(pattern, text, re.MULTILINE), key


def test_systemd_unit_runs_serve_and_reloads_with_sighup() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read(PACKAGING / "gnoicertd.service")
    service = unit["Service"]
    start = shlex.split(service["ExecStart"])
    assert Path(start[0]).name == "gnoicertd"
    args = main_module._parser().parse_args(start[1:])
    assert args.command == "serve"
    check = shlex.split(service["ExecStartPre"])
    assert check[1:3] == ["config", "check"]
    assert check[3] == str(args.config)
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "2"  # configuration errors exit 2
    assert service["StateDirectoryMode"] == "0700"
    # Readiness and the watchdog come from the daemon's sd_notify (daemon/systemd.py).
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "main")
    assert int(service["WatchdogSec"]) > 0


def test_config_check_reports_every_fault_at_once(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        top_lines=["auth_failure_limit = 0", 'key_secret_file = "short-secret"'],
        grpc_lines=["colour = 1", "max_message_mib = 0", "default_key_size = 512"],
    )
    refused = run_gnoicertd("config", "check", str(config))
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    for key in ("auth_failure_limit", "grpc.colour", "grpc.max_message_mib"):
        [line] = [line for line in lines if f"{config}: {key}: " in line]
        assert line.startswith("gnoicertd: ")
    assert "grpc.default_key_size: must be one of the configured grpc.key_sizes" in refused.stderr
    assert len(lines) == 4

    # The file faults (key_secret_file) are reported together too once the file itself is valid.
    (tmp_path / "short-secret").write_bytes(b"too short")
    config = write_config(
        tmp_path,
        top_lines=['key_secret_file = "short-secret"'],
        grpc_lines=[
            "[grpc.mutual_authentication]",
            'certificate_authority = "gnoi-ca-bundle"',
        ],
    )
    refused = run_gnoicertd("config", "check", str(config))
    assert (refused.returncode, refused.stderr.splitlines()) == (
        2,
        [f"gnoicertd: key_secret_file: {tmp_path / 'short-secret'} holds under 16 bytes"],
    )


def test_a_state_dir_that_is_a_file_is_refused_by_check_and_serve(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    state.write_text("a regular file\n")
    message = f"{config}: state_dir: {str(state)!r} exists and is not a directory"
    refused = run_gnoicertd("config", "check", str(config))
    assert (refused.returncode, refused.stderr.strip()) == (2, f"gnoicertd: {message}")
    served = run_gnoicertd("serve", "--config", str(config))
    assert served.returncode == 2
    assert message in served.stderr
    assert "Traceback" not in served.stderr
    assert state.read_text() == "a regular file\n"
    assert not (tmp_path / "audit.jsonl").exists()

"""The fleet runner through the real `gnoicert` command against a real lab of 20 devices:
concurrent get and rotate, the canary, the stop rule, an interrupted run resumed, the report,
the expiry survey, report merge, and inventory errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.cli import cli_environment, gnoicert_command, run_cli, wait_until
from tests.support.lab import RunningLab, lab_starter
from tests.support.schemas import validator

__all__ = ("lab_starter",)  # the fixture, imported for this module's tests

LabStarter = Callable[..., RunningLab]
DEVICES = 20
SIGNER = Path(__file__).with_name("signer.py")


def fleet(lab: RunningLab, *args: str, code: int = 0) -> Any:
    run = run_cli("--inventory", str(lab.workdir / "inventory.yaml"), *args, timeout=180)
    assert run.returncode == code, str(run)
    return run


def sign_command(
    lab: RunningLab, wrong: str = "-", held: str = "", gate: Path | None = None
) -> str:
    words = [sys.executable, str(SIGNER), str(lab.workdir / "ca"), wrong]
    if held:
        words += [held, str(gate)]
    return " ".join(words)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def last_by_target(path: Path) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in records(path) if r["record"] == "target"}


def fingerprints(lab: RunningLab) -> dict[str, str]:
    document = fleet(lab, "--json", "get").json()
    return {
        t["target"]: next(c["fingerprint"] for c in t["certificates"]) for t in document["targets"]
    }


def test_concurrent_get_and_rotate_over_20_devices(lab_starter: LabStarter, tmp_path: Path) -> None:
    lab = lab_starter(DEVICES)
    before = fingerprints(lab)
    assert len(before) == DEVICES
    report = tmp_path / "rotate.jsonl"
    document = fleet(
        lab,
        "--json",
        "--concurrency",
        "8",
        "--report",
        str(report),
        "rotate",
        "--ca-dir",
        str(lab.workdir / "ca"),
        "--key-type",
        "ecdsa",
    ).json()
    validator("fleet").validate(document)
    assert document["exit_code"] == 0
    assert document["ok"] is True
    assert document["summary"]["counts"]["committed"] == DEVICES
    after = fingerprints(lab)
    for record in document["targets"]:
        name = record["target"]
        assert record["outcome"] == "committed"
        assert record["old_fingerprint"] == before[name]
        assert record["new_fingerprint"] == after[name] != before[name]
        assert record["address"] == lab.address(name)
        assert record["not_after"]
        assert record["elapsed_s"] > 0
    lines = records(report)
    assert [r["record"] for r in lines] == ["target"] * DEVICES + ["summary"]
    assert lines[-1]["counts"]["committed"] == DEVICES


def test_canary_failure_stops_the_run(lab_starter: LabStarter, tmp_path: Path) -> None:
    lab = lab_starter(DEVICES)
    before = fingerprints(lab)
    report = tmp_path / "canary.jsonl"
    run = fleet(
        lab,
        "--canary",
        "2",
        "--report",
        str(report),
        "rotate",
        "--no-preflight",
        "--sign-command",
        sign_command(lab, "dev0002"),
        code=5,
    )
    assert "a canary target failed" in run.stderr
    last = last_by_target(report)
    assert last["dev0001"]["outcome"] == "committed"
    assert last["dev0002"]["outcome"] == "validation_failed"
    assert {last[f"dev{n:04d}"]["outcome"] for n in range(3, DEVICES + 1)} == {"skipped"}
    after = fingerprints(lab)
    assert after["dev0002"] == before["dev0002"]  # rolled back: it still serves the old one
    assert all(after[name] == before[name] for name in before if name != "dev0001")


def test_stop_rule_stops_starting_targets(lab_starter: LabStarter, tmp_path: Path) -> None:
    lab = lab_starter(DEVICES)
    report = tmp_path / "stop.jsonl"
    fleet(
        lab,
        "--concurrency",
        "1",
        "--batch-size",
        "25%",
        "--max-failures",
        "1",
        "--report",
        str(report),
        "rotate",
        "--no-preflight",
        "--sign-command",
        sign_command(lab, "dev0002,dev0003"),
        code=5,
    )
    last = last_by_target(report)
    assert last["dev0001"]["outcome"] == "committed"
    assert last["dev0002"]["outcome"] == last["dev0003"]["outcome"] == "validation_failed"
    assert {last[f"dev{n:04d}"]["outcome"] for n in range(4, DEVICES + 1)} == {"skipped"}


def test_every_failure_a_validation_failure_exits_3(lab_starter: LabStarter) -> None:
    lab = lab_starter(DEVICES)
    fleet(
        lab,
        "--limit",
        "dev000[1-4]",
        "rotate",
        "--no-preflight",
        "--sign-command",
        sign_command(lab, "dev0003"),
        code=3,
    )


def test_interrupted_run_is_reported_true_and_resumed(
    lab_starter: LabStarter, tmp_path: Path
) -> None:
    lab = lab_starter(DEVICES)
    gate = tmp_path / "gate"
    gate.mkdir()
    report = tmp_path / "run.jsonl"
    command = [
        *gnoicert_command(),
        "--inventory",
        str(lab.workdir / "inventory.yaml"),
        "--concurrency",
        "2",
        "--report",
        str(report),
        "rotate",
        "--sign-command",
        sign_command(lab, held="dev0005", gate=gate),
    ]
    process = subprocess.Popen(
        command, env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: (gate / "waiting-dev0005").exists(), timeout=120)
        process.send_signal(signal.SIGINT)
        (gate / "go").touch()
        _stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    last = last_by_target(report)
    assert last["dev0005"]["outcome"] == "committed"  # in flight: it ended on its own
    committed = {name for name, r in last.items() if r["outcome"] == "committed"}
    skipped = {name for name, r in last.items() if r["outcome"] == "skipped"}
    assert committed | skipped == set(last)
    assert len(last) == DEVICES
    assert skipped
    assert "dev0020" in skipped
    assert records(report)[-1]["record"] == "summary"
    before = fingerprints(lab)

    resumed = fleet(
        lab, "--json", "--resume", str(report), "rotate", "--ca-dir", str(lab.workdir / "ca")
    ).json()
    assert {t["target"] for t in resumed["targets"]} == skipped
    assert sorted(resumed["summary"]["already_done"]) == sorted(committed)
    after = fingerprints(lab)
    assert all(after[name] == before[name] for name in committed)
    assert all(after[name] != before[name] for name in skipped)
    final = last_by_target(report)
    assert {r["outcome"] for r in final.values()} == {"committed"}


def test_expiry_survey_and_report_merge(lab_starter: LabStarter, tmp_path: Path) -> None:
    lab = lab_starter(DEVICES)
    quiet = fleet(lab, "get", "--expiring-within", "0")
    assert quiet.stdout.splitlines() == ["target\tcertificate_id\tnot_after\tdays_left"]
    found = fleet(lab, "--limit", "dev001*", "get", "--expiring-within", "100000", code=4)
    rows = found.stdout.splitlines()[1:]
    assert sorted(row.split("\t")[0] for row in rows) == [f"dev{n:04d}" for n in range(10, 20)]
    shards = [tmp_path / f"shard{i}.jsonl" for i in (1, 2)]
    for index, path in enumerate(shards, start=1):
        fleet(lab, "--shard", f"{index}/2", "--report", str(path), "time")
    merged = tmp_path / "all.jsonl"
    run = run_cli("report", "merge", *map(str, shards), "--output", str(merged))
    assert run.returncode == 0, str(run)
    lines = records(merged)
    assert len(lines) == DEVICES + 1
    assert lines[-1]["counts"]["ok"] == DEVICES


def test_inventory_errors_exit_2_with_every_line(tmp_path: Path) -> None:
    inventory = tmp_path / "bad.yaml"
    inventory.write_text(
        "defaults:\n"
        "  prot: 9339\n"
        "targets:\n"
        "  r1: {address: 192.0.2.1, groups: [core]}\n"
        "  r2: {port: 70000}\n"
    )
    run = run_cli("--inventory", str(inventory), "get")
    assert run.returncode == 2, str(run)
    for line, key in ((2, "defaults.prot"), (4, "targets.r1.groups"), (5, "targets.r2")):
        assert f"{inventory}:{line}: {key}" in run.stderr, run.stderr
    document = run_cli("--inventory", str(inventory), "--json", "get")
    assert document.json()["error"]["check"] == "invalid-inventory"


def test_readme_fleet_section_runs_as_written(tmp_path: Path) -> None:
    """The README's fleet block, run by bash as written (its lab in /tmp/gc-lab)."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text()
    section = text[text.index("### A fleet") :]
    script = section[section.index("```sh\n") + 6 : section.index("\n```", section.index("```sh"))]
    env = cli_environment({"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10 targets" in done.stderr
    assert "exit 4: certificates expire within 400 days" in done.stdout
    summary = next(
        json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"record"')
    )
    assert summary["counts"]["committed"] == 10

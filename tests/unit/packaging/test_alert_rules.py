"""packaging/prometheus/gnoicert-rules.yml: well-formed, every rule labelled and explained, and
the alerts the operator guide promises are there. With `promtool` on PATH the rules are also
checked by Prometheus itself and unit-tested against synthetic series
(gnoicert-rules.promtool.yml); without it those two tests are skipped with that reason."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "packaging" / "prometheus" / "gnoicert-rules.yml"
PROMTOOL_TESTS = Path(__file__).with_name("gnoicert-rules.promtool.yml")
GUIDE = ROOT / "docs" / "operator-guide.md"
SEVERITIES = {"warning", "critical"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    assert list(document) == ["groups"]
    rules: list[dict[str, Any]] = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}, group
        rules += group["rules"]
    return rules


def test_every_rule_has_an_expression_a_severity_and_a_summary() -> None:
    rules = _rules()
    assert rules
    for rule in rules:
        name = rule.get("alert")
        assert isinstance(name, str), rule
        assert name.startswith("Gnoicert"), name
        assert isinstance(rule.get("expr"), str), name
        assert rule["expr"].strip(), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert rule.get("annotations", {}).get("summary"), name
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))


def test_the_promised_alerts_are_there() -> None:
    by_name = {rule["alert"]: rule for rule in _rules()}
    for metric in ("gnoicert_certificate_not_after_seconds",):
        assert metric in by_name["GnoicertCertificateExpiringSoon"]["expr"]
        assert metric in by_name["GnoicertCertificateExpiryCritical"]["expr"]
    exporter_metric = "gnoicert_target_certificate_not_after_seconds"
    assert exporter_metric in by_name["GnoicertTargetCertificateExpiringSoon"]["expr"]
    assert exporter_metric in by_name["GnoicertTargetCertificateExpiryCritical"]["expr"]
    for name in ("GnoicertCertificateExpiringSoon", "GnoicertTargetCertificateExpiringSoon"):
        assert "30 * 86400" in by_name[name]["expr"]
        assert by_name[name]["labels"]["severity"] == "warning"
    for name in ("GnoicertCertificateExpiryCritical", "GnoicertTargetCertificateExpiryCritical"):
        assert "7 * 86400" in by_name[name]["expr"]
        assert by_name[name]["labels"]["severity"] == "critical"
    assert by_name["GnoicertRotationRolledBack"]["expr"] == (
        'increase(gnoicert_operations_total{rpc="Rotate",outcome="rolled_back"}[1h]) > 0'
    )
    assert (
        "rate(gnoicert_auth_failures_total[5m])" in by_name["GnoicertAuthFailuresSpiking"]["expr"]
    )
    assert by_name["GnoicertTargetDown"]["expr"] == "gnoicert_target_up == 0"
    assert by_name["GnoicertTargetDown"]["for"] == "10m"


def test_the_operator_guide_documents_every_rule() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    assert "packaging/prometheus/gnoicert-rules.yml" in guide
    for rule in _rules():
        assert f"`{rule['alert']}`" in guide, rule["alert"]


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian/Ubuntu: apt-get install prometheus)")
    return path


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_fire_on_synthetic_series() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", PROMTOOL_TESTS.name],
        cwd=PROMTOOL_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

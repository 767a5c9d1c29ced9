"""deploy/prometheus/ticker-rules.yml: Prometheus's rules shape, one alert per metric family,
only metric names Ticker exports, and promtool's own checks
and the rules' unit tests. The names are also checked against a live /metrics in
tests/e2e/test_metrics_truth.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from ticker import metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/prometheus/ticker-rules.yml"
RULE_TESTS = ROOT / "deploy/prometheus/ticker-rules.test.yml"
DURATION = re.compile(r"^([0-9]+(ms|[smhdwy]))+$")
ALERT_NAME = re.compile(r"^Ticker[A-Z][A-Za-z]+$")
METRIC_NAME = re.compile(r"\bticker_[a-z0-9_]+\b")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_metric_names() -> set[str]:
    """Every metric (sample) name the rules' expressions use."""
    return {name for rule in rules() for name in METRIC_NAME.findall(rule["expr"])}


def exported_sample_names() -> dict[str, str]:
    """Sample name -> family name, for every family ``ticker.metrics`` defines."""
    names = {}
    for family in vars(metrics).values():
        if not isinstance(family, MetricWrapperBase):
            continue
        base = family._name
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}[family._type]
        names |= {base + suffix: base for suffix in suffixes}
    return names


def test_the_file_has_the_prometheus_rules_shape() -> None:
    document = yaml.safe_load(RULES.read_text())
    groups = document["groups"]
    assert [group["name"] for group in groups] == ["ticker"]
    names = []
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert ALERT_NAME.match(rule["alert"]), rule["alert"]
        names.append(rule["alert"])
        assert isinstance(rule["expr"], str)
        assert rule["expr"].strip()
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert set(rule["annotations"]) == {"summary", "description"}
    assert len(names) == len(set(names)), "alert names are unique"


def test_every_family_has_an_alert_and_every_name_is_exported() -> None:
    exported = exported_sample_names()
    used = rule_metric_names()
    assert used <= set(exported), f"not exported by ticker.metrics: {sorted(used - set(exported))}"
    assert {exported[name] for name in used} == set(exported.values()), "a family with no example alert"


def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    # `make test` installs Debian's `prometheus` package, which ships it (make system-packages).
    assert promtool is not None, "promtool not found: make system-packages installs it"
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr

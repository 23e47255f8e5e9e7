"""deploy/observability: the dashboard asks only for metrics the server exports; the alert rules load and fire."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkeep.observability.metrics import REGISTRY

KIT = Path(__file__).resolve().parents[2] / "deploy" / "observability"
DASHBOARD = KIT / "grafana-dashboard.json"
RULES = KIT / "prometheus-alerts.yml"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "info": ("_info",)}


def exported() -> set[str]:
    """Every series name /metrics can carry, whether or not a sample has been recorded yet."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and strings removed)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    tokens = re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)
    return {t for t in tokens if t not in PROMQL_WORDS}


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def test_the_expression_parser_finds_metrics_and_only_metrics() -> None:
    """The helper the other tests rely on: it must see a metric, and ignore functions, labels and keywords."""
    expr = 'histogram_quantile(0.95, sum by (le, model) (rate(x_bucket{job=~"$job"}[5m]))) / clamp_min(y, 1e-9)'
    assert metric_names(expr) == {"x_bucket", "y"}


def test_every_dashboard_query_names_a_metric_the_server_exports() -> None:
    """No panel asks Prometheus for a series agentkeep does not serve (a typo would show 'No data' forever)."""
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    queried: set[str] = set()
    for title, expr in _targets(dashboard):
        found = metric_names(expr)
        assert found, f"panel {title!r} queries no metric: {expr}"
        assert found <= names, f"panel {title!r} queries unknown {found - names}"
        queried |= found
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert metric_names(variable["definition"].removeprefix("label_values(")) & names
    wanted = {
        "agentkeep_runs_total",  # runs/s, error rate
        "agentkeep_run_duration_seconds_bucket",  # p50/p95 run latency
        "agentkeep_model_request_duration_seconds_bucket",  # model latency
        "agentkeep_tokens_total",  # tokens per hour by model
        "agentkeep_cost_usd_total",  # cost per hour by model
        "agentkeep_tool_calls_total",  # tool calls by outcome
        "agentkeep_circuit_state",  # breaker state
        "agentkeep_active_runs",
        "process_resident_memory_bytes",  # memory
    }
    assert wanted <= queried, f"dashboard lacks {wanted - queried}"


def test_the_dashboard_is_importable_grafana_json() -> None:
    """Unique panel ids, a uid, a datasource variable every panel uses, and no overlapping panels in a row."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_have_promtools_shape_and_watch_exported_metrics() -> None:
    """groups → rules with alert, expr, for, severity and a summary; expressions name real metrics."""
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"} and all({"name", "rules"} <= set(g) for g in document["groups"])
    names = exported() | {"up"}  # `up` is Prometheus' own record of each scrape
    alerts = {}
    for rule in _rules():
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]
        found = metric_names(rule["expr"])
        assert found and found <= names, f"{rule['alert']} watches unknown {found - names}"
        alerts[rule["alert"]] = found
    assert alerts["AgentkeepHighErrorRate"] == {"agentkeep_runs_total"}
    assert alerts["AgentkeepCostBurn"] == {"agentkeep_cost_usd_total"}
    assert alerts["AgentkeepCircuitOpen"] == {"agentkeep_circuit_state"}
    assert alerts["AgentkeepInstanceDown"] == {"up"}
    assert alerts["AgentkeepSlowRuns"] == {"agentkeep_run_duration_seconds_bucket"}


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    return path


def test_promtool_accepts_the_rules_and_the_scrape_config(promtool: str) -> None:
    """The files load in a real Prometheus: rule syntax, templates and the config that references them."""
    for args in (["check", "rules", str(RULES)], ["check", "config", str(KIT / "prometheus.yml")]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_the_series_it_watches(promtool: str, tmp_path: Path) -> None:
    """promtool's rule unit tests: 10% failures, 30 USD/h, an open breaker, a lost target and 60 s runs fire."""
    rules = yaml.safe_load(RULES.read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        rule.pop("annotations")  # their templates are checked above; here only firing is tested
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    a = 'job="agentkeep",instance="a:8000"'
    series = [
        (f'agentkeep_runs_total{{{a},agent="x",status="succeeded"}}', "0+90x40"),
        (f'agentkeep_runs_total{{{a},agent="x",status="failed"}}', "0+10x40"),
        (f'agentkeep_cost_usd_total{{{a},model="m"}}', "0+0.5x90"),
        (f'agentkeep_circuit_state{{{a},model="m"}}', "0 0 2x40"),
        ('up{job="agentkeep",instance="b:8000"}', "1 1 0x40"),
        (f'agentkeep_run_duration_seconds_bucket{{{a},agent="x",le="30"}}', "0x40"),
        (f'agentkeep_run_duration_seconds_bucket{{{a},agent="x",le="60"}}', "0+1x40"),
        (f'agentkeep_run_duration_seconds_bucket{{{a},agent="x",le="+Inf"}}', "0+1x40"),
    ]
    expected = {
        "AgentkeepHighErrorRate": {"severity": "warning", "job": "agentkeep"},
        "AgentkeepCostBurn": {"severity": "warning", "job": "agentkeep"},
        "AgentkeepCircuitOpen": {"severity": "critical", "job": "agentkeep", "instance": "a:8000", "model": "m"},
        "AgentkeepInstanceDown": {"severity": "critical", "job": "agentkeep", "instance": "b:8000"},
        "AgentkeepSlowRuns": {"severity": "warning", "job": "agentkeep"},
    }
    spec = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {"eval_time": "35m", "alertname": name, "exp_alerts": [{"exp_labels": labels}]}
                    for name, labels in expected.items()
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

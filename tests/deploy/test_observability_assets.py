"""The Grafana dashboard and the Prometheus alert rules name only metrics tuike exports.

Cheap (no servers): the PromQL of every panel and rule is searched for ``tuike_…`` names, and
each must be a metric of the code's registry (topologies/metrics.py, gateway/health.py), where
a histogram's ``_bucket``/``_sum``/``_count`` and a counter's ``_total`` series map to their
metric's name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import gateway.health  # noqa: F401  (registers tuike serve's metrics)
import topologies.metrics  # noqa: F401  (registers the workers' metrics)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\btuike_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def registered() -> set[str]:
    return {family.name for family in REGISTRY.collect() if family.name.startswith("tuike_")}


def metric_of(series: str, known: set[str]) -> str:
    if series in known:
        return series
    for suffix in SUFFIXES:
        if series.endswith(suffix) and series[:-len(suffix)] in known:
            return series[:-len(suffix)]
    return series


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "tuike.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", ())]


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def unknown_names(exprs: list[tuple[str, str]]) -> list[str]:
    known = registered()
    return [f"{where}: {name}" for where, expr in exprs for name in NAME.findall(expr)
            if metric_of(name, known) not in known]


def test_the_registry_has_the_metrics_the_issue_asks_for():
    known = registered()
    for name in ("tuike_events_in", "tuike_events_out", "tuike_processing_seconds", "tuike_consumer_lag",
                 "tuike_partition_assigned", "tuike_ledger_write_seconds", "tuike_ledger_rows",
                 "tuike_ledger_write_failures", "tuike_dead_letters", "tuike_fraud_holds", "tuike_journal_reapplies",
                 "tuike_http_requests", "tuike_http_request_seconds", "tuike_ready"):
        assert name in known, f"{name} is not registered; registered: {sorted(known)}"


def test_every_metric_the_dashboard_names_exists():
    exprs = dashboard_exprs()
    assert len(exprs) >= 10 and all(NAME.search(e) or "up{" in e for _, e in exprs)
    assert unknown_names(exprs) == []


def test_every_metric_the_alert_rules_name_exists():
    exprs = alert_exprs()
    assert {"TuikeLagGrowing", "TuikeDeadLetterSpike", "TuikeLedgerWritesFailing", "TuikeWorkerDown",
            "TuikeNotReady"} <= {name for name, _ in exprs}
    assert unknown_names(exprs) == []


def test_alert_rules_are_well_formed():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule
            assert rule["annotations"]["summary"], rule
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_check_finds_a_name_that_does_not_exist():
    assert unknown_names([("panel", 'rate(tuike_events_in_total[5m]) + tuike_no_such_metric_total')]) == [
        "panel: tuike_no_such_metric_total"]

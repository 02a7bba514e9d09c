"""End to end on the local control plane: the operator (embedded, its metrics endpoint on
127.0.0.1) runs a MO-ASHA study whose pods a trainer stand-in plays; a real Prometheus scrapes
the operator's /metrics throughout; after the study completes, the dashboard's and the alert
rules' expressions return what the TuningStudy status says (counts, spend, front, hypervolume)."""

from __future__ import annotations

import dataclasses
import secrets
import time

import pytest

from hwtune.controller.operator import EmbeddedOperator
from hwtune.observe.promserver import PrometheusServer, finite, free_port, values
from hwtune.observe.queries import ALERTS, DEFAULT_THRESHOLDS, PANELS, alert_rules, substitute
from tests.cluster.test_operator_studies import (  # noqa: F401 - cluster is a fixture
    apply,
    cluster,
    delete_configurations,
    delete_studies,
    operator_settings,
    study_doc,
    wait_completed,
)
from tests.cluster.trial_driver import TrialDriver

pytestmark = pytest.mark.cluster


def test_prometheus_scrapes_the_operator_during_a_study(cluster, namespace, tmp_path):
    configuration = f"obs-{secrets.token_hex(3)}.hwtune.io"
    metrics_port = free_port()
    settings = dataclasses.replace(operator_settings(cluster, namespace, configuration),
                                   metrics_port=metrics_port, metrics_listen="127.0.0.1")
    name = "observed"
    doc = study_doc(name, max_trials=12)
    doc["spec"]["budget"]["maxCostUSD"] = 1000.0
    prom = PrometheusServer({"hwtune-operator": [f"127.0.0.1:{metrics_port}"]},
                            rule_groups=[{"name": "hwtune", "rules": alert_rules()}],
                            workdir=tmp_path / "prom")
    embedded = EmbeddedOperator(settings)
    driver = TrialDriver(cluster.kubeconfig, namespace, epoch_seconds=0.3)
    # The trainers wait until a scrape has seen the study's trials pending: the whole study can
    # end within a few seconds, and Prometheus's first scrape of a new target may come ~5 s
    # after it starts (its target discovery updates in ticks), so racing them failed in CI.
    driver.paused.set()
    try:
        prom.start()
        embedded.start(timeout=60)
        driver.start()
        apply(cluster, doc, namespace)
        # scraped while it runs
        prom.wait_for(f'sum(hwtune_study_trials{{study="{name}",phase=~"Pending|Running"}}) > 0',
                      lambda r: bool(r), timeout=120)
        driver.paused.clear()
        status = wait_completed(cluster, name, namespace, driver)
        total = status["trials"]["total"]
        # a scrape after the end: the scraped counts are the final ones
        prom.wait_for(f'sum(hwtune_study_trials{{study="{name}",phase=~"Completed|Stopped|Failed|Paused"}})',
                      lambda r: bool(r) and float(r[0]["value"][1]) == total, timeout=30)
        time.sleep(2.5)
        phases = values(prom.query(substitute(
            next(p for p in PANELS if p.key == "trials_by_phase").expr,
            namespace=namespace, study=name)), "phase")
        for phase, n in status["trials"].items():
            if phase != "total":
                assert phases[(phase.capitalize(),)] == n, (phase, phases, status["trials"])
        for panel in PANELS:
            expr = substitute(panel.expr, namespace=namespace, study=name, quality="val_error",
                              rate_interval="5m")
            got = prom.query(expr)
            assert got, f"panel {panel.key}: {expr} returned no data"
            if panel.key == "spend_by_pool":
                assert sum(values(got, "pool").values()) == pytest.approx(status["spentCostUSD"], abs=1e-5)
            elif panel.key == "gpu_hours_by_pool":
                assert sum(values(got, "pool").values()) == pytest.approx(status["gpuHours"], abs=1e-5)
            elif panel.key == "hypervolume":
                assert float(got[0]["value"][1]) == pytest.approx(status["hypervolume"], rel=1e-9)
            elif panel.key == "front_quality_cost":
                table: dict = {}
                for s in got:
                    table.setdefault(s["metric"]["point"], {})[s["metric"]["objective"]] = float(s["value"][1])
                front = sorted((p["objectives"]["val_error"], p["objectives"]["cost"])
                               for p in status["paretoFront"])
                scraped = sorted((c["quality"], c["cost"]) for c in table.values())
                assert len(scraped) == len(front) > 0
                for got_point, want_point in zip(scraped, front):
                    assert list(got_point) == pytest.approx(list(want_point), rel=1e-9)
            elif panel.key == "budget_used":
                assert float(got[0]["value"][1]) == pytest.approx(status["spentCostUSD"] / 1000.0, abs=1e-8)
            elif panel.key in ("decision_latency", "reconcile_latency"):
                v = float(got[0]["value"][1])
                assert finite(v) and 0 < v < 60, (panel.key, v)
        launches = prom.query(f'sum(hwtune_trial_launches_total{{study="{name}"}})')
        assert float(launches[0]["value"][1]) >= total
        rules = {r["name"]: r for r in prom.rules()}
        assert set(rules) == {a.name for a in ALERTS}
        assert all(r["health"] == "ok" for r in rules.values()), rules
        assert rules["HwtuneStudyBudgetNearlySpent"]["state"] == "inactive"  # 1000 USD budget
        # Whether decisions are slow depends on this machine (each answer waits for the study
        # log's write to the API server): the rule's state must agree with its value.
        slow = next(a for a in ALERTS if a.name == "HwtuneDecisionsSlow")
        p99 = values(prom.query(slow.value), "namespace", "study")[(namespace, name)]
        print(f"\np99 report-to-decision latency (write-ahead log included): {p99:.3f} s")
        assert finite(p99) and p99 > 0
        assert (rules[slow.name]["state"] != "inactive") == (p99 > DEFAULT_THRESHOLDS["decision_seconds"])
    finally:
        driver.stop()
        prom.stop()
        try:
            delete_studies(cluster, namespace)
            embedded.stop(check=False)
        finally:
            delete_configurations(cluster, configuration)

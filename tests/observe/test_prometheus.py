"""A real Prometheus (Debian's package, on 127.0.0.1) scrapes /metrics while a real study runs
(the simulated backend driving MO-ASHA in this process, paced in wall time), then every PromQL
expression of the dashboard and of the alert rules is run through its HTTP API and compared
with the study's own state. ``promtool`` checks the rules and a scrape. A missing binary is a
failure with the reason, never a skip."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from hwtune.api.records import Decision
from hwtune.engine import EventKind, Study, StudyConfig, Tuner
from hwtune.observe import StudyMetrics, select_front
from hwtune.observe.promserver import PrometheusServer, finite, prometheus_binary, values
from hwtune.observe.render import render_dashboard
from hwtune.observe.queries import ALERTS, DEFAULT_THRESHOLDS, PANELS, alert_rules, substitute
from hwtune.backends.simulated import SimulatedBackend, synthetic_table
from tests.observe.study_fixture import SPEC

NS, NAME = "ml", "prom-demo"
BUDGET_USD = 0.4


def paced_study(metrics: StudyMetrics, step_sleep: float):
    # t4 is in the pools: configs that need more than its 16 GiB fail (out of memory), so the
    # failure metrics and the trials-failing alert have something to count.
    spec = {**SPEC, "hardware": {"pools": ["t4", "a100", "h100"], "gpuCounts": [1, 2]},
            "budget": {"maxTrials": 80, "maxParallelTrials": 4, "maxCostUSD": BUDGET_USD}}
    config = StudyConfig.from_spec(spec)
    table = synthetic_table(config.space, 1200, 9, seed=1, seeds=(0,))
    backend = SimulatedBackend(table, config.hardware_model, n_workers=4, seed=0)
    study = Study(config, clock=backend.clock)
    observer = metrics.watch(study, NS, NAME, lock=backend.lock)
    tuner = Tuner(study, backend)
    done, midway, go_on = threading.Event(), threading.Event(), threading.Event()
    result: dict = {}

    def run() -> None:
        try:
            while True:
                with observer.reconcile():
                    reason = tuner.step()
                if study.reports % 25 == 0:
                    observer.surrogate_fallback()  # as a searcher does when the surrogate is down
                if reason is not None:
                    result["reason"] = reason
                    return
                if study.reports >= 40 and not midway.is_set():
                    midway.set()  # hold still (trials running) until the test has looked
                    go_on.wait(120)
                time.sleep(step_sleep)
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="paced-study").start()
    return study, backend, observer, done, result, midway, go_on


def check_promtool_rules(tmp_path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "hwtune", "rules": alert_rules()}]}))
    out = subprocess.run([prometheus_binary("promtool"), "check", "rules", str(rules)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout


def test_dashboard_and_alert_queries_match_the_study_on_a_real_prometheus(tmp_path):
    check_promtool_rules(tmp_path)
    metrics = StudyMetrics()
    server = metrics.serve(0, addr="127.0.0.1")
    target = f"127.0.0.1:{server.server_address[1]}"
    prom = PrometheusServer({"hwtune-operator": [target]},
                            rule_groups=[{"name": "hwtune", "rules": alert_rules()}],
                            workdir=tmp_path / "prom")
    try:
        prom.start()
        # promtool check metrics on a real scrape
        scrape = urllib.request.urlopen(f"http://{target}/metrics", timeout=5).read()
        lint = subprocess.run([prometheus_binary("promtool"), "check", "metrics"], input=scrape,
                              capture_output=True, timeout=60)
        assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

        started = time.time()
        study, backend, observer, done, result, midway, go_on = paced_study(metrics, step_sleep=0.02)
        # Prometheus sees the study while it runs: halfway, the scraped active trials and
        # reports are the study's.
        assert midway.wait(120) or done.is_set(), "the study neither paused halfway nor ended"
        assert not done.is_set(), f"the study ended before halfway: {result}"
        active, reports = len(study.active_trials()), study.reports
        assert active > 0
        prom.wait_for(f'sum(hwtune_trial_reports_total{{study="{NAME}"}})',
                      lambda r: bool(r) and float(r[0]["value"][1]) == reports, timeout=30)
        running = prom.query(f'sum(hwtune_study_trials{{study="{NAME}",phase=~"Pending|Running"}})')
        assert float(running[0]["value"][1]) == active
        go_on.set()
        assert done.wait(240), "the study did not end"
        assert "error" not in result, result.get("error")
        # Wait for a scrape after the end: the scraped report count equals the study's.
        with backend.lock:
            reports = study.reports
        prom.wait_for(f'sum(hwtune_trial_reports_total{{study="{NAME}"}})',
                      lambda r: bool(r) and float(r[0]["value"][1]) == reports, timeout=30)
        time.sleep(2.5)  # and the rules evaluated on it
        with backend.lock:
            truth = expected_state(study)
        print(f"\nstudy ended: {result['reason']}; {truth['counts']}; spent "
              f"{truth['usd_total']:.4f} USD of {BUDGET_USD}; front {truth['front_size']}")

        checked = set()
        for panel in PANELS:
            expr = substitute(panel.expr, namespace=NS, study=NAME, quality="val_error",
                              rate_interval="5m")
            got = prom.query(expr)
            assert got, f"panel {panel.key}: {expr} returned no data"
            check_panel(panel.key, got, truth)
            checked.add(panel.key)
        assert checked == {p.key for p in PANELS}

        rules = {r["name"]: r for r in prom.rules()}
        assert set(rules) == {a.name for a in ALERTS}
        for alert in ALERTS:
            rule = rules[alert.name]
            assert rule["health"] == "ok", rule
            value = values(prom.query(alert.value), "namespace", "study")[(NS, NAME)]
            active = rule["state"] in ("pending", "firing")
            check_alert(alert.name, value, active, truth)
        # the README's picture is drawn from these same query results
        png = render_dashboard(prom.base, NS, NAME, tmp_path / "dashboard.png", quality="val_error",
                               start=started, end=time.time())
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    finally:
        prom.stop()
        server.shutdown()


def expected_state(study: Study) -> dict:
    summary = study.summary()
    per_pool: dict = {}
    for t in study.trials:
        usd, hours = study.live_spend_of(t.trial_id)
        acc = per_pool.setdefault(t.hardware.pool, [0.0, 0.0])
        acc[0] += usd
        acc[1] += hours
    events = {k: 0 for k in ("launches", "resumes", "pauses", "stops", "failures", "preemptions")}
    for e in study.events:
        phase_after = e.decision
        if e.kind in (EventKind.CREATED, EventKind.RESUMED):
            events["launches"] += 1
        if e.kind is EventKind.RESUMED:
            events["resumes"] += 1
        if e.kind is EventKind.FAILED:
            events["failures"] += 1
        if e.kind is EventKind.PAUSED or (e.kind is EventKind.OBSERVED and phase_after is Decision.PAUSE):
            events["pauses"] += 1
        if e.kind is EventKind.STOPPED or (e.kind is EventKind.OBSERVED and phase_after is Decision.STOP
                                           and not e.reason.startswith("completed")):
            events["stops"] += 1
    chosen = select_front(summary.front, study.config.objectives)
    points = {}
    for i, p in enumerate(chosen):
        points[str(i)] = dict(study.trial(p.trial_id).observations[-1].metrics)
    from hwtune.observe.metrics import _Snapshot  # the exporter's own hypervolume rule
    return {"counts": summary.counts, "usd_total": summary.spend.cost_usd, "per_pool": per_pool,
            "front_size": len(summary.front), "points": points, "events": events,
            "hypervolume": study_hv(study), "reports": study.reports}


def study_hv(study: Study) -> float:
    from hwtune.optimize.pareto import default_reference_point, hypervolume

    objectives = study.config.objectives
    losses = [[o.loss(p.values[o.metric]) for o in objectives] for p in study.front()]
    return float(hypervolume(losses, default_reference_point(losses)))


def pivot(result) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in result:
        out.setdefault(s["metric"]["point"], {})[s["metric"]["objective"]] = float(s["value"][1])
    return out


def check_panel(key: str, got, truth: dict) -> None:
    approx = pytest.approx
    if key in ("front_cost_runtime", "front_quality_cost"):
        axes = ("cost", "runtime") if key == "front_cost_runtime" else ("cost", "quality")
        table = pivot(got)
        assert set(table) == set(truth["points"]), key
        for point, coords in table.items():
            assert set(coords) == set(axes), (key, coords)
            for axis in axes:
                want = truth["points"][point]["val_error" if axis == "quality" else axis]
                assert coords[axis] == approx(want, rel=1e-9), (key, point, axis)
    elif key == "hypervolume":
        assert float(got[0]["value"][1]) == approx(truth["hypervolume"], rel=1e-9)
    elif key in ("spend_by_pool", "gpu_hours_by_pool"):
        col, scale = (0, 1.0) if key == "spend_by_pool" else (1, 1.0)
        want = {pool: v[col] * scale for pool, v in truth["per_pool"].items()}
        assert values(got, "pool") == {(p,): approx(v, rel=1e-9, abs=1e-12) for p, v in want.items()}
    elif key == "budget_used":
        assert float(got[0]["value"][1]) == approx(truth["usd_total"] / BUDGET_USD, rel=1e-9)
    elif key == "trials_by_phase":
        assert values(got, "phase") == {(p,): float(n) for p, n in truth["counts"].items()}
    elif key == "trial_events":
        want = {(k,): float(v) for k, v in truth["events"].items() if v}
        assert values(got, "event") == want
        assert want[("failures",)] > 0 and want[("pauses",)] > 0
    elif key in ("decision_latency", "reconcile_latency"):
        v = float(got[0]["value"][1])
        assert finite(v) and 0 < v <= 60, (key, v)
    else:
        raise AssertionError(f"no check for panel {key}")


def check_alert(name: str, value: float, active: bool, truth: dict) -> None:
    approx = pytest.approx
    if name == "HwtuneStudyBudgetNearlySpent":
        assert value == approx(truth["usd_total"] / BUDGET_USD, rel=1e-9)
        assert active == (value > DEFAULT_THRESHOLDS["budget_fraction"]), (name, value, active)
        assert active, "the study ran into its cost budget: the alert must be pending or firing"
    elif name == "HwtuneTrialsFailing":
        ev = truth["events"]
        assert value == approx(ev["failures"] / max(ev["launches"], 1))
        assert active == (value > DEFAULT_THRESHOLDS["failure_ratio"]), (name, value, active)
    elif name == "HwtuneDecisionsSlow":
        assert finite(value) and 0 < value < DEFAULT_THRESHOLDS["decision_seconds"]
        assert not active
    elif name == "HwtuneSurrogateDown":
        assert value >= 1 and active
    else:
        raise AssertionError(f"no check for alert {name}")

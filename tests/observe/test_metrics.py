"""The Prometheus metrics of a real study (simulated backend, MO-ASHA promotion): counters equal
the study's events, gauges equal its state, the front is bounded and replaced, series per study
do not grow with the number of trials, and /metrics is served over HTTP."""

from __future__ import annotations

import math
import urllib.request
from collections import Counter as Tally

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hwtune.api.records import Decision
from hwtune.engine import EventKind
from hwtune.engine.study import FrontPoint
from hwtune.observe import FRONT_LIMIT, StudyMetrics, select_front
from hwtune.api.records import Objective
from tests.observe.study_fixture import run_study


def samples(metrics: StudyMetrics) -> list:
    text = metrics.exposition().decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def by_name(metrics: StudyMetrics, name: str, **match: str) -> dict:
    out = {}
    for s in samples(metrics):
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
            out[tuple(sorted(s.labels.items()))] = s.value
    return out


def pool_of(study, trial_id):
    return study.trial(trial_id).hardware.pool


def test_counters_follow_the_study_events():
    metrics, study, _, _ = run_study(60)
    expected = {name: Tally() for name in ("launches", "resumes", "pauses", "stops", "reports", "failures")}
    for e in study.events:
        pool = pool_of(study, e.trial_id)
        if e.kind in (EventKind.CREATED, EventKind.RESUMED):
            expected["launches"][pool] += 1
        if e.kind is EventKind.RESUMED:
            expected["resumes"][pool] += 1
        if e.kind is EventKind.OBSERVED:
            expected["reports"][pool] += 1
            if e.decision is Decision.PAUSE:
                expected["pauses"][pool] += 1
            elif e.decision is Decision.STOP and not e.reason.startswith("completed"):
                expected["stops"][pool] += 1
        if e.kind is EventKind.PAUSED:
            expected["pauses"][pool] += 1
        if e.kind is EventKind.STOPPED:
            expected["stops"][pool] += 1
        if e.kind is EventKind.FAILED:
            expected["failures"][pool] += 1
    assert expected["resumes"] and expected["pauses"], "the study should pause and resume trials"
    for name, tally in expected.items():
        got = {dict(k)["pool"]: v for k, v in by_name(metrics, f"hwtune_trial_{name}_total").items()}
        assert got == {p: float(n) for p, n in tally.items()}, name
    decisions = by_name(metrics, "hwtune_report_decision_seconds_count")
    assert list(decisions.values()) == [float(study.reports)]


def test_gauges_equal_the_study_state():
    metrics, study, _, _ = run_study(60)
    summary = study.summary()
    phases = {dict(k)["phase"]: v for k, v in by_name(metrics, "hwtune_study_trials").items()}
    assert phases == {p: float(n) for p, n in summary.counts.items()}
    usd = by_name(metrics, "hwtune_study_spent_usd")
    assert sum(usd.values()) == pytest.approx(summary.spend.cost_usd) and summary.spend.cost_usd > 0
    gpu = by_name(metrics, "hwtune_study_gpu_seconds")
    assert sum(gpu.values()) == pytest.approx(summary.spend.gpu_hours * 3600)
    assert {dict(k)["pool"]: dict(k)["gpu_type"] for k in usd} == {
        "a100": "nvidia-a100-80gb", "h100": "nvidia-h100-80gb"}
    assert list(by_name(metrics, "hwtune_study_budget_usd").values()) == [5000.0]
    assert list(by_name(metrics, "hwtune_study_front_size").values()) == [float(len(summary.front))]
    (hv,) = by_name(metrics, "hwtune_study_hypervolume").values()
    assert hv > 0 and math.isfinite(hv)
    # front points: exactly the selected front, coordinates from each trial's last report
    chosen = select_front(summary.front, study.config.objectives)
    trials = {int(dict(k)["point"]): v for k, v in by_name(metrics, "hwtune_study_front_point_trial").items()}
    assert trials == {i: float(p.trial_id) for i, p in enumerate(chosen)}
    points = by_name(metrics, "hwtune_study_front_point")
    for i, p in enumerate(chosen):
        for objective in ("val_error", "runtime", "cost"):
            key = tuple(sorted({"namespace": "ml", "study": "demo", "point": str(i),
                                "objective": objective}.items()))
            assert points[key] == pytest.approx(p.values[objective])


def test_front_series_are_replaced_as_the_front_changes():
    metrics, study, tuner, _ = run_study(300, steps=25)
    front_then = {int(dict(k)["point"]) for k in by_name(metrics, "hwtune_study_front_point_trial")}
    assert front_then == set(range(min(len(study.front()), FRONT_LIMIT)))
    tuner.run()
    now = by_name(metrics, "hwtune_study_front_point_trial")
    assert len(now) == min(len(study.front()), FRONT_LIMIT)
    assert {v for v in now.values()} == {float(p.trial_id) for p in
                                          select_front(study.front(), study.config.objectives)}


def test_select_front_keeps_both_ends_and_an_even_spread():
    objectives = [Objective("err")]
    points = [FrontPoint(trial_id=i, hardware=None, resource=1, values={"err": float(100 - i)})
              for i in range(100)]
    chosen = select_front(points, objectives, limit=5)
    assert [p.values["err"] for p in chosen] == [1.0, 26.0, 51.0, 75.0, 100.0]
    assert select_front(points[:3], objectives, limit=5) == sorted(points[:3], key=lambda p: p.values["err"])
    with pytest.raises(ValueError, match="front limit"):
        select_front(points, objectives, limit=0)


def series_per_study(metrics: StudyMetrics) -> int:
    return sum(1 for s in samples(metrics) if s.labels.get("study") == "demo")


def test_series_per_study_are_bounded_at_1000_trials():
    small, study_small, _, _ = run_study(100)
    big, study_big, _, _ = run_study(1000)
    n_small, n_big = series_per_study(small), series_per_study(big)
    pools, coords, hist_series = 2, 3, 3 * (16 + 1 + 2)  # 3 histograms: buckets+Inf, sum, count
    bound = 6 + 2 * pools + 7 * pools + 3 + 1 + 1 + FRONT_LIMIT * (coords + 1) + hist_series + 2
    print(f"\nseries for one study: {n_small} at {len(study_small.trials)} trials, "
          f"{n_big} at {len(study_big.trials)} trials (bound {bound}; "
          f"front {len(study_big.front())} points, {min(len(study_big.front()), FRONT_LIMIT)} exported)")
    assert len(study_big.trials) == 1000
    assert n_big <= bound
    assert len(study_big.front()) > FRONT_LIMIT or n_big <= n_small + FRONT_LIMIT * (coords + 1)


def test_unwatch_removes_every_series_of_the_study():
    metrics, _, _, obs = run_study(30)
    obs.surrogate_fallback()
    assert series_per_study(metrics) > 0
    metrics.unwatch("ml", "demo")
    assert series_per_study(metrics) == 0


def test_surrogate_calls_errors_and_fallbacks_are_counted():
    metrics, _, _, obs = run_study(5)
    with obs.surrogate_call():
        pass
    with pytest.raises(ConnectionError):
        with obs.surrogate_call():
            raise ConnectionError("surrogate down")
    obs.surrogate_fallback()
    assert list(by_name(metrics, "hwtune_surrogate_request_seconds_count").values()) == [2.0]
    assert list(by_name(metrics, "hwtune_surrogate_errors_total").values()) == [1.0]
    assert list(by_name(metrics, "hwtune_surrogate_fallbacks_total").values()) == [1.0]


def test_two_studies_share_one_registry_with_distinct_labels():
    metrics, _, _, _ = run_study(10, name="a")
    run_study(10, metrics=metrics, name="b")
    studies = {dict(k)["study"] for k in by_name(metrics, "hwtune_study_trials")}
    assert studies == {"a", "b"}
    with pytest.raises(ValueError, match="already watched"):
        run_study(5, metrics=metrics, name="a")


def test_metrics_are_served_over_http_on_loopback():
    metrics, study, _, _ = run_study(10)
    server = metrics.serve(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'hwtune_study_trials{namespace="ml",phase="Completed",study="demo"}' in body
    assert "hwtune_trial_launches_total" in body


def test_surrogate_fallback_notes_on_events_are_counted():
    from hwtune.engine.events import StudyEvent

    metrics, study, _, obs = run_study(5)
    trial = study.trials[0].trial_id
    obs.on_event(StudyEvent(seq=99, kind=EventKind.RUNNING, trial_id=trial, time=0.0, extra={
        "notes": ["surrogate: connection refused; this suggestion fell back to random search",
                  "surrogate: still falling back to random search after a failure (2 more)",
                  "searcher: something else"]}))
    assert list(by_name(metrics, "hwtune_surrogate_fallbacks_total").values()) == [2.0]
    assert list(by_name(metrics, "hwtune_surrogate_errors_total").values()) == [1.0]

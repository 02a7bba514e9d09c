"""Status size bounds (hwtune.backends.kubernetes.status): a 20,000-trial study's TuningStudy
stays under 100 KiB whatever its front, and a TuningTrial's learning curve is bounded, keeping
its last, first and best points."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time

from hwtune.api.records import Goal, Objective
from hwtune.backends.kubernetes import status as bounds
from hwtune.backends.kubernetes.log import encode_event
from hwtune.engine import Study, StudyConfig
from hwtune.engine.config import pool_catalog
from tests.backends.kube_fakes import POOLS, FakeKube, study_spec
from tests.backends.test_kubernetes_runner import make_runner

KIB = 1024


def test_spread_order_is_a_permutation_whose_prefixes_cover_the_range() -> None:
    for n in (0, 1, 2, 3, 7, 100, 1001):
        order = bounds.spread_order(n)
        assert sorted(order) == list(range(n))
    order = bounds.spread_order(1001)
    assert order[:3] == [0, 1000, 500]
    # Any prefix leaves no gap wider than about twice the even spacing.
    prefix = sorted(order[:17])
    assert max(b - a for a, b in zip(prefix, prefix[1:])) <= 2 * 1000 / 16


def _sphere(n: int, dims: int, seed: int = 0) -> list[list[float]]:
    """``n`` mutually non-dominated points (on the positive unit sphere)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        v = [abs(rng.gauss(0, 1)) + 1e-9 for _ in range(dims)]
        norm = math.sqrt(sum(x * x for x in v))
        out.append([x / norm for x in v])
    return out


def test_a_front_of_thousands_keeps_each_objectives_best_within_both_bounds() -> None:
    objectives = [Objective("a"), Objective("b", Goal.MAXIMIZE), Objective("c")]
    points = [{"trialId": i, "parameters": {f"p{k}": "x" * 200 for k in range(64)},
               "objectives": {"a": v[0], "b": -v[1], "c": v[2]}}
              for i, v in enumerate(_sphere(5000, 3))]
    points.sort(key=lambda p: p["objectives"]["a"])
    listed = bounds.bounded_front(points, lambda p: p["objectives"], objectives,
                                  bounds.json_bytes)
    assert 0 < len(listed) <= bounds.MAX_FRONT_POINTS
    assert sum(bounds.json_bytes(p) for p in listed) <= bounds.FRONT_BYTES
    ids = [p["trialId"] for p in listed]
    for o in objectives:
        best = min(points, key=lambda p: o.loss(p["objectives"][o.metric]))
        assert best["trialId"] in ids, o.metric
    assert ids == [p["trialId"] for p in points if p["trialId"] in set(ids)]  # order kept
    small = [{**p, "parameters": {"p0": "x"}} for p in points[:10]]
    assert bounds.bounded_front(small, lambda p: p["objectives"], objectives,
                                bounds.json_bytes) == small  # a small front is listed whole


def test_the_learning_curve_keeps_last_first_and_best_within_its_bounds() -> None:
    objectives = [Objective("loss"), Objective("acc", Goal.MAXIMIZE)]
    rng = random.Random(1)
    curve = [{"resource": r, "metrics": {"loss": rng.random(), "acc": rng.random(),
                                         "runtime": float(r), "cost": r * 0.1}}
             for r in range(1, 5001)]
    kept = bounds.bounded_curve(curve, objectives)
    assert len(kept) == bounds.MAX_CURVE_POINTS
    assert sum(bounds.json_bytes(p) for p in kept) <= bounds.CURVE_BYTES
    assert kept[0] is curve[0] and kept[-1] is curve[-1]
    assert [p["resource"] for p in kept] == sorted(p["resource"] for p in kept)
    assert min(curve, key=lambda p: p["metrics"]["loss"]) in kept
    assert max(curve, key=lambda p: p["metrics"]["acc"]) in kept
    # 256 extra metrics of long names: the objectives and built-ins survive, the bound holds.
    wide = [{"resource": r, "metrics": {**p["metrics"],
                                        **{f"m{'x' * 100}{k}": 1.0 for k in range(256)}}}
            for r, p in enumerate(curve[:300], start=1)]
    kept = bounds.bounded_curve(wide, objectives)
    assert sum(bounds.json_bytes(p) for p in kept) <= bounds.CURVE_BYTES
    assert set(kept[-1]["metrics"]) == {"loss", "acc", "runtime", "cost"}
    assert bounds.bounded_curve(curve[:5], objectives) == curve[:5]


def _wide_spec(trials: int) -> dict:
    """Four objectives over 16 parameters of long categorical values, two resource levels (every
    trial completes at its one report, at level 2), a big budget."""
    spec = study_spec()
    values = [f"{'v' * 300}{i}" for i in range(4)]
    spec["parameters"] = {f"param_{k:02d}_{'n' * 40}": {"type": "categorical", "values": values}
                          for k in range(16)}
    spec["objectives"] = [{"metric": "val_error", "goal": "minimize"},
                          {"metric": "latency", "goal": "minimize"},
                          {"metric": "energy", "goal": "minimize"},
                          {"metric": "cost", "goal": "minimize"}]
    spec["fidelity"] = {"resource": "epoch", "min": 1, "max": 2, "reductionFactor": 2}
    spec["algorithm"] = {"scheduler": "fifo", "searcher": "random", "seed": 1}
    spec["budget"] = {"maxTrials": trials, "maxParallelTrials": 8}
    return spec


def test_a_20000_trial_study_with_a_huge_front_stays_under_100_kib() -> None:
    """The worst case for the front: every trial non-dominated (points on a sphere in the three
    reported objectives), 16 long parameters per point, 20,000 trials, through the runner's own
    load (the log replayed) and status code."""
    trials = 20000
    spec = _wide_spec(trials)
    config = StudyConfig.from_spec(spec, catalog=pool_catalog(POOLS))
    study = Study(config)
    for tid, (a, b, c) in enumerate(_sphere(trials, 3, seed=2)):
        start = study.start_next()
        assert start is not None and start.trial.trial_id == tid
        study.report(tid, 2, {"val_error": a, "latency": b, "energy": c}, runtime_seconds=60.0)
    kube = FakeKube()
    chunk = 0
    for event in study.events:
        kube.chunks.setdefault(event.seq // 500, {})[f"e{event.seq:09d}"] = encode_event(event)
        chunk = max(chunk, event.seq // 500)
    runner = make_runner(kube, spec)

    async def main() -> dict:
        await runner.load()
        assert runner.failed is None, runner.failed
        t0 = time.perf_counter()
        status = runner.study_status(final=True)
        assert time.perf_counter() - t0 < 30
        return status

    status = asyncio.run(main())
    body = {"apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
            "metadata": {"name": "st", "namespace": "ns"}, "spec": spec, "status": status}
    size = len(json.dumps(body).encode())
    assert size < 100 * KIB, size
    assert status["trials"]["total"] == trials == status["trials"]["completed"]
    assert status["frontSize"] > 1000  # the front really is huge ...
    assert len(status["paretoFront"]) <= bounds.MAX_FRONT_POINTS  # ... and summarised
    assert status["frontOmitted"] == status["frontSize"] - len(status["paretoFront"])
    assert "hwtune.io/study=st" in status["frontSource"]
    for metric, best in status["bestPerObjective"].items():  # the extremes are always listed
        assert best["value"] in [p["objectives"][metric] for p in status["paretoFront"]], metric


def test_a_trial_of_a_thousand_reports_has_a_bounded_tuningtrial_status() -> None:
    from hwtune.backends.kubernetes.runner import trial_status_of

    spec = study_spec()
    spec["fidelity"] = {"resource": "epoch", "min": 1, "max": 1000, "reductionFactor": 3}
    spec["algorithm"] = {"scheduler": "fifo", "searcher": "random", "seed": 1}
    study = Study(StudyConfig.from_spec(spec, catalog=pool_catalog(POOLS)))
    tid = study.start_next().trial.trial_id
    rng = random.Random(3)
    for epoch in range(1, 1001):
        study.report(tid, epoch, {"val_error": rng.random(), "extra": 1.0},
                     runtime_seconds=float(epoch))
    status = trial_status_of(study, tid, "st", {})
    curve = status["learningCurve"]
    assert status["reports"] == 1000 and status["phase"] == "Completed"
    assert len(curve) <= bounds.MAX_CURVE_POINTS
    assert bounds.json_bytes(status) < bounds.CURVE_BYTES + 4 * KIB
    assert curve[0]["resource"] == 1 and curve[-1]["resource"] == 1000
    best = min(study.trial(tid).observations, key=lambda o: o.metrics["val_error"])
    assert best.resource in [p["resource"] for p in curve]

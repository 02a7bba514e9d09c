"""DyHPO: the deep-kernel GP fit, freeze-thaw choices, and a simulated study that rebuilds
exactly (the model is not asked again for the past, and decides the same afterwards)."""

from __future__ import annotations

import numpy as np
import pytest

from hwtune.api.records import Decision, TrialPhase
from hwtune.backends.simulated import SimulatedBackend, synthetic_table
from hwtune.engine import Study, StudyConfig, Tuner
from hwtune.engine.events import EventKind
from hwtune.surrogate.freeze_thaw import DyHPOScheduler, expected_improvement
from hwtune.surrogate.models import Points, SurrogateNet, fit

FAST = {"fullFitSteps": 40, "refitSteps": 5, "freshCandidates": 16, "initialTrials": 2}


def spec(**algorithm) -> dict:
    return {
        "objectives": [{"metric": "val_error"}],
        "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                       "width": {"type": "int", "min": 8, "max": 128}},
        "fidelity": {"resource": "epoch", "min": 1, "max": 5},
        "algorithm": {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 4,
                      "settings": dict(FAST), **algorithm},
        "budget": {"maxTrials": 8, "maxParallelTrials": 2},
    }


def test_gp_fit_raises_the_marginal_likelihood():
    rng = np.random.default_rng(0)
    n, dx, length = 40, 3, 6
    x = rng.uniform(size=(n, dx))
    budget = rng.integers(1, length + 1, size=n) / length
    y = np.sin(3 * x[:, 0]) + 0.5 * x[:, 1] - budget + 0.05 * rng.standard_normal(n)
    y = (y - y.mean()) / y.std()
    points = Points(x, budget, np.zeros((n, length)), np.zeros((n, length)), -np.ones(n, dtype=int))
    for variant in ("dyhpo", "gp"):
        net = SurrogateNet(dx, length, variant)
        net.set_points(points, [])
        result = fit(net, y, steps=150, seed=1)
        assert not result.diverged
        assert result.mll_end > result.mll_start + 0.2, (variant, result)


def test_expected_improvement_prefers_low_mean_and_high_uncertainty():
    ei = expected_improvement(np.array([0.0, 1.0, 1.0]), np.array([0.1, 0.1, 2.0]), np.array([0.5] * 3))
    assert ei[0] > ei[1] and ei[2] > ei[1]


def _drive(study: Study, config, levels: list[float]) -> int:
    start = study.create_trial(config, max_resource=len(levels))
    tid = start.trial.trial_id
    study.trial_running(tid)
    for r, value in enumerate(levels, start=1):
        decision = study.report(tid, r, {"val_error": value}, runtime_seconds=10.0 * r)
    assert decision is Decision.PAUSE
    return tid


def test_dyhpo_resumes_the_trial_whose_curve_is_best():
    config = StudyConfig.from_spec(spec(settings={**FAST, "fullFitSteps": 200, "refitSteps": 20}))
    bad = [{"lr": 10 ** -(1 + 0.2 * i), "width": 8 + 8 * i} for i in range(5)]
    # Fresh candidates: near neighbours of configs already seen to be bad.
    near = [{"lr": c["lr"], "width": c["width"] + 2} for c in bad]
    good_config = {"lr": 1e-4, "width": 128}
    ctx = config.search_context()
    searcher = config.make_searcher(context=ctx, candidates=bad + near + [good_config])
    scheduler = config.make_scheduler(searcher, context=ctx)
    assert isinstance(scheduler, DyHPOScheduler)
    study = Study(config, scheduler)
    rng = np.random.default_rng(3)
    for c in bad:
        start = 0.9 + 0.05 * rng.uniform()
        _drive(study, c, [start, start - 0.01, start - 0.02])
    good = _drive(study, good_config, [0.3, 0.2, 0.12])
    assert all(t.phase is TrialPhase.PAUSED for t in study.trials)
    choice = scheduler.suggest()
    cands, mean, std, ei = scheduler.core.last_scores
    assert sum(c[0] == "new" for c in cands) == len(near)  # every unseen config was a candidate
    assert sum(c[0] == "resume" for c in cands) == len(bad) + 1  # every paused trial, at budget + 1
    assert choice is not None and choice.is_resume, (choice, list(zip(cands, mean, std, ei)))
    assert choice.resume_trial_id == good
    assert choice.max_resource == 4  # one step: budget + 1


def _run(config: StudyConfig, table, **kw):
    backend = SimulatedBackend(table, config.hardware_model, n_workers=2, seed=0)
    ctx = config.search_context()
    scheduler = config.make_scheduler(config.make_searcher(context=ctx, candidates=table.configs()),
                                      context=ctx)
    study = Study(config, scheduler, clock=backend.clock, **kw)
    result = Tuner(study, backend).run()
    return study, result


def _fresh(config: StudyConfig, table):
    ctx = config.search_context()
    return config.make_scheduler(config.make_searcher(context=ctx, candidates=table.configs()),
                                 context=ctx)


def test_simulated_study_runs_freeze_thaw_and_rebuilds_exactly():
    config = StudyConfig.from_spec(spec())
    table = synthetic_table(config.space, 30, 5, seed=1)
    study, result = _run(config, table)
    assert "maxTrials 8" in result.stop_reason
    assert len(result.trials) == 8
    assert all(t.phase is TrialPhase.COMPLETED for t in result.trials)
    kinds = [e.kind for e in study.events]
    assert kinds.count(EventKind.RESUMED) > 10  # freeze-thaw: trials come back one step at a time
    # Every segment is one step: each created/resumed trial reports exactly once before it pauses.
    reports_after: dict[int, int] = {}
    for e in study.events:
        if e.kind in (EventKind.CREATED, EventKind.RESUMED):
            assert reports_after.get(e.trial_id, 1) == 1
            reports_after[e.trial_id] = 0
        elif e.kind is EventKind.OBSERVED:
            reports_after[e.trial_id] += 1
    calls = {"n": 0}
    scheduler = _fresh(config, table)
    original_choose = scheduler.core.choose

    def counting(**kw):
        calls["n"] += 1
        return original_choose(**kw)

    scheduler.core.choose = counting
    rebuilt = Study.rebuild(config, [e.to_dict() for e in study.events], scheduler=scheduler,
                            strict=True)
    assert calls["n"] == 0  # the model was not asked about the past
    state = lambda s: [(t.trial_id, dict(t.config), t.phase, [(o.resource, dict(o.metrics))
                                                              for o in t.observations])
                       for t in s.trials]
    assert state(rebuilt) == state(study)
    assert [e.to_dict() for e in rebuilt.events] == [e.to_dict() for e in study.events]


@pytest.mark.slow
def test_a_rebuilt_prefix_decides_what_the_original_decided_next():
    config = StudyConfig.from_spec(spec())
    table = synthetic_table(config.space, 30, 5, seed=2)
    study, _ = _run(config, table)
    events = [e.to_dict() for e in study.events]
    suggested = [e for e in study.events
                 if e.kind in (EventKind.CREATED, EventKind.RESUMED) and e.suggested]
    # Cut points past the random initial design, where the model decided.
    for e in [suggested[6], suggested[len(suggested) // 2], suggested[-2]]:
        prefix = Study.rebuild(config, events[: e.seq], scheduler=_fresh(config, table), strict=True)
        start = prefix.start_next()
        assert start is not None
        assert start.trial.trial_id == e.trial_id
        assert start.resumed == (e.kind is EventKind.RESUMED)
        assert start.max_resource == e.max_resource
        if e.kind is EventKind.CREATED:
            assert dict(start.trial.config) == dict(e.config)

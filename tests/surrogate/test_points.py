"""The engine side of the surrogate (numpy only): multi-objective scalarisation and the point
set a study turns into."""

from __future__ import annotations

import numpy as np

from hwtune.api.records import Decision
from hwtune.engine import Study, StudyConfig
from hwtune.surrogate.points import Scalariser


def _config(objectives) -> StudyConfig:
    return StudyConfig.from_spec({
        "objectives": objectives,
        "parameters": {"x": {"type": "float", "min": 0.0, "max": 1.0}},
        "fidelity": {"resource": "epoch", "min": 1, "max": 4},
        "algorithm": {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 0},
    })


def test_random_scalarisations_aim_at_different_parts_of_the_front():
    config = _config([{"metric": "val_error"}, {"metric": "accuracy", "goal": "maximize"}])
    ctx = config.search_context()
    losses = np.array([[0.1, -0.6], [0.3, -0.9], [0.5, -0.95]])  # a front: error vs accuracy
    picks = set()
    for k in range(30):
        w = np.random.default_rng([0, k]).dirichlet(np.ones(2))
        s = Scalariser(ctx, w).fit(losses)
        picks.add(int(np.argmin(s(losses))))
    assert picks == {0, 1, 2}  # every front point is the best for some weights
    # Single objective: the loss itself.
    single = Scalariser(_config([{"metric": "val_error"}]).search_context())
    assert np.allclose(single(np.array([[0.2], [0.7]])), [0.2, 0.7])


def test_the_training_set_follows_report_order_and_uses_each_trials_curve():
    config = _config([{"metric": "val_error"}, {"metric": "cost"}])
    study = Study(config)
    core = study.scheduler.core
    for x, curve in ((0.1, [0.9, 0.8]), (0.7, [0.5, 0.3, 0.2])):
        tid = study.create_trial({"x": x}, max_resource=len(curve)).trial.trial_id
        for r, v in enumerate(curve, start=1):
            d = study.report(tid, r, {"val_error": v}, runtime_seconds=10.0 * r)
        assert d is Decision.PAUSE
    assert core.arrivals == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    (train, y), (full, full_y), scal, dx, _ = core.training_set(np.random.default_rng(0))
    assert len(train) == 5 and len(full) == 4  # the full-fit set: the first 2^k points
    assert np.allclose(train.budget, [0.25, 0.5, 0.25, 0.5, 0.75])
    # The last point (trial 1 at level 3) sees its own levels 1 and 2 in its curve, not level 3.
    assert train.mask[4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert train.curve[4][:2].tolist() == [y[2], y[3]]
    assert dx == 1

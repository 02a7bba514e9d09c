"""MO transfer: Gaussian-copula models of related studies, Thompson samples, non-dominated picks."""

from __future__ import annotations

import numpy as np
import pytest

from hwtune.api.records import Goal, Hardware, Objective, TrialPhase
from hwtune.engine import Study, StudyConfig
from hwtune.space import SearchSpace
from hwtune.transfer import PastStudy, PastTrial, TransferError, make_transfer_searcher
from hwtune.transfer.mo import CopulaTransferSearcher, copula_scores
from tests.transfer.test_transfer_searchers import feed

PARAMS = {"a": {"type": "float", "min": 0.0, "max": 1.0},
          "b": {"type": "float", "min": 0.0, "max": 1.0}}
T4, A100 = Hardware("t4"), Hardware("a100")
OBJ = (Objective("val_error"), Objective("runtime"))


def related(seed: int, scale: float, n: int = 40) -> PastStudy:
    """A related task: error best near a = 0.2 (levels differ by task), a100 four times faster."""
    rng = np.random.default_rng(seed)
    space = SearchSpace.from_spec(PARAMS)
    trials = []
    for i in range(n):
        c = space.sample(rng)
        hw = (T4, A100)[i % 2]
        err = scale * (c["a"] - 0.2) ** 2 + 0.05 * rng.random() + scale
        runtime = (4.0 if hw == T4 else 1.0) * (1 + c["b"]) * 10 * scale
        trials.append(PastTrial(i, c, hw, TrialPhase.COMPLETED,
                                ((3, {"val_error": err, "runtime": runtime}),)))
    return PastStudy(f"task{seed}", "test", PARAMS, OBJ, (T4, A100), 3, tuple(trials))


def test_copula_scores_are_ranks_on_a_normal_scale() -> None:
    z = copula_scores([(3, 0.5), (3, 0.1), (3, 0.9), (1, 0.0)], 3, "val_error")
    assert np.argsort(z).tolist() == [1, 0, 2, 3]  # stopped at level 1 ranks last
    assert z.mean() == pytest.approx(0.0) and z[1] < 0 < z[2]
    # runtime grows with training: a trial stopped at level 1 is scaled to the full level 3.
    z = copula_scores([(3, 6.0), (1, 1.5), (1, 2.5)], 3, "runtime")
    assert np.argsort(z).tolist() == [1, 0, 2]


def test_first_suggestions_come_from_the_transferred_front() -> None:
    studies = [related(1, 1.0), related(2, 3.0)]
    space = SearchSpace.from_spec(PARAMS)
    s = CopulaTransferSearcher(space, (T4, A100), 0, objectives=OBJ, studies=studies)
    got = feed(s, 10, lambda c: 0.0)
    # Good configs of the related tasks: a near 0.2 and small b (fast); random would give a mean
    # |a - 0.2| of about 0.34 and b about 0.5.
    assert np.mean([abs(c["a"] - 0.2) for c, _ in got]) < 0.2
    assert np.mean([c["b"] for c, _ in got]) < 0.4
    # Both ends of the error/runtime trade-off are proposed, not one point.
    assert len({config_a for config_a in (round(c["a"], 6) for c, _ in got)}) == 10


def test_mo_copula_runs_under_mo_asha_and_replays() -> None:
    spec = {"objectives": [{"metric": "val_error"}, {"metric": "runtime"}],
            "parameters": PARAMS, "hardware": {"pools": ["t4", "a100"]},
            "fidelity": {"min": 1, "max": 3},
            "algorithm": {"scheduler": "mo-asha", "searcher": "transfer", "seed": 2,
                          "settings": {"moCandidates": 64}},
            "transfer": {"fromStudies": ["task1", "task2"], "method": "mo-copula"}}
    config = StudyConfig.from_spec(spec).with_transfer_studies([related(1, 1.0), related(2, 2.0)])
    study = Study(config)
    for _ in range(8):
        start = study.start_next()
        trial = start.trial
        study.trial_running(trial.trial_id)
        for r in range(1, 4):
            d = study.report(trial.trial_id, r, {"val_error": (trial.config["a"] - 0.2) ** 2 + 1 / r},
                             runtime_seconds=float(r))
            if d.halts or not study.trial(trial.trial_id).phase.is_active():
                break
        if study.trial(trial.trial_id).phase.is_active():
            study.complete_trial(trial.trial_id, runtime_seconds=3.0)
    rebuilt = Study.rebuild(config, [e.to_dict() for e in study.events])
    assert [t.config for t in rebuilt.trials] == [t.config for t in study.trials]


def test_unusable_related_studies_are_refused() -> None:
    other = PastStudy("x", "test", PARAMS, (Objective("acc", Goal.MAXIMIZE),), (), 1, tuple(
        PastTrial(i, {"a": 0.1 * i, "b": 0.5}, None, TrialPhase.COMPLETED, ((1, {"acc": 0.5}),))
        for i in range(5)))
    with pytest.raises(TransferError, match="no trials usable for objectives val_error, runtime"):
        make_transfer_searcher(SearchSpace.from_spec(PARAMS), None, 0, {}, objectives=OBJ,
                               transfer_studies=[other], transfer_method="mo-copula")

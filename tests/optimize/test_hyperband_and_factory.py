"""Hyperband bracket assignment and decisions; make_scheduler kinds and argument errors."""

import numpy as np
import pytest

from hwtune.api.records import Decision, Objective, Observation, TrialRecord
from hwtune.optimize.schedulers import SCHEDULER_KINDS, FIFOScheduler, make_scheduler
from hwtune.optimize.schedulers.asha import ASHAScheduler
from hwtune.optimize.schedulers.hyperband import HyperbandScheduler, bracket_probabilities
from hwtune.optimize.schedulers.moasha import MOASHAScheduler
from hwtune.optimize.searchers.base import Searcher


class OneSearcher(Searcher):
    def suggest(self):
        return {"x": 1}, None


def hyperband(**kwargs):
    kwargs.setdefault("seed", 0)
    return HyperbandScheduler(OneSearcher(), [Objective("loss")], resource_min=1, resource_max=27,
                              reduction_factor=3, **kwargs)


def test_bracket_probabilities_follow_synchronous_hyperband_sizes():
    # K = 2 rungs (1, 3) below 9: sizes 3/3*9 = 9, 3/2*3 = 4.5, 3/1*1 = 3 -> 9 : 4.5 : 3.
    assert bracket_probabilities(2, 3, 3) == pytest.approx([9 / 16.5, 4.5 / 16.5, 3 / 16.5])
    assert bracket_probabilities(2, 3, 1) == pytest.approx([1.0])


def test_brackets_have_shifted_grace_periods():
    scheduler = hyperband()
    assert [tuple(r.level for r in scheduler.rungs(b)) for b in range(4)] == [(1, 3, 9), (3, 9), (9,), ()]


def test_bracket_is_a_function_of_seed_and_trial_id_and_follows_the_probabilities():
    a, b, c = hyperband(seed=5), hyperband(seed=5), hyperband(seed=6)
    ids = list(range(3000))
    for scheduler, order in ((a, ids), (b, ids[::-1]), (c, ids)):
        for trial_id in order:
            scheduler.on_trial_add(TrialRecord(trial_id, {}))
    brackets_a = [a.bracket_of(t) for t in ids]
    assert brackets_a == [b.bracket_of(t) for t in ids]  # insertion order does not matter
    assert brackets_a != [c.bracket_of(t) for t in ids]
    frequencies = np.bincount(brackets_a, minlength=4) / len(ids)
    assert frequencies == pytest.approx(a.bracket_probabilities, abs=0.03)


def test_a_trial_is_only_judged_at_its_brackets_rungs():
    scheduler = hyperband(brackets=4)
    ids = {}
    trial_id = 0
    while len(ids) < 4:  # find one trial per bracket
        scheduler.on_trial_add(TrialRecord(trial_id, {}))
        ids.setdefault(scheduler.bracket_of(trial_id), trial_id)
        trial_id += 1
    def report(tid, resource, loss):
        trial = TrialRecord(tid, {})
        obs = Observation(tid, resource, {"loss": loss})
        trial.observations.append(obs)
        return scheduler.on_trial_result(trial, obs)
    # Bracket 1 starts judging at 3: its first report at 1 records nothing.
    assert report(ids[1], 1, 5.0) is Decision.CONTINUE
    assert len(scheduler.rungs(1)[0]) == 0
    assert report(ids[1], 3, 5.0) is Decision.CONTINUE
    assert len(scheduler.rungs(1)[0]) == 1 and len(scheduler.rungs(0)[1]) == 0
    # Bracket 3 has no rungs: never stopped.
    for resource in range(1, 28):
        assert report(ids[3], resource, 1e9) is Decision.CONTINUE


def test_brackets_setting_is_validated():
    with pytest.raises(ValueError, match=r"algorithm.settings.brackets: must be an integer in \[1, 4\]"):
        hyperband(brackets=5)
    with pytest.raises(ValueError, match="algorithm.settings.brackets"):
        make_scheduler("hyperband", searcher=OneSearcher(), objectives=[Objective("loss")],
                       resource_min=1, resource_max=27, reduction_factor=3, seed=0,
                       settings={"brackets": "two"})


@pytest.mark.parametrize(
    "kind, cls, promotion",
    [("fifo", FIFOScheduler, None), ("random", FIFOScheduler, None), ("asha", ASHAScheduler, False),
     ("asha-promotion", ASHAScheduler, True), ("hyperband", HyperbandScheduler, False),
     ("mo-asha", MOASHAScheduler, False), ("mo-asha-promotion", MOASHAScheduler, True)],
)
def test_make_scheduler_builds_every_kind(kind, cls, promotion):
    scheduler = make_scheduler(kind, searcher=OneSearcher(), objectives=[Objective("loss")],
                               resource_min=1, resource_max=9, reduction_factor=3, seed=0,
                               settings={"searcherOnlyOption": 1})
    assert type(scheduler) is cls
    if promotion is not None:
        assert scheduler.promotion is promotion
    assert set(SCHEDULER_KINDS) == {"fifo", "random", "asha", "asha-promotion", "hyperband",
                                    "mo-asha", "mo-asha-promotion", "dyhpo"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kind": "bogus"}, "algorithm.scheduler: unknown scheduler 'bogus'"),
        ({"resource_min": 0}, "resource_min: must be an integer >= 1"),
        ({"resource_max": 0}, r"resource_max: must be an integer >= resource_min \(1\)"),
        ({"reduction_factor": 1}, "reduction_factor: must be a number > 1"),
        ({"objectives": []}, "objectives: at least one objective"),
        ({"objectives": [Objective("a"), Objective("a")]}, "objectives\\[1\\]: metric 'a' is listed twice"),
        ({"seed": 1.5}, "algorithm.seed: must be an integer"),
    ],
)
def test_make_scheduler_refuses_bad_arguments_by_name(overrides, message):
    arguments = dict(kind="asha", searcher=OneSearcher(), objectives=[Objective("loss")],
                     resource_min=1, resource_max=9, reduction_factor=3, seed=0)
    arguments.update(overrides)
    kind = arguments.pop("kind")
    with pytest.raises(ValueError, match=message):
        make_scheduler(kind, **arguments)


def test_searcher_must_be_a_searcher():
    with pytest.raises(TypeError, match="searcher: expected a Searcher"):
        make_scheduler("fifo", searcher=object(), objectives=[Objective("loss")], resource_max=9)

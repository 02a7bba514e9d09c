"""MO-ASHA rung decisions, worked by hand with mixed goals (accuracy up, cost down).

The nine results at rung 1 (eta 3), as (accuracy, cost):

    t0 (0.90, 4.0)  t1 (0.80, 1.0)  t2 (0.85, 2.0)  t3 (0.70, 3.0)  t4 (0.95, 8.0)
    t5 (0.60, 0.5)  t6 (0.88, 5.0)  t7 (0.75, 1.5)  t8 (0.50, 6.0)

Fronts: F0 = {t0, t1, t2, t4, t5}; F1 = {t6 (dominated by t0), t7 (by t1)}; F2 = {t3 (by t7)};
F3 = {t8}. Epsilon-net inside F0, normalised over F0 (accuracy loss span 0.35, cost span 7.5):
t4 (most accurate) first; farthest from it t5 (distance sqrt 2); then t2 (0.742 from t5,
0.849 from t4) beats t1 (0.575) and t0 (0.552); then t0, t1. Full order
t4, t5, t2, t0, t1, t6, t7, t3, t8: when all nine are in, the top ceil(9/3) = 3 are t4, t5, t2.

Arrival in id order, keep iff position < n/3 (the rule; Syne Tune keeps position/n <= 1/eta):
  t0: n=1, alone -> CONTINUE
  t1: n=2, F0 {t0, t1}, the net starts at the more accurate t0 -> t1 at 1, 1 < 2/3 fails: STOP
  t2: n=3, F0 {t0, t1, t2} normalised: t0 (0, 1), t1 (1, 0), t2 (0.5, 0.33) -> order t0, t1,
      t2 -> position 2 < 1 fails: STOP
  t3: n=4, dominated by t1 -> position >= 3 -> STOP
  t4: n=5, most accurate -> position 0 -> CONTINUE
  t5: n=6, F0 is the five points above -> position 1 < 2 -> CONTINUE
  t6, t7, t8: in later fronts behind 5 points -> STOP
"""

import pytest

from hwtune.api.records import Decision, Goal, Objective, Observation, TrialPhase, TrialRecord
from hwtune.optimize.schedulers import make_scheduler
from hwtune.optimize.schedulers.moasha import MOASHAScheduler
from hwtune.optimize.searchers.base import Searcher

RESULTS = [
    (0.90, 4.0), (0.80, 1.0), (0.85, 2.0), (0.70, 3.0), (0.95, 8.0),
    (0.60, 0.5), (0.88, 5.0), (0.75, 1.5), (0.50, 6.0),
]
OBJECTIVES = [Objective("accuracy", Goal.MAXIMIZE), Objective("cost", Goal.MINIMIZE)]


class FixedSearcher(Searcher):
    def __init__(self):
        self.count = 0

    def suggest(self):
        self.count += 1
        return {"i": self.count}, None


def _feed(scheduler, results, resource=1):
    decisions = []
    for trial_id, (accuracy, cost) in enumerate(results):
        trial = TrialRecord(trial_id, {"i": trial_id})
        scheduler.on_trial_add(trial)
        obs = Observation(trial_id, resource, {"accuracy": accuracy, "cost": cost, "runtime": 1.0})
        trial.observations.append(obs)
        decision = scheduler.on_trial_result(trial, obs)
        if decision is Decision.PAUSE:  # what the engine does with the answer
            trial.phase = TrialPhase.PAUSED
        decisions.append(decision)
    return decisions


def mo_asha(**kwargs):
    return MOASHAScheduler(FixedSearcher(), OBJECTIVES, resource_min=1, resource_max=9,
                           reduction_factor=3, **kwargs)


def test_stopping_decisions_in_arrival_order_by_hand():
    C, S = Decision.CONTINUE, Decision.STOP
    assert _feed(mo_asha(), RESULTS) == [C, S, S, S, C, C, S, S, S]


def test_all_nine_recorded_exactly_three_pass_with_epsilon_net():
    scheduler = mo_asha()
    _feed(scheduler, RESULTS)
    rung = scheduler.rungs()[0]
    assert rung.ranked_trial_ids() == [4, 5, 2, 0, 1, 6, 7, 3, 8]
    assert {t for t in range(9) if rung.in_top_fraction(t, 3)} == {4, 5, 2}


def test_crowding_tie_break_keeps_a_different_third():
    # Crowding in F0: t4, t5 infinite; t0 0.286 + 0.8 = 1.086; t1 0.714 + 0.2 = 0.914;
    # t2 0.286 + 0.4 = 0.686 -> t0 replaces t2 in the top three.
    scheduler = mo_asha(tie_break="crowding")
    _feed(scheduler, RESULTS)
    rung = scheduler.rungs()[0]
    assert rung.ranked_trial_ids() == [4, 5, 0, 1, 2, 6, 7, 3, 8]
    assert {t for t in range(9) if rung.in_top_fraction(t, 3)} == {4, 5, 0}


def test_goals_matter_flipping_accuracy_to_minimise_changes_the_front():
    flipped = MOASHAScheduler(
        FixedSearcher(), [Objective("accuracy", Goal.MINIMIZE), Objective("cost")],
        resource_min=1, resource_max=9,
    )
    _feed(flipped, RESULTS)
    # Now low accuracy and low cost are both good: the front is t8 (0.50, 6.0) and t5 (0.60,
    # 0.5); the net starts at the best first objective, t8.
    ranking = flipped.rungs()[0].ranked_trial_ids()
    assert ranking[:2] == [8, 5]


def test_promotion_variant_pauses_and_resumes_the_best_of_the_multiobjective_order():
    scheduler = mo_asha(promotion=True)
    decisions = _feed(scheduler, RESULTS)
    assert decisions == [Decision.PAUSE] * 9
    resumed = []
    for _ in range(3):
        suggestion = scheduler.suggest()
        assert suggestion.is_resume and suggestion.max_resource == 3
        resumed.append(suggestion.resume_trial_id)
    assert resumed == [4, 5, 2]
    assert not scheduler.suggest().is_resume  # quota floor(9/3) = 3 used up


def test_single_objective_mo_asha_equals_asha():
    objectives = [Objective("loss")]
    mo = make_scheduler("mo-asha", searcher=FixedSearcher(), objectives=objectives,
                        resource_min=1, resource_max=9, reduction_factor=3, seed=0)
    so = make_scheduler("asha", searcher=FixedSearcher(), objectives=objectives,
                        resource_min=1, resource_max=9, reduction_factor=3, seed=0)
    losses = [5, 3, 8, 1, 9, 2, 7, 4, 6, 1, 1, 0.5]
    out = []
    for scheduler in (mo, so):
        decisions = []
        for trial_id, loss in enumerate(losses):
            trial = TrialRecord(trial_id, {})
            scheduler.on_trial_add(trial)
            obs = Observation(trial_id, 1, {"loss": loss})
            trial.observations.append(obs)
            decisions.append(scheduler.on_trial_result(trial, obs))
        out.append(decisions)
    assert out[0] == out[1]


def test_every_objective_must_be_reported_at_a_rung():
    scheduler = mo_asha()
    trial = TrialRecord(0, {})
    scheduler.on_trial_add(trial)
    obs = Observation(0, 1, {"accuracy": 0.5})
    trial.observations.append(obs)
    with pytest.raises(ValueError, match="without the objective metric 'cost'"):
        scheduler.on_trial_result(trial, obs)


def test_bad_tie_break_names_the_setting():
    with pytest.raises(ValueError, match="algorithm.settings.tieBreak: unknown tie-break 'best'"):
        make_scheduler("mo-asha", searcher=FixedSearcher(), objectives=OBJECTIVES,
                       resource_min=1, resource_max=9, reduction_factor=3, seed=0,
                       settings={"tieBreak": "best"})


def test_diverged_trials_with_infinite_loss_are_ranked_without_breaking_the_net():
    # Accuracy -inf is a loss of +inf. Not the cheapest either: dominated, so last and stopped.
    scheduler = mo_asha()
    decisions = _feed(scheduler, RESULTS[:6] + [(float("-inf"), 3.0)])
    assert scheduler.rungs()[0].ranked_trial_ids()[-1] == 6
    assert decisions[-1] is Decision.STOP
    # The cheapest of all: Pareto-optimal (nothing beats its cost). The net starts at the most
    # accurate (t4); the diverged point, normalised to the far edge, comes right after.
    scheduler = mo_asha()
    decisions = _feed(scheduler, RESULTS[:6] + [(float("-inf"), 0.1)])
    assert scheduler.rungs()[0].ranked_trial_ids()[:2] == [4, 6]
    assert decisions[-1] is Decision.CONTINUE

"""ASHA (stopping and promotion), rung levels and replay determinism, checked by hand."""

import numpy as np
import pytest

from hwtune.api.records import Decision, Goal, Objective, Observation, TrialPhase, TrialRecord
from hwtune.optimize.schedulers import make_scheduler
from hwtune.optimize.schedulers.asha import ASHAScheduler
from hwtune.optimize.schedulers.rungs import Rung, rung_levels
from hwtune.optimize.searchers.base import Searcher


class CountingSearcher(Searcher):
    """Proposes {'x': 0}, {'x': 1}, ... and logs what it is told."""

    def __init__(self):
        self.proposed = 0
        self.completed: list[int] = []
        self.results: list[tuple[int, int]] = []

    def suggest(self):
        self.proposed += 1
        return {"x": self.proposed - 1}, None

    def on_trial_result(self, trial, observation):
        self.results.append((trial.trial_id, observation.resource))

    def on_trial_complete(self, trial):
        self.completed.append(trial.trial_id)


class Driver:
    """Minimal engine stand-in: creates trials from suggestions and feeds reports."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.trials: dict[int, TrialRecord] = {}

    def start(self):
        suggestion = self.scheduler.suggest()
        if suggestion.is_resume:
            self.trials[suggestion.resume_trial_id].phase = TrialPhase.RUNNING
            return suggestion
        trial = TrialRecord(len(self.trials), suggestion.config, phase=TrialPhase.RUNNING)
        self.trials[trial.trial_id] = trial
        self.scheduler.on_trial_add(trial)
        return suggestion

    def report(self, trial_id, resource, **metrics):
        trial = self.trials[trial_id]
        observation = Observation(trial_id, resource, metrics)
        trial.observations.append(observation)
        decision = self.scheduler.on_trial_result(trial, observation)
        if decision is Decision.PAUSE:
            trial.phase = TrialPhase.PAUSED
        elif decision is Decision.STOP:
            trial.phase = TrialPhase.STOPPED
        return decision


def asha(promotion=False, resource_max=9, objectives=(Objective("loss"),), **kwargs):
    return ASHAScheduler(
        CountingSearcher(), list(objectives), resource_min=1, resource_max=resource_max,
        reduction_factor=3, promotion=promotion, **kwargs,
    )


def test_rung_levels_are_geometric_and_below_the_maximum():
    assert rung_levels(1, 81, 3) == (1, 3, 9, 27)
    assert rung_levels(1, 82, 3) == (1, 3, 9, 27, 81)
    assert rung_levels(2, 20, 2) == (2, 4, 8, 16)
    assert rung_levels(5, 5, 3) == ()
    assert rung_levels(1, 10, 1.5) == (1, 2, 3, 5, 8)  # round(1.5^k), repeats dropped


def test_stopping_decisions_in_arrival_order_by_hand():
    # Losses at rung 1 arrive in this order; a trial continues iff position < n/3:
    # t0 5 (0<1/3 C), t1 3 (0<2/3 C), t2 8 (2<1 S), t3 1 (0<4/3 C), t4 9 (4<5/3 S),
    # t5 2 (1<2 C), t6 7 (4<7/3 S), t7 4 (3<8/3 S), t8 6 (5<3 S).
    scheduler = asha()
    driver = Driver(scheduler)
    losses = [5, 3, 8, 1, 9, 2, 7, 4, 6]
    decisions = []
    for loss in losses:
        suggestion = driver.start()
        assert suggestion.max_resource is None  # stopping variant: run until told otherwise
        decisions.append(driver.report(len(driver.trials) - 1, 1, loss=loss))
    C, S = Decision.CONTINUE, Decision.STOP
    assert decisions == [C, C, S, C, S, C, S, S, S]
    # Stopped trials were handed back to the searcher exactly once.
    assert scheduler.searcher.completed == [2, 4, 6, 7, 8]


def test_with_all_nine_recorded_exactly_the_three_best_pass():
    rung = Rung(1, 1)
    losses = [5, 3, 8, 1, 9, 2, 7, 4, 6]
    for trial_id, loss in enumerate(losses):
        rung.record(trial_id, np.array([loss], dtype=float))
    passing = {t for t in range(9) if rung.in_top_fraction(t, 3)}
    assert passing == {3, 5, 1}  # losses 1, 2, 3
    assert rung.ranked_trial_ids()[:3] == [3, 5, 1]


def test_single_objective_asha_ranks_by_the_first_objective_and_respects_its_goal():
    scheduler = asha(objectives=(Objective("accuracy", Goal.MAXIMIZE), Objective("cost")))
    driver = Driver(scheduler)
    driver.start()
    driver.start()
    assert driver.report(0, 1, accuracy=0.9, cost=100.0) is Decision.CONTINUE
    # Higher accuracy is better; cost is ignored by single-objective ASHA.
    assert driver.report(1, 1, accuracy=0.95, cost=1e6) is Decision.CONTINUE
    driver.start()
    assert driver.report(2, 1, accuracy=0.5, cost=0.0) is Decision.STOP


def test_reports_between_rungs_and_at_the_maximum_continue():
    scheduler = asha()
    driver = Driver(scheduler)
    driver.start()
    assert driver.report(0, 1, loss=1.0) is Decision.CONTINUE
    assert driver.report(0, 2, loss=1.0) is Decision.CONTINUE  # not a rung
    assert driver.report(0, 3, loss=1.0) is Decision.CONTINUE
    assert driver.report(0, 9, loss=1.0) is Decision.CONTINUE  # r_max: the engine completes it
    assert [len(r) for r in scheduler.rungs()] == [1, 1]


def test_a_report_jumping_over_rungs_is_recorded_at_the_highest_reached():
    scheduler = asha(resource_max=27)  # rungs 1, 3, 9
    driver = Driver(scheduler)
    driver.start()
    driver.report(0, 4, loss=1.0)
    assert [0 in r for r in scheduler.rungs()] == [False, True, False]


def test_missing_objective_metric_is_a_clear_error():
    scheduler = asha()
    driver = Driver(scheduler)
    driver.start()
    expected = r"trial 0 reported at resource 1 without the objective metric 'loss' \(reported: acc\)"
    with pytest.raises(ValueError, match=expected):
        driver.report(0, 1, acc=1.0)


def test_reports_for_unknown_or_finished_trials_are_refused():
    scheduler = asha()
    driver = Driver(scheduler)
    stranger = TrialRecord(42, {"x": 1})
    with pytest.raises(ValueError, match="trial 42 was never added"):
        scheduler.on_trial_result(stranger, Observation(42, 1, {"loss": 1.0}))
    driver.start()
    scheduler.on_trial_complete(driver.trials[0])
    with pytest.raises(ValueError, match="trial 0 already finished"):
        driver.report(0, 1, loss=1.0)


# ---- promotion ----------------------------------------------------------------------------

def test_promotion_order_by_hand():
    scheduler = asha(promotion=True)  # rungs 1, 3; r_max 9
    driver = Driver(scheduler)
    for loss in (5, 3, 8):
        suggestion = driver.start()
        assert not suggestion.is_resume and suggestion.max_resource == 1
        assert driver.report(len(driver.trials) - 1, 1, loss=loss) is Decision.PAUSE
    # 3 at rung 1: floor(3/3) = 1 may go up: the best (t1, loss 3) to the next rung.
    resume = driver.start()
    assert (resume.resume_trial_id, resume.max_resource) == (1, 3)
    # t1 already promoted, nothing else in the top 1: a new trial.
    assert not driver.start().is_resume  # t3
    assert driver.report(3, 1, loss=1.0) is Decision.PAUSE
    # 4 recorded, quota 1: t3 (loss 1) is now the best and was not promoted yet.
    resume = driver.start()
    assert (resume.resume_trial_id, resume.max_resource) == (3, 3)
    # t1 reaches rung 3 and pauses there; one trial at rung 3 -> quota 0; rung 1 quota 1
    # (t3, promoted) -> new trial.
    assert driver.report(1, 2, loss=2.9) is Decision.CONTINUE
    assert driver.report(1, 3, loss=2.5) is Decision.PAUSE
    assert driver.report(3, 3, loss=0.5) is Decision.PAUSE
    assert not driver.start().is_resume  # t4
    driver.report(4, 1, loss=9.0)
    assert not driver.start().is_resume  # t5
    driver.report(5, 1, loss=2.0)
    # Rung 1 now holds 6 -> quota 2: t3 (promoted), t5 -> t5 goes up, but the higher rung
    # comes first: rung 3 holds t1, t3 -> quota 0. So t5 is resumed to 3.
    resume = driver.start()
    assert (resume.resume_trial_id, resume.max_resource) == (5, 3)
    driver.report(5, 3, loss=0.1)
    # Rung 3 holds 3 -> quota 1: t5 (0.1) is best; higher rung first, resumed to r_max 9.
    resume = driver.start()
    assert (resume.resume_trial_id, resume.max_resource) == (5, 9)
    assert driver.report(5, 9, loss=0.05) is Decision.CONTINUE


def test_failed_or_removed_paused_trials_are_never_resumed():
    scheduler = asha(promotion=True)
    driver = Driver(scheduler)
    for loss in (1, 2, 3):
        driver.start()
        driver.report(len(driver.trials) - 1, 1, loss=loss)
    scheduler.on_trial_error(driver.trials[0])
    driver.trials[0].phase = TrialPhase.FAILED
    # t0 would be promoted (best of 3) but it failed: a new trial starts instead.
    assert not driver.start().is_resume


def test_no_rungs_means_plain_runs_to_the_maximum():
    scheduler = ASHAScheduler(CountingSearcher(), [Objective("loss")], resource_min=9, resource_max=9)
    assert scheduler.levels == ()
    driver = Driver(scheduler)
    driver.start()
    assert driver.report(0, 9, loss=1.0) is Decision.CONTINUE


# ---- replay determinism -------------------------------------------------------------------

def _random_run(kind, seed, steps=300):
    """Drive a scheduler with a seeded stream of reports; return its decision/suggestion log
    and the ordered event list needed to replay it."""
    rng = np.random.default_rng(seed)
    scheduler = make_scheduler(
        kind, searcher=CountingSearcher(), objectives=[Objective("loss"), Objective("cost")],
        resource_min=1, resource_max=27, reduction_factor=3, seed=seed,
    )
    driver = Driver(scheduler)
    log, events, running = [], [], []
    for _ in range(steps):
        if len(running) < 4:
            s = driver.start()
            log.append(("suggest", s.resume_trial_id, s.max_resource))
            tid = s.resume_trial_id if s.is_resume else len(driver.trials) - 1
            if not s.is_resume:
                events.append(("add", tid))
            running.append(tid)
            continue
        tid = running[int(rng.integers(len(running)))]
        resource = driver.trials[tid].last_resource + 1
        metrics = {"loss": float(rng.random()), "cost": float(rng.random())}
        decision = driver.report(tid, resource, **metrics)
        events.append(("report", tid, resource, metrics))
        log.append(("decide", tid, resource, decision))
        if decision.halts or resource >= 27:
            running.remove(tid)
            if not decision.halts:
                scheduler.on_trial_complete(driver.trials[tid])
                events.append(("complete", tid))
    return log, events


@pytest.mark.parametrize("kind", ["asha", "asha-promotion", "mo-asha", "mo-asha-promotion", "hyperband"])
def test_same_records_in_the_same_order_give_the_same_decisions(kind):
    first, events = _random_run(kind, seed=3)
    second, _ = _random_run(kind, seed=3)
    assert first == second
    # Replaying only the records (no suggest calls) rebuilds the state: every decision repeats.
    fresh = make_scheduler(
        kind, searcher=CountingSearcher(), objectives=[Objective("loss"), Objective("cost")],
        resource_min=1, resource_max=27, reduction_factor=3, seed=3,
    )
    trials = {}
    replayed = [entry for entry in first if entry[0] == "decide"]
    decisions = []
    for event in events:
        if event[0] == "add":
            trials[event[1]] = TrialRecord(event[1], {"x": event[1]})
            fresh.on_trial_add(trials[event[1]])
        elif event[0] == "report":
            _, tid, resource, metrics = event
            obs = Observation(tid, resource, metrics)
            trials[tid].observations.append(obs)
            decisions.append(("decide", tid, resource, fresh.on_trial_result(trials[tid], obs)))
        else:
            fresh.on_trial_complete(trials[event[1]])
    assert decisions == replayed


def test_replayed_promotions_are_not_promoted_twice():
    scheduler = asha(promotion=True)
    driver = Driver(scheduler)
    for loss in (5, 3, 8):
        driver.start()
        driver.report(len(driver.trials) - 1, 1, loss=loss)
    assert driver.start().resume_trial_id == 1
    driver.report(1, 2, loss=3.0)
    # Rebuild from the records alone: t1 reported past rung 1, so it counts as promoted.
    rebuilt = Driver(asha(promotion=True))
    for trial_id in sorted(driver.trials):
        rebuilt.trials[trial_id] = TrialRecord(trial_id, driver.trials[trial_id].config)
        rebuilt.scheduler.on_trial_add(rebuilt.trials[trial_id])
    for trial_id, resource, loss in [(0, 1, 5), (1, 1, 3), (2, 1, 8), (1, 2, 3.0)]:
        rebuilt.report(trial_id, resource, loss=loss)
    assert 1 in rebuilt.scheduler.rungs()[0].promoted
    assert not rebuilt.start().is_resume


def test_a_resumed_trial_that_has_not_reported_yet_is_not_resumed_again():
    # After a rebuild the rung does not know t1 was promoted (no report past rung 1 yet), but
    # its record says Pending, so it is not a candidate.
    scheduler = asha(promotion=True)
    driver = Driver(scheduler)
    for loss in (5, 3, 8):
        driver.start()
        driver.report(len(driver.trials) - 1, 1, loss=loss)
    rebuilt = Driver(asha(promotion=True))
    for trial_id, loss in zip(range(3), (5, 3, 8)):
        rebuilt.trials[trial_id] = TrialRecord(trial_id, {"x": trial_id}, phase=TrialPhase.RUNNING)
        rebuilt.scheduler.on_trial_add(rebuilt.trials[trial_id])
        rebuilt.report(trial_id, 1, loss=loss)
    rebuilt.trials[1].phase = TrialPhase.PENDING  # the engine had resumed it before the restart
    assert not rebuilt.start().is_resume
    rebuilt.trials[1].phase = TrialPhase.PAUSED  # had it stayed paused, it would be promoted
    assert rebuilt.start().resume_trial_id == 1


def test_removed_paused_trials_are_never_resumed():
    scheduler = asha(promotion=True)
    driver = Driver(scheduler)
    for loss in (1, 2, 3):
        driver.start()
        driver.report(len(driver.trials) - 1, 1, loss=loss)
    driver.trials[0].phase = TrialPhase.STOPPED
    scheduler.on_trial_remove(driver.trials[0])
    assert not driver.start().is_resume
    assert scheduler.searcher.completed == [0]


def test_incremental_rung_matches_batch_ranking():
    from hwtune.optimize.pareto import nondominated_ranks, position_in_order, rank_multiobjective

    rng = np.random.default_rng(4)
    losses = rng.integers(0, 5, size=(200, 3)).astype(float)  # many ties, many fronts
    rung = Rung(1, 3)
    for trial_id, row in enumerate(losses):
        rung.record(100 + trial_id, row)
    n = len(losses)
    assert (rung.fronts == nondominated_ranks(losses)).all()
    assert rung.ranked_trial_ids() == [100 + i for i in rank_multiobjective(losses)]
    for i in range(0, n, 17):
        position = position_in_order(losses, i)
        assert rung.position(100 + i) == position
        assert rung.in_top_fraction(100 + i, 3) == (position < n / 3)


def test_suggest_resume_never_starts_a_new_trial():
    scheduler = asha(promotion=True)
    driver = Driver(scheduler)
    assert scheduler.suggest_resume() is None  # nothing paused yet, and no new trial either
    for loss in (5, 3, 8):
        driver.start()
        driver.report(len(driver.trials) - 1, 1, loss=loss)
    resume = scheduler.suggest_resume()
    assert (resume.resume_trial_id, resume.max_resource) == (1, 3)
    assert scheduler.suggest_resume() is None
    assert scheduler.searcher.proposed == 3
    assert asha(promotion=False).suggest_resume() is None

"""The incremental MO rung decides exactly as the former n x n implementation (issue 14).

tests/optimize/reference_moasha.py is a frozen copy of the old code. Two levels are checked:

* the rung alone: random arrival sequences on small integer grids (ties, duplicates, equal
  columns, infinities), 2-4 objectives, both tie-breaks, several eta; after every record the
  fronts, the stopping decision and the position of the newcomer; the full and limited
  rankings and the promotion pick under random promoted sets and eligibility;
* whole schedulers (mo-asha and mo-asha-promotion, both tie-breaks, mixed min/max goals): the
  same random life cycle (suggest, reports that may jump rungs, failures, removals) gives the
  same suggestions and decisions with either rung.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtune.api.records import Decision, Goal, Objective, Observation, TrialPhase, TrialRecord
from hwtune.optimize.pareto import nondominated_ranks
from hwtune.optimize.schedulers.moasha import MOASHAScheduler
from hwtune.optimize.schedulers.rungs import Rung
from hwtune.optimize.searchers.base import Searcher

from reference_moasha import ReferenceRung

TIE_BREAKS = ["epsilon-net", "crowding"]
VALUES = [0.0, 1.0, 1.0, 2.0, 2.5, 3.0, -1.0, math.inf]


@st.composite
def arrivals(draw, max_points=40):
    m = draw(st.integers(2, 4))
    n = draw(st.integers(1, max_points))
    grid = draw(st.sampled_from([2, 3, 5, 50]))
    with_inf = draw(st.booleans())
    rows = []
    for _ in range(n):
        if rows and draw(st.integers(0, 5)) == 0:
            rows.append(list(rows[draw(st.integers(0, len(rows) - 1))]))  # exact duplicate
            continue
        row = [float(draw(st.integers(0, grid - 1))) for _ in range(m)]
        if with_inf and draw(st.integers(0, 7)) == 0:
            row[draw(st.integers(0, m - 1))] = math.inf
        rows.append(row)
    return np.array(rows, dtype=float)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals(), st.sampled_from(TIE_BREAKS), st.sampled_from([2, 3, 2.5, 4]), st.data())
def test_rung_matches_the_reference_after_every_record(losses, tie_break, eta, data):
    new, ref = Rung(1, losses.shape[1], tie_break), ReferenceRung(1, losses.shape[1], tie_break)
    for i, row in enumerate(losses):
        trial_id = 1000 + 7 * i
        new.record(trial_id, row)
        ref.record(trial_id, row)
        assert (new.fronts == nondominated_ranks(losses[: i + 1])).all()
        assert new.in_top_fraction(trial_id, eta) == ref.in_top_fraction(trial_id, eta)
        earlier = 1000 + 7 * data.draw(st.integers(0, i))
        assert new.in_top_fraction(earlier, eta) == ref.in_top_fraction(earlier, eta)
        assert new.position(trial_id) == ref.position(trial_id)
    limit = data.draw(st.integers(0, len(losses)))
    assert new.ranked_trial_ids(limit) == ref.ranked_trial_ids(limit)
    assert new.ranked_trial_ids() == ref.ranked_trial_ids()
    # Promotion: random promoted flags, random eligibility, every quota.
    ids = list(ref.trial_ids)
    for trial_id in data.draw(st.lists(st.sampled_from(ids), max_size=len(ids))):
        new.mark_promoted(trial_id)
        ref.mark_promoted(trial_id)
    refused = set(data.draw(st.lists(st.sampled_from(ids), max_size=len(ids))))
    for quota in range(len(ids) + 1):
        assert new.first_promotable(quota, lambda t: t not in refused) == ref.first_promotable(
            quota, lambda t: t not in refused
        )


def test_fronts_after_a_point_that_dominates_everything_and_long_chains():
    rng = np.random.default_rng(0)
    chain = np.array([[i, i, i] for i in range(30, 0, -1)], dtype=float)  # each beats the last
    cloud = rng.integers(0, 6, size=(300, 3)).astype(float)
    losses = np.vstack([cloud, chain, [[-1.0, -1.0, -1.0]], cloud[:20]])
    rung = Rung(1, 3)
    for i, row in enumerate(losses):
        rung.record(i, row)
    assert (rung.fronts == nondominated_ranks(losses)).all()


# -- whole schedulers ---------------------------------------------------------------------------

class CountingSearcher(Searcher):
    def __init__(self):
        self.count = 0

    def suggest(self):
        self.count += 1
        return {"i": self.count}, None


class ReferenceMOASHA(MOASHAScheduler):
    """MO-ASHA on the frozen reference rungs."""

    def _make_rungs(self, levels):
        return [ReferenceRung(level, len(self.ranked_objectives), self.tie_break.value)
                for level in levels]


OBJECTIVE_SETS = [
    [Objective("acc", Goal.MAXIMIZE), Objective("cost")],
    [Objective("acc", Goal.MAXIMIZE), Objective("runtime"), Objective("cost")],
    [Objective("runtime"), Objective("acc", Goal.MAXIMIZE), Objective("cost", Goal.MAXIMIZE)],
]

operation = st.one_of(
    st.tuples(st.just("suggest"), st.integers(0, 0), st.just((0.0, 0.0, 0.0))),
    st.tuples(st.just("report"), st.integers(0, 10_000), st.tuples(
        *[st.sampled_from([0.0, 1.0, 2.0, 3.0, 0.5]) for _ in range(3)])),
    st.tuples(st.just("jump"), st.integers(0, 10_000), st.tuples(
        *[st.sampled_from([0.0, 1.0, 2.0]) for _ in range(3)])),
    st.tuples(st.just("fail"), st.integers(0, 10_000), st.just((0.0, 0.0, 0.0))),
    st.tuples(st.just("remove"), st.integers(0, 10_000), st.just((0.0, 0.0, 0.0))),
)


def drive(scheduler, objectives, ops, resource_max):
    """A minimal engine: applies each operation and logs every answer of the scheduler."""
    trials: dict[int, TrialRecord] = {}
    target: dict[int, int] = {}
    log = []
    next_id = 0

    def running():
        return [t for t in trials.values() if t.phase is TrialPhase.RUNNING]

    for kind, pick, values in ops:
        if kind == "suggest":
            s = scheduler.suggest()
            if s is None:
                log.append(None)
                continue
            if s.is_resume:
                trial = trials[s.resume_trial_id]
                assert trial.phase is TrialPhase.PAUSED
            else:
                trial = TrialRecord(next_id, dict(s.config))
                next_id += 1
                trials[trial.trial_id] = trial
                scheduler.on_trial_add(trial)
            trial.phase = TrialPhase.RUNNING
            target[trial.trial_id] = s.max_resource or resource_max
            log.append(("suggest", s.resume_trial_id, trial.trial_id, s.max_resource))
            continue
        live = running()
        if kind in ("fail", "remove"):
            candidates = [t for t in trials.values()
                          if t.phase in (TrialPhase.RUNNING, TrialPhase.PAUSED)]
            if not candidates:
                continue
            trial = candidates[pick % len(candidates)]
            if kind == "fail":
                trial.phase = TrialPhase.FAILED
                scheduler.on_trial_error(trial)
            else:
                trial.phase = TrialPhase.STOPPED
                scheduler.on_trial_remove(trial)
            log.append((kind, trial.trial_id))
            continue
        if not live:
            continue
        trial = live[pick % len(live)]
        step = 2 if kind == "jump" else 1
        resource = min(trial.last_resource + step, target[trial.trial_id], resource_max)
        if resource <= trial.last_resource:
            resource = trial.last_resource + 1
        metrics = {o.metric: v for o, v in zip(objectives, values)}
        obs = Observation(trial.trial_id, resource, metrics)
        trial.observations.append(obs)
        decision = scheduler.on_trial_result(trial, obs)
        log.append(("report", trial.trial_id, resource, decision))
        if decision is Decision.STOP:
            trial.phase = TrialPhase.STOPPED
        elif decision is Decision.PAUSE:
            trial.phase = TrialPhase.PAUSED
        elif resource >= resource_max:
            trial.phase = TrialPhase.COMPLETED
            scheduler.on_trial_complete(trial)
        elif resource >= target[trial.trial_id]:
            trial.phase = TrialPhase.PAUSED
    return log


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([False, True]),
    st.sampled_from(TIE_BREAKS),
    st.sampled_from(range(len(OBJECTIVE_SETS))),
    st.sampled_from([(1, 9, 3), (1, 27, 3), (1, 8, 2), (2, 20, 2.5)]),
    st.lists(operation, min_size=1, max_size=250),
)
def test_schedulers_decide_as_the_reference(promotion, tie_break, which, fidelity, ops):
    objectives = OBJECTIVE_SETS[which]
    r_min, r_max, eta = fidelity
    logs = []
    for cls in (MOASHAScheduler, ReferenceMOASHA):
        scheduler = cls(CountingSearcher(), objectives, resource_min=r_min, resource_max=r_max,
                        reduction_factor=eta, promotion=promotion, tie_break=tie_break)
        # Suggest often so that rungs fill up: every third operation is a suggest.
        ops_with_starts = [op for i, item in enumerate(ops)
                           for op in ((("suggest", 0, (0.0, 0.0, 0.0)), item) if i % 3 == 0 else (item,))]
        logs.append(drive(scheduler, objectives, ops_with_starts, r_max))
    assert logs[0] == logs[1]


@pytest.mark.parametrize("promotion", [False, True])
@pytest.mark.parametrize("tie_break", TIE_BREAKS)
def test_a_long_random_study_decides_as_the_reference(promotion, tie_break):
    rng = np.random.default_rng(7)
    objectives = OBJECTIVE_SETS[1]
    ops = []
    for _ in range(1500):
        kind = rng.choice(["suggest", "report", "report", "jump", "fail"], p=[0.3, 0.4, 0.2, 0.08, 0.02])
        ops.append((str(kind), int(rng.integers(0, 10_000)),
                    tuple(float(v) for v in np.round(rng.random(3) * 4) / 2)))
    logs = []
    for cls in (MOASHAScheduler, ReferenceMOASHA):
        scheduler = cls(CountingSearcher(), objectives, resource_min=1, resource_max=27,
                        reduction_factor=3, promotion=promotion, tie_break=tie_break)
        logs.append(drive(scheduler, objectives, ops, 27))
    assert logs[0] == logs[1]
    assert sum(1 for entry in logs[0] if entry and entry[0] == "report") > 300


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 4), st.integers(17, 300), st.integers(0, 2**31), st.sampled_from([None, 5, 17, 40]),
       st.booleans())
def test_epsilon_net_order_matches_the_reference_on_large_fronts(m, n, seed, limit, coarse):
    """Large fronts take the pairwise-table path of epsilon_net_order; same order to the bit."""
    import reference_moasha as reference
    from hwtune.optimize.pareto import epsilon_net_order

    rng = np.random.default_rng(seed)
    points = rng.random((n, m))
    if coarse:  # many exact ties in distance
        points = np.round(points * 4) / 4
    points[:, -1] = points[:, :-1].sum(axis=1) * -1.0  # on a plane: one front
    assert epsilon_net_order(points, limit=limit).tolist() == \
        reference.epsilon_net_order(points, limit=limit).tolist()


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 3), st.integers(2, 120), st.integers(0, 2**31), st.booleans(), st.data())
def test_a_growing_epsilon_net_equals_the_order_from_scratch(m, n, seed, coarse, data):
    """Points join one front one by one, prefixes are asked in between: the kept net always
    gives the reference order of the front as it is now."""
    import reference_moasha as reference
    from hwtune.optimize.pareto import EpsilonNet

    rng = np.random.default_rng(seed)
    points = rng.random((n, m))
    if coarse:
        points = np.round(points * 6) / 6
    points[:, -1] = -points[:, :-1].sum(axis=1)  # one front
    net = EpsilonNet(np.arange(1), points[:1])
    rebuilt = 0
    for i in range(1, n):
        ask = data.draw(st.sampled_from([None, 1, 2, 5, i // 2 + 1]))
        expected = reference.epsilon_net_order(points[:i], limit=ask)
        assert net.prefix(ask).tolist() == expected.tolist()
        if not net.add(i, points[i]):
            net = EpsilonNet(np.arange(i + 1), points[: i + 1])
            rebuilt += 1
    assert net.prefix().tolist() == reference.epsilon_net_order(points).tolist()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals(max_points=50), st.sampled_from(TIE_BREAKS), st.data())
def test_deferred_records_settle_to_the_same_rung(losses, tie_break, data):
    """A rebuild records without front repair (``defer``); the batch settle (moocore for
    finite losses, the incremental repair otherwise) leaves the rung as live recording did."""
    n = len(losses)
    start, stop = sorted(data.draw(st.tuples(st.integers(0, n), st.integers(0, n))))
    new, ref = Rung(1, losses.shape[1], tie_break), ReferenceRung(1, losses.shape[1], tie_break)
    for i, row in enumerate(losses):
        new.record(i, row, defer=start <= i < stop)
        ref.record(i, row)
        if not start <= i < stop:
            assert new.in_top_fraction(i, 3) == ref.in_top_fraction(i, 3)
    assert (new.fronts == nondominated_ranks(losses)).all()
    assert new.ranked_trial_ids() == ref.ranked_trial_ids()

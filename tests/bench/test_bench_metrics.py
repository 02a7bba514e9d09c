"""Benchmark metrics on hand-made traces with hand-computed hypervolumes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwtune.api.records import Goal, Objective, Observation
from hwtune.bench.metrics import (
    Normalizer,
    Trace,
    hypervolume_at,
    prefix_hypervolumes,
    summarize,
    time_to_target,
)

UNIT = Normalizer(lower=(0.0, 0.0), upper=(1.0, 1.0), log=(False, False))


def _trace() -> Trace:
    # t=1: (.5,.5) -> HV .25;  t=2: (.8,.8) dominated -> .25;  t=3: (.2,.9) adds .3*.1 -> .28;
    # t=5: (.1,.1) dominates everything -> .81
    return Trace(times=np.array([1.0, 2.0, 3.0, 5.0]), spent=np.array([10.0, 20.0, 25.0, 40.0]),
                 losses=np.array([[0.5, 0.5], [0.8, 0.8], [0.2, 0.9], [0.1, 0.1]]))


def test_hypervolume_over_time_is_a_hand_checked_step_curve() -> None:
    hv = hypervolume_at(_trace(), UNIT, [0.5, 1.0, 2.5, 3.0, 4.9, 10.0], axis="time")
    np.testing.assert_allclose(hv, [0.0, 0.25, 0.25, 0.28, 0.28, 0.81])


def test_hypervolume_over_cost_uses_spent_cost() -> None:
    hv = hypervolume_at(_trace(), UNIT, [5.0, 10.0, 24.9, 25.0, 40.0], axis="cost")
    np.testing.assert_allclose(hv, [0.0, 0.25, 0.25, 0.28, 0.81])


def test_time_and_cost_to_target() -> None:
    trace = _trace()
    assert time_to_target(trace, UNIT, 0.25) == 1.0
    assert time_to_target(trace, UNIT, 0.26) == 3.0
    assert time_to_target(trace, UNIT, 0.81) == 5.0
    assert time_to_target(trace, UNIT, 0.9) == math.inf
    assert time_to_target(trace, UNIT, 0.27, axis="cost") == 25.0
    assert time_to_target(Trace(np.zeros(0), np.zeros(0), np.zeros((0, 2))), UNIT, 0.1) == math.inf


def test_time_to_target_on_a_long_trace_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    n = 700
    losses = rng.uniform(0, 1, (n, 3))
    trace = Trace(np.cumsum(rng.uniform(0.1, 1.0, n)), np.cumsum(rng.uniform(0, 1, n)), losses)
    norm = Normalizer((0.0,) * 3, (1.0,) * 3, (False,) * 3)
    full = prefix_hypervolumes(losses, range(1, n + 1), norm.reference_point)
    target = full[456]
    first = int(np.nonzero(full >= target - 1e-12)[0][0])
    assert time_to_target(trace, norm, target) == trace.times[first]


def test_points_beyond_the_reference_add_nothing() -> None:
    trace = Trace(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([[1.5, 0.1], [0.1, 1.0]]))
    assert hypervolume_at(trace, UNIT, [5.0])[0] == 0.0


def test_normalizer_log_and_linear() -> None:
    norm = Normalizer(lower=(0.0, 1.0), upper=(0.5, 100.0), log=(False, True))
    out = norm(np.array([[0.25, 10.0], [0.5, 100.0], [0.0, 1.0]]))
    np.testing.assert_allclose(out, [[0.5, 0.5], [1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="lower > 0"):
        Normalizer(lower=(0.0,), upper=(1.0,), log=(True,))
    with pytest.raises(ValueError, match="lower < upper"):
        Normalizer(lower=(1.0,), upper=(1.0,), log=(False,))


def test_trace_from_observations_sums_each_trials_latest_cost() -> None:
    objectives = [Objective("val_error"), Objective("acc", Goal.MAXIMIZE)]
    obs = [
        Observation(0, 1, {"val_error": 0.5, "acc": 0.5, "cost": 1.0}, time=1.0),
        Observation(1, 1, {"val_error": 0.4, "acc": 0.6, "cost": 2.0}, time=2.0),
        Observation(0, 2, {"val_error": 0.3, "acc": 0.7, "cost": 3.0}, time=3.0),
    ]
    trace = Trace.from_observations(reversed(obs), objectives)
    np.testing.assert_allclose(trace.times, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(trace.spent, [1.0, 3.0, 5.0])
    np.testing.assert_allclose(trace.losses, [[0.5, -0.5], [0.4, -0.6], [0.3, -0.7]])


def test_trace_from_observations_names_a_missing_objective() -> None:
    obs = [Observation(4, 2, {"cost": 1.0}, time=1.0)]
    with pytest.raises(ValueError, match="trial 4 resource 2: report lacks val_error"):
        Trace.from_observations(obs, [Objective("val_error")])


def test_trace_refuses_time_going_backwards() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        Trace(np.array([2.0, 1.0]), np.array([0.0, 0.0]), np.zeros((2, 1)))


def test_summarize_counts_the_finite_values() -> None:
    s = summarize([1.0, 3.0, math.inf])
    assert (s.mean, s.finite, s.total) == (2.0, 2, 3)
    assert s.std == pytest.approx(math.sqrt(2.0))
    assert "(2/3)" in str(s)
    assert str(summarize([math.inf])) == "never"

"""Property tests (hypothesis) for sorting, orders and hypervolume."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hwtune.optimize.pareto import (
    dominates,
    hypervolume,
    nondominated_ranks,
    pareto_front_mask,
    position_in_order,
    rank_multiobjective,
    within_cutoff,
)


@st.composite
def loss_matrices(draw, min_points=1, max_points=25, max_objectives=4, small_ints=None):
    m = draw(st.integers(1, max_objectives))
    n = draw(st.integers(min_points, max_points))
    if small_ints is None:
        small_ints = draw(st.booleans())
    if small_ints:  # many ties and duplicates
        elements = st.integers(0, 3).map(float)
    else:
        elements = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
    return draw(arrays(np.float64, (n, m), elements=elements))


FAST = settings(max_examples=60, deadline=None)


@FAST
@given(loss_matrices())
def test_no_point_of_front_0_is_dominated(losses):
    ranks = nondominated_ranks(losses)
    for i in np.flatnonzero(ranks == 0):
        assert not any(dominates(other, losses[i]) for other in losses)


@FAST
@given(loss_matrices(min_points=2))
def test_every_point_of_front_k_is_dominated_by_front_k_minus_1(losses):
    ranks = nondominated_ranks(losses)
    for i in np.flatnonzero(ranks > 0):
        previous = losses[ranks == ranks[i] - 1]
        assert any(dominates(p, losses[i]) for p in previous)
        # ... and by nothing in its own or a later front.
        later = losses[ranks >= ranks[i]]
        assert not any(dominates(p, losses[i]) for p in later)


@FAST
@given(loss_matrices())
def test_front_mask_agrees_with_ranks(losses):
    assert (pareto_front_mask(losses) == (nondominated_ranks(losses) == 0)).all()


@FAST
@given(loss_matrices(), st.sampled_from(["epsilon-net", "crowding"]))
def test_rank_multiobjective_is_a_permutation_respecting_fronts(losses, tie_break):
    order = rank_multiobjective(losses, tie_break)
    assert sorted(order.tolist()) == list(range(len(losses)))
    ranks = nondominated_ranks(losses)[order]
    assert (np.diff(ranks) >= 0).all()
    index = len(losses) // 2
    assert position_in_order(losses, index, tie_break) == order.tolist().index(index)


def _hv_inputs(max_objectives=3, max_points=12):
    return loss_matrices(max_points=max_points, max_objectives=max_objectives).filter(
        lambda L: L.shape[1] >= 2
    )


def _reference(losses):
    return losses.max(axis=0) + 1.0


@FAST
@given(_hv_inputs(max_objectives=4, max_points=10), st.data())
def test_hypervolume_is_monotone_when_adding_a_point(losses, data):
    reference = _reference(losses)
    extra = data.draw(
        arrays(np.float64, (losses.shape[1],), elements=st.floats(-100, 100, width=32))
    )
    before = hypervolume(losses, reference)
    after = hypervolume(np.vstack([losses, extra]), reference)
    assert after >= before - 1e-9 * max(1.0, abs(before))


@FAST
@given(_hv_inputs(max_objectives=4, max_points=10), st.randoms(use_true_random=False))
def test_hypervolume_is_permutation_invariant(losses, random):
    reference = _reference(losses)
    permutation = list(range(len(losses)))
    random.shuffle(permutation)
    assert hypervolume(losses[permutation], reference) == pytest.approx(
        hypervolume(losses, reference), rel=1e-9, abs=1e-9
    )


@FAST
@given(_hv_inputs(max_objectives=4, max_points=10), st.data())
def test_adding_dominated_points_changes_nothing(losses, data):
    reference = _reference(losses)
    base = losses[data.draw(st.integers(0, len(losses) - 1))]
    worse_by = data.draw(
        arrays(np.float64, (losses.shape[1],), elements=st.floats(0, 50, width=32))
    )
    dominated = base + worse_by
    assert hypervolume(np.vstack([losses, dominated]), reference) == pytest.approx(
        hypervolume(losses, reference), rel=1e-9, abs=1e-9
    )


@FAST
@given(
    arrays(np.float64, st.integers(1, 5), elements=st.floats(-100, 100, width=32)),
    st.data(),
)
def test_one_point_equals_its_box(point, data):
    gap = data.draw(arrays(np.float64, point.shape, elements=st.floats(0.125, 50, width=32)))
    reference = point + gap
    assert hypervolume(point[None, :], reference) == pytest.approx(np.prod(reference - point), rel=1e-9)


@FAST
@given(loss_matrices(), st.sampled_from(["epsilon-net", "crowding"]), st.data())
def test_within_cutoff_agrees_with_the_position(losses, tie_break, data):
    index = data.draw(st.integers(0, len(losses) - 1))
    cutoff = data.draw(st.floats(0, len(losses) + 1))
    expected = position_in_order(losses, index, tie_break) < cutoff
    assert within_cutoff(losses, index, cutoff, tie_break) == expected

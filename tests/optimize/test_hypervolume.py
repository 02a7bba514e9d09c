"""Exact hypervolume: hand-computed volumes, an inclusion-exclusion oracle and Monte Carlo."""

import itertools

import numpy as np
import pytest

from hwtune.optimize.pareto import default_reference_point, hypervolume


def inclusion_exclusion(points, reference):
    """Independent oracle: sum over non-empty subsets of (-1)^(k+1) * volume(intersection)."""
    points = np.asarray(points, dtype=float)
    reference = np.asarray(reference, dtype=float)
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), k):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (k + 1) * np.prod(np.clip(reference - corner, 0, None))
    return total


def monte_carlo(points, reference, samples, rng):
    points = np.asarray(points, dtype=float)
    low = points.min(axis=0)
    box = np.prod(reference - low)
    draws = rng.uniform(low, reference, size=(samples, points.shape[1]))
    covered = np.zeros(samples, dtype=bool)
    for p in points:
        covered |= np.all(draws >= p, axis=1)
    return box * covered.mean()


def test_2d_staircase_by_hand():
    # Slabs: [1,2) x 1 high, [2,3) x 2 high, [3,4) x 3 high -> 1 + 2 + 3.
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)


def test_3d_two_boxes_by_hand():
    # (1,1,2): 2*2*1 = 4; (2,2,1): 1*1*2 = 2; overlap from (2,2,2): 1 -> 5.
    assert hypervolume([[1, 1, 2], [2, 2, 1]], [3, 3, 3]) == pytest.approx(5.0)


def test_3d_three_corners_by_hand():
    # Three 2x1x1 boxes, pairwise overlaps 1 each, triple overlap 1: 6 - 3 + 1 = 4.
    assert hypervolume([[0, 1, 1], [1, 0, 1], [1, 1, 0]], [2, 2, 2]) == pytest.approx(4.0)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_one_point_is_its_box(m):
    rng = np.random.default_rng(m)
    point = rng.uniform(0, 1, size=m)
    reference = point + rng.uniform(0.1, 2, size=m)
    assert hypervolume([point], reference) == pytest.approx(np.prod(reference - point))


def test_points_not_beating_the_reference_add_nothing():
    assert hypervolume([[5, 0], [0, 5], [4, 4]], [4, 4]) == 0.0
    assert hypervolume(np.empty((0, 3)), [1, 1, 1]) == 0.0


def test_infinite_worst_points_are_ignored_and_minus_infinity_is_refused():
    assert hypervolume([[1, np.inf], [1, 1]], [2, 2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="-inf"):
        hypervolume([[-np.inf, 1]], [2, 2])


def test_reference_must_match_the_objectives():
    with pytest.raises(ValueError, match="reference: expected 2 values"):
        hypervolume([[1, 2]], [3, 3, 3])
    with pytest.raises(ValueError, match="reference: every coordinate must be finite"):
        hypervolume([[1, 2]], [3, np.inf])


@pytest.mark.parametrize("m, n", [(2, 9), (3, 9), (3, 10), (4, 8), (5, 7)])
def test_exact_matches_inclusion_exclusion(m, n):
    rng = np.random.default_rng(100 * m + n)
    points = rng.uniform(0, 1, size=(n, m))
    # Integer-valued coordinates create ties on every axis, the hard case for sweeps.
    ties = rng.integers(0, 4, size=(n, m)).astype(float)
    for pts in (points, ties):
        reference = np.full(m, 4.5 if pts is ties else 1.2)
        assert hypervolume(pts, reference) == pytest.approx(inclusion_exclusion(pts, reference), rel=1e-9)


@pytest.mark.parametrize("m", [2, 3])
def test_exact_matches_monte_carlo(m):
    rng = np.random.default_rng(m)
    # Points on a concave front so many of them count.
    raw = rng.uniform(0, 1, size=(40, m))
    points = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    reference = np.full(m, 1.1)
    estimate = monte_carlo(points, reference, 200_000, rng)
    box = np.prod(reference - points.min(axis=0))
    # 200k samples: standard error below box * 0.5 / sqrt(2e5) ~ 0.0011 * box.
    assert hypervolume(points, reference) == pytest.approx(estimate, abs=0.006 * box)


def test_3d_sweep_is_fast_for_thousands_of_points():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, size=(3000, 3))
    points = raw / np.linalg.norm(raw, axis=1, keepdims=True)  # all on the front
    import time

    start = time.perf_counter()
    value = hypervolume(points, [1.1, 1.1, 1.1])
    assert time.perf_counter() - start < 5.0  # generous: shared CI cores; typical < 0.2 s
    assert 0 < value < 1.1**3


def test_default_reference_point_pushes_out_by_the_range():
    ref = default_reference_point([[0, 10], [2, 10]], margin=0.5)
    assert ref.tolist() == [3.0, 10.5]
    with pytest.raises(ValueError, match="infinite"):
        default_reference_point([[0, np.inf]])


def test_no_points_have_zero_hypervolume():
    from hwtune.optimize.pareto.hypervolume import hypervolume

    assert hypervolume([], [1.0, 1.0]) == 0.0
    assert hypervolume([], [1.0, 1.0, 1.0]) == 0.0


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_moocore_path_agrees_with_the_python_code(m, seed):
    """The fast path (moocore) and the pure-Python sweep give the same volume and front."""
    from hwtune.optimize.pareto import nondominated as nd
    from hwtune.optimize.pareto.hypervolume import _python_hypervolume

    rng = np.random.default_rng(seed)
    n = 60 if m == 4 else 400
    points = np.round(rng.random((n, m)) * 8) / 8  # ties and duplicates
    points[: n // 2, -1] = 1.0 - points[: n // 2, :-1].sum(axis=1) / (m - 1)  # a big front
    reference = np.full(m, 1.2)
    assert hypervolume(points, reference) == pytest.approx(
        _python_hypervolume(points[np.all(points < reference, axis=1)], reference), rel=1e-12)
    if m >= 3:
        order = np.lexsort(points.T[::-1])
        assert (nd.pareto_front_mask(points) == nd._front_mask_by_pruning(points, order)).all()

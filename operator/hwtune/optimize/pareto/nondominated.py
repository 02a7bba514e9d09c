"""Non-dominated sorting over a loss matrix.

Everything here works on an ``(n, m)`` array of losses: n points, m objectives, every column
minimised. Maximised objectives are turned into losses once, at the edge, by
:func:`to_loss_matrix` (``Objective.loss``), so nothing below knows about goals.

Point ``a`` dominates ``b`` when ``a <= b`` in every objective and ``a < b`` in at least one.
Front 0 is the set of points nobody dominates; front k the points only dominated by points in
fronts < k. Identical points never dominate each other and so always share a front.

The sort builds the boolean dominance matrix (``n*n`` bytes, in row blocks so the temporary
arrays stay small) and peels fronts off with domination counts: O(m n^2) vectorised work. 5000
points x 3 objectives take well under a second (see benchmarks/bench_pareto.py); the memory
bound is the matrix, 100 MB at 10 000 points. (The MO-ASHA rungs do not use it: they keep front
indices incrementally, see ``hwtune.optimize.schedulers.rungs``.)

Front filtering (:func:`pareto_front_mask`) is O(n log n) for two objectives (one sort and a
running minimum, numpy) and, with the ``moocore`` package installed (a dependency of hwtune),
O(n log n) for three (its dimension sweep, in C) and O(n log^(m-2) n) beyond; without moocore,
or with infinite losses (which moocore 0.3.2 mishandles: a crash on -inf), it falls back to
head elimination plus a blocked dominance check.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from hwtune.api.records import Objective

__all__ = [
    "as_loss_matrix",
    "dominance_matrix",
    "dominates",
    "nondominated_fronts",
    "nondominated_ranks",
    "pareto_front",
    "pareto_front_mask",
    "ranks_from_dominance",
    "to_loss_matrix",
]

# Rows of the dominance matrix built per numpy call; bounds temporaries to ~block * n bytes.
_BLOCK_ROWS = 1024
# Head-elimination rounds in pareto_front_mask before it switches to a dominance check.
_PRUNE_ROUNDS = 32


def _moocore():
    """The moocore module (C implementations of front filtering and hypervolume), or None."""
    try:
        import moocore
    except ImportError:  # pragma: no cover - moocore is a dependency; the fallback stays correct
        return None
    return moocore


def as_loss_matrix(losses: object, *, name: str = "losses") -> np.ndarray:
    """Validate and convert to a float ``(n, m)`` array; NaN is refused (it orders nothing),
    infinities are allowed (a diverged run is simply worst in that objective)."""
    array = np.asarray(losses, dtype=float)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 1)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (points x objectives) array, got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{name}: needs at least one objective column")
    if np.isnan(array).any():
        row, col = np.argwhere(np.isnan(array))[0]
        raise ValueError(f"{name}: NaN at point {row}, objective {col}")
    return array


def to_loss_matrix(
    rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
) -> np.ndarray:
    """Turn metric dicts into an ``(n, m)`` loss matrix: maximised objectives are negated.

    Raises a ValueError naming the row and metric when a row lacks an objective's metric."""
    if not objectives:
        raise ValueError("objectives: at least one objective is required")
    matrix = np.empty((len(rows), len(objectives)), dtype=float)
    for i, row in enumerate(rows):
        for j, objective in enumerate(objectives):
            if objective.metric not in row:
                raise ValueError(f"rows[{i}]: missing objective metric {objective.metric!r}")
            matrix[i, j] = objective.loss(row[objective.metric])
    return as_loss_matrix(matrix, name="rows")


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when loss vector ``a`` Pareto-dominates ``b``."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare loss vectors of shapes {a.shape} and {b.shape}")
    return bool(np.all(a <= b) and np.any(a < b))


def dominance_matrix(losses: object) -> np.ndarray:
    """``D[i, j]`` is True when point i dominates point j (a boolean ``(n, n)`` array)."""
    L = as_loss_matrix(losses)
    n, m = L.shape
    D = np.empty((n, n), dtype=bool)
    columns = [np.ascontiguousarray(L[:, k]) for k in range(m)]
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        # One objective at a time keeps the temporaries 2-D (block x n) instead of 3-D.
        no_worse = np.ones((stop - start, n), dtype=bool)
        better = np.zeros((stop - start, n), dtype=bool)
        for col in columns:
            rows = col[start:stop, None]
            no_worse &= rows <= col[None, :]
            better |= rows < col[None, :]
        D[start:stop] = no_worse & better
    return D


def ranks_from_dominance(
    D: np.ndarray,
    *,
    stop_after: int | None = None,
    min_assigned: int | None = None,
    dominator_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Front index of every point from a dominance matrix.

    Shortcuts for callers that need only part of the order: with ``stop_after`` (a point index)
    peeling stops once that point's front is known; with ``min_assigned`` it stops once at least
    that many points have a front. Points in fronts not peeled are marked -1.
    ``dominator_counts`` (``D.sum(axis=0)``, kept up to date by an incremental caller) saves
    the one full pass over the matrix."""
    n = D.shape[0]
    ranks = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return ranks
    if dominator_counts is None:
        remaining_dominators = D.sum(axis=0, dtype=np.int64)
    else:
        remaining_dominators = np.array(dominator_counts, dtype=np.int64)
    unassigned = np.ones(n, dtype=bool)
    front_index = 0
    while unassigned.any():
        front = np.flatnonzero(unassigned & (remaining_dominators == 0))
        if front.size == 0:  # cannot happen for a strict partial order; guards bad input
            raise ValueError("dominance relation has a cycle; the input is not a loss matrix")
        ranks[front] = front_index
        unassigned[front] = False
        if stop_after is not None and ranks[stop_after] >= 0:
            break
        if min_assigned is not None and n - np.count_nonzero(unassigned) >= min_assigned:
            break
        remaining_dominators -= D[front].sum(axis=0, dtype=np.int64)
        front_index += 1
    return ranks


def nondominated_ranks(losses: object) -> np.ndarray:
    """Front index (0 = Pareto front) of every row of ``losses``."""
    L = as_loss_matrix(losses)
    if L.shape[1] == 1:
        # One objective: fronts are the distinct values in increasing order.
        _, inverse = np.unique(L[:, 0], return_inverse=True)
        return inverse.astype(np.int64).reshape(-1)
    return ranks_from_dominance(dominance_matrix(L))


def nondominated_fronts(losses: object) -> list[np.ndarray]:
    """The fronts as lists of row indices (ascending within a front), best front first."""
    ranks = nondominated_ranks(losses)
    if ranks.size == 0:
        return []
    order = np.argsort(ranks, kind="stable")
    boundaries = np.flatnonzero(np.diff(ranks[order])) + 1
    return [np.asarray(chunk, dtype=np.int64) for chunk in np.split(order, boundaries)]


def pareto_front_mask(losses: object) -> np.ndarray:
    """Boolean mask of the points no other point dominates.

    Cheaper than a full sort. Two objectives: one sort and a running minimum, O(n log n).
    More: points are visited in lexicographic order, where a point can only be dominated by
    points before it, so the first remaining candidate is always on the front and removes
    everything it dominates. That prunes fast when the front is small; when many candidates
    survive the first rounds (a large front), the rest is settled with one blocked dominance
    check among the survivors, keeping the work vectorised."""
    L = as_loss_matrix(losses)
    n, m = L.shape
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    fast = _moocore() if m >= 3 else None
    if fast is not None and np.isfinite(L).all():
        # keep_weakly: duplicates of a front point do not dominate each other, all stay.
        # Finite input only: moocore 0.3.2 crashes on -inf and misranks +inf in places.
        return np.asarray(fast.is_nondominated(L, keep_weakly=True), dtype=bool)
    order = np.lexsort(L.T[::-1])
    if m == 1:
        mask[L[:, 0] == L[order[0], 0]] = True
        return mask
    if m == 2:
        x, y = L[order, 0], L[order, 1]
        # Sorted by (x, y), only earlier points can dominate. Point i is dominated iff the best
        # y before it is smaller, or equal and first reached at a strictly smaller x (an equal
        # x would make it a duplicate, which does not dominate).
        running_min = np.minimum.accumulate(y)
        new_min = np.ones(n, dtype=bool)
        new_min[1:] = y[1:] < running_min[:-1]
        first_at = np.maximum.accumulate(np.where(new_min, np.arange(n), 0))
        best_before = np.concatenate(([np.inf], running_min[:-1]))
        x_of_best = np.concatenate(([np.inf], x[first_at[:-1]]))
        dominated = (best_before < y) | ((best_before == y) & (x_of_best < x))
        mask[order] = ~dominated
        return mask
    return _front_mask_by_pruning(L, order)


def _front_mask_by_pruning(L: np.ndarray, order: np.ndarray) -> np.ndarray:
    """m >= 3 without moocore: head elimination, then one dominance check among survivors."""
    mask = np.zeros(L.shape[0], dtype=bool)
    candidates = order
    for _ in range(_PRUNE_ROUNDS):
        if candidates.size == 0:
            return mask
        head = candidates[0]
        mask[head] = True
        rest = L[candidates[1:]]
        dominated = np.all(L[head] <= rest, axis=1) & np.any(L[head] < rest, axis=1)
        candidates = candidates[1:][~dominated]
    if candidates.size:
        # Survivors can only be dominated by other survivors (a point dominated by a pruned
        # point is also dominated by the head that pruned it).
        D = dominance_matrix(L[candidates])
        mask[candidates[~D.any(axis=0)]] = True
    return mask


def pareto_front(losses: object) -> np.ndarray:
    """Indices (ascending) of the Pareto-optimal rows of ``losses``."""
    return np.flatnonzero(pareto_front_mask(losses))

"""Orders inside one Pareto front, and the total order used to rank trials at a rung.

Non-dominated sorting only gives a partial order: the points of one front are incomparable.
MO-ASHA needs a total order ("is this trial in the top 1/eta?"), so a front is ordered by a
tie-break that prefers a well spread subset:

* ``epsilon-net`` (the MO-ASHA paper's default, after Schmucker et al. 2020): start from the
  point best on the first objective, then repeatedly take the point farthest from those already
  taken (distance to the nearest chosen point, Euclidean, in objective space normalised to
  [0, 1] per objective over the front). Any prefix of the order covers the front evenly.
* ``crowding`` (NSGA-II): points with the largest crowding distance first; the extremes of every
  objective have infinite distance and come first.

Ties are broken by the lower index, so every order is deterministic.
"""

from __future__ import annotations

import enum

import numpy as np

from hwtune.optimize.pareto.nondominated import (
    as_loss_matrix,
    dominance_matrix,
    nondominated_ranks,
    ranks_from_dominance,
)

__all__ = [
    "TieBreak",
    "crowding_distance",
    "crowding_order",
    "epsilon_net_order",
    "normalize_columns",
    "position_in_order",
    "rank_multiobjective",
]


class TieBreak(str, enum.Enum):
    EPSILON_NET = "epsilon-net"
    CROWDING = "crowding"

    @classmethod
    def parse(cls, value: "TieBreak | str", *, field: str = "tie_break") -> "TieBreak":
        if isinstance(value, TieBreak):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            options = ", ".join(member.value for member in cls)
            raise ValueError(f"{field}: unknown tie-break {value!r}; expected one of {options}") from None

    def order(self, points: np.ndarray) -> np.ndarray:
        """Order (indices, best first) of the points of one front."""
        if self is TieBreak.EPSILON_NET:
            return epsilon_net_order(points)
        return crowding_order(points)


def normalize_columns(points: object) -> np.ndarray:
    """Scale each column to [0, 1] by its finite min and max.

    A constant column becomes 0. Infinite losses are placed one span beyond the finite range
    (+inf -> 2, -inf -> -1) so they stay extreme without wiping out every other distance."""
    X = as_loss_matrix(points, name="points")
    out = np.zeros_like(X)
    for k in range(X.shape[1]):
        col = X[:, k]
        finite = np.isfinite(col)
        if not finite.any():
            out[:, k] = np.where(col > 0, 2.0, -1.0)
            continue
        low, high = col[finite].min(), col[finite].max()
        span = high - low
        scaled = (col - low) / span if span > 0 else np.zeros_like(col)
        scaled = np.where(col == np.inf, 2.0, scaled)
        scaled = np.where(col == -np.inf, -1.0, scaled)
        out[:, k] = scaled
    return out


def epsilon_net_order(points: object, *, start_objective: int = 0) -> np.ndarray:
    """Greedy farthest-point order of ``points`` (indices, first chosen first).

    The first point is the best on ``start_objective`` (lexicographically on the others when
    tied); each next point maximises its distance to the nearest already chosen point."""
    X = normalize_columns(points)
    n, m = X.shape
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if not 0 <= start_objective < m:
        raise ValueError(f"start_objective: must be in [0, {m}), got {start_objective}")
    keys = [X[:, k] for k in reversed(range(m)) if k != start_objective] + [X[:, start_objective]]
    start = int(np.lexsort(keys)[0])
    order = np.empty(n, dtype=np.int64)
    order[0] = start
    chosen = np.zeros(n, dtype=bool)
    chosen[start] = True
    nearest = np.linalg.norm(X - X[start], axis=1)
    for step in range(1, n):
        # Chosen points get -1 so argmax (first maximum = lowest index) never picks them again.
        candidate_distance = np.where(chosen, -1.0, nearest)
        pick = int(np.argmax(candidate_distance))
        order[step] = pick
        chosen[pick] = True
        np.minimum(nearest, np.linalg.norm(X - X[pick], axis=1), out=nearest)
    return order


def crowding_distance(points: object) -> np.ndarray:
    """NSGA-II crowding distance of every point of one front.

    Per objective, the points are sorted; the two extremes get infinity and an inner point adds
    the gap between its neighbours divided by the objective's range. Objectives with zero range
    add nothing. Fewer than three points: all infinite."""
    X = as_loss_matrix(points, name="points")
    n, m = X.shape
    distance = np.zeros(n, dtype=float)
    if n <= 2:
        distance[:] = np.inf
        return distance
    for k in range(m):
        col = X[:, k]
        order = np.argsort(col, kind="stable")
        span = col[order[-1]] - col[order[0]]
        distance[order[0]] = np.inf
        distance[order[-1]] = np.inf
        if not np.isfinite(span) or span <= 0:
            continue
        gaps = (col[order[2:]] - col[order[:-2]]) / span
        distance[order[1:-1]] += gaps
    return distance


def crowding_order(points: object) -> np.ndarray:
    """Indices by decreasing crowding distance (lower index first among equals)."""
    distance = crowding_distance(points)
    return np.argsort(-distance, kind="stable").astype(np.int64)


def _order_from_ranks(L: np.ndarray, ranks: np.ndarray, tie_break: TieBreak) -> np.ndarray:
    pieces = []
    for front in range(int(ranks.max()) + 1 if ranks.size else 0):
        members = np.flatnonzero(ranks == front)
        if members.size > 1:
            members = members[tie_break.order(L[members])]
        pieces.append(members)
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def rank_multiobjective(
    losses: object,
    tie_break: TieBreak | str = TieBreak.EPSILON_NET,
    *,
    dominance: np.ndarray | None = None,
) -> np.ndarray:
    """Total order of the rows of ``losses``, best first: by front, then by the tie-break
    inside each front. Returns row indices; ``order[0]`` is the best point.
    ``dominance`` may pass a precomputed :func:`dominance_matrix` of ``losses``."""
    L = as_loss_matrix(losses)
    tie_break = TieBreak.parse(tie_break)
    if dominance is not None and L.shape[1] > 1:
        ranks = ranks_from_dominance(dominance)
    else:
        ranks = nondominated_ranks(L)
    return _order_from_ranks(L, ranks, tie_break)


def position_in_order(
    losses: object,
    index: int,
    tie_break: TieBreak | str = TieBreak.EPSILON_NET,
    *,
    dominance: np.ndarray | None = None,
) -> int:
    """0-based position of row ``index`` in :func:`rank_multiobjective`'s order.

    Cheaper than the full order: fronts are peeled only until the point's own front, and only
    that front is tie-broken. ``dominance`` may pass a precomputed :func:`dominance_matrix`."""
    L = as_loss_matrix(losses)
    n = L.shape[0]
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for {n} points")
    tie_break = TieBreak.parse(tie_break)
    if L.shape[1] == 1:
        ranks = nondominated_ranks(L)
    else:
        D = dominance if dominance is not None else dominance_matrix(L)
        ranks = ranks_from_dominance(D, stop_after=index)
    own = ranks[index]
    ahead = int(np.count_nonzero((ranks >= 0) & (ranks < own)))
    members = np.flatnonzero(ranks == own)
    if members.size == 1:
        return ahead
    within = members[tie_break.order(L[members])]
    return ahead + int(np.flatnonzero(within == index)[0])

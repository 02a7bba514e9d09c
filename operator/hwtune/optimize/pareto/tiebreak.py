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
    "EpsilonNet",
    "TieBreak",
    "crowding_distance",
    "crowding_order",
    "epsilon_net_order",
    "normalize_columns",
    "position_in_order",
    "rank_multiobjective",
    "within_cutoff",
]

# Largest front for which epsilon_net_order builds the pairwise distance table (8 n^2 bytes).
_PAIRWISE_MAX = 1024


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

    def order(self, points: np.ndarray, limit: int | None = None) -> np.ndarray:
        """Order (indices, best first) of the points of one front; with ``limit`` at least
        the first ``limit`` of it (the greedy net can stop early, crowding cannot)."""
        if self is TieBreak.EPSILON_NET:
            return epsilon_net_order(points, limit=limit)
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


def epsilon_net_order(
    points: object, *, start_objective: int = 0, limit: int | None = None
) -> np.ndarray:
    """Greedy farthest-point order of ``points`` (indices, first chosen first).

    The first point is the best on ``start_objective`` (lexicographically on the others when
    tied); each next point maximises its distance to the nearest already chosen point. With
    ``limit``, only the first ``limit`` picks are made and returned."""
    X = normalize_columns(points)
    n, m = X.shape
    if not 0 <= start_objective < m:
        raise ValueError(f"start_objective: must be in [0, {m}), got {start_objective}")
    picks = n if limit is None else max(0, min(limit, n))
    order = np.empty(picks, dtype=np.int64)
    if picks == 0:
        return order
    keys = [X[:, k] for k in reversed(range(m)) if k != start_objective] + [X[:, start_objective]]
    start = int(np.lexsort(keys)[0])
    order[0] = start
    # Squared distances: same argmax, no square roots.
    nearest = np.square(X - X[start]).sum(axis=1)
    nearest[start] = -1.0  # chosen points get -1 so argmax (first maximum) never picks them again
    if picks > 16 and n <= _PAIRWISE_MAX:
        # Many picks on a small front: one pairwise table makes each pick two numpy calls
        # (the same sums of the same squares, so the same order to the last bit).
        pairwise = np.square(X[:, None, :] - X[None, :, :]).sum(axis=2)
        for step in range(1, picks):
            pick = int(nearest.argmax())
            order[step] = pick
            np.minimum(nearest, pairwise[pick], out=nearest)
            nearest[pick] = -1.0
        return order
    for step in range(1, picks):
        pick = int(nearest.argmax())
        order[step] = pick
        np.minimum(nearest, np.square(X - X[pick]).sum(axis=1), out=nearest)
        nearest[pick] = -1.0
    return order


class EpsilonNet:
    """The :func:`epsilon_net_order` of one front, computed lazily and kept while points join.

    ``prefix(k)`` runs the greedy only as far as asked. ``add(row, loss)`` takes a point that
    joins the front (with a row id above every other, as arrivals are) and keeps the state
    when the order before it cannot change: the new point leaves the per-objective ranges of
    the front as they were (so no coordinate is rescaled) and does not become the start. Then
    the greedy up to the step where the new point would win is the old one (the new point,
    last in index order, loses ties); that step is found from its distances to the picks made
    so far in O(k m). Anything else returns False and the caller builds a new net. Same
    arithmetic as epsilon_net_order, so the same order to the last bit."""

    def __init__(self, rows: np.ndarray, losses: np.ndarray):
        raw = as_loss_matrix(losses, name="points")
        self._rows = [int(r) for r in rows]
        self._X = normalize_columns(raw)
        n, m = self._X.shape
        self._columns = []
        for k in range(m):
            finite = raw[np.isfinite(raw[:, k]), k]
            self._columns.append((float(finite.min()), float(finite.max())) if finite.size else None)
        keys = [self._X[:, k] for k in reversed(range(1, m))] + [self._X[:, 0]]
        start = int(np.lexsort(keys)[0])
        self._order = [start]
        self._gaps = [np.inf]  # distance of each pick to the picks before it, when picked
        self._nearest = np.square(self._X - self._X[start]).sum(axis=1)
        self._nearest[start] = -1.0
        self._ordered_rows = np.empty(0, dtype=np.int64)  # rows of self._order, rebuilt lazily

    def __len__(self) -> int:
        return len(self._rows)

    def prefix(self, k: int | None = None) -> np.ndarray:
        """Rows of the first ``k`` points of the order (all with None)."""
        k = len(self._rows) if k is None else min(k, len(self._rows))
        X, nearest = self._X, self._nearest
        while len(self._order) < k:
            pick = int(nearest.argmax())
            self._gaps.append(float(nearest[pick]))
            self._order.append(pick)
            np.minimum(nearest, np.square(X - X[pick]).sum(axis=1), out=nearest)
            nearest[pick] = -1.0
        if self._ordered_rows.size != len(self._order):
            rows = np.asarray(self._rows, dtype=np.int64)
            self._ordered_rows = rows[np.asarray(self._order, dtype=np.int64)]
        return self._ordered_rows[:k]

    def _scaled(self, loss: np.ndarray) -> np.ndarray | None:
        """The new point's normalised coordinates, or None if it would rescale a column."""
        out = np.empty(loss.shape[0], dtype=float)
        for k, value in enumerate(loss.tolist()):
            bounds = self._columns[k]
            if value == np.inf or value == -np.inf:
                out[k] = 2.0 if value > 0 else -1.0
                continue
            if bounds is None or not bounds[0] <= value <= bounds[1]:
                return None
            low, high = bounds
            span = np.float64(high) - np.float64(low)
            out[k] = (np.float64(value) - np.float64(low)) / span if span > 0 else 0.0
        return out

    def add(self, row: int, loss: np.ndarray) -> bool:
        x = self._scaled(np.asarray(loss, dtype=float).reshape(-1))
        if x is None:
            return False
        X = self._X
        if tuple(x.tolist()) < tuple(X[self._order[0]].tolist()):
            return False  # it would be the new start
        index = len(self._rows)
        picks = np.asarray(self._order, dtype=np.int64)
        to_picks = np.minimum.accumulate(np.square(X[picks] - x).sum(axis=1))
        # Step t >= 1 takes the new point iff its distance to picks 0..t-1 beats the gap of
        # the old pick t strictly (ties go to the lower index, never the new point).
        wins = np.flatnonzero(to_picks[:-1] > np.asarray(self._gaps[1:]))
        self._rows.append(int(row))
        self._X = X = np.vstack([X, x[None, :]])
        if wins.size == 0:
            self._nearest = np.append(self._nearest, to_picks[-1])
            return True
        t = int(wins[0]) + 1
        self._order = self._order[:t] + [index]
        self._ordered_rows = np.empty(0, dtype=np.int64)
        self._gaps = self._gaps[:t] + [float(to_picks[t - 1])]
        picks = np.asarray(self._order, dtype=np.int64)
        nearest = np.full(len(self._rows), np.inf)
        for start in range(0, picks.size, 64):
            chunk = X[picks[start:start + 64]]
            np.minimum(nearest, np.square(X[None, :, :] - chunk[:, None, :]).sum(axis=2).min(axis=0),
                       out=nearest)
        nearest[picks] = -1.0
        self._nearest = nearest
        return True


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


def _order_from_ranks(
    L: np.ndarray, ranks: np.ndarray, tie_break: TieBreak, limit: int | None = None
) -> np.ndarray:
    """Concatenate the tie-broken fronts 0, 1, ... (up to ``limit`` points); points marked -1
    (not peeled) are left out."""
    pieces = []
    taken = 0
    for front in range(int(ranks.max()) + 1 if ranks.size else 0):
        if limit is not None and taken >= limit:
            break
        members = np.flatnonzero(ranks == front)
        if members.size > 1:
            remaining = None if limit is None else limit - taken
            members = members[tie_break.order(L[members], limit=remaining)]
        pieces.append(members)
        taken += members.size
    order = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
    return order if limit is None else order[:limit]


def rank_multiobjective(
    losses: object,
    tie_break: TieBreak | str = TieBreak.EPSILON_NET,
    *,
    dominance: np.ndarray | None = None,
    dominator_counts: np.ndarray | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """Total order of the rows of ``losses``, best first: by front, then by the tie-break
    inside each front. Returns row indices; ``order[0]`` is the best point.

    ``dominance`` may pass a precomputed :func:`dominance_matrix` of ``losses`` (and
    ``dominator_counts`` its column sums). With ``limit``
    only the first ``limit`` indices are returned, and fronts beyond them are neither peeled
    nor tie-broken (the prefix is the same as that of the full order)."""
    L = as_loss_matrix(losses)
    tie_break = TieBreak.parse(tie_break)
    if limit is not None and limit < 0:
        raise ValueError(f"limit: must be >= 0, got {limit}")
    ranks = _front_ranks(L, dominance, dominator_counts, min_assigned=limit)
    return _order_from_ranks(L, ranks, tie_break, limit)



def _front_ranks(
    L: np.ndarray,
    dominance: np.ndarray | None,
    dominator_counts: np.ndarray | None,
    **peel: int | None,
) -> np.ndarray:
    """Front index per point (-1 where peeling stopped early), reusing a caller's incrementally
    kept dominance matrix when given; ``peel`` bounds the peeling (see ranks_from_dominance)."""
    if L.shape[1] == 1:
        return nondominated_ranks(L)
    D = dominance if dominance is not None else dominance_matrix(L)
    counts = dominator_counts if dominance is not None else None
    return ranks_from_dominance(D, dominator_counts=counts, **peel)

def _own_front(
    losses: object,
    index: int,
    dominance: np.ndarray | None,
    dominator_counts: np.ndarray | None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """(loss matrix, number of points in better fronts, members of the point's own front),
    peeling fronts only as far as the point's own."""
    L = as_loss_matrix(losses)
    n = L.shape[0]
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for {n} points")
    ranks = _front_ranks(L, dominance, dominator_counts, stop_after=index)
    own = ranks[index]
    ahead = int(np.count_nonzero((ranks >= 0) & (ranks < own)))
    return L, ahead, np.flatnonzero(ranks == own)


def within_cutoff(
    losses: object,
    index: int,
    cutoff: float,
    tie_break: TieBreak | str = TieBreak.EPSILON_NET,
    *,
    dominance: np.ndarray | None = None,
    dominator_counts: np.ndarray | None = None,
) -> bool:
    """Whether ``position_in_order(losses, index) < cutoff``, doing only the work needed:
    no tie-break when the point's front lies wholly before or after the cutoff, and the
    epsilon-net stops as soon as the places before the cutoff are filled. ``dominance`` and
    ``dominator_counts`` may pass a precomputed ``dominance_matrix`` and its column sums."""
    tie_break = TieBreak.parse(tie_break)
    L, ahead, members = _own_front(losses, index, dominance, dominator_counts)
    if ahead >= cutoff:
        return False
    if ahead + members.size <= cutoff:
        return True
    places = int(np.ceil(cutoff)) - ahead  # positions ahead .. ceil(cutoff)-1 are inside
    within = members[tie_break.order(L[members], limit=places)]
    return bool(np.any(within[:places] == index))


def position_in_order(
    losses: object,
    index: int,
    tie_break: TieBreak | str = TieBreak.EPSILON_NET,
    *,
    dominance: np.ndarray | None = None,
    dominator_counts: np.ndarray | None = None,
) -> int:
    """0-based position of row ``index`` in :func:`rank_multiobjective`'s order.

    Cheaper than the full order: fronts are peeled only until the point's own front, and only
    that front is tie-broken. ``dominance`` may pass a precomputed :func:`dominance_matrix`
    (and ``dominator_counts`` its column sums)."""
    tie_break = TieBreak.parse(tie_break)
    L, ahead, members = _own_front(losses, index, dominance, dominator_counts)
    if members.size == 1:
        return ahead
    within = members[tie_break.order(L[members])]
    return ahead + int(np.flatnonzero(within == index)[0])

"""Reference MO-ASHA rung ranking: a verbatim copy of the implementation before issue 14
(n x n dominance matrix, front peeling per decision). Slow (O(n^2) memory) but obviously
right; the equivalence tests check that the incremental Rung decides exactly as this one.
Do not optimise this file.
"""
# ruff: noqa
from __future__ import annotations

import enum
import math

import numpy as np

from hwtune.optimize.pareto.nondominated import as_loss_matrix

_BLOCK_ROWS = 1024

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
    for step in range(1, picks):
        pick = int(nearest.argmax())
        order[step] = pick
        np.minimum(nearest, np.square(X - X[pick]).sum(axis=1), out=nearest)
        nearest[pick] = -1.0
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


class ReferenceRung:
    """The results recorded at one resource level, and their ranking."""

    def __init__(self, level: int, num_objectives: int, tie_break: TieBreak | str = TieBreak.EPSILON_NET):
        if num_objectives < 1:
            raise ValueError(f"num_objectives: must be >= 1, got {num_objectives}")
        self.level = level
        self.num_objectives = num_objectives
        self.tie_break = TieBreak.parse(tie_break)
        self.trial_ids: list[int] = []
        self.promoted: set[int] = set()
        self._row: dict[int, int] = {}
        self._losses = np.empty((8, num_objectives), dtype=float)
        self._dominance = np.zeros((8, 8), dtype=bool) if num_objectives > 1 else None
        self._dominators = np.zeros(8, dtype=np.int64)  # column sums of _dominance
        # (limit it was computed with, ranked ids); cleared by record().
        self._ranking_cache: tuple[int | None, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.trial_ids)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._row

    @property
    def losses(self) -> np.ndarray:
        """The recorded loss vectors, one row per trial in arrival order (a read-only view)."""
        view = self._losses[: len(self.trial_ids)]
        view.flags.writeable = False
        return view

    def losses_of(self, trial_id: int) -> np.ndarray:
        return self._losses[self._row[trial_id]].copy()

    def record(self, trial_id: int, losses: np.ndarray) -> None:
        """Add a trial's result at this level. A trial is recorded at most once per rung."""
        if trial_id in self._row:
            raise ValueError(f"trial {trial_id} is already recorded at rung {self.level}")
        losses = np.asarray(losses, dtype=float).reshape(-1)
        if losses.shape != (self.num_objectives,):
            raise ValueError(
                f"rung {self.level}: expected {self.num_objectives} losses, got {losses.shape[0]}"
            )
        if np.isnan(losses).any():
            raise ValueError(f"rung {self.level}: trial {trial_id} has a NaN loss")
        n = len(self.trial_ids)
        self._grow(n + 1)
        self._losses[n] = losses
        if self._dominance is not None:
            existing = self._losses[:n]
            # Row n: the newcomer dominates existing points; column n: existing points dominate it.
            self._dominance[n, :n] = np.all(losses <= existing, axis=1) & np.any(losses < existing, axis=1)
            self._dominance[:n, n] = np.all(existing <= losses, axis=1) & np.any(existing < losses, axis=1)
            self._dominance[n, n] = False
            self._dominators[:n] += self._dominance[n, :n]
            self._dominators[n] = np.count_nonzero(self._dominance[:n, n])
        self._row[trial_id] = n
        self.trial_ids.append(trial_id)
        self._ranking_cache = None

    def _grow(self, needed: int) -> None:
        capacity = self._losses.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity)
        losses = np.empty((new_capacity, self.num_objectives), dtype=float)
        losses[:capacity] = self._losses
        self._losses = losses
        if self._dominance is not None:
            dominance = np.zeros((new_capacity, new_capacity), dtype=bool)
            dominance[:capacity, :capacity] = self._dominance
            self._dominance = dominance
            dominators = np.zeros(new_capacity, dtype=np.int64)
            dominators[:capacity] = self._dominators
            self._dominators = dominators

    def position(self, trial_id: int) -> int:
        """0-based place of the trial in this rung's ranking (0 = best)."""
        row = self._row[trial_id]
        n = len(self.trial_ids)
        losses = self._losses[:n]
        if self._dominance is None:
            own = losses[row, 0]
            column = losses[:, 0]
            return int(np.count_nonzero(column < own) + np.count_nonzero(column[:row] == own))
        return position_in_order(
            losses, row, self.tie_break,
            dominance=self._dominance[:n, :n], dominator_counts=self._dominators[:n],
        )

    def ranked_trial_ids(self, limit: int | None = None) -> list[int]:
        """Trial ids best first; with ``limit``, only the best ``limit`` (cheaper).

        The ranking is cached until the next ``record``: promotion asks for it on every
        ``suggest()`` while the rung rarely changes in between."""
        n = len(self.trial_ids)
        cached = self._ranking_cache
        if cached is not None and (cached[0] is None or (limit is not None and cached[0] >= limit)):
            return cached[1][:limit]
        losses = self._losses[:n]
        if self._dominance is None:
            order = np.argsort(losses[:, 0], kind="stable")[:limit]
        else:
            order = rank_multiobjective(
                losses, self.tie_break, dominance=self._dominance[:n, :n],
                dominator_counts=self._dominators[:n], limit=limit,
            )
        ranked = [self.trial_ids[i] for i in order]
        self._ranking_cache = (limit, ranked)
        return list(ranked)

    def in_top_fraction(self, trial_id: int, reduction_factor: float) -> bool:
        """The stopping rule: keep the trial iff its position < n / eta, counting n with itself.

        The first trial at a rung is always kept (0 < 1/eta); with n = 9 and eta = 3 exactly the
        positions 0, 1, 2 are kept."""
        cutoff = len(self) / reduction_factor
        if self._dominance is None:
            return self.position(trial_id) < cutoff
        n = len(self.trial_ids)
        row = self._row[trial_id]
        # Whoever dominates the trial sits in an earlier front, so this many dominators already
        # push it past the cutoff: an O(n) answer for most trials that are stopped.
        if self._dominators[row] >= cutoff:
            return False
        return within_cutoff(
            self._losses[:n], row, cutoff, self.tie_break,
            dominance=self._dominance[:n, :n], dominator_counts=self._dominators[:n],
        )

    def promotion_quota(self, reduction_factor: float) -> int:
        """How many of the best trials at this rung may be promoted: floor(n / eta)."""
        return int(math.floor(len(self) / reduction_factor + 1e-9))

    # -- adapters: the old ASHAScheduler._promote loop and promoted.add, so that a scheduler
    # -- built on ReferenceRung decides through the same calls as one built on Rung.
    def mark_promoted(self, trial_id: int) -> None:
        self.promoted.add(trial_id)

    def is_promoted(self, trial_id: int) -> bool:
        return trial_id in self.promoted

    def first_promotable(self, limit, eligible):
        for trial_id in self.ranked_trial_ids(limit=limit):
            if trial_id in self.promoted or not eligible(trial_id):
                continue
            return trial_id
        return None

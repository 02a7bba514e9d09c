"""Rung levels and the per-rung record of results that successive halving ranks.

A rung is a resource level ``r_min * eta^k`` below the study maximum. Each rung remembers, in
arrival order, the loss vector every trial had when it first reached that level. Ranking is
either by one loss (ties: earlier arrival first) or, with several objectives, by non-dominated
sorting plus a tie-break inside the front (see :mod:`hwtune.optimize.pareto`).

For several objectives the rung keeps its dominance matrix up to date on every insertion
(O(n m) per new trial instead of O(n^2 m) per decision), so ranking a new arrival among a
thousand recorded trials costs about a millisecond.
"""

from __future__ import annotations

import math

import numpy as np

from hwtune.optimize.pareto.tiebreak import (
    TieBreak,
    position_in_order,
    rank_multiobjective,
    within_cutoff,
)

__all__ = ["Rung", "rung_levels"]


def rung_levels(resource_min: int, resource_max: int, reduction_factor: float) -> tuple[int, ...]:
    """The decision levels ``round(r_min * eta^k)`` strictly below ``resource_max``.

    A report at ``resource_max`` completes the trial, so there is no rung there. Rounding (for a
    non-integer eta) can repeat a level; repeats are dropped."""
    levels: list[int] = []
    k = 0
    while True:
        level = int(round(resource_min * reduction_factor**k))
        if level >= resource_max:
            break
        if not levels or level > levels[-1]:
            levels.append(level)
        k += 1
    return tuple(levels)


class Rung:
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

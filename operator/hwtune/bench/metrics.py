"""Benchmark metrics: normalised hypervolume over simulated wall-clock and over spent cost, the
time and cost to reach a target hypervolume, and mean/std summaries over seeds.

What a run is measured on (a :class:`Trace`): every reported observation, in report order, as
a point in objective space — the trial's metric at that resource level, its runtime and cost so
far. Every report is a model the user could keep (checkpoints are kept), so it counts; this is
the "anytime" front, the same rule for every method. Alongside each point the trace keeps the
simulated time of the report and the study's total spend at that moment (sum over trials of
their latest reported cost; spend between reports is booked at the next report).

Hypervolume is computed on normalised losses: each objective is mapped to [0, 1] by fixed bounds
taken from the benchmark table (best and worst value any config/seed/epoch/hardware can reach,
see ``hwtune.bench.runners.table_bounds``), in log10 space for runtime and cost (they span
orders of magnitude across hardware), linearly for the others; the reference point is 1 in
every objective. So a hypervolume is a fraction of the unit cube, comparable across methods and
seeds on the same table, and independent of which points a run happened to find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from hwtune.api.records import Objective, Observation
from hwtune.optimize.pareto import hypervolume, pareto_front_mask

__all__ = [
    "Normalizer",
    "Summary",
    "Trace",
    "hypervolume_at",
    "prefix_hypervolumes",
    "summarize",
    "time_to_target",
]


@dataclass(frozen=True)
class Normalizer:
    """Maps losses (minimise all) to [0, 1] per objective with fixed bounds; ``log`` objectives
    are normalised in log10 space (their bounds must then be > 0)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    log: tuple[bool, ...]

    def __post_init__(self) -> None:
        if not len(self.lower) == len(self.upper) == len(self.log) >= 1:
            raise ValueError("lower, upper and log need one entry per objective")
        for i, (lo, hi, lg) in enumerate(zip(self.lower, self.upper, self.log)):
            if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
                raise ValueError(f"objective {i}: bounds must be finite with lower < upper, got [{lo}, {hi}]")
            if lg and lo <= 0:
                raise ValueError(f"objective {i}: a log-normalised objective needs lower > 0, got {lo}")

    @property
    def reference_point(self) -> np.ndarray:
        return np.ones(len(self.lower))

    def __call__(self, losses: np.ndarray) -> np.ndarray:
        L = np.asarray(losses, dtype=float)
        if L.ndim != 2 or L.shape[1] != len(self.lower):
            raise ValueError(f"losses: expected shape (n, {len(self.lower)}), got {L.shape}")
        out = np.empty_like(L)
        for i, (lo, hi, lg) in enumerate(zip(self.lower, self.upper, self.log)):
            col = L[:, i]
            if lg:
                # values at or below 0 cannot occur for runtime/cost; clamp to the bound
                col = np.log10(np.maximum(col, lo))
                lo, hi = math.log10(lo), math.log10(hi)
            out[:, i] = (col - lo) / (hi - lo)
        return out


@dataclass(frozen=True)
class Trace:
    """What one tuning run reported, in report order."""

    times: np.ndarray  # (n,) simulated seconds since the study started, non-decreasing
    spent: np.ndarray  # (n,) total cost spent by the study at each report, non-decreasing
    losses: np.ndarray  # (n, m) objective losses of each report (minimise all)

    def __post_init__(self) -> None:
        n = len(self.times)
        if len(self.spent) != n or self.losses.shape[0] != n:
            raise ValueError("times, spent and losses need the same number of reports")
        if n and (np.any(np.diff(self.times) < 0) or np.any(np.diff(self.spent) < -1e-12)):
            raise ValueError("a trace's times and spent cost must be non-decreasing")

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_observations(cls, observations: Iterable[Observation], objectives: Sequence[Objective],
                          *, cost_metric: str = "cost") -> "Trace":
        """Build from observations (any order; sorted by time, stable). ``cost_metric`` is the
        trial's cumulative cost, summed over trials into the study's spend."""
        obs = sorted(observations, key=lambda o: o.time)
        last_cost: dict[int, float] = {}
        total = 0.0
        times, spent, rows = [], [], []
        for o in obs:
            missing = [obj.metric for obj in objectives if obj.metric not in o.metrics]
            if missing:
                raise ValueError(f"trial {o.trial_id} resource {o.resource}: report lacks {', '.join(missing)}")
            cost = float(o.metrics.get(cost_metric, 0.0))
            total += cost - last_cost.get(o.trial_id, 0.0)
            last_cost[o.trial_id] = cost
            times.append(o.time)
            spent.append(total)
            rows.append([obj.loss(o.metrics[obj.metric]) for obj in objectives])
        m = len(objectives)
        return cls(np.asarray(times, float), np.maximum.accumulate(np.asarray(spent, float)) if spent
                   else np.zeros(0), np.asarray(rows, float).reshape(-1, m))


def _merge_front(front: np.ndarray, points: np.ndarray, block: int = 512) -> np.ndarray:
    """The Pareto front of ``front`` plus ``points``, merged in blocks so the dominance matrix
    stays small however many points arrive at once."""
    for start in range(0, len(points), block):
        both = np.vstack([front, points[start:start + block]])
        front = both[pareto_front_mask(both)]
    return front


def prefix_hypervolumes(points: np.ndarray, counts: Sequence[int], reference: Sequence[float]) -> np.ndarray:
    """Hypervolume of ``points[:k]`` for every k in ``counts`` (non-decreasing), incrementally."""
    counts = [int(k) for k in counts]
    if any(b < a for a, b in zip(counts, counts[1:])):
        raise ValueError("counts must be non-decreasing")
    ref = np.asarray(reference, float)
    pts = np.asarray(points, float).reshape(-1, len(ref))
    front = np.empty((0, len(ref)))
    out = np.zeros(len(counts))
    done = 0
    for i, k in enumerate(counts):
        k = min(max(k, 0), len(pts))
        if k > done:
            new = pts[done:k]
            front = _merge_front(front, new[np.all(new < ref, axis=1)])
            done = k
        out[i] = hypervolume(front, ref) if len(front) else 0.0
    return out


def hypervolume_at(trace: Trace, normalizer: Normalizer, checkpoints: Sequence[float],
                   axis: str = "time") -> np.ndarray:
    """Normalised hypervolume of everything reported up to each checkpoint of simulated time
    (``axis='time'``) or of spent cost (``axis='cost'``)."""
    xs = _axis(trace, axis)
    counts = np.searchsorted(xs, np.asarray(checkpoints, float), side="right")
    return prefix_hypervolumes(normalizer(trace.losses), counts, normalizer.reference_point)


def time_to_target(trace: Trace, normalizer: Normalizer, target: float, axis: str = "time",
                   *, rel_tol: float = 1e-9) -> float:
    """The first simulated time (or spent cost) at which the run's normalised hypervolume
    reaches ``target``; ``inf`` when it never does."""
    n = len(trace)
    if n == 0:
        return math.inf
    xs = _axis(trace, axis)
    pts = normalizer(trace.losses)
    ref = normalizer.reference_point
    goal = target - rel_tol * max(abs(target), 1.0)
    # coarse pass on chunk boundaries, then one point at a time inside the crossing chunk
    step = max(1, min(256, n // 32 or 1))
    bounds = list(range(step, n, step)) + [n]
    hv = prefix_hypervolumes(pts, bounds, ref)
    hit = np.nonzero(hv >= goal)[0]
    if len(hit) == 0:
        return math.inf
    hi = bounds[hit[0]]
    lo = bounds[hit[0] - 1] if hit[0] > 0 else 0
    fine = prefix_hypervolumes(pts, range(lo + 1, hi + 1), ref)
    k = lo + 1 + int(np.nonzero(fine >= goal)[0][0])
    return float(xs[k - 1])


def _axis(trace: Trace, axis: str) -> np.ndarray:
    if axis == "time":
        return trace.times
    if axis == "cost":
        return trace.spent
    raise ValueError(f"axis must be 'time' or 'cost', got {axis!r}")


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation and median over seeds of the finite values, and how many were
    finite (for a speedup: how many seeds reached the target)."""

    mean: float
    std: float
    finite: int
    total: int
    median: float = math.nan

    def __str__(self) -> str:
        if self.finite == 0:
            return "never"
        text = f"{self.mean:.4g} ± {self.std:.2g}"
        return text if self.finite == self.total else f"{text} ({self.finite}/{self.total})"


def summarize(values: Iterable[float]) -> Summary:
    vals = np.asarray(list(values), float)
    finite = vals[np.isfinite(vals)]
    if len(finite) == 0:
        return Summary(math.nan, math.nan, 0, len(vals))
    return Summary(float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
                   len(finite), len(vals), float(np.median(finite)))


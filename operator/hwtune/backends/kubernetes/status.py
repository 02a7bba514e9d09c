"""Size bounds of what the operator writes into a TuningStudy's and a TuningTrial's status.

No object grows with the study (issue 8: a 20,000-trial study's object stays under 100 KiB;
Katib's Suggestion object hit etcd's limit near 14,500 trials). The rules, also in
docs/operator-design.md ("Status size"):

- **Pareto front** (``status.paretoFront``): at most ``MAX_FRONT_POINTS`` points and
  ``FRONT_BYTES`` of JSON. When the front is larger, the points kept are, in this order: the best
  point of each objective (the front's extremes), then points evenly spread along the first
  objective (a bisection order: the middle, the quarters, the eighths, ...), until either bound
  is reached; they are listed in the first objective's order. ``frontSize`` is the whole
  front's size, ``frontOmitted`` how many points are not listed, and ``frontSource`` names where
  the whole front lives: the study's TuningTrials, whose last learning-curve point holds the
  values the front is computed from (the curve bound below always keeps it).
- **Learning curve** (``TuningTrial status.learningCurve``): at most ``MAX_CURVE_POINTS`` points
  and ``CURVE_BYTES`` of JSON. Kept in this order: the last point (the trial's current values:
  the front's source), the first, the best point of each objective, then points evenly spread
  over the curve (bisection order). A point larger than ``POINT_BYTES`` (many extra metrics)
  keeps only the objectives and the built-in metrics. ``reports`` is the number of reports in
  all; the study's event log (ConfigMaps ``<study>-log-<n>``) holds every one.

Everything else in the study status is bounded by the spec (counts, at most 8 objectives for
``bestPerObjective``, conditions with messages of at most 1,024 characters).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Sequence, TypeVar

from hwtune.api.records import BUILTIN_METRICS, Objective

__all__ = ["CURVE_BYTES", "FRONT_BYTES", "MAX_CURVE_POINTS", "MAX_FRONT_POINTS", "POINT_BYTES",
           "bounded_curve", "bounded_front", "front_source", "json_bytes", "spread_order"]

MAX_FRONT_POINTS = 50
FRONT_BYTES = 40 * 1024
MAX_CURVE_POINTS = 100
CURVE_BYTES = 48 * 1024
POINT_BYTES = 4 * 1024

T = TypeVar("T")


def json_bytes(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what the API server stores, near enough)."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def spread_order(n: int) -> list[int]:
    """0..n-1 in bisection order (first, last, middle, quarters, eighths, ...): any prefix of it
    covers the range about evenly."""
    if n <= 0:
        return []
    order: list[int] = []
    seen: set[int] = set()

    def add(i: int) -> None:
        if i not in seen:
            seen.add(i)
            order.append(i)

    add(0)
    add(n - 1)
    parts = 2
    while len(order) < n and parts < 4 * n:
        for j in range(1, parts, 2):
            add(round(j * (n - 1) / parts))
        parts *= 2
    for i in range(n):  # rounding may leave a few out
        add(i)
    return order


def _select(items: Sequence[T], first: Sequence[int], size: Callable[[T], int], *,
            limit: int, budget: int) -> list[int]:
    """Indices of ``items`` to keep: ``first`` (in that order) then ``spread_order``, while at
    most ``limit`` items and ``budget`` bytes; returned sorted."""
    chosen: list[int] = []
    taken: set[int] = set()
    used = 0
    # Sizes are measured for the candidates looked at only, and no more than a few times the
    # limit of them (a front of 20,000 points is never serialised whole).
    for i in [*first, *spread_order(len(items))][:len(first) + 4 * limit]:
        if len(chosen) >= limit:
            break
        if i in taken:
            continue
        taken.add(i)  # a point too large for what is left is skipped, not retried
        cost = size(items[i])
        if used + cost > budget:
            continue
        chosen.append(i)
        used += cost
    return sorted(chosen)


def _best_indices(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[int]:
    out = []
    for o in objectives:
        scored = [(o.loss(v[o.metric]), i) for i, v in enumerate(values) if o.metric in v]
        if scored:
            out.append(min(scored)[1])
    return out


def bounded_front(points: Sequence[T], values: Callable[[T], Mapping[str, float]],
                  objectives: Sequence[Objective], size: Callable[[T], int], *,
                  limit: int | None = None, budget: int | None = None) -> list[T]:
    """The front points to list in the status (``points`` in the first objective's order)."""
    limit = MAX_FRONT_POINTS if limit is None else limit
    budget = FRONT_BYTES if budget is None else budget
    if len(points) <= limit and sum(size(p) for p in points) <= budget:
        return list(points)  # (summed only when few)
    best = _best_indices([values(p) for p in points], objectives)
    return [points[i] for i in _select(points, best, size, limit=limit, budget=budget)]


def bounded_curve(points: Sequence[dict[str, Any]], objectives: Sequence[Objective], *,
                  limit: int | None = None, budget: int | None = None,
                  point_bytes: int | None = None) -> list[dict[str, Any]]:
    """The learning-curve points (status JSON dicts with ``metrics``) to keep, in order."""
    limit = MAX_CURVE_POINTS if limit is None else limit
    budget = CURVE_BYTES if budget is None else budget
    point_bytes = POINT_BYTES if point_bytes is None else point_bytes
    keep_metrics = {o.metric for o in objectives} | set(BUILTIN_METRICS)

    def slim(point: dict[str, Any]) -> dict[str, Any]:
        if json_bytes(point) <= point_bytes:
            return point
        metrics = {k: v for k, v in (point.get("metrics") or {}).items() if k in keep_metrics}
        return {**point, "metrics": metrics}

    points = [slim(p) for p in points]
    sizes = [json_bytes(p) + 1 for p in points]
    if len(points) <= limit and sum(sizes) <= budget:
        return points
    n = len(points)
    first = [n - 1, 0, *_best_indices([p.get("metrics") or {} for p in points], objectives)]
    index = {id(p): i for i, p in enumerate(points)}
    return [points[i] for i in _select(points, first, lambda p: sizes[index[id(p)]],
                                       limit=limit, budget=budget)]


def front_source(study: str) -> str:
    """Where the whole front lives (``status.frontSource``)."""
    return (f"tuningtrials -l hwtune.io/study={study}: each trial's last learningCurve point; "
            "the front is their non-dominated set")

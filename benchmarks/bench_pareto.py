"""Timings of the multi-objective core and of scheduler decisions.

    python benchmarks/bench_pareto.py [--repeat 5] [--points 5000]

Prints one line per measurement: the best of ``--repeat`` runs (best-of, because this machine
is shared and the minimum is the least disturbed estimate) and the median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from hwtune.api.records import Decision, Goal, Objective, Observation, TrialPhase, TrialRecord
from hwtune.optimize.pareto import (
    hypervolume,
    nondominated_ranks,
    pareto_front,
    rank_multiobjective,
)
from hwtune.optimize.schedulers import make_scheduler
from hwtune.optimize.searchers.base import Searcher


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return min(samples), statistics.median(samples)


def line(label: str, best: float, median: float, unit: str = "ms", scale: float = 1e3) -> None:
    print(f"{label:<58} best {best * scale:10.2f} {unit}   median {median * scale:10.2f} {unit}")


def concave_front(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    raw = rng.uniform(0, 1, size=(n, m))
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


class NullSearcher(Searcher):
    def suggest(self):
        return {}, None


def decision_overhead(kind: str, recorded: int, probes: int, seed: int) -> tuple[float, float, float]:
    """Seconds per report at a rung that already holds ``recorded`` results (MO: 3 objectives).

    Returns (mean, p50, p99) over ``probes`` new trials reporting at the first rung."""
    rng = np.random.default_rng(seed)
    objectives = [Objective("val_error"), Objective("runtime"), Objective("accuracy", Goal.MAXIMIZE)]
    scheduler = make_scheduler(kind, searcher=NullSearcher(), objectives=objectives,
                               resource_min=1, resource_max=81, reduction_factor=3, seed=seed)

    def report(trial_id: int) -> float:
        trial = TrialRecord(trial_id, {}, phase=TrialPhase.RUNNING)
        scheduler.on_trial_add(trial)
        values = rng.uniform(0, 1, size=3)
        obs = Observation(trial_id, 1, {"val_error": values[0], "runtime": values[1],
                                        "accuracy": values[2]})
        trial.observations.append(obs)
        start = time.perf_counter()
        decision = scheduler.on_trial_result(trial, obs)
        elapsed = time.perf_counter() - start
        assert isinstance(decision, Decision)
        return elapsed

    for trial_id in range(recorded):
        report(trial_id)
    samples = np.array([report(recorded + i) for i in range(probes)])
    return float(samples.mean()), float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def _filled_promotion_scheduler(kind: str, recorded: int, seed: int):
    rng = np.random.default_rng(seed)
    objectives = [Objective("val_error"), Objective("runtime"), Objective("accuracy", Goal.MAXIMIZE)]
    scheduler = make_scheduler(kind, searcher=NullSearcher(), objectives=objectives,
                               resource_min=1, resource_max=81, reduction_factor=3, seed=seed)
    for trial_id in range(recorded):
        trial = TrialRecord(trial_id, {}, phase=TrialPhase.RUNNING)
        scheduler.on_trial_add(trial)
        values = rng.uniform(0, 1, size=3)
        obs = Observation(trial_id, 1, {"val_error": values[0], "runtime": values[1], "accuracy": values[2]})
        trial.observations.append(obs)
        if scheduler.on_trial_result(trial, obs) is Decision.PAUSE:
            trial.phase = TrialPhase.PAUSED
    return scheduler


def suggest_overhead(kind: str, recorded: int, seed: int, calls: int = 20) -> tuple[float, float]:
    """Seconds of the first suggest() (ranks the rung) and mean of the next ``calls`` (cached
    ranking), each resuming a trial from a rung holding ``recorded`` results."""
    scheduler = _filled_promotion_scheduler(kind, recorded, seed)
    samples = []
    for _ in range(calls + 1):
        start = time.perf_counter()
        suggestion = scheduler.suggest()
        samples.append(time.perf_counter() - start)
        assert suggestion is not None and suggestion.is_resume
    return samples[0], statistics.fmean(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.points

    print(f"# non-dominated sorting, {n} points")
    for m in (2, 3, 5):
        uniform = rng.uniform(0, 1, size=(n, m))
        best, median = timed(lambda: nondominated_ranks(uniform), args.repeat)
        fronts = int(nondominated_ranks(uniform).max()) + 1
        line(f"nondominated_ranks uniform {n}x{m} ({fronts} fronts)", best, median)
    ties = rng.integers(0, 10, size=(n, 3)).astype(float)
    line(f"nondominated_ranks integer ties {n}x3", *timed(lambda: nondominated_ranks(ties), args.repeat))
    uniform3 = rng.uniform(0, 1, size=(n, 3))
    line(f"pareto_front uniform {n}x3", *timed(lambda: pareto_front(uniform3), args.repeat))
    front3 = concave_front(rng, n, 3)
    line(f"pareto_front all-on-front {n}x3", *timed(lambda: pareto_front(front3), args.repeat))
    for tie_break in ("epsilon-net", "crowding"):
        line(f"rank_multiobjective {tie_break} uniform {n}x3",
             *timed(lambda: rank_multiobjective(uniform3, tie_break), args.repeat))
    small_front = concave_front(rng, 1000, 3)
    line("rank_multiobjective epsilon-net all-on-front 1000x3",
         *timed(lambda: rank_multiobjective(small_front), args.repeat))

    print("# hypervolume (exact)")
    front2 = concave_front(rng, n, 2)
    line(f"hypervolume 2-D, {n} points on the front",
         *timed(lambda: hypervolume(front2, [1.1, 1.1]), args.repeat))
    line(f"hypervolume 3-D, {n} points on the front",
         *timed(lambda: hypervolume(front3, [1.1] * 3), args.repeat))
    line(f"hypervolume 3-D, {n} uniform points",
         *timed(lambda: hypervolume(uniform3, [1.1] * 3), args.repeat))
    for m, count in ((4, 100), (4, 300), (5, 60)):
        pts = concave_front(rng, count, m)
        line(f"hypervolume {m}-D (slicing), {count} points on the front",
             *timed(lambda: hypervolume(pts, [1.1] * m), max(1, args.repeat // 2)))

    print("# promotion: suggest() resuming from a rung holding N results")
    print("# (the first call ranks the rung; the ranking is cached until the rung changes)")
    for kind in ("asha-promotion", "mo-asha-promotion"):
        for recorded in (100, 1000):
            first, cached = suggest_overhead(kind, recorded, args.seed)
            print(f"{kind:<18} {recorded:>5} recorded: first suggest() {first * 1e6:9.1f} us  "
                  f"then {cached * 1e6:7.1f} us")

    print("# scheduler decision overhead per report at a rung (3 objectives)")
    for kind in ("asha", "mo-asha", "mo-asha-promotion"):
        for recorded in (100, 1000):
            mean, p50, p99 = decision_overhead(kind, recorded, probes=200, seed=args.seed)
            print(f"{kind:<18} {recorded:>5} recorded: mean {mean * 1e6:9.1f} us  "
                  f"p50 {p50 * 1e6:9.1f} us  p99 {p99 * 1e6:9.1f} us")


if __name__ == "__main__":
    main()

"""How MO-ASHA scales: whole studies of 1,000 to 20,000 trials on the simulated backend.

Every run is one study on the synthetic table (``hwtune.bench.synthetic``, 9 epochs), three
objectives (val_error, runtime, cost), 12 hardware choices, the same uniform table searcher for
every method, and a fresh process per run so that peak RSS is the run's own. Printed per method
and size, each beside its target (issue 14):

* time of the whole tuning run (target: mo-asha within 3x of asha; promotion < 60 s at
  20,000 trials);
* peak RSS of the process (target: within 2x of asha);
* decision p50 / p99: seconds per scheduler call (``on_trial_result`` and ``suggest``) over the
  last tenth of the run, when the first rung holds nearly all trials (target: p99 < 5 ms);
* longest stall: the slowest single ``Tuner.step`` (target: < 50 ms);
* rebuild: ``Study.rebuild`` of the finished study from its event log (target: < 10 s),
  checked to replay without a mismatch.

Times are CPU seconds of the tuning thread (``time.thread_time``), wall seconds beside them: the
development machine is shared, and there wall time mostly measures the other processes. With
``--quick`` all runs share one process, so the RSS column is the running maximum.

    python benchmarks/scale.py                 # 1,000 / 5,000 / 20,000 trials, four methods
    python benchmarks/scale.py --quick         # a few hundred trials, in-process (CI)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from hwtune.api.records import Decision, Observation, TrialRecord
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion

__all__ = ["METHODS", "ScaleResult", "format_results", "main", "run_one"]

METHODS = ("asha", "mo-asha", "mo-asha-promotion", "syne-tune-moasha")
SIZES = (1_000, 5_000, 20_000)
QUICK_SIZES = (300,)
# Targets (issue 14); None where the row has none.
P99_TARGET_S = 0.005
STALL_TARGET_S = 0.050
REBUILD_TARGET_S = 10.0
PROMOTION_WALL_TARGET_S = 60.0


@dataclass
class ScaleResult:
    method: str
    trials_asked: int
    trials: int
    reports: int
    wall_s: float
    peak_rss_mb: float
    p50_s: float
    p99_s: float
    stall_s: float
    rebuild_s: float | None
    rebuild_mismatches: int | None
    rung_records: int
    cpu_s: float = math.nan
    rebuild_cpu_s: float | None = None
    p99_wall_s: float = math.nan
    stall_wall_s: float = math.nan
    error: str = ""


class _Clocked(Scheduler):
    """Forwards to ``inner`` and keeps the duration of every decision call."""

    def __init__(self, inner: Scheduler):
        self.inner = inner
        self.objectives = inner.objectives
        self.seconds: list[float] = []  # CPU seconds of this thread per call
        self.wall_seconds: list[float] = []

    def _timed(self, fn, *args):
        # CPU time of this thread as the main measure: on a shared machine, wall time mostly
        # measures the other processes. Wall time is kept beside it.
        t0, w0 = time.thread_time(), time.perf_counter()
        out = fn(*args)
        self.seconds.append(time.thread_time() - t0)
        self.wall_seconds.append(time.perf_counter() - w0)
        return out

    def suggest(self) -> TrialSuggestion | None:
        return self._timed(self.inner.suggest)

    def suggest_resume(self) -> TrialSuggestion | None:
        return self._timed(self.inner.suggest_resume)

    def on_trial_add(self, trial: TrialRecord) -> None:
        self.inner.on_trial_add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        return self._timed(self.inner.on_trial_result, trial, observation)

    def on_trial_error(self, trial: TrialRecord) -> None:
        self.inner.on_trial_error(trial)

    def on_trial_complete(self, trial: TrialRecord) -> None:
        self.inner.on_trial_complete(trial)

    def on_trial_remove(self, trial: TrialRecord) -> None:
        self.inner.on_trial_remove(trial)


def _setup(trials: int, workers: int):
    from hwtune.bench.runners import BenchmarkSetup
    from hwtune.bench.synthetic import synthetic_table

    # 12 hardware choices; twice as many (config, hardware) pairs as trials keeps the uniform
    # searcher on its cheap path.
    configs = max(30, math.ceil(2 * trials / 12))
    table = synthetic_table(n_configs=configs, seeds=(0,), epochs=9, name=f"synthetic-{configs}")
    return BenchmarkSetup(table=table, max_trials=trials, max_parallel=workers)


def _scheduler(method: str, setup, config, seed: int) -> Scheduler:
    from hwtune.bench.runners import METHODS as RUNNER_METHODS

    return RUNNER_METHODS[method](setup, config, seed)


def run_one(method: str, trials: int, *, workers: int = 8, seed: int = 0,
            rebuild: bool = True, progress: bool = False) -> ScaleResult:
    """One study of ``trials`` trials with ``method``, measured (see the module docstring)."""
    from hwtune.bench.runners import _make_backend
    from hwtune.engine.study import Study
    from hwtune.engine.tuner import Tuner

    setup = _setup(trials, workers)
    config = setup.study_config(seed)
    scheduler = _Clocked(_scheduler(method, setup, config, seed))
    backend = _make_backend(setup.table, config, seed)
    study = Study(config, scheduler, clock=backend.clock)
    tuner = Tuner(study, backend, max_parallel=setup.max_parallel)
    stall = stall_wall = 0.0
    started, started_cpu = time.perf_counter(), time.thread_time()
    steps = 0
    while True:
        steps += 1
        if progress and steps % 2000 == 0:
            print(f"progress {len(study.trials)} trials {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
        t0, c0 = time.perf_counter(), time.thread_time()
        reason = tuner.step()
        stall = max(stall, time.thread_time() - c0)
        stall_wall = max(stall_wall, time.perf_counter() - t0)
        if reason is not None:
            break
    wall = time.perf_counter() - started
    cpu = time.thread_time() - started_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # The last tenth of the calls: the first rung then holds nearly every trial.
    last = max(1, len(scheduler.seconds) // 10)
    tail = np.asarray(scheduler.seconds[-last:])
    tail_wall = np.asarray(scheduler.wall_seconds[-last:])
    inner = scheduler.inner
    rung_records = len(inner.rungs()[0]) if hasattr(inner, "rungs") and inner.rungs() else 0
    rebuild_s = mismatches = rebuild_cpu = None
    if rebuild and not method.startswith("syne-tune"):
        events = study.events
        fresh = _scheduler(method, setup, config, seed)
        gc.collect()
        t0, c0 = time.perf_counter(), time.thread_time()
        rebuilt = Study.rebuild(config, events, scheduler=fresh, clock=backend.clock)
        rebuild_s = time.perf_counter() - t0
        rebuild_cpu = time.thread_time() - c0
        mismatches = len(rebuilt.replay_mismatches)
    return ScaleResult(
        method=method, trials_asked=trials, trials=len(study.trials), reports=study.reports,
        wall_s=wall, peak_rss_mb=peak,
        p50_s=float(np.percentile(tail, 50)) if tail.size else math.nan,
        p99_s=float(np.percentile(tail, 99)) if tail.size else math.nan,
        stall_s=stall, rebuild_s=rebuild_s, rebuild_mismatches=mismatches,
        rung_records=rung_records, cpu_s=cpu, rebuild_cpu_s=rebuild_cpu,
        p99_wall_s=float(np.percentile(tail_wall, 99)) if tail_wall.size else math.nan,
        stall_wall_s=stall_wall,
    )


def _run_in_child(method: str, trials: int, workers: int, seed: int, timeout: float) -> ScaleResult:
    command = [sys.executable, "-m", "hwtune.bench.scale", "--one", method, str(trials),
               "--workers", str(workers), "--seed", str(seed)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        reached = [line.split()[1] for line in err.splitlines() if line.startswith("progress ")]
        where = f" ({reached[-1]} trials created)" if reached else ""
        return _failed(method, trials, f"not done after {timeout:.0f} s wall{where}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return _failed(method, trials, (done.stderr.strip().splitlines() or ["failed"])[-1])
    return ScaleResult(**json.loads(lines[-1]))


def _failed(method: str, trials: int, error: str) -> ScaleResult:
    nan = math.nan
    return ScaleResult(method=method, trials_asked=trials, trials=0, reports=0, wall_s=nan,
                       peak_rss_mb=nan, p50_s=nan, p99_s=nan, stall_s=nan, rebuild_s=None,
                       rebuild_mismatches=None, rung_records=0, error=error)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{1000 * seconds:.2f}"


def format_results(results: Sequence[ScaleResult]) -> str:
    """One table per size, every measurement beside its target. Times are CPU seconds of the
    tuning thread (wall seconds in brackets): on a shared machine the wall clock mostly
    measures the other processes."""
    lines: list[str] = []
    try:
        load = " (load average %.1f when printed)" % __import__("os").getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        load = ""
    lines.append("Times: CPU seconds of the tuning thread, wall in brackets" + load + ".")
    for size in sorted({r.trials_asked for r in results}):
        rows = [r for r in results if r.trials_asked == size]
        asha = next((r for r in rows if r.method == "asha" and not r.error), None)
        lines.append(f"\n{size:,} trials (9 epochs, 3 objectives, synthetic table, simulated backend, "
                     "decisions over the last tenth of the run)")
        header = (f"{'method':<19}{'trials':>7}{'rung n':>8}{'cpu s':>8}{'(wall)':>9}{'x asha':>7}"
                  f"{'RSS MB':>8}{'x asha':>7}{'p50 ms':>8}{'p99 ms':>8}{'(wall)':>8}"
                  f"{'stall ms':>9}{'(wall)':>8}{'rebuild s (wall)':>18}  targets")
        lines.append(header)
        lines.append("-" * len(header))
        for r in rows:
            if r.error:
                lines.append(f"{r.method:<19}{'':>7}{'':>8}  {r.error}")
                continue
            time_x = r.cpu_s / asha.cpu_s if asha else math.nan
            rss_x = r.peak_rss_mb / asha.peak_rss_mb if asha else math.nan
            notes = []
            if r.method == "mo-asha":
                notes.append("time <= 3x asha " + ("ok" if time_x <= 3 else "MISSED"))
            if r.method == "mo-asha-promotion":
                notes.append("< 60 s " + ("ok" if r.cpu_s < PROMOTION_WALL_TARGET_S else "MISSED"))
            if r.method.startswith("mo-asha"):
                notes.append("RSS <= 2x " + ("ok" if rss_x <= 2 else "MISSED"))
                notes.append("p99 < 5 ms " + ("ok" if r.p99_s < P99_TARGET_S else "MISSED"))
                notes.append("stall < 50 ms " + ("ok" if r.stall_s < STALL_TARGET_S else "MISSED"))
            if r.rebuild_s is not None:
                notes.append("rebuild < 10 s " + ("ok" if r.rebuild_cpu_s < REBUILD_TARGET_S else "MISSED")
                             + (f" ({r.rebuild_mismatches} MISMATCHES)" if r.rebuild_mismatches else ""))
            rebuild = "-" if r.rebuild_s is None else f"{r.rebuild_cpu_s:.2f} ({r.rebuild_s:.2f})"
            lines.append(
                f"{r.method:<19}{r.trials:>7}{r.rung_records:>8}{r.cpu_s:>8.2f}{f'({r.wall_s:.2f})':>9}"
                f"{time_x:>7.2f}{r.peak_rss_mb:>8.0f}{rss_x:>7.2f}{_ms(r.p50_s):>8}{_ms(r.p99_s):>8}"
                f"{'(' + _ms(r.p99_wall_s) + ')':>8}{_ms(r.stall_s):>9}{'(' + _ms(r.stall_wall_s) + ')':>8}"
                f"{rebuild:>18}  {'; '.join(notes)}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few hundred trials, in-process (CI)")
    parser.add_argument("--sizes", type=int, nargs="+", help="trial counts (default 1000 5000 20000)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per run (full mode)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        result = run_one(args.one[0], int(args.one[1]), workers=args.workers, seed=args.seed,
                         progress=True)
        print(json.dumps(asdict(result)))
        return 0
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    results = []
    for size in sizes:
        for method in args.methods:
            if args.quick:
                result = run_one(method, size, workers=args.workers, seed=args.seed)
            else:
                result = _run_in_child(method, size, args.workers, args.seed, args.timeout)
            results.append(result)
            if args.json:  # after every run, so that a later failure loses nothing
                with open(args.json, "w", encoding="utf-8") as handle:
                    json.dump([asdict(r) for r in results], handle, indent=1)
            print(f"# {method} {size}: {'error: ' + result.error if result.error else f'{result.wall_s:.2f} s'}",
                  file=sys.stderr, flush=True)
    print(format_results(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(r) for r in results], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

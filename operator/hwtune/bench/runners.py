"""Run tuning methods side by side on one benchmark table, on the simulated backend.

Every method runs through the same engine: ``Study`` + ``Tuner`` + the simulated backend
replaying the table, with the same objectives, hardware choices, parallel workers, budget and
seeds. Only the scheduler differs:

================== =====================================================================
method             scheduler
================== =====================================================================
random             hwtune FIFO + uniform table search (random search, no early stopping)
asha               hwtune ASHA (stopping), ranks by the first objective only
mo-asha            hwtune MO-ASHA (stopping), non-dominated sort + epsilon-net tie-break
asha-promotion     hwtune ASHA, promotion variant (pause and resume)
mo-asha-promotion  hwtune MO-ASHA, promotion variant (pause and resume)
hyperband          hwtune Hyperband (stopping brackets), first objective
syne-tune-moasha   Syne Tune 0.13 MOASHA as released, via ``hwtune.bench.adapters.SyneTuneMOASHA``
syne-tune-moasha-  the same with its rung ranking repaired (``rank_fix``; see the adapter:
fixed              0.13 reads an argsort as ranks)
optuna-nsga2       Optuna NSGA-II via ask/tell, every trial to the max resource
optuna-motpe       Optuna multi-objective TPE via ask/tell, every trial to the max resource
================== =====================================================================

The measurements (``hwtune.bench.metrics``): normalised hypervolume over simulated time and
over spent cost, the time and cost to reach random search's final hypervolume (speedup vs
random, the MO-ASHA paper's metric), and the decision overhead per report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, Objective, Observation, TrialPhase
from hwtune.bench.adapters import OptunaScheduler, SyneTuneMOASHA, TableSearcher, TimedScheduler
from hwtune.bench.metrics import (
    Normalizer,
    Summary,
    Trace,
    hypervolume_at,
    summarize,
    time_to_target,
)
from hwtune.bench.table import RUNTIME_METRIC, BenchmarkTable
from hwtune.engine.config import StudyConfig
from hwtune.optimize.hardware import HardwareModel
from hwtune.optimize.schedulers import make_scheduler
from hwtune.optimize.schedulers.base import Scheduler

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "BenchmarkSetup",
    "Comparison",
    "MethodStats",
    "RunResult",
    "compare",
    "run_method",
    "table_bounds",
]

# Objectives measured by the backend; everything else must be a table metric.
_LOG_NORMALISED = ("runtime", "cost")

SchedulerFactory = Callable[["BenchmarkSetup", StudyConfig, int], Scheduler]


def _ours(kind: str) -> SchedulerFactory:
    def build(setup: "BenchmarkSetup", config: StudyConfig, seed: int) -> Scheduler:
        searcher = TableSearcher(setup.table, list(config.hardware), seed=seed)
        return make_scheduler(kind, searcher=searcher, objectives=config.objectives,
                              resource_min=config.fidelity.min, resource_max=config.fidelity.max,
                              reduction_factor=config.fidelity.reduction_factor, seed=seed,
                              settings=config.settings)
    return build


def _ours_with(kind: str, searcher_name: str) -> SchedulerFactory:
    """An hwtune scheduler over a named searcher (e.g. MO-ASHA + Optuna's TPE), its proposals
    moved to the nearest table configs."""
    def build(setup: "BenchmarkSetup", config: StudyConfig, seed: int) -> Scheduler:
        from hwtune.optimize.searchers import make_searcher

        searcher = make_searcher(searcher_name, config.space, list(config.hardware), seed=seed,
                                 settings=config.settings, objectives=config.objectives,
                                 candidates=setup.table.configs())
        return make_scheduler(kind, searcher=searcher, objectives=config.objectives,
                              resource_min=config.fidelity.min, resource_max=config.fidelity.max,
                              reduction_factor=config.fidelity.reduction_factor, seed=seed,
                              settings=config.settings)
    return build


def _syne_tune(rank_fix: bool) -> SchedulerFactory:
    def build(setup: "BenchmarkSetup", config: StudyConfig, seed: int) -> Scheduler:
        return SyneTuneMOASHA(setup.table, list(config.hardware), config.objectives,
                              resource_min=config.fidelity.min, resource_max=config.fidelity.max,
                              reduction_factor=config.fidelity.reduction_factor, seed=seed,
                              resource_attr=config.fidelity.resource, rank_fix=rank_fix)
    return build


def _optuna(sampler: str) -> SchedulerFactory:
    def build(setup: "BenchmarkSetup", config: StudyConfig, seed: int) -> Scheduler:
        return OptunaScheduler(setup.table, list(config.hardware), config.objectives, seed=seed,
                               sampler=sampler)
    return build


METHODS: dict[str, SchedulerFactory] = {
    "random": _ours("fifo"),
    "asha": _ours("asha"),
    "asha-promotion": _ours("asha-promotion"),
    "mo-asha": _ours("mo-asha"),
    "mo-asha-promotion": _ours("mo-asha-promotion"),
    "hyperband": _ours("hyperband"),
    "syne-tune-moasha": _syne_tune(rank_fix=False),
    "syne-tune-moasha-fixed": _syne_tune(rank_fix=True),
    "optuna-nsga2": _optuna("nsga2"),
    "optuna-motpe": _optuna("motpe"),
    # hwtune's MO-ASHA deciding, Optuna's samplers proposing (hwtune.optimize.searchers.
    # optuna_samplers); the two above are Optuna's own study loop.
    "mo-asha+optuna-tpe": _ours_with("mo-asha", "optuna-tpe"),
    "mo-asha+optuna-nsga2": _ours_with("mo-asha", "optuna-nsga2"),
    "mo-asha+optuna-sobol": _ours_with("mo-asha", "optuna-sobol"),
}
DEFAULT_METHODS = ("random", "asha", "mo-asha", "syne-tune-moasha", "optuna-nsga2")


@dataclass(frozen=True)
class BenchmarkSetup:
    """What every method runs on. ``max_duration_seconds`` (simulated) is the main budget;
    ``max_trials`` caps trials instead or as well."""

    table: BenchmarkTable
    objectives: tuple[str, ...] = ("val_error", "runtime", "cost")
    pools: tuple[str, ...] = ("t4", "a100", "h100")
    gpu_counts: tuple[int, ...] = (1, 2, 4, 8)
    max_parallel: int = 4
    max_duration_seconds: float | None = None
    max_trials: int | None = None
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("objectives: need at least one")
        for name in self.objectives:
            if name not in _LOG_NORMALISED and name not in self.table.metric_names:
                raise ValueError(f"objectives: {name!r} is neither built in (runtime, cost) nor a "
                                 f"metric of table {self.table.name!r} ({', '.join(self.table.metric_names)})")
        if self.max_duration_seconds is None and self.max_trials is None:
            raise ValueError("set max_duration_seconds or max_trials: a benchmark needs a budget")
        if self.max_parallel < 1:
            raise ValueError(f"max_parallel: must be >= 1, got {self.max_parallel}")

    def spec(self, seed: int, scheduler: str = "fifo") -> dict[str, Any]:
        budget: dict[str, Any] = {"maxParallelTrials": self.max_parallel}
        if self.max_trials is not None:
            budget["maxTrials"] = int(self.max_trials)
            budget["maxParallelTrials"] = min(self.max_parallel, int(self.max_trials))
        return {
            "objectives": [{"metric": m, "goal": self._goal(m)} for m in self.objectives],
            "parameters": self.table.space_spec(),
            "hardware": {"pools": list(self.pools), "gpuCounts": list(self.gpu_counts)},
            "fidelity": self.table.fidelity_spec(self.reduction_factor),
            "algorithm": {"scheduler": scheduler, "searcher": "random", "seed": int(seed)},
            "budget": budget,
        }

    def _goal(self, metric: str) -> str:
        return "minimize" if metric in _LOG_NORMALISED else self.table.goal(metric)

    def study_config(self, seed: int, scheduler: str = "fifo") -> StudyConfig:
        config = StudyConfig.from_spec(self.spec(seed, scheduler))
        if self.max_duration_seconds is None:
            return config
        # Simulated deadlines may be fractions of a second (tiny tables); the CRD's
        # maxDurationSeconds is whole seconds, so the deadline goes on the engine's Budget.
        return dataclasses.replace(config, budget=dataclasses.replace(
            config.budget, max_duration_seconds=float(self.max_duration_seconds)))

    def objective_list(self) -> tuple[Objective, ...]:
        return self.study_config(0).objectives


def default_duration(table: BenchmarkTable, config: StudyConfig, trials: float, max_parallel: int) -> float:
    """Simulated seconds in which ``max_parallel`` workers finish about ``trials`` full trials of
    uniformly drawn (config, hardware) pairs: the mean full-training runtime over the table and
    the hardware choices, times ``trials / max_parallel``."""
    full = table.metric_array(RUNTIME_METRIC).sum(axis=2).mean()
    model = config.hardware_model
    choices = list(config.hardware) or [None]
    mean_factor = float(np.mean([model.runtime(1.0, h) for h in choices]))
    return float(full * mean_factor * trials / max_parallel)


def table_bounds(table: BenchmarkTable, objectives: Sequence[Objective], hardware: Sequence[Hardware | None],
                 model: HardwareModel) -> Normalizer:
    """Fixed normalisation bounds for the hypervolume: per objective the best and the worst
    value any (config, seed, epoch, hardware) of the table can produce. Table metrics use their
    own range (as losses); runtime runs from one epoch on the fastest choice to all epochs on the
    slowest; cost from one epoch on the cheapest to all epochs on the dearest. Runtime and cost
    are normalised in log10 space."""
    choices = list(hardware) or [None]
    runtime_factor = np.array([model.runtime(1.0, h) for h in choices])
    cost_factor = np.array([model.cost(model.runtime(1.0, h), h) for h in choices])
    cum = np.cumsum(table.metric_array(RUNTIME_METRIC), axis=2)
    first, total = cum[:, :, 0], cum[:, :, -1]
    lower, upper, log = [], [], []
    for obj in objectives:
        if obj.metric == "runtime":
            lo, hi = first.min() * runtime_factor.min(), total.max() * runtime_factor.max()
        elif obj.metric == "cost":
            if cost_factor.max() <= 0:
                raise ValueError("objective cost: every hardware choice is free; drop cost or price a pool")
            lo, hi = first.min() * cost_factor[cost_factor > 0].min(), total.max() * cost_factor.max()
        else:
            losses = obj.goal.sign * table.metric_array(obj.metric)
            lo, hi = float(losses.min()), float(losses.max())
            if lo == hi:
                hi = lo + 1.0
        # the smallest epoch can be 0.0 s on a coarse timer; keep log bounds positive
        if obj.metric in _LOG_NORMALISED:
            lo = max(float(lo), float(hi) * 1e-9)
        lower.append(float(lo))
        upper.append(float(hi))
        log.append(obj.metric in _LOG_NORMALISED)
    return Normalizer(tuple(lower), tuple(upper), tuple(log))


@dataclass(frozen=True)
class RunResult:
    method: str
    seed: int
    trace: Trace
    trials: int
    failed: int
    reports: int
    elapsed: float  # simulated seconds until the study ended
    spent: float  # dollars
    decision_us: float  # mean microseconds per on_trial_result
    suggest_us: float  # mean microseconds per suggest
    wall_seconds: float  # real time the run took
    epochs_trained: int  # sum over trials of the resource levels reached
    stop_reason: str


def _make_backend(table: BenchmarkTable, config: StudyConfig, seed: int):
    from hwtune.backends.simulated import SimulatedBackend

    return SimulatedBackend(table, config.hardware_model, n_workers=config.budget.max_parallel_trials or 1,
                            seed=seed)


def run_method(setup: BenchmarkSetup, method: str, seed: int) -> RunResult:
    """One tuning run of ``method`` with ``seed`` (the searcher's seed and the table seed the
    simulator replays)."""
    from hwtune.engine.study import Study
    from hwtune.engine.tuner import Tuner

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (one of: {', '.join(METHODS)})")
    config = setup.study_config(seed)
    scheduler = TimedScheduler(METHODS[method](setup, config, seed))
    backend = _make_backend(setup.table, config, seed)
    study = Study(config, scheduler, clock=backend.clock)
    wall0 = time.perf_counter()
    result = Tuner(study, backend, max_parallel=setup.max_parallel).run()
    wall = time.perf_counter() - wall0
    # times relative to the study start, so checkpoints and deadlines line up across methods
    observations = [Observation(o.trial_id, o.resource, o.metrics, o.time - study.start_time)
                    for trial in study.trials for o in trial.observations]
    trace = Trace.from_observations(observations, config.objectives)
    failed = sum(1 for t in study.trials if t.phase is TrialPhase.FAILED)
    return RunResult(
        method=method, seed=seed, trace=trace, trials=len(study.trials), failed=failed,
        reports=study.reports, elapsed=float(study.spend.elapsed_seconds),
        spent=float(study.spend.cost_usd),
        decision_us=1e6 * float(np.mean(scheduler.result_seconds)) if scheduler.result_seconds else math.nan,
        suggest_us=1e6 * float(np.mean(scheduler.suggest_seconds)) if scheduler.suggest_seconds else math.nan,
        wall_seconds=wall, epochs_trained=sum(t.last_resource for t in study.trials),
        stop_reason=result.stop_reason,
    )


@dataclass
class MethodStats:
    method: str
    runs: list[RunResult]
    final_hv: Summary
    hv_at_time: list[Summary]  # at Comparison.time_checkpoints
    hv_at_cost: list[Summary]  # at Comparison.cost_checkpoints
    time_to_target: Summary  # simulated seconds to reach random's final HV (same seed)
    cost_to_target: Summary
    time_speedup: Summary  # per seed: random's time to its final HV / this method's
    cost_speedup: Summary
    time_speedup_of_means: float  # sum of random's times / sum of this method's, seeds it reached
    cost_speedup_of_means: float
    trials: Summary
    epochs: Summary
    spent: Summary
    decision_us: Summary
    time_curve: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))  # (seeds, grid)
    cost_curve: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))


@dataclass
class Comparison:
    setup: BenchmarkSetup
    seeds: tuple[int, ...]
    normalizer: Normalizer
    time_checkpoints: np.ndarray
    cost_checkpoints: np.ndarray
    time_grid: np.ndarray
    cost_grid: np.ndarray
    stats: dict[str, MethodStats]
    baseline: str


def compare(setup: BenchmarkSetup, methods: Sequence[str] = DEFAULT_METHODS, seeds: Sequence[int] = (0, 1, 2),
            *, baseline: str = "random", fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
            grid_points: int = 60, progress: Callable[[str], None] | None = None) -> Comparison:
    """Run every method with every seed and measure. ``baseline`` (random search) must be one
    of ``methods``: its final hypervolume on each seed is the target the others race to."""
    if baseline not in methods:
        raise ValueError(f"baseline {baseline!r} must be one of the methods {list(methods)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r} (one of: {', '.join(METHODS)})")
    config = setup.study_config(seeds[0])
    norm = table_bounds(setup.table, config.objectives, list(config.hardware), config.hardware_model)
    runs: dict[str, list[RunResult]] = {}
    for method in methods:
        runs[method] = []
        for seed in seeds:
            run = run_method(setup, method, seed)
            runs[method].append(run)
            if progress is not None:
                progress(f"{method} seed {seed}: {run.trials} trials, {run.reports} reports, "
                         f"{run.elapsed:.0f} sim-s, ${run.spent:.4g}, {run.wall_seconds:.1f}s real")
    horizon = max(r.elapsed for rs in runs.values() for r in rs)
    if setup.max_duration_seconds is not None:
        horizon = float(setup.max_duration_seconds)
    base_spent = float(np.mean([r.spent for r in runs[baseline]]))
    max_spent = max(r.spent for rs in runs.values() for r in rs)
    time_cp = np.asarray(fractions, float) * horizon
    cost_cp = np.asarray(fractions, float) * base_spent
    time_grid = np.linspace(0.0, horizon, grid_points + 1)[1:]
    cost_grid = np.linspace(0.0, max_spent, grid_points + 1)[1:]
    base_final = {r.seed: float(hypervolume_at(r.trace, norm, [math.inf])[0]) for r in runs[baseline]}
    base_t = {r.seed: time_to_target(r.trace, norm, base_final[r.seed], "time") for r in runs[baseline]}
    base_c = {r.seed: time_to_target(r.trace, norm, base_final[r.seed], "cost") for r in runs[baseline]}
    stats: dict[str, MethodStats] = {}
    for method, rs in runs.items():
        finals, t2t, c2t, ts, cs = [], [], [], [], []
        at_t, at_c, curve_t, curve_c = [], [], [], []
        for r in rs:
            finals.append(float(hypervolume_at(r.trace, norm, [math.inf])[0]))
            at_t.append(hypervolume_at(r.trace, norm, time_cp, "time"))
            at_c.append(hypervolume_at(r.trace, norm, cost_cp, "cost"))
            curve_t.append(hypervolume_at(r.trace, norm, time_grid, "time"))
            curve_c.append(hypervolume_at(r.trace, norm, cost_grid, "cost"))
            tt = time_to_target(r.trace, norm, base_final[r.seed], "time")
            ct = time_to_target(r.trace, norm, base_final[r.seed], "cost")
            t2t.append(tt)
            c2t.append(ct)
            ts.append(_ratio(base_t[r.seed], tt))
            cs.append(_ratio(base_c[r.seed], ct))
        at_t_arr, at_c_arr = np.array(at_t), np.array(at_c)
        seeds_of = [r.seed for r in rs]
        stats[method] = MethodStats(
            method=method, runs=rs, final_hv=summarize(finals),
            hv_at_time=[summarize(at_t_arr[:, i]) for i in range(len(time_cp))],
            hv_at_cost=[summarize(at_c_arr[:, i]) for i in range(len(cost_cp))],
            time_to_target=summarize(t2t), cost_to_target=summarize(c2t),
            time_speedup=summarize(ts), cost_speedup=summarize(cs),
            time_speedup_of_means=_ratio_of_sums([base_t[x] for x in seeds_of], t2t),
            cost_speedup_of_means=_ratio_of_sums([base_c[x] for x in seeds_of], c2t),
            trials=summarize(r.trials for r in rs), epochs=summarize(r.epochs_trained for r in rs),
            spent=summarize(r.spent for r in rs), decision_us=summarize(r.decision_us for r in rs),
            time_curve=np.array(curve_t), cost_curve=np.array(curve_c),
        )
    return Comparison(setup=setup, seeds=tuple(seeds), normalizer=norm, time_checkpoints=time_cp,
                      cost_checkpoints=cost_cp, time_grid=time_grid, cost_grid=cost_grid, stats=stats,
                      baseline=baseline)


def _ratio(baseline: float, value: float) -> float:
    """baseline / value; NaN (counted as "not reached") when the method never got there."""
    if not math.isfinite(value):
        return math.nan
    if value <= 0:
        return math.inf if baseline > 0 else 1.0
    return baseline / value


def _ratio_of_sums(baseline: Sequence[float], values: Sequence[float]) -> float:
    """sum(baseline) / sum(values) over the seeds where the method reached the target."""
    pairs = [(b, v) for b, v in zip(baseline, values) if math.isfinite(v) and math.isfinite(b)]
    if not pairs:
        return math.nan
    return _ratio(sum(b for b, _ in pairs), sum(v for _, v in pairs))


def format_comparison(cmp: Comparison) -> str:
    """The comparison as plain-text tables (mean ± std over seeds)."""
    setup = cmp.setup
    lines = [
        f"table {setup.table.name}: {len(setup.table)} configs x {len(setup.table.seeds)} seeds x "
        f"{setup.table.max_resource} {setup.table.resource}s; objectives {', '.join(setup.objectives)}; "
        f"hardware {', '.join(setup.pools)} x {list(setup.gpu_counts)}; {setup.max_parallel} workers; "
        f"budget {_budget_text(setup)}; seeds {list(cmp.seeds)}",
        "hypervolume: normalised to the unit cube with fixed table bounds "
        f"(lower {_fmt_list(cmp.normalizer.lower)}, upper {_fmt_list(cmp.normalizer.upper)}, "
        f"log10 for runtime/cost), reference point 1",
        "",
    ]
    header = ["method", "final HV", "trials", "epochs", "spent $", "µs/decision"]
    rows = [[m, str(s.final_hv), str(s.trials), str(s.epochs), str(s.spent), str(s.decision_us)]
            for m, s in cmp.stats.items()]
    lines += _table(header, rows) + [""]
    header = ["method"] + [f"HV@t={t:.4g}s" for t in cmp.time_checkpoints]
    rows = [[m] + [str(x) for x in s.hv_at_time] for m, s in cmp.stats.items()]
    lines += _table(header, rows) + [""]
    header = ["method"] + [f"HV@${c:.4g}" for c in cmp.cost_checkpoints]
    rows = [[m] + [str(x) for x in s.hv_at_cost] for m, s in cmp.stats.items()]
    lines += _table(header, rows) + [""]
    header = ["method", f"time to {cmp.baseline}'s final HV (s)", "speedup (time) mean",
              "median", "seeds reached", "of means"]
    rows = [[m, str(s.time_to_target), str(s.time_speedup), _median(s.time_speedup),
             f"{s.time_speedup.finite}/{s.time_speedup.total}", f"{s.time_speedup_of_means:.3g}"]
            for m, s in cmp.stats.items()]
    lines += _table(header, rows) + [""]
    header = ["method", f"cost to {cmp.baseline}'s final HV ($)", "speedup (cost) mean",
              "median", "seeds reached", "of means"]
    rows = [[m, str(s.cost_to_target), str(s.cost_speedup), _median(s.cost_speedup),
             f"{s.cost_speedup.finite}/{s.cost_speedup.total}", f"{s.cost_speedup_of_means:.3g}"]
            for m, s in cmp.stats.items()]
    lines += _table(header, rows)
    lines.append("speedup: per seed, the baseline's time (cost) to its own final HV over the method's "
                 "time (cost) to reach it; mean and median over the seeds that reached it, and how "
                 "many did; 'of means': ratio of the sums over those seeds only (it leaves out the "
                 "seeds that never reached the target, so read it beside 'seeds reached').")
    return "\n".join(lines)


def _median(summary: Any) -> str:
    return "never" if summary.finite == 0 else f"{summary.median:.3g}"


def _budget_text(setup: BenchmarkSetup) -> str:
    parts = []
    if setup.max_duration_seconds is not None:
        parts.append(f"{setup.max_duration_seconds:.4g} simulated s")
    if setup.max_trials is not None:
        parts.append(f"{setup.max_trials} trials")
    return " and ".join(parts)


def _fmt_list(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return out


def plot_comparison(cmp: Comparison, path: str) -> str:
    """PNG with hypervolume over simulated time and over spent cost: one line per method (mean
    over seeds) with a band of ± one standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, s in cmp.stats.items():
        for ax, grid, curves in ((axes[0], cmp.time_grid, s.time_curve), (axes[1], cmp.cost_grid, s.cost_curve)):
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            (line,) = ax.plot(grid, mean, label=method)
            # a hypervolume lives in [0, 1]; keep the band there too
            ax.fill_between(grid, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1),
                            color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("simulated wall-clock (s)")
    axes[1].set_xlabel("spent cost ($)")
    for ax in axes:
        ax.set_ylabel("normalised hypervolume")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{cmp.setup.table.name}: {', '.join(cmp.setup.objectives)}; "
                 f"{len(cmp.seeds)} seeds (mean ± std)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def to_json(cmp: Comparison) -> dict[str, Any]:
    """Numbers of a comparison as plain JSON (written next to the plot)."""
    def s(x: Summary) -> Mapping[str, Any]:
        return {"mean": x.mean, "std": x.std, "finite": x.finite, "total": x.total}

    return {
        "table": cmp.setup.table.name, "objectives": list(cmp.setup.objectives),
        "pools": list(cmp.setup.pools), "gpuCounts": list(cmp.setup.gpu_counts),
        "maxParallel": cmp.setup.max_parallel, "maxDurationSeconds": cmp.setup.max_duration_seconds,
        "maxTrials": cmp.setup.max_trials, "seeds": list(cmp.seeds), "baseline": cmp.baseline,
        "normalizer": {"lower": list(cmp.normalizer.lower), "upper": list(cmp.normalizer.upper),
                       "log": list(cmp.normalizer.log)},
        "timeCheckpoints": cmp.time_checkpoints.tolist(), "costCheckpoints": cmp.cost_checkpoints.tolist(),
        "methods": {
            m: {"finalHV": s(st.final_hv), "hvAtTime": [s(x) for x in st.hv_at_time],
                "hvAtCost": [s(x) for x in st.hv_at_cost], "timeToTarget": s(st.time_to_target),
                "costToTarget": s(st.cost_to_target), "timeSpeedup": s(st.time_speedup),
                "costSpeedup": s(st.cost_speedup), "timeSpeedupOfMeans": st.time_speedup_of_means,
                "costSpeedupOfMeans": st.cost_speedup_of_means, "trials": s(st.trials), "epochs": s(st.epochs),
                "spent": s(st.spent), "decisionMicroseconds": s(st.decision_us),
                "runs": [{"seed": r.seed, "trials": r.trials, "failed": r.failed, "reports": r.reports,
                          "elapsed": r.elapsed, "spent": r.spent, "wallSeconds": r.wall_seconds,
                          "stopReason": r.stop_reason} for r in st.runs]}
            for m, st in cmp.stats.items()
        },
    }

"""The FMS benchmark, made by real training (``hwtune surrogate bench``).

1. **Model hub.** MLP, CNN and residual nets (``hwtune.surrogate.hub``) pretrained on source
   tasks (``digits-a``: digits 0-4; ``digits-shift``: all digits shifted by a pixel).
2. **Fine-tuning table.** Every config of a grid -- which pretrained model (so the architecture
   too), learning rate, batch size -- fine-tuned with SGD (momentum 0.9) on ``digits-b`` (digits
   5-9 relabelled 0-4), validation error and CPU time per epoch, a checkpoint per epoch. Written
   in the benchmark-table format (docs/benchmark-table.md) plus a ``checkpoints`` field per run
   (the starting weights and one file per epoch, relative to the table's directory). Cached
   under ``${HWTUNE_CACHE_DIR:-~/.cache/hwtune}/fms/<name>/``; a rerun reuses it.
3. **Runs.** Freeze-thaw (``scheduler: dyhpo``) with each surrogate, on the simulated backend
   replaying the table (one worker, so compute = epochs trained, in order), plus random search
   and ASHA. Kendall tau between each surrogate's predicted and the true final validation error
   of every config of the grid (aligned by config, ``scipy.stats.kendalltau``) when 50 and 100
   epochs have been spent; regret (best validation error found minus the table's best) over
   spent epochs.
4. **Latency.** Median seconds per suggestion at 100, 500 and 2,000 observations (synthetic
   curves), warm (the full fit already done, as in a running study) and cold.

The paper's numbers (FMS, table 1; their benchmarks are larger fine-tuning tasks, ours are tiny
CPU ones): Kendall tau FMS-GMN 0.88 / 0.92, DyHPO 0.74 / 0.77, GP 0.70 / 0.73 at 50 / 100 epochs.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from hwtune.bench.table import TableHeader, TableRun, load_table
from hwtune.surrogate import hub

__all__ = ["PAPER_TAU", "run_benchmark"]

PAPER_TAU = {"fms": (0.88, 0.92), "dyhpo": (0.74, 0.77), "gp": (0.70, 0.73)}
SURROGATES = {"fms": "FMS-GMN", "fms-flat": "FMS-FLAT", "fms-nocurve": "FMS (no curve CNN)",
              "dyhpo": "DyHPO", "gp": "GP"}


@dataclass(frozen=True)
class BenchConfig:
    name: str
    sources: tuple[str, ...]
    target: str
    lrs: tuple[float, ...]
    batches: tuple[int, ...]
    pretrain_epochs: int
    epochs: int
    tau_at: tuple[int, ...]
    regret_at: tuple[int, ...]
    model: Mapping[str, Any] = field(default_factory=dict)

    def grid(self) -> list[dict[str, Any]]:
        hubs = [f"{arch}@{src}" for src in self.sources for arch in hub.ARCHS]
        return [{"pretrained": p, "lr": lr, "batch_size": b}
                for p in hubs for lr in self.lrs for b in self.batches]


FULL = BenchConfig("fms-digits", ("digits-a", "digits-shift"), "digits-b",
                   (0.003, 0.01, 0.03, 0.1), (16, 64), 12, 20, (50, 100), (25, 50, 100),
                   {"fullFitSteps": 200, "refitSteps": 20, "freshCandidates": 32, "gmnPoints": 48})
QUICK = BenchConfig("fms-digits-quick", ("digits-a",), "digits-b", (0.01, 0.1), (32, 128), 4, 5,
                    (10, 20), (10, 20, 30),
                    {"fullFitSteps": 25, "refitSteps": 3, "freshCandidates": 8, "gmnPoints": 12,
                     "maxFullFitPoints": 8})


def cache_root() -> Path:
    root = os.environ.get("HWTUNE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hwtune")
    return Path(root) / "fms"


# -- building the hub and the table ------------------------------------------------------------
def _save(path: Path, model: torch.nn.Module, arch: str, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": "hwtune-checkpoint/1", "resource": level,
                "state": {"model": model.state_dict(), "arch": hub.ARCH_HINTS[arch]}}, tmp)
    os.replace(tmp, path)


def build_hub(cfg: BenchConfig, root: Path, log: Callable[[str], None]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for src in cfg.sources:
        x, y, xv, yv = hub.load_task(src)
        for arch in hub.ARCHS:
            path = root / "hub" / f"{arch}@{src}.pt"
            out[f"{arch}@{src}"] = path
            if path.exists():
                continue
            model = hub.build(arch, seed=17)
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            for epoch in range(cfg.pretrain_epochs):
                hub.train_epoch(model, opt, x, y, 32, seed=epoch)
            err = hub.evaluate(model, xv, yv)
            _save(path, model, arch, 0)
            log(f"hub: {arch}@{src} pretrained {cfg.pretrain_epochs} epochs, val error {err:.3f}")
    return out


def build_table(cfg: BenchConfig, log: Callable[[str], None] = print) -> Path:
    """Train the grid (once; cached) and return the table path."""
    torch.set_num_threads(1)
    root = cache_root() / cfg.name
    table_path = root / "table.jsonl"
    hubs = build_hub(cfg, root, log)
    grid = cfg.grid()
    done: set[int] = set()
    header = TableHeader(
        name=cfg.name,
        parameters={"pretrained": {"type": "categorical", "values": sorted(hubs)},
                    "lr": {"type": "categorical", "values": list(cfg.lrs)},
                    "batch_size": {"type": "categorical", "values": list(cfg.batches)}},
        seeds=(0,),
        metrics={"val_error": {"unit": "fraction", "goal": "minimize"},
                 "epoch_runtime": {"unit": "s", "goal": "minimize"}},
        max_resource=cfg.epochs, num_configs=len(grid),
        reference_device={"name": "cpu", "timer": "process_time", "notes": "1 torch thread"},
        description=f"fine-tuning hub models on {cfg.target}; per-epoch checkpoints (FMS benchmark)",
        generator={"command": "hwtune surrogate bench", "quick": cfg is QUICK})
    if table_path.exists():
        lines = table_path.read_text().splitlines()
        if lines and json.loads(lines[0]).get("numConfigs") == len(grid):
            done = {json.loads(line)["configId"] for line in lines[1:] if line.strip()}
        else:
            table_path.unlink()
    if not table_path.exists():
        root.mkdir(parents=True, exist_ok=True)
        table_path.write_text(json.dumps(header.to_json(), separators=(",", ":")) + "\n")
    x, y, xv, yv = hub.load_task(cfg.target)
    for cid, config in enumerate(grid):
        if cid in done:
            continue
        arch = config["pretrained"].split("@")[0]
        model = hub.build(arch)
        record = torch.load(hubs[config["pretrained"]], weights_only=False)
        model.load_state_dict(record["state"]["model"])
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
        errors, times, ckpts = [], [], []
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.process_time()
            loss = hub.train_epoch(model, opt, x, y, config["batch_size"], seed=epoch)
            err = hub.evaluate(model, xv, yv) if math.isfinite(loss) else 1.0
            times.append(time.process_time() - t0)
            errors.append(err)
            rel = Path("ckpt") / str(cid) / f"epoch-{epoch}.pt"
            _save(root / rel, model, arch, epoch)
            ckpts.append(str(rel))
        run = TableRun(cid, 0, config, 0.5, {"val_error": errors, "epoch_runtime": times}).to_json()
        run["checkpoints"] = {"initial": str(Path("hub") / f"{config['pretrained']}.pt"),
                              "epochs": ckpts}
        with open(table_path, "a") as fh:
            fh.write(json.dumps(run, separators=(",", ":")) + "\n")
        if cid % 8 == 0:
            log(f"table {cfg.name}: config {cid + 1}/{len(grid)} final val error {errors[-1]:.3f}")
    return table_path


def load_checkpoints(table_path: Path) -> dict[int, tuple[str, list[str]]]:
    """configId -> (starting weights, [checkpoint of epoch 1, 2, ...]) as absolute paths."""
    out: dict[int, tuple[str, list[str]]] = {}
    root = table_path.parent
    for line in table_path.read_text().splitlines()[1:]:
        if line.strip():
            run = json.loads(line)
            ck = run["checkpoints"]
            out[run["configId"]] = (str(root / ck["initial"]), [str(root / p) for p in ck["epochs"]])
    return out


# -- runs ----------------------------------------------------------------------------------------
MO_HARDWARE = {"pools": ["t4", "a100"], "gpuCounts": [1, 2]}


def _spec(table, scheduler: str, searcher: str, seed: int, settings: Mapping[str, Any],
          mo: bool = False) -> dict:
    spec = {"objectives": [{"metric": "val_error"}], "parameters": table.space_spec(),
            "fidelity": table.fidelity_spec(3),
            "algorithm": {"scheduler": scheduler, "searcher": searcher, "seed": seed,
                          "settings": dict(settings)},
            "budget": {"maxParallelTrials": 1}}
    if mo:  # quality and cost, with the hardware searched too
        spec["objectives"] = [{"metric": "val_error"}, {"metric": "cost"}]
        spec["hardware"] = dict(MO_HARDWARE)
    return spec


@dataclass
class RunOutcome:
    method: str
    seed: int
    best_at: dict[int, float]  # spent epochs -> best val_error seen so far
    tau_at: dict[int, float]
    seconds: float
    suggestions: int = 0
    fallbacks: int = 0
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (spent, val_error, cost)


def run_method(table, ckpts, method: str, seed: int, cfg: BenchConfig, *,
               variant: str | None = None, mo: bool = False) -> RunOutcome:
    from scipy.stats import kendalltau

    from hwtune.backends.simulated import SimulatedBackend
    from hwtune.engine import Study, StudyConfig, Tuner

    if method == "random":
        spec = _spec(table, "fifo", "random", seed, {}, mo)
    elif method == "asha":
        spec = _spec(table, "mo-asha" if mo else "asha", "random", seed, {}, mo)
    else:
        spec = _spec(table, "dyhpo", "dyhpo" if variant == "gp" else variant, seed, cfg.model, mo)
    config = StudyConfig.from_spec(spec)
    backend = SimulatedBackend(table, config.hardware_model, n_workers=1, seed=seed)
    configs = table.configs()
    index = {json.dumps(c, sort_keys=True): i for i, c in enumerate(configs)}

    def locator(trial, level: int) -> str | None:
        cid = index.get(json.dumps(dict(trial.config), sort_keys=True))
        if cid is None:
            return None
        initial, epochs = ckpts[cid]
        return initial if level == 0 else epochs[level - 1] if level <= len(epochs) else None

    ctx = config.search_context(checkpoint_locator=locator)
    searcher = config.make_searcher(context=ctx, candidates=configs)
    points: list[tuple[int, float, float]] = []
    scheduler = config.make_scheduler(searcher, context=ctx)
    if variant == "gp":
        scheduler.core.variant = "gp"
    study = Study(config, scheduler, clock=backend.clock, name=f"bench-{method}-{seed}")
    true_final = table.metric_array("val_error")[:, 0, -1]
    best = math.inf
    best_at: dict[int, float] = {}
    tau_at: dict[int, float] = {}
    horizon = max(cfg.regret_at + cfg.tau_at)
    tuner = Tuner(study, backend)
    started = time.perf_counter()

    def on_report(event) -> None:
        nonlocal best
        if event.kind.value != "observed":
            return
        best = min(best, float(event.metrics["val_error"]))
        spent = study.reports
        points.append((spent, float(event.metrics["val_error"]), float(event.metrics["cost"])))
        if spent in cfg.regret_at:
            best_at[spent] = best
        if spent in cfg.tau_at and variant is not None and not mo:
            pred = scheduler.core.predict_final([(c, None) for c in configs])
            if pred is not None:
                tau_at[spent] = float(kendalltau(pred, true_final).statistic)
        if spent >= horizon:
            tuner.request_stop("benchmark horizon reached")

    study.add_listener(on_report)
    tuner.run()
    core = getattr(scheduler, "core", None)
    return RunOutcome(method, seed, best_at, tau_at, time.perf_counter() - started,
                      suggestions=0 if core is None else core.count,
                      fallbacks=0 if core is None else core.fallbacks, points=points)


# -- latency ---------------------------------------------------------------------------------------
def measure_latency(sizes: Sequence[int], repeats: int = 3, settings: Mapping[str, Any] | None = None
                    ) -> dict[int, dict[str, float]]:
    """Seconds per DyHPO suggestion with ``n`` observations: synthetic curves of n/20 trials x
    20 epochs (or fewer epochs for small n), all paused, 64 fresh candidates."""
    from hwtune.surrogate.latency import synthetic_study
    from hwtune.surrogate.predictors import LocalPredictor

    out: dict[int, dict[str, float]] = {}
    for n in sizes:
        study = synthetic_study(n, settings)  # shared with hwtune surrogate latency
        predictor = LocalPredictor(device="cpu")
        study.scheduler.core._predictor = predictor
        times, cpu = [], []
        for _ in range(repeats + 1):
            t0, c0 = time.perf_counter(), time.thread_time()
            study.scheduler.core.choose(allow_new=True, allow_resume=True)
            times.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)  # torch runs on this thread (1 thread)
            study.scheduler.core.count += 1  # a different suggestion each time, same data
        fit = study.scheduler.core.last_answer["fit"] if study.scheduler.core.last_answer else {}
        out[n] = {"cold": times[0], "warm": statistics.median(times[1:]), "coldCpu": cpu[0],
                  "warmCpu": statistics.median(cpu[1:]), "points": fit.get("points", 0),
                  "observations": study.reports}
    return out


# -- the command ------------------------------------------------------------------------------------
def run_benchmark(*, quick: bool = False, seeds: int = 1, latency: bool = True,
                  json_path: Path | None = None, log: Callable[[str], None] = print,
                  surrogates: Sequence[str] | None = None) -> str:
    torch.set_num_threads(1)
    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    path = build_table(cfg, log)
    table = load_table(path)
    ckpts = load_checkpoints(path)
    log(f"table {path}: {len(table.configs())} configs x {cfg.epochs} epochs "
        f"({time.perf_counter() - t0:.0f} s)")
    surrogates = list(surrogates or (("fms", "dyhpo", "gp") if quick else SURROGATES))
    outcomes: list[RunOutcome] = []
    for seed in range(seeds):
        for method in ("random", "asha"):
            outcomes.append(run_method(table, ckpts, method, seed, cfg))
            log(f"  {method} seed {seed}: best {outcomes[-1].best_at}")
        for variant in surrogates:
            outcomes.append(run_method(table, ckpts, variant, seed, cfg, variant=variant))
            log(f"  {SURROGATES[variant]} seed {seed}: tau {outcomes[-1].tau_at}, best "
                f"{outcomes[-1].best_at}, {outcomes[-1].seconds:.0f} s")
    mo_runs: list[RunOutcome] = []
    for seed in range(seeds):
        for method, variant in (("random", None), ("asha", None), ("dyhpo", "dyhpo")):
            mo_runs.append(run_method(table, ckpts, method, seed, cfg, variant=variant, mo=True))
    log(f"multi-objective runs done ({time.perf_counter() - t0:.0f} s)")
    best = float(table.metric_array("val_error")[:, 0, :].min())
    lat = measure_latency((100, 500, 2000) if not quick else (100,), repeats=3 if not quick else 1,
                          settings=None if not quick else {"fullFitSteps": 30, "refitSteps": 5}
                          ) if latency else {}
    text = _format(cfg, table, outcomes, best, lat, surrogates, seeds)
    text += "\n\n" + _format_mo(cfg, mo_runs)
    if json_path is not None:
        json_path.write_text(json.dumps({
            "config": cfg.name, "seeds": seeds, "tableBest": best,
            "runs": [{k: v for k, v in o.__dict__.items() if k != "points"} for o in outcomes],
            "multiObjective": _mo_numbers(cfg, mo_runs), "latency": lat}, indent=1, default=str))
    return text


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _format(cfg: BenchConfig, table, outcomes: list[RunOutcome], best: float,
            lat: Mapping[int, Mapping[str, float]], surrogates: Sequence[str], seeds: int) -> str:
    lines = [f"FMS benchmark {cfg.name}: {len(table.configs())} configs (hub model x lr x batch) "
             f"fine-tuned {cfg.epochs} epochs on {cfg.target}; {seeds} run(s) per method; "
             f"one worker (compute = epochs trained)", ""]
    a, b = cfg.tau_at
    lines.append(f"Kendall tau, predicted vs true final val error over all {len(table.configs())} "
                 f"configs (aligned by config), at {a} / {b} spent epochs:")
    lines.append(f"  {'method':<20} {'tau@' + str(a):>14} {'tau@' + str(b):>14}   paper (50 / 100)")
    for v in surrogates:
        runs = [o for o in outcomes if o.method == v]
        paper = PAPER_TAU.get(v)
        ptxt = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "-"
        lines.append(f"  {SURROGATES[v]:<20} {_mean_sd([o.tau_at[a] for o in runs if a in o.tau_at]):>14} "
                     f"{_mean_sd([o.tau_at[b] for o in runs if b in o.tau_at]):>14}   {ptxt}")
    lines.append("")
    lines.append(f"Regret (best val error found - table best {best:.4f}) over spent epochs, mean of runs:")
    head = "  " + f"{'method':<20}" + "".join(f"{'@' + str(c):>10}" for c in cfg.regret_at)
    lines.append(head)
    for m in ["random", "asha", *surrogates]:
        runs = [o for o in outcomes if o.method == m]
        name = {"random": "random", "asha": "ASHA"}.get(m) or SURROGATES[m]
        cells = []
        for c in cfg.regret_at:
            vals = [o.best_at[c] - best for o in runs if c in o.best_at]
            cells.append(f"{statistics.mean(vals):>10.4f}" if vals else f"{'n/a':>10}")
        lines.append("  " + f"{name:<20}" + "".join(cells))
    secs = {m: statistics.mean([o.seconds for o in outcomes if o.method == m])
            for m in {o.method for o in outcomes}}
    lines.append("  wall seconds per run: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(secs.items())))
    if lat:
        lines.append("")
        lines.append("Suggestion latency (DyHPO, CPU, 1 thread; synthetic curves; 64 fresh candidates "
                     "+ every paused trial):")
        lines.append(f"  {'observations':>12} {'GP points':>10} {'warm s':>8} {'warm CPU s':>11} "
                     f"{'cold s':>8} {'cold CPU s':>11}   goal: < 1 s at 2000")
        for n, r in lat.items():
            lines.append(f"  {n:>12} {r['points']:>10} {r['warm']:>8.3f} {r['warmCpu']:>11.3f} "
                         f"{r['cold']:>8.3f} {r['coldCpu']:>11.3f}")
        lines.append("  s = wall seconds (this machine is shared: see CPU s, the thread's own time); "
                     "warm = the full fit for the current full-fit set is cached (a running study); "
                     "cold = it is computed now (first suggestion after a restart). Past 512 "
                     "observations the GP is fit on a subset (each trial's latest point first).")
    return "\n".join(lines)


def _mo_numbers(cfg: BenchConfig, runs: list[RunOutcome]) -> dict[str, dict[int, list[float]]]:
    """Hypervolume of the (val error, cost) points observed by each spent budget, both
    objectives normalised to [0, 1] over every run's points, reference point (1.1, 1.1)."""
    from hwtune.optimize.pareto import hypervolume

    every = np.array([(e, c) for r in runs for _, e, c in r.points]) if runs else np.zeros((0, 2))
    if not len(every):
        return {}
    lo, hi = every.min(axis=0), every.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    out: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        for c in cfg.regret_at:
            pts = np.array([(e, k) for s, e, k in r.points if s <= c])
            if not len(pts) or r.points[-1][0] < c and c != cfg.regret_at[0]:
                continue
            hv = hypervolume((pts - lo) / span, [1.1, 1.1])
            out.setdefault(r.method, {}).setdefault(c, []).append(float(hv))
    return out


def _format_mo(cfg: BenchConfig, runs: list[RunOutcome]) -> str:
    numbers = _mo_numbers(cfg, runs)
    lines = ["Multi-objective (val error and cost; hardware t4/a100 x 1/2 GPUs searched too): "
             "hypervolume of the observed points (normalised, reference 1.1, 1.1; higher is better) "
             "over spent epochs, mean of runs. DyHPO scalarises the two losses with random "
             "augmented-Chebyshev weights drawn per suggestion (ParEGO-style).",
             "  " + f"{'method':<20}" + "".join(f"{'@' + str(c):>10}" for c in cfg.regret_at)]
    for m, name in (("random", "random"), ("asha", "MO-ASHA"), ("dyhpo", "DyHPO (random scal.)")):
        cells = []
        for c in cfg.regret_at:
            vals = numbers.get(m, {}).get(c, [])
            cells.append(f"{statistics.mean(vals):>10.4f}" if vals else f"{'n/a':>10}")
        lines.append("  " + f"{name:<20}" + "".join(cells))
    return "\n".join(lines)

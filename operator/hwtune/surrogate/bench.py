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

import dataclasses
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
    lrs: tuple[float, ...]  # a geometric grid: encoded by position, i.e. on a log scale
    finetune: tuple[str, ...]  # "all" (every layer) and/or "head" (body frozen)
    weight_decays: tuple[float, ...]
    batch_size: int
    pretrain_epochs: int
    epochs: int
    tau_at: tuple[int, ...]
    regret_at: tuple[int, ...]
    model: Mapping[str, Any] = field(default_factory=dict)
    surrogates: tuple[str, ...] = ("fms", "dyhpo", "gp")
    hub_from: str | None = None  # use that benchmark's hub (the same pretrained models)
    split_seed: int = 0  # the target task's train/validation split

    def grid(self) -> list[dict[str, Any]]:
        hubs = [f"{arch}@{src}" for src in self.sources for arch in hub.ARCHS]
        return [{"pretrained": p, "lr": lr, "finetune": f, "weight_decay": wd}
                for p in hubs for lr in self.lrs for f in self.finetune for wd in self.weight_decays]

    def parameters(self) -> dict[str, Any]:
        """The table's space. Learning rate and weight decay are ordinal (``values`` of type
        float: encoded by position, so neighbours are close), not one-hot categoricals."""
        return {"pretrained": {"type": "categorical",
                               "values": sorted(f"{a}@{s}" for s in self.sources for a in hub.ARCHS)},
                "lr": {"type": "float", "values": list(self.lrs)},
                "finetune": {"type": "categorical", "values": list(self.finetune)},
                "weight_decay": {"type": "float", "values": list(self.weight_decays)}}


# 6 hub models x 4 learning rates over 3 decades x fine-tune all / head only x 2 weight decays.
FULL = BenchConfig("fms-digits2", ("digits-a", "digits-shift"), "digits-b",
                   (1e-4, 1e-3, 1e-2, 1e-1), ("all", "head"), (0.0, 0.01), 32, 12, 20,
                   (50, 100), (25, 50, 100),
                   # Full fits of at most 300 steps (the service's default is 1000) and refits of
                   # 8: about 100 suggestions per run x 5 seeds x 3 surrogates is what 2 CPU cores
                   # shared by six jobs afford (message passing over every checkpoint at every
                   # step is the expensive part).
                   {"fullFitSteps": 300, "refitSteps": 8, "freshCandidates": 32, "gmnPoints": 32})
QUICK = BenchConfig("fms-digits2-quick", ("digits-a",), "digits-b", (1e-3, 1e-1), ("all", "head"),
                    (0.0,), 64, 4, 5, (10, 20), (10, 20, 30),
                    {"fullFitSteps": 60, "refitSteps": 5, "freshCandidates": 8, "gmnPoints": 12,
                     "maxFullFitPoints": 8})


# The transfer setting: an earlier study of the same hub on another task -- every config of the
# same grid fine-tuned on digits-noisy (all ten digits, noisy pixels) from the same pretrained
# models -- meta-trains the surrogate before it runs on the target table.
TRANSFER_SOURCES = {
    FULL.name: dataclasses.replace(FULL, name="fms-digits2-noisy", target="digits-noisy",
                                   hub_from=FULL.name),
    QUICK.name: dataclasses.replace(QUICK, name="fms-digits2-quick-noisy", target="digits-noisy",
                                    hub_from=QUICK.name),
}
# A closer earlier study (``--transfer-source resplit``): the same task, digits-b, on another
# train/validation split -- an earlier study of a previous data snapshot.
RESPLIT_SOURCES = {
    FULL.name: dataclasses.replace(FULL, name="fms-digits2-resplit", split_seed=1,
                                   hub_from=FULL.name),
    QUICK.name: dataclasses.replace(QUICK, name="fms-digits2-quick-resplit", split_seed=1,
                                    hub_from=QUICK.name),
}
TRANSFER_SOURCE_SETS = {"noisy": TRANSFER_SOURCES, "resplit": RESPLIT_SOURCES}
# method -> (surrogate variant, transferMode); "+t" is the default (joint) mode.
TRANSFER_METHODS = {"fms+t": ("fms", "joint"), "dyhpo+t": ("dyhpo", "joint"),
                    "gp+t": ("gp", "joint"), "fms+pre": ("fms", "pretrain"),
                    "dyhpo+pre": ("dyhpo", "pretrain"), "gp+pre": ("gp", "pretrain")}
DEFAULT_TRANSFER = ("fms+t", "dyhpo+t", "gp+t")
TRANSFER_SETTINGS = {"transferPoints": 128}
QUICK_TRANSFER_SETTINGS = {"transferPoints": 24}  # CI: fewer earlier checkpoints to encode


def _transfer_settings(cfg: BenchConfig) -> dict[str, Any]:
    return dict(QUICK_TRANSFER_SETTINGS if cfg is QUICK else TRANSFER_SETTINGS)


def cache_root() -> Path:
    root = os.environ.get("HWTUNE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hwtune")
    return Path(root) / "fms"


# -- building the hub and the table ------------------------------------------------------------
def _save(path: Path, model: torch.nn.Module, arch: str, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": "hwtune-checkpoint/1", "resource": level,
                # The module itself: the parameter graph's residual edges are inferred from it.
                "state": {"model": model.state_dict(), "module": model}}, tmp)
    os.replace(tmp, path)


def build_hub(cfg: BenchConfig, root: Path, log: Callable[[str], None]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if cfg.hub_from is not None:
        root = cache_root() / cfg.hub_from
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
        parameters=cfg.parameters(),
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
    x, y, xv, yv = hub.load_task(cfg.target, seed=cfg.split_seed)
    for cid, config in enumerate(grid):
        if cid in done:
            continue
        arch = config["pretrained"].split("@")[0]
        model = hub.build(arch)
        record = torch.load(hubs[config["pretrained"]], weights_only=False)
        model.load_state_dict(record["state"]["model"])
        params = hub.trainable(model, arch, config["finetune"])
        opt = torch.optim.SGD(params, lr=config["lr"], momentum=0.9,
                              weight_decay=config["weight_decay"])
        errors, times, ckpts = [], [], []
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.process_time()
            loss = hub.train_epoch(model, opt, x, y, cfg.batch_size, seed=epoch)
            err = hub.evaluate(model, xv, yv) if math.isfinite(loss) else 1.0
            times.append(time.process_time() - t0)
            errors.append(err)
            rel = Path("ckpt") / str(cid) / f"epoch-{epoch}.pt"
            _save(root / rel, model, arch, epoch)
            ckpts.append(str(rel))
        run = TableRun(cid, 0, config, 0.5, {"val_error": errors, "epoch_runtime": times}).to_json()
        run["checkpoints"] = {"initial": os.path.relpath(hubs[config["pretrained"]], root),
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
          mo: bool = False, transfer: Sequence[str] = ()) -> dict:
    spec = {"objectives": [{"metric": "val_error"}], "parameters": table.space_spec(),
            "fidelity": table.fidelity_spec(3),
            "algorithm": {"scheduler": scheduler, "searcher": searcher, "seed": seed,
                          "settings": dict(settings)},
            "budget": {"maxParallelTrials": 1}}
    if transfer:
        spec["transfer"] = {"fromStudies": list(transfer)}
    if mo:  # quality and cost, with the hardware searched too
        spec["objectives"] = [{"metric": "val_error"}, {"metric": "cost"}]
        spec["hardware"] = dict(MO_HARDWARE)
    return spec


@dataclass
class RunOutcome:
    method: str
    seed: int
    best_at: dict[int, float]  # spent epochs -> best val_error seen so far
    tau_at: dict[int, float]  # spent epochs -> tau over every config of the table
    seconds: float
    tau_seen_at: dict[int, float] = field(default_factory=dict)  # over the configs it started
    seen_at: dict[int, int] = field(default_factory=dict)  # how many configs it had started
    suggestions: int = 0
    fallbacks: int = 0
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (spent, val_error, cost)


def run_method(table, ckpts, method: str, seed: int, cfg: BenchConfig, *,
               variant: str | None = None, mo: bool = False, transfer: Sequence[Any] = (),
               transfer_mode: str = "joint") -> RunOutcome:
    """One run. ``transfer``: earlier studies (``PastStudy``) the surrogate is meta-trained on,
    in ``transfer_mode`` (``hwtune.surrogate.meta``)."""
    from hwtune.backends.simulated import SimulatedBackend
    from hwtune.engine import Study, StudyConfig, Tuner
    from hwtune.space import config_key

    if method == "random":
        spec = _spec(table, "fifo", "random", seed, {}, mo)
    elif method == "asha":
        spec = _spec(table, "mo-asha" if mo else "asha", "random", seed, {}, mo)
    elif transfer:
        settings = {**cfg.model, **_transfer_settings(cfg), "transferMode": transfer_mode}
        spec = _spec(table, "dyhpo", "dyhpo" if variant == "gp" else variant, seed, settings, mo,
                     [s.name for s in transfer])
    else:
        spec = _spec(table, "dyhpo", "dyhpo" if variant == "gp" else variant, seed, cfg.model, mo)
    config = StudyConfig.from_spec(spec)
    if transfer:
        config = config.with_transfer_studies(transfer)
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
    tau_seen_at: dict[int, float] = {}
    seen_at: dict[int, int] = {}
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
            # Aligned by config: pred[i] and true_final[i] are both config i of the table
            # (tau-b, so tied true values count neither way).
            pred = scheduler.core.predict_final([(c, None) for c in configs])
            if pred is not None:
                tau_at[spent] = _tau(pred, true_final)
                started = {config_key(t.config) for t in study.trials}
                seen = np.array([config_key(c) in started for c in configs])
                seen_at[spent] = int(seen.sum())
                if seen.sum() >= 3:
                    tau_seen_at[spent] = _tau(pred[seen], true_final[seen])
        if spent >= horizon:
            tuner.request_stop("benchmark horizon reached")

    study.add_listener(on_report)
    tuner.run()
    core = getattr(scheduler, "core", None)
    return RunOutcome(method, seed, best_at, tau_at, time.perf_counter() - started,
                      tau_seen_at=tau_seen_at, seen_at=seen_at,
                      suggestions=0 if core is None else core.count,
                      fallbacks=0 if core is None else core.fallbacks, points=points)


def _tau(pred: np.ndarray, true: np.ndarray) -> float:
    """Kendall's tau-b of the predicted and true values of the same configs. A constant
    prediction ranks nothing: its tau is undefined (NaN) and counted as 0."""
    from scipy.stats import kendalltau

    tau = float(kendalltau(pred, true).statistic)
    return 0.0 if math.isnan(tau) else tau


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
RUNS_VERSION = 3  # bump when a change to the models or the runs makes cached outcomes stale
META_VERSION = 3  # the same for transfer runs only (hwtune.surrogate.meta's choice of points)


def _runs_path(cfg: BenchConfig, transfer: str | None = None) -> Path:
    """The cache of finished runs; transfer runs (``transfer``: the earlier study's table) have
    their own file, so the plain runs' cache is the same with or without them."""
    import hashlib

    fields: dict[str, Any] = {"v": RUNS_VERSION, "model": dict(cfg.model), "grid": len(cfg.grid()),
                              "epochs": cfg.epochs}
    if transfer is not None:
        fields.update(transfer=transfer, settings=_transfer_settings(cfg), meta=META_VERSION)
    key = json.dumps(fields, sort_keys=True)
    return cache_root() / cfg.name / f"runs-{hashlib.sha1(key.encode()).hexdigest()[:10]}.jsonl"


def _load_runs(path: Path) -> dict[tuple[str, int, bool], RunOutcome]:
    out: dict[tuple[str, int, bool], RunOutcome] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:  # a run cut short while writing: it is run again
            continue
        mo = bool(d.pop("mo", False))
        for k in ("best_at", "tau_at", "tau_seen_at", "seen_at"):
            d[k] = {int(b): v for b, v in d.get(k, {}).items()}
        d["points"] = [tuple(p) for p in d.get("points", [])]
        out[(d["method"], int(d["seed"]), mo)] = RunOutcome(**d)
    return out


def _claim(runs_path: Path, name: str) -> bool:
    """Claim one run for this process (a file holding its pid); False when a live process
    holds it. A dead claimant's run is taken over."""
    claims = runs_path.with_suffix(".claims")
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / name
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(path.read_text() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid == os.getpid():
            return True
        try:
            if pid > 0:
                os.kill(pid, 0)
                return False
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        path.write_text(str(os.getpid()))
        return True
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    return True


def run_benchmark(*, quick: bool = False, seeds: int = 1, latency: bool = True,
                  json_path: Path | None = None, log: Callable[[str], None] = print,
                  surrogates: Sequence[str] | None = None, multi_objective: bool = True,
                  only: Sequence[str] | None = None, run_seeds: Sequence[int] | None = None,
                  transfer: bool = False, transfer_source: str = "noisy") -> str:
    """Build (or reuse) the table, run every method for ``seeds`` seeds (each finished run is
    cached next to the table, so an interrupted or split benchmark resumes; ``only``: run just
    these methods, ``run_seeds``: just these seeds, in this order, so that several processes
    can share the work; a run another live process has claimed is left to it) and return the
    printed tables of every cached run. ``transfer``: also the transfer setting (the surrogates
    meta-trained on ``TRANSFER_SOURCES``' table first; its own run cache), printed beside the
    plain runs of the same seeds."""
    torch.set_num_threads(1)
    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    path = build_table(cfg, log)
    table = load_table(path)
    ckpts = load_checkpoints(path)
    log(f"table {path}: {len(table.configs())} configs x {cfg.epochs} epochs "
        f"({time.perf_counter() - t0:.0f} s)")
    surrogates = list(surrogates or [v for v in SURROGATES if v in cfg.surrogates
                                     or (only is not None and v in only)])
    runs_path = _runs_path(cfg)
    cached = _load_runs(runs_path)

    def outcome(method: str, seed: int, variant: str | None, mo: bool, *, path: Path = runs_path,
                cache: dict = cached, **kw: Any) -> RunOutcome:
        key = (method, seed, mo)
        if key not in cache:  # another process may have finished it meanwhile
            cache.update(_load_runs(path))
        if key not in cache and (only is None or method in only) \
                and (run_seeds is None or seed in run_seeds) \
                and _claim(path, f"{method}-{seed}-{int(mo)}"):
            o = run_method(table, ckpts, method, seed, cfg, variant=variant, mo=mo, **kw)
            cache[key] = o
            with open(path, "a") as fh:
                fh.write(json.dumps({**o.__dict__, "mo": mo}, separators=(",", ":")) + "\n")
            log(f"  {'MO ' if mo else ''}{method} seed {seed}: tau {o.tau_at}, tau over started "
                f"{o.tau_seen_at}, best {o.best_at}, {o.seconds:.0f} s")
        return cache.get(key)

    order = [s for s in (run_seeds or []) if 0 <= s < seeds] + \
        [s for s in range(seeds) if s not in (run_seeds or [])]
    for seed in order:
        for method in ("random", "asha"):
            outcome(method, seed, None, False)
        for variant in surrogates:
            outcome(variant, seed, variant, False)
    t_text = ""
    if transfer:
        source_cfg = TRANSFER_SOURCE_SETS[transfer_source][cfg.name]
        source = _source_study(source_cfg, log)
        t_path = _runs_path(cfg, source_cfg.name)
        t_cached = _load_runs(t_path)
        t_methods = [m for m in (only or DEFAULT_TRANSFER) if m in TRANSFER_METHODS]
        for seed in order:
            for m in t_methods:
                variant, mode = TRANSFER_METHODS[m]
                outcome(m, seed, variant, False, path=t_path, cache=t_cached, transfer=[source],
                        transfer_mode=mode)
        t_runs = [o for (m, sd, mo), o in sorted(t_cached.items()) if sd < seeds and not mo]
        t_text = _format_transfer(cfg, source_cfg, source, table, t_runs, [
            o for (m, sd, mo), o in cached.items() if sd < seeds and not mo], seeds)
    outcomes = [cached[(m, seed, False)] for seed in range(seeds)
                for m in ("random", "asha", *surrogates) if (m, seed, False) in cached]
    mo_runs: list[RunOutcome] = []
    if multi_objective:
        for seed in range(seeds):
            for method, variant in (("random", None), ("asha", None), ("dyhpo", "dyhpo")):
                mo_runs.append(outcome(method, seed, variant, True))
        mo_runs = [o for o in mo_runs if o is not None]
        log(f"multi-objective runs done ({time.perf_counter() - t0:.0f} s)")
    best = float(table.metric_array("val_error")[:, 0, :].min())
    lat = measure_latency((100, 500, 2000) if not quick else (100,), repeats=3 if not quick else 1,
                          settings=None if not quick else {"fullFitSteps": 30, "refitSteps": 5}
                          ) if latency else {}
    text = _format(cfg, table, outcomes, best, lat, surrogates, seeds)
    if mo_runs:
        text += "\n\n" + _format_mo(cfg, mo_runs)
    if t_text:
        text += "\n\n" + t_text
    if json_path is not None:
        json_path.write_text(json.dumps({
            "config": cfg.name, "seeds": seeds, "tableBest": best,
            "spread": _spread(table),
            "runs": [{k: v for k, v in o.__dict__.items() if k != "points"} for o in outcomes],
            "multiObjective": _mo_numbers(cfg, mo_runs), "latency": lat,
            "transferRuns": [{k: v for k, v in o.__dict__.items() if k != "points"}
                             for o in (t_runs if transfer else [])]}, indent=1, default=str))
    return text


def _source_study(source_cfg: BenchConfig, log: Callable[[str], None]):
    """The earlier study of the transfer setting: every config of the source table, its curve
    and its checkpoints (built by real training like the target table, and cached)."""
    from hwtune.api.records import Objective
    from hwtune.transfer import from_table

    path = build_table(source_cfg, log)
    return from_table(load_table(path), name=source_cfg.name, objectives=(Objective("val_error"),),
                      checkpoints=load_checkpoints(path))


def _source_tau(source, table) -> float:
    """Kendall tau between the earlier study's final val error and the target's, config by
    config: how well simply copying the earlier study's ranking would do."""
    final = {json.dumps(dict(t.config), sort_keys=True): t.final["val_error"] for t in source.trials}
    configs = table.configs()
    true = table.metric_array("val_error")[:, 0, -1]
    pairs = [(final[k], v) for c, v in zip(configs, true)
             if (k := json.dumps(dict(c), sort_keys=True)) in final]
    return _tau(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))


def _format_transfer(cfg: BenchConfig, source_cfg: BenchConfig, source, table,
                     runs: list[RunOutcome], plain: list[RunOutcome], seeds: int) -> str:
    a, b = cfg.tau_at
    n = len(table.configs())
    best = float(table.metric_array("val_error")[:, 0, :].min())
    lines = [f"Transfer (the FMS paper's transfer setting): the surrogate first learns from an "
             f"earlier study, {source_cfg.name} ({len(source.trials)} configs of the same grid "
             f"and hub fine-tuned {source_cfg.epochs} epochs on {source_cfg.target}"
             f"{'' if not source_cfg.split_seed else ', another train/validation split'}: at most "
             f"{_transfer_settings(cfg)['transferPoints']} of its points, every config's final value "
             f"seen from no curve first, with checkpoints for FMS), then runs on {cfg.name} as above. '+t': joint "
             f"(earlier and own points in one GP, a task-indicator input); '+pre': pretrained on "
             f"the earlier points, then fitted on its own. 'without' = the plain runs above of "
             f"the same seeds; 'better': seeds (of those) where the all-config tau beat the "
             f"plain run's at {a} / {b}.",
             f"Copying the earlier study's ranking (its final val error per config) gives Kendall "
             f"tau {_source_tau(source, table):.2f} against this table's, over all {n} configs.",
             "",
             f"Kendall tau (b), aligned by config, median [min, max] over seeds:",
             f"  {'method':<20} {'all @' + str(a):>18} {'all @' + str(b):>18} "
             f"{'started @' + str(a):>18} {'started @' + str(b):>18} {'n started':>10}   "
             f"{'without: all @' + str(a) + ' / @' + str(b):>24}  {'better':>7}   paper (50 / 100)"]
    names = {**SURROGATES}
    methods = [m for m in TRANSFER_METHODS if any(o.method == m for o in runs)]
    for m in methods:
        variant, mode = TRANSFER_METHODS[m]
        mine = [o for o in runs if o.method == m]
        base = [o for o in plain if o.method == variant and o.seed in {r.seed for r in mine}]
        cells = [_median([o.tau_at[c] for o in mine if c in o.tau_at]) for c in (a, b)]
        cells += [_median([o.tau_seen_at[c] for o in mine if c in o.tau_seen_at]) for c in (a, b)]
        started = [[o.seen_at[c] for o in mine if c in o.seen_at] for c in (a, b)]
        ntxt = "/".join(f"{statistics.median(x):.0f}" if x else "-" for x in started)
        wtxt = " / ".join(f"{statistics.median(v):.2f}" if (v := [o.tau_at[c] for o in base
                                                                   if c in o.tau_at]) else "n/a"
                          for c in (a, b))
        paper = PAPER_TAU.get(variant)
        ptxt = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "-"
        label = f"{names[variant]} {'+t' if mode == 'joint' else '+pre'}"
        # Paired by seed: on how many seeds the all-config tau beat the plain run's.
        plain_of = {o.seed: o for o in base}
        better = "/".join(str(sum(1 for o in mine if o.seed in plain_of and c in o.tau_at
                                  and c in plain_of[o.seed].tau_at
                                  and o.tau_at[c] > plain_of[o.seed].tau_at[c])) for c in (a, b))
        lines.append(f"  {label:<20} " + " ".join(f"{c:>18}" for c in cells)
                     + f" {ntxt:>10}   {wtxt:>24}  {better:>7}   {ptxt}  ({len(mine)} of {seeds} seeds)")
    lines.append("")
    lines.append(f"Regret (best val error found - table best {best:.4f}), median over seeds, "
                 f"with transfer / without:")
    lines.append("  " + f"{'method':<20}" + "".join(f"{'@' + str(c):>18}" for c in cfg.regret_at))
    for m in methods:
        variant, mode = TRANSFER_METHODS[m]
        mine = [o for o in runs if o.method == m]
        base = [o for o in plain if o.method == variant and o.seed in {r.seed for r in mine}]
        cells = []
        for c in cfg.regret_at:
            w = [o.best_at[c] - best for o in mine if c in o.best_at]
            wo = [o.best_at[c] - best for o in base if c in o.best_at]
            cells.append(f"{(f'{statistics.median(w):.4f}' if w else 'n/a')} / "
                         f"{(f'{statistics.median(wo):.4f}' if wo else 'n/a')}")
        label = f"{names[variant]} {'+t' if mode == 'joint' else '+pre'}"
        lines.append("  " + f"{label:<20}" + "".join(f"{c:>18}" for c in cells))
    secs = {m: statistics.mean([o.seconds for o in runs if o.method == m]) for m in methods}
    lines.append("  wall seconds per run: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
    return "\n".join(lines)


def _spread(table) -> dict[str, float]:
    final = table.metric_array("val_error")[:, 0, -1]
    q = np.quantile(final, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"min": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
            "max": float(q[4]), "distinct": int(len(np.unique(final))), "configs": int(len(final))}


def _median(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def _wins(outcomes: list[RunOutcome], methods: Sequence[str], score: Callable[[RunOutcome], float | None],
          higher: bool) -> dict[str, int]:
    """Per seed, the method(s) with the best score (ties: each of them) get a win."""
    wins = {m: 0 for m in methods}
    for seed in sorted({o.seed for o in outcomes}):
        scores = {o.method: score(o) for o in outcomes if o.seed == seed and o.method in methods}
        scores = {m: v for m, v in scores.items() if v is not None}
        if len(scores) < 2:
            continue
        top = (max if higher else min)(scores.values())
        for m, v in scores.items():
            if abs(v - top) < 1e-12:
                wins[m] += 1
    return wins


def _format(cfg: BenchConfig, table, outcomes: list[RunOutcome], best: float,
            lat: Mapping[int, Mapping[str, float]], surrogates: Sequence[str], seeds: int) -> str:
    sp = _spread(table)
    n = len(table.configs())
    lines = [f"FMS benchmark {cfg.name}: {n} configs (hub model x lr x fine-tune all/head x weight "
             f"decay) fine-tuned {cfg.epochs} epochs on {cfg.target}; up to {seeds} seed(s) per method "
             f"('of N': the runs done); "
             f"one worker (compute = epochs trained)",
             f"True final val error over the configs: min {sp['min']:.3f}, quartiles {sp['q25']:.3f} "
             f"/ {sp['median']:.3f} / {sp['q75']:.3f}, max {sp['max']:.3f}; {sp['distinct']} distinct "
             f"values", ""]
    a, b = cfg.tau_at
    per = {v: [o for o in outcomes if o.method == v] for v in surrogates}
    lines.append(f"Kendall tau (b), predicted vs true final val error, aligned by config, at {a} / {b} "
                 f"spent epochs; median [min, max] over seeds; 'all' = every config of the table, "
                 f"'started' = the configs the run had trained at least one epoch:")
    lines.append(f"  {'method':<20} {'all @' + str(a):>18} {'all @' + str(b):>18} "
                 f"{'started @' + str(a):>18} {'started @' + str(b):>18} {'n started':>10}   "
                 f"paper (50 / 100)   won @{a}/@{b}")
    wa = _wins(outcomes, surrogates, lambda o: o.tau_at.get(a), True)
    wb = _wins(outcomes, surrogates, lambda o: o.tau_at.get(b), True)
    for v in surrogates:
        runs = per[v]
        paper = PAPER_TAU.get(v)
        ptxt = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "-"
        cells = [_median([o.tau_at[c] for o in runs if c in o.tau_at]) for c in (a, b)]
        cells += [_median([o.tau_seen_at[c] for o in runs if c in o.tau_seen_at]) for c in (a, b)]
        started = [[o.seen_at[c] for o in runs if c in o.seen_at] for c in (a, b)]
        ntxt = "/".join(f"{statistics.median(x):.0f}" if x else "-" for x in started)
        lines.append(f"  {SURROGATES[v]:<20} " + " ".join(f"{c:>18}" for c in cells)
                     + f" {ntxt:>10}   {ptxt:<17}  {wa[v]}/{wb[v]} of {len(runs)}")
    lines.append(f"  n started: configs the run had started by {a} / {b} spent epochs (median), "
                 f"of {n}")
    lines.append("")
    methods = ["random", "asha", *surrogates]
    lines.append(f"Regret (best val error found - table best {best:.4f}) over spent epochs, median "
                 f"over seeds; won = seeds where the method's regret at {cfg.regret_at[-1]} was "
                 f"lowest (ties count for each). Paper: regret curves only (FMS-GMN lowest).")
    lines.append("  " + f"{'method':<20}" + "".join(f"{'@' + str(c):>10}" for c in cfg.regret_at)
                 + "   won")
    last = cfg.regret_at[-1]
    wins = _wins(outcomes, methods, lambda o: o.best_at.get(last), False)
    for m in methods:
        runs = [o for o in outcomes if o.method == m]
        name = {"random": "random", "asha": "ASHA"}.get(m) or SURROGATES[m]
        cells = []
        for c in cfg.regret_at:
            vals = [o.best_at[c] - best for o in runs if c in o.best_at]
            cells.append(f"{statistics.median(vals):>10.4f}" if vals else f"{'n/a':>10}")
        lines.append("  " + f"{name:<20}" + "".join(cells) + f"   {wins[m]} of {len(runs)}")
    secs = {m: statistics.mean([o.seconds for o in outcomes if o.method == m])
            for m in {o.method for o in outcomes}}
    lines.append("  wall seconds per run: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(secs.items())))
    if lat:
        lines.append("")
        lines.append("Suggestion latency (DyHPO, CPU, 1 thread; synthetic curves; 64 fresh candidates "
                     "+ every paused trial):")
        lines.append(f"  {'observations':>12} {'GP points':>10} {'warm s':>8} {'warm CPU s':>11} "
                     f"{'cold s':>8} {'cold CPU s':>11}   goal: < 1 s at 2000")
        for k, r in lat.items():
            lines.append(f"  {k:>12} {r['points']:>10} {r['warm']:>8.3f} {r['warmCpu']:>11.3f} "
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
             "over spent epochs, median of runs. DyHPO scalarises the two losses with random "
             "augmented-Chebyshev weights drawn per suggestion (ParEGO-style).",
             "  " + f"{'method':<20}" + "".join(f"{'@' + str(c):>10}" for c in cfg.regret_at)]
    for m, name in (("random", "random"), ("asha", "MO-ASHA"), ("dyhpo", "DyHPO (random scal.)")):
        cells = []
        for c in cfg.regret_at:
            vals = numbers.get(m, {}).get(c, [])
            cells.append(f"{statistics.median(vals):>10.4f}" if vals else f"{'n/a':>10}")
        lines.append("  " + f"{name:<20}" + "".join(cells))
    return "\n".join(lines)

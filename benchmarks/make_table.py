"""Generate a benchmark table by really training small networks with torch on the CPU.

Task: scikit-learn's digits (1797 8x8 grey images, 10 classes; ships with scikit-learn, so
nothing is downloaded). Every config is trained for ``--epochs`` epochs with every seed; each
epoch records val_error, val_loss, train_loss and epoch_runtime (CPU seconds of that epoch on
this machine, the table's reference device). The format is described in docs/benchmark-table.md.

  python benchmarks/make_table.py                 # default: 240 configs x 3 seeds x 50 epochs
  python benchmarks/make_table.py --quick         # CI size: 24 configs x 2 seeds x 12 epochs
  nice -n 10 python benchmarks/make_table.py > gen.log 2>&1 &   # the way to run the full one

Reproducible: configs come from a fixed-seed generator (the quick table's configs are the first
configs of the full one), every run seeds torch and its data order, torch runs deterministic
algorithms on one thread. Runtimes are CPU time, not wall time, so a busy shared machine does
not inflate them (it still adds some noise through caches). Resumable: runs are appended one
line at a time, and a rerun skips the (config, seed) runs already in the file.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwtune.bench.table import RUNTIME_METRIC, TableHeader, TableRun, TableWriter, default_table_path

# ---------------------------------------------------------------------------------------------
# The search space, in the study-spec shape.
PARAMETERS: dict[str, dict[str, Any]] = {
    "model": {"type": "categorical", "values": ["mlp", "cnn"]},
    "lr": {"type": "float", "min": 1.0e-4, "max": 1.0e-1, "scale": "log"},
    "batch_size": {"type": "int", "values": [16, 32, 64, 128, 256, 512]},
    "width": {"type": "int", "values": [16, 32, 64, 128, 256]},
    "depth": {"type": "int", "min": 1, "max": 4},
    "dropout": {"type": "float", "min": 0.0, "max": 0.5},
    "weight_decay": {"type": "float", "min": 1.0e-6, "max": 1.0e-2, "scale": "log"},
    "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
}
CONFIG_STREAM_SEED = 20240601  # fixed: the same configs on every machine and every size
SGD_MOMENTUM = 0.9
LOSS_CAP = 100.0  # diverged runs (inf/NaN loss) are recorded at this cap; their error is measured
VAL_FRACTION = 1 / 3
SPLIT_SEED = 0

# Memory model (documented in docs/benchmark-table.md). Each 8x8 grey digit stands for a 224x224
# RGB image of a realistic "virtual workload", so every activation grows by this factor; weights
# do not (convolutions are size independent, and the MLPs' weights are negligible either way).
WORKLOAD_SCALE = (224 * 224 * 3) / (8 * 8 * 1)  # = 2352
BYTES_PER_FLOAT = 4
ACTIVATION_FACTOR = 4.0  # kept for backward + its gradient + the ReLU/pool/norm tensors next to it
OVERHEAD_GIB = 0.5  # CUDA context, cuDNN workspace, allocator slack
OPTIMIZER_SLOTS = {"sgd": 1, "adam": 2}  # momentum / first+second moments per weight

SIZES = {
    # name: (configs, seeds, epochs)
    "default": (240, (0, 1, 2), 50),
    "quick": (24, (0, 1), 12),
}

METRICS = {
    "val_error": {"unit": "fraction", "goal": "minimize",
                  "description": "misclassified fraction of the 599 validation digits after this epoch"},
    "val_loss": {"unit": "nats", "goal": "minimize",
                 "description": f"mean validation cross-entropy (capped at {LOSS_CAP})"},
    "train_loss": {"unit": "nats", "goal": "minimize",
                   "description": f"mean training cross-entropy over the epoch's mini-batches (capped at {LOSS_CAP})"},
    RUNTIME_METRIC: {"unit": "s", "goal": "minimize",
                     "description": "CPU seconds of this epoch (train + validation) on the reference device"},
}


def sample_configs(n: int) -> list[dict[str, Any]]:
    """The first n configs of the fixed stream; floats rounded to 4 significant digits."""
    rng = np.random.default_rng(CONFIG_STREAM_SEED)
    configs: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    while len(configs) < n:
        cfg: dict[str, Any] = {}
        for name, dom in PARAMETERS.items():
            if "values" in dom:
                cfg[name] = dom["values"][int(rng.integers(len(dom["values"])))]
            elif dom["type"] == "int":
                cfg[name] = int(rng.integers(dom["min"], dom["max"] + 1))
            elif dom.get("scale") == "log":
                cfg[name] = float(f"{math.exp(rng.uniform(math.log(dom['min']), math.log(dom['max']))):.4g}")
            else:
                cfg[name] = float(f"{rng.uniform(dom['min'], dom['max']):.4g}")
        key = tuple(cfg.values())
        if key not in seen:
            seen.add(key)
            configs.append(cfg)
    return configs


# ---------------------------------------------------------------------------------------------
# Models (torch is imported lazily so --help and the header code stay light).


def cnn_channels(width: int) -> int:
    # 8x8 inputs need far fewer channels than hidden units; width/4 keeps a CNN epoch near an MLP's
    return max(4, width // 4)


def build_model(cfg: dict[str, Any]):
    import torch.nn as nn

    layers: list[nn.Module] = []
    if cfg["model"] == "mlp":
        fan_in = 64
        layers.append(nn.Flatten())
        for _ in range(cfg["depth"]):
            layers += [nn.Linear(fan_in, cfg["width"]), nn.ReLU(), nn.Dropout(cfg["dropout"])]
            fan_in = cfg["width"]
        layers.append(nn.Linear(fan_in, 10))
    else:
        ch, c_in = cnn_channels(cfg["width"]), 1
        for block in range(cfg["depth"]):
            layers += [nn.Conv2d(c_in, ch, 3, padding=1), nn.ReLU()]
            if block < 2:  # 8x8 -> 4x4 -> 2x2
                layers.append(nn.MaxPool2d(2))
            c_in = ch
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg["dropout"]), nn.Linear(ch, 10)]
    return nn.Sequential(*layers)


def activation_floats_per_sample(cfg: dict[str, Any]) -> int:
    """Outputs of every Linear/Conv layer for one sample (what the memory model counts)."""
    if cfg["model"] == "mlp":
        return cfg["width"] * cfg["depth"] + 10
    ch, side, total = cnn_channels(cfg["width"]), 8, 0
    for block in range(cfg["depth"]):
        total += ch * side * side
        if block < 2:
            side //= 2
    return total + 10


def parameter_count(cfg: dict[str, Any]) -> int:
    if cfg["model"] == "mlp":
        fan_in, total = 64, 0
        for _ in range(cfg["depth"]):
            total += fan_in * cfg["width"] + cfg["width"]
            fan_in = cfg["width"]
        return total + fan_in * 10 + 10
    ch, c_in, total = cnn_channels(cfg["width"]), 1, 0
    for _ in range(cfg["depth"]):
        total += c_in * ch * 9 + ch
        c_in = ch
    return total + ch * 10 + 10


def memory_gib(cfg: dict[str, Any]) -> float:
    """GPU memory (GiB) to train the config's virtual workload with its whole batch on one GPU."""
    gib = 2.0**30
    weights = parameter_count(cfg) * BYTES_PER_FLOAT * (2 + OPTIMIZER_SLOTS[cfg["optimizer"]])
    activations = (cfg["batch_size"] * activation_floats_per_sample(cfg) * BYTES_PER_FLOAT
                   * ACTIVATION_FACTOR * WORKLOAD_SCALE)
    return OVERHEAD_GIB + (weights + activations) / gib


# ---------------------------------------------------------------------------------------------
# Training (runs in worker processes)

_DATA: dict[str, Any] = {}


def _init_worker() -> None:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=VAL_FRACTION, random_state=SPLIT_SEED, stratify=y)
    _DATA.update(x_tr=torch.from_numpy(x_tr), y_tr=torch.from_numpy(y_tr),
                 x_va=torch.from_numpy(x_va), y_va=torch.from_numpy(y_va))


def _capped(value: float) -> float:
    return value if math.isfinite(value) and value < LOSS_CAP else LOSS_CAP


def train_run(task: tuple[int, int, dict[str, Any], int]) -> tuple[int, int, dict[str, list[float]], float]:
    """Train one config with one seed; returns per-epoch curves and the wall seconds it took."""
    import torch
    import torch.nn.functional as F

    config_id, seed, cfg, epochs = task
    wall0 = time.monotonic()
    torch.manual_seed(seed)
    model = build_model(cfg)
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=SGD_MOMENTUM,
                              weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    order_rng = torch.Generator().manual_seed(10_000 + seed)
    x_tr, y_tr, x_va, y_va = _DATA["x_tr"], _DATA["y_tr"], _DATA["x_va"], _DATA["y_va"]
    n, bs = len(x_tr), cfg["batch_size"]
    curves: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(epochs):
        t0 = time.process_time()
        model.train()
        perm = torch.randperm(n, generator=order_rng)
        total, count = 0.0, 0
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
            count += len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            val_loss = float(F.cross_entropy(logits, y_va))
            finite = torch.isfinite(logits).all(dim=1)
            correct = ((logits.argmax(dim=1) == y_va) & finite).sum().item()
        curves[RUNTIME_METRIC].append(time.process_time() - t0)
        curves["train_loss"].append(_capped(total / count))
        curves["val_loss"].append(_capped(val_loss))
        curves["val_error"].append(1.0 - correct / len(y_va))
    return config_id, seed, curves, time.monotonic() - wall0


# ---------------------------------------------------------------------------------------------


def make_header(name: str, n_configs: int, seeds: tuple[int, ...], epochs: int) -> TableHeader:
    import sklearn
    import torch

    return TableHeader(
        name=name,
        description=("scikit-learn digits (8x8), MLP or CNN trained with torch on CPU; "
                     "val split 1/3 stratified (seed 0), no test set"),
        parameters=PARAMETERS,
        seeds=tuple(seeds),
        metrics=METRICS,
        resource="epoch",
        max_resource=epochs,
        num_configs=n_configs,
        reference_device={
            "name": f"{platform.processor() or platform.machine()} CPU, 1 thread",
            "timer": "process_time (CPU seconds)",
            "note": "catalog pools' relativeThroughput is relative to this device",
        },
        memory_model={
            "formula": ("overheadGiB + (params*bytesPerFloat*(2+optimizerSlots) + batch_size*activationFloats"
                        "*bytesPerFloat*activationFactor*workloadScale) / 2^30"),
            "workloadScale": WORKLOAD_SCALE,
            "bytesPerFloat": BYTES_PER_FLOAT,
            "activationFactor": ACTIVATION_FACTOR,
            "overheadGiB": OVERHEAD_GIB,
            "optimizerSlots": OPTIMIZER_SLOTS,
            "activationFloats": "outputs of every Linear/Conv2d layer for one sample",
            "meaning": "memory to train the virtual workload with the whole batch on one GPU",
        },
        generator={"script": "benchmarks/make_table.py", "configStreamSeed": CONFIG_STREAM_SEED,
                   "torch": torch.__version__, "sklearn": sklearn.__version__},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size (24 configs x 2 seeds x 12 epochs)")
    parser.add_argument("--name", help="table name (default: digits or digits-quick)")
    parser.add_argument("--configs", type=int, help="number of configs (overrides the size)")
    parser.add_argument("--epochs", type=int, help="epochs per run (overrides the size)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (overrides the size)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2: both cores)")
    parser.add_argument("--out", type=Path, help="output file (default: the cache, see --name)")
    args = parser.parse_args(argv)

    n_configs, seeds, epochs = SIZES["quick" if args.quick else "default"]
    n_configs = args.configs or n_configs
    seeds = tuple(args.seeds) if args.seeds else seeds
    epochs = args.epochs or epochs
    if n_configs < 1 or epochs < 1 or args.workers < 1:
        parser.error("--configs, --epochs and --workers must be >= 1")
    name = args.name or ("digits-quick" if args.quick else "digits")
    path = args.out or default_table_path(name)

    configs = sample_configs(n_configs)
    writer = TableWriter(path, make_header(name, n_configs, seeds, epochs))
    tasks = [(cid, seed, cfg, epochs) for cid, cfg in enumerate(configs) for seed in seeds
             if not writer.has(cid, seed)]
    print(f"table {name}: {path}; {n_configs} configs x {len(seeds)} seeds x {epochs} epochs; "
          f"{len(tasks)} runs to do ({len(writer.done)} already there); {args.workers} workers",
          file=sys.stderr, flush=True)
    start, done = time.monotonic(), 0
    ctx = mp.get_context("spawn")  # a clean interpreter per worker: no inherited torch threads
    with ctx.Pool(args.workers, initializer=_init_worker) as pool:
        for cid, seed, curves, wall in pool.imap_unordered(train_run, tasks, chunksize=1):
            cfg = configs[cid]
            writer.append(TableRun(cid, seed, cfg, memory_gib(cfg), curves))
            done += 1
            elapsed = time.monotonic() - start
            eta = elapsed / done * (len(tasks) - done)
            print(f"[{done}/{len(tasks)}] config {cid} seed {seed}: val_error {curves['val_error'][-1]:.3f}, "
                  f"cpu {sum(curves[RUNTIME_METRIC]):.1f}s, wall {wall:.1f}s; elapsed {elapsed:.0f}s, eta {eta:.0f}s",
                  file=sys.stderr, flush=True)
    print(f"done in {time.monotonic() - start:.0f}s: {path}", file=sys.stderr, flush=True)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

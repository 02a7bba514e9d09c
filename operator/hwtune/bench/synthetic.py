"""A synthetic benchmark table: plausible learning curves from a closed formula, no training.

For tests and for trying the benchmark machinery in a second; never for quality claims (use a
table made by benchmarks/make_table.py). The shape mimics real tables: the error decays
exponentially to a floor that depends on the learning rate's distance from a sweet spot and on
the width; wide nets and small batches are slower per epoch; memory grows with batch x width.
"""

from __future__ import annotations

import math

import numpy as np

from hwtune.bench.table import RUNTIME_METRIC, BenchmarkTable, TableHeader, TableRun

__all__ = ["synthetic_table"]

SYNTHETIC_PARAMETERS = {
    "lr": {"type": "float", "min": 1.0e-4, "max": 1.0, "scale": "log"},
    "batch_size": {"type": "int", "values": [32, 64, 128, 256]},
    "width": {"type": "int", "values": [16, 64, 256]},
    "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
}


def synthetic_table(n_configs: int = 30, seeds: tuple[int, ...] = (0, 1), epochs: int = 9,
                    *, seed: int = 0, name: str = "synthetic") -> BenchmarkTable:
    if n_configs < 1 or epochs < 1 or not seeds:
        raise ValueError("n_configs and epochs must be >= 1 and seeds non-empty")
    rng = np.random.default_rng(seed)
    runs: list[TableRun] = []
    seen: set[tuple] = set()
    cid = 0
    while cid < n_configs:
        cfg = {
            "lr": float(f"{math.exp(rng.uniform(math.log(1e-4), 0.0)):.4g}"),
            "batch_size": int(rng.choice(SYNTHETIC_PARAMETERS["batch_size"]["values"])),
            "width": int(rng.choice(SYNTHETIC_PARAMETERS["width"]["values"])),
            "optimizer": str(rng.choice(["sgd", "adam"])),
        }
        key = tuple(cfg.values())
        if key in seen:
            continue
        seen.add(key)
        sweet = math.log10(3e-3 if cfg["optimizer"] == "adam" else 3e-2)
        floor = 0.02 + 0.12 * abs(math.log10(cfg["lr"]) - sweet) + 0.04 * (256 / cfg["width"]) ** 0.3
        floor = min(floor, 0.85)
        tau = 1.0 + 6.0 * cfg["batch_size"] / 256
        per_epoch = 0.002 * cfg["width"] ** 0.7 * (64 / cfg["batch_size"]) ** 0.4
        memory = 0.5 + cfg["batch_size"] * cfg["width"] / 1000.0
        for s in seeds:
            noise = np.random.default_rng([seed, cid, s])
            e = np.arange(1, epochs + 1)
            err = floor + (0.9 - floor) * np.exp(-e / tau) + noise.normal(0, 0.01, epochs)
            err = np.clip(err, 0.0, 1.0)
            loss = -np.log(np.clip(1 - err, 1e-3, 1.0)) + 0.05
            runtime = per_epoch * (1 + noise.normal(0, 0.02, epochs))
            runs.append(TableRun(cid, int(s), cfg, memory, {
                "val_error": err.tolist(), "val_loss": loss.tolist(),
                RUNTIME_METRIC: np.abs(runtime).tolist()}))
        cid += 1
    header = TableHeader(
        name=name, parameters=SYNTHETIC_PARAMETERS, seeds=tuple(int(s) for s in seeds),
        metrics={"val_error": {"unit": "fraction", "goal": "minimize"},
                 "val_loss": {"unit": "nats", "goal": "minimize"},
                 RUNTIME_METRIC: {"unit": "s", "goal": "minimize"}},
        max_resource=epochs, num_configs=n_configs,
        reference_device={"name": "synthetic"}, description="closed-form synthetic curves",
    )
    return BenchmarkTable(header, runs, source=f"<synthetic {name}>")

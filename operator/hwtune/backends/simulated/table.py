"""What the simulated backend needs of a benchmark table, and a small in-memory table.

``TableProtocol`` is the contract; ``hwtune.bench.table.BenchmarkTable`` (recorded curves of
real training) satisfies it, and so does ``InMemoryTable`` here (tests, synthetic benchmarks).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from hwtune.space import SearchSpace, config_key

__all__ = ["MEMORY_KEY", "RUNTIME_KEY", "InMemoryTable", "TableProtocol", "synthetic_table"]

# Seconds one epoch takes on the reference device (relative throughput 1.0).
RUNTIME_KEY = "epoch_runtime"
# GiB the config needs with its whole batch on one device (optional).
MEMORY_KEY = "memory_gib"


@runtime_checkable
class TableProtocol(Protocol):
    """A benchmark table: metrics of each config after each epoch, for a few seeds.

    ``lookup(config, epoch, seed)`` takes a config (a mapping equal to one of ``configs()``, or
    its index), an epoch in 1..max and any integer seed (tables map it onto a recorded seed), and
    returns the metrics after that epoch, including ``RUNTIME_KEY`` and optionally ``MEMORY_KEY``.
    Raise ``KeyError`` for a config the table does not hold."""

    @property
    def seeds(self) -> Sequence[int]: ...

    def configs(self) -> Sequence[Mapping[str, Any]]: ...

    def lookup(self, config: Any, epoch: int, seed: int) -> Mapping[str, float]: ...


class InMemoryTable:
    """A table from plain rows: ``{"config": {...}, "metrics": {name: [value per epoch]},
    "epoch_runtime": seconds or [seconds per epoch], "memory_gib": GiB (optional)}``.
    ``noise`` adds seeded Gaussian noise of that standard deviation to every metric value, so
    seeds differ like repeated training runs do."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], *, seeds: Sequence[int] = (0,),
                 noise: float = 0.0) -> None:
        if not rows:
            raise ValueError("a table needs at least one row")
        if not seeds:
            raise ValueError("a table needs at least one seed")
        self._seeds = tuple(int(s) for s in seeds)
        self.noise = float(noise)
        self._configs: list[dict[str, Any]] = []
        self._index: dict[tuple, int] = {}
        self._metrics: list[dict[str, np.ndarray]] = []
        self._runtime: list[np.ndarray] = []
        self._memory: list[float | None] = []
        max_resource = None
        for i, row in enumerate(rows):
            config = dict(row["config"])
            key = config_key(config)
            if key in self._index:
                raise ValueError(f"rows[{i}]: config {config} appears twice")
            metrics = {k: np.asarray(v, dtype=float) for k, v in row["metrics"].items()}
            lengths = {len(v) for v in metrics.values()}
            if len(lengths) != 1:
                raise ValueError(f"rows[{i}]: every metric needs the same number of epochs")
            epochs = lengths.pop()
            if max_resource is None:
                max_resource = epochs
            elif epochs != max_resource:
                raise ValueError(f"rows[{i}]: has {epochs} epochs, earlier rows have {max_resource}")
            runtime = row["epoch_runtime"]
            runtime = np.full(epochs, float(runtime)) if np.isscalar(runtime) else np.asarray(runtime, float)
            if runtime.shape != (epochs,) or (runtime < 0).any():
                raise ValueError(f"rows[{i}]: epoch_runtime must be >= 0, one value or one per epoch")
            self._index[key] = len(self._configs)
            self._configs.append(config)
            self._metrics.append(metrics)
            self._runtime.append(runtime)
            self._memory.append(None if row.get("memory_gib") is None else float(row["memory_gib"]))
        assert max_resource is not None
        self.max_resource = max_resource
        # Noise drawn once per (seed, config, epoch, metric): lookups stay cheap and repeatable.
        self._noise: list[list[dict[str, np.ndarray]]] | None = None
        if self.noise:
            rng = np.random.default_rng(len(self._configs))
            self._noise = [[{k: self.noise * rng.standard_normal(max_resource) for k in sorted(m)}
                            for m in self._metrics] for _ in self._seeds]

    @property
    def seeds(self) -> tuple[int, ...]:
        return self._seeds

    def configs(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self._configs]

    def __len__(self) -> int:
        return len(self._configs)

    def index_of(self, config: Any) -> int:
        if isinstance(config, (int, np.integer)) and not isinstance(config, bool):
            if not 0 <= config < len(self._configs):
                raise KeyError(f"config index {config} out of range")
            return int(config)
        try:
            return self._index[config_key(config)]
        except KeyError:
            raise KeyError(f"config {dict(config)!r} is not in the table") from None

    def lookup(self, config: Any, epoch: int, seed: int = 0) -> dict[str, float]:
        i = self.index_of(config)
        if not 1 <= epoch <= self.max_resource:
            raise ValueError(f"epoch must be in 1..{self.max_resource}, got {epoch}")
        out = {k: float(v[epoch - 1]) for k, v in self._metrics[i].items()}
        if self._noise is not None:
            noise = self._noise[int(seed) % len(self._seeds)][i]
            out = {k: v + float(noise[k][epoch - 1]) for k, v in out.items()}
        out[RUNTIME_KEY] = float(self._runtime[i][epoch - 1])
        if self._memory[i] is not None:
            out[MEMORY_KEY] = float(self._memory[i])  # type: ignore[arg-type]
        return out


def synthetic_table(space: SearchSpace, n_configs: int, max_epochs: int, *, seed: int = 0,
                    seeds: Sequence[int] = (0, 1, 2), noise: float = 0.005) -> InMemoryTable:
    """A plausible table without training anything: each config gets a learning curve
    ``err(e) = floor + (start - floor) * e ** -rate`` with config-dependent floor, start and
    rate, an epoch runtime between 1 and 30 reference seconds, and a memory need between 0.5
    and 60 GiB. For benchmarks of the engine itself, not of algorithms' quality."""
    rng = np.random.default_rng(seed)
    rows = []
    seen: set[tuple] = set()
    attempts = 0
    while len(rows) < n_configs:
        attempts += 1
        if attempts > 50 * n_configs:
            raise ValueError(f"the space holds fewer than {n_configs} distinct configs")
        config = space.sample(rng)
        key = config_key(config)
        if key in seen:
            continue
        seen.add(key)
        x = space.encode(config)
        w = rng.standard_normal(len(x))
        quality = 1.0 / (1.0 + math.exp(-float(x @ w)))  # 0..1, smooth in the config
        floor = 0.02 + 0.5 * (1 - quality) * rng.uniform(0.5, 1.0)
        start = min(0.95, floor + rng.uniform(0.2, 0.6))
        rate = rng.uniform(0.3, 1.5)
        epochs = np.arange(1, max_epochs + 1, dtype=float)
        curve = floor + (start - floor) * epochs ** -rate
        rows.append({
            "config": config,
            "metrics": {"val_error": np.clip(curve, 0.0, 1.0).tolist()},
            "epoch_runtime": float(rng.uniform(1.0, 30.0)),
            "memory_gib": float(math.exp(rng.uniform(math.log(0.5), math.log(60.0)))),
        })
    return InMemoryTable(rows, seeds=seeds, noise=noise)

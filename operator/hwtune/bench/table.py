"""Benchmark tables: recorded learning curves that the simulated backend replays.

A table is a JSON-lines file (format ``hwtune-table``, version 1; full description in
docs/benchmark-table.md). Line 1 is a header naming the search space (same shape as a study's
``spec.parameters``), the fidelity (resource name, 1..max), the seeds, the metrics with units and
goals, the reference device the runtimes were measured on and the memory model. Every other line
is one (config, seed) run: the config, its memory estimate, and one value per epoch for every
metric. Lines may come in any order; a config is complete when every seed is present.

The loader validates everything once and keeps the curves in one dense numpy array, so a lookup
is an index, not a parse: the simulated backend asks for millions of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from hwtune.api.records import BUILTIN_METRICS

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MEMORY_FIELD",
    "RUNTIME_METRIC",
    "BenchmarkTable",
    "TableFormatError",
    "TableHeader",
    "TableRun",
    "TableWriter",
    "config_key",
    "default_table_path",
    "load_table",
]

FORMAT_NAME = "hwtune-table"
FORMAT_VERSION = 1
# Seconds one epoch took on the reference device; the hardware model divides it by a pool's
# relative throughput (and GPU-count speedup) to get the simulated runtime.
RUNTIME_METRIC = "epoch_runtime"
# Per-config estimate of the GPU memory (GiB) the trial needs with its whole batch on one device.
MEMORY_FIELD = "memory_gib"

_PARAM_TYPES = ("float", "int", "categorical")


class TableFormatError(ValueError):
    """The table file or its contents break the format; the message names where and why."""


def default_table_path(name: str, fmt: str = "jsonl") -> Path:
    """``${HWTUNE_CACHE_DIR:-~/.cache/hwtune}/tables/<name>.<fmt>``: tables are never in git."""
    root = os.environ.get("HWTUNE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hwtune")
    return Path(root) / "tables" / f"{name}.{fmt}"


def config_key(config: Mapping[str, Any]) -> str:
    """Canonical text of a config (sorted keys, floats as repr) used to find it in a table."""
    return json.dumps({k: _plain(v) for k, v in config.items()}, sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> Any:
    # numpy scalars and ints-stored-as-floats must match the JSON the table was written with
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return value


# --------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True)
class TableHeader:
    """Line 1 of a table: everything about the table except the runs."""

    name: str
    parameters: Mapping[str, Mapping[str, Any]]
    seeds: tuple[int, ...]
    metrics: Mapping[str, Mapping[str, Any]]  # name -> {unit, goal, description}
    resource: str = "epoch"
    max_resource: int = 1
    num_configs: int | None = None  # how many configs the generator meant to write
    reference_device: Mapping[str, Any] = field(default_factory=dict)
    memory_model: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    generator: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "fidelity": {"resource": self.resource, "min": 1, "max": self.max_resource},
            "seeds": list(self.seeds),
            "metrics": {k: dict(v) for k, v in self.metrics.items()},
            "numConfigs": self.num_configs,
            "referenceDevice": dict(self.reference_device),
            "memoryModel": dict(self.memory_model),
            "generator": dict(self.generator),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "header") -> "TableHeader":
        if not isinstance(data, dict):
            raise TableFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_NAME:
            raise TableFormatError(f"{where}.format: expected {FORMAT_NAME!r}, got {data.get('format')!r}")
        if data.get("version") != FORMAT_VERSION:
            raise TableFormatError(
                f"{where}.version: this hwtune reads version {FORMAT_VERSION}, got {data.get('version')!r}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise TableFormatError(f"{where}.name: must be a non-empty string")
        parameters = data.get("parameters")
        _validate_parameters(parameters, f"{where}.parameters")
        fidelity = data.get("fidelity")
        if not isinstance(fidelity, dict):
            raise TableFormatError(f"{where}.fidelity: must be an object with resource and max")
        resource = fidelity.get("resource", "epoch")
        if not isinstance(resource, str) or not resource:
            raise TableFormatError(f"{where}.fidelity.resource: must be a non-empty string")
        if fidelity.get("min", 1) != 1:
            raise TableFormatError(f"{where}.fidelity.min: tables record every level from 1, got {fidelity.get('min')!r}")
        max_resource = fidelity.get("max")
        if not _is_int(max_resource) or max_resource < 1:
            raise TableFormatError(f"{where}.fidelity.max: must be an integer >= 1, got {max_resource!r}")
        seeds = data.get("seeds")
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s) for s in seeds):
            raise TableFormatError(f"{where}.seeds: must be a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise TableFormatError(f"{where}.seeds: duplicates in {seeds!r}")
        metrics = data.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise TableFormatError(f"{where}.metrics: must be a non-empty object of metric name -> description")
        for mname, meta in metrics.items():
            if not isinstance(meta, dict):
                raise TableFormatError(f"{where}.metrics.{mname}: must be an object with unit and goal")
            if meta.get("goal", "minimize") not in ("minimize", "maximize"):
                raise TableFormatError(
                    f"{where}.metrics.{mname}.goal: must be minimize or maximize, got {meta.get('goal')!r}")
        clash = [m for m in metrics if m in BUILTIN_METRICS]
        if clash:
            raise TableFormatError(
                f"{where}.metrics.{clash[0]}: named like hwtune's built-in {clash[0]!r} (measured "
                "by the backend from the epoch runtimes), so it would be silently replaced; "
                "rename it")
        if RUNTIME_METRIC not in metrics:
            raise TableFormatError(
                f"{where}.metrics: must include {RUNTIME_METRIC!r} (seconds per epoch on the reference device)")
        num_configs = data.get("numConfigs")
        if num_configs is not None and (not _is_int(num_configs) or num_configs < 1):
            raise TableFormatError(f"{where}.numConfigs: must be an integer >= 1 or absent, got {num_configs!r}")
        return cls(
            name=name,
            parameters=parameters,
            seeds=tuple(int(s) for s in seeds),
            metrics=metrics,
            resource=resource,
            max_resource=int(max_resource),
            num_configs=num_configs,
            reference_device=data.get("referenceDevice") or {},
            memory_model=data.get("memoryModel") or {},
            description=data.get("description") or "",
            generator=data.get("generator") or {},
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate_parameters(parameters: Any, where: str) -> None:
    """The table's space in the study-spec shape; only what the table needs is checked here
    (the engine's space parser checks the rest when a study uses it)."""
    if not isinstance(parameters, dict) or not parameters:
        raise TableFormatError(f"{where}: must be a non-empty object of parameter name -> domain")
    for pname, dom in parameters.items():
        if not isinstance(dom, dict):
            raise TableFormatError(f"{where}.{pname}: must be an object with a type")
        ptype = dom.get("type")
        if ptype not in _PARAM_TYPES:
            raise TableFormatError(f"{where}.{pname}.type: must be one of {', '.join(_PARAM_TYPES)}, got {ptype!r}")
        if ptype == "categorical" or "values" in dom:
            values = dom.get("values")
            if not isinstance(values, list) or not values:
                raise TableFormatError(f"{where}.{pname}.values: must be a non-empty list")
        else:
            lo, hi = dom.get("min"), dom.get("max")
            if not _is_number(lo) or not _is_number(hi) or not lo < hi:
                raise TableFormatError(f"{where}.{pname}: needs numbers min < max, got min={lo!r} max={hi!r}")
            if dom.get("scale", "linear") == "log" and lo <= 0:
                raise TableFormatError(f"{where}.{pname}.min: a log scale needs min > 0, got {lo!r}")


# --------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class TableRun:
    """One line after the header: config ``config_id`` trained with ``seed``."""

    config_id: int
    seed: int
    config: Mapping[str, Any]
    memory_gib: float
    metrics: Mapping[str, Sequence[float]]  # metric -> one value per resource level 1..max

    def to_json(self) -> dict[str, Any]:
        return {
            "configId": self.config_id,
            "seed": self.seed,
            "config": {k: _plain(v) for k, v in self.config.items()},
            MEMORY_FIELD: round(float(self.memory_gib), 6),
            "metrics": {k: [_round(v) for v in vals] for k, vals in self.metrics.items()},
        }


def _round(value: float) -> float:
    # 7 significant digits keeps a 50-epoch x 3-seed x 300-config table near 10 MB
    return float(f"{float(value):.7g}")


def _parse_run(data: Any, header: TableHeader, where: str) -> TableRun:
    if not isinstance(data, dict):
        raise TableFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
    cid = data.get("configId")
    if not _is_int(cid) or cid < 0:
        raise TableFormatError(f"{where}.configId: must be an integer >= 0, got {cid!r}")
    seed = data.get("seed")
    if not _is_int(seed) or seed not in header.seeds:
        raise TableFormatError(f"{where}.seed: must be one of the header's seeds {list(header.seeds)}, got {seed!r}")
    config = data.get("config")
    if not isinstance(config, dict):
        raise TableFormatError(f"{where}.config: must be an object")
    lacking = [p for p in header.parameters if p not in config]
    if lacking:
        raise TableFormatError(f"{where}.config: missing parameter {lacking[0]!r} of the header "
                               f"(every run holds all of {', '.join(header.parameters)})")
    for pname, value in config.items():
        if pname not in header.parameters:
            raise TableFormatError(f"{where}.config.{pname}: not a parameter of the header")
        _check_in_domain(pname, value, header.parameters[pname], f"{where}.config.{pname}")
    memory = data.get(MEMORY_FIELD)
    if not _is_number(memory) or memory < 0:
        raise TableFormatError(f"{where}.{MEMORY_FIELD}: must be a finite number >= 0 (GiB), got {memory!r}")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise TableFormatError(f"{where}.metrics: must be an object of metric -> list of values")
    missing = [m for m in header.metrics if m not in metrics]
    if missing:
        raise TableFormatError(f"{where}.metrics: missing {', '.join(missing)}")
    for mname, values in metrics.items():
        if mname not in header.metrics:
            raise TableFormatError(f"{where}.metrics.{mname}: not declared in the header's metrics")
        if not isinstance(values, list) or len(values) != header.max_resource:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise TableFormatError(
                f"{where}.metrics.{mname}: needs {header.max_resource} values (one per "
                f"{header.resource} 1..{header.max_resource}), got {got}")
        for i, v in enumerate(values):
            if not _is_number(v):
                raise TableFormatError(
                    f"{where}.metrics.{mname}[{i}] ({header.resource} {i + 1}): must be a finite number, got {v!r}")
    if any(v < 0 for v in metrics[RUNTIME_METRIC]):
        raise TableFormatError(f"{where}.metrics.{RUNTIME_METRIC}: seconds must be >= 0")
    if all(v == 0 for v in metrics[RUNTIME_METRIC]):
        # Epochs that take no time never move the simulated clock: deadlines and speedups
        # would mean nothing.
        raise TableFormatError(f"{where}.metrics.{RUNTIME_METRIC}: every epoch takes 0 seconds; "
                               "record the measured seconds per epoch")
    return TableRun(cid, seed, config, float(memory), metrics)


def _check_in_domain(pname: str, value: Any, dom: Mapping[str, Any], where: str) -> None:
    if "values" in dom:
        if _plain(value) not in [_plain(v) for v in dom["values"]]:
            raise TableFormatError(f"{where}: {value!r} is not one of {dom['values']!r}")
        return
    if not _is_number(value):
        raise TableFormatError(f"{where}: must be a number, got {value!r}")
    if dom["type"] == "int" and not float(value).is_integer():
        raise TableFormatError(f"{where}: must be an integer, got {value!r}")
    if not dom["min"] <= value <= dom["max"]:
        raise TableFormatError(f"{where}: {value!r} is outside [{dom['min']}, {dom['max']}]")


# --------------------------------------------------------------------------------------------
# The loaded table


class BenchmarkTable:
    """A validated table in memory. Satisfies the simulated backend's table protocol:
    ``configs()``, ``lookup(config, epoch, seed)``, plus the space, fidelity and seeds."""

    def __init__(self, header: TableHeader, runs: Iterable[TableRun], *, source: str = "<memory>",
                 allow_incomplete: bool = False):
        self.header = header
        self.source = source
        by_config: dict[int, dict[int, TableRun]] = {}
        for run in runs:
            seeds = by_config.setdefault(run.config_id, {})
            if run.seed in seeds:
                raise TableFormatError(f"{source}: config {run.config_id} seed {run.seed} appears twice")
            first = next(iter(seeds.values()), None)
            if first is not None and config_key(first.config) != config_key(run.config):
                raise TableFormatError(
                    f"{source}: config {run.config_id} has different configs for seeds {first.seed} and {run.seed}")
            seeds[run.seed] = run
        complete = sorted(cid for cid, s in by_config.items() if len(s) == len(header.seeds))
        incomplete = sorted(set(by_config) - set(complete))
        if incomplete and not allow_incomplete:
            cid = incomplete[0]
            lacking = sorted(set(header.seeds) - set(by_config[cid]))
            raise TableFormatError(
                f"{source}: {len(incomplete)} config(s) lack seeds (e.g. config {cid} lacks seeds {lacking}); "
                "finish the generation or load with allow_incomplete=True to drop them")
        if not complete:
            raise TableFormatError(f"{source}: no config has a run for every seed {list(header.seeds)}")
        self.metric_names: tuple[str, ...] = tuple(header.metrics)
        self._metric_index = {m: i for i, m in enumerate(self.metric_names)}
        # Config ids in the file may have gaps (dropped incomplete configs); the table indexes
        # its configs densely 0..n-1 and keeps the file's id for reference.
        self.config_ids: tuple[int, ...] = tuple(complete)
        self._configs = [dict(by_config[cid][header.seeds[0]].config) for cid in complete]
        self._index_by_key: dict[str, int] = {}
        for i, cfg in enumerate(self._configs):
            key = config_key(cfg)
            if key in self._index_by_key:
                raise TableFormatError(
                    f"{source}: configs {self.config_ids[self._index_by_key[key]]} and {self.config_ids[i]} are identical")
            self._index_by_key[key] = i
        self._seed_index = {s: j for j, s in enumerate(header.seeds)}
        n, s, e, m = len(complete), len(header.seeds), header.max_resource, len(self.metric_names)
        self._curves = np.empty((n, s, e, m), dtype=np.float64)
        self._memory = np.empty(n, dtype=np.float64)
        for i, cid in enumerate(complete):
            self._memory[i] = by_config[cid][header.seeds[0]].memory_gib
            for seed, run in by_config[cid].items():
                j = self._seed_index[seed]
                for mname, values in run.metrics.items():
                    self._curves[i, j, :, self._metric_index[mname]] = values
        self.dropped_configs: tuple[int, ...] = tuple(incomplete)
        self._encoded: np.ndarray | None = None

    # -- protocol --------------------------------------------------------------------------
    def configs(self) -> list[dict[str, Any]]:
        """Every config, index i = the table's config i."""
        return [dict(c) for c in self._configs]

    def config(self, index: int) -> dict[str, Any]:
        """A copy of config ``index``."""
        return dict(self._configs[self.index_of(index)])

    def lookup(self, config: int | Mapping[str, Any], epoch: int, seed: int = 0) -> dict[str, float]:
        """Metrics of ``config`` (index or mapping) after ``epoch`` (1-based) for ``seed``.
        Includes ``epoch_runtime`` (seconds of that epoch on the reference device) and
        ``memory_gib``. Seeds not in the table map to ``seeds[seed % len(seeds)]``, so any
        benchmark repetition seed replays one of the recorded runs."""
        i = self.index_of(config)
        if not _is_int(epoch) and not isinstance(epoch, np.integer):
            raise TypeError(f"epoch must be an integer, got {epoch!r}")
        if not 1 <= epoch <= self.header.max_resource:
            raise ValueError(f"epoch must be in 1..{self.header.max_resource}, got {epoch}")
        j = self._seed_slot(seed)
        row = self._curves[i, j, int(epoch) - 1]
        out = {m: float(row[k]) for k, m in enumerate(self.metric_names)}
        out[MEMORY_FIELD] = float(self._memory[i])
        return out

    # -- the rest --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.header.name

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.header.seeds

    @property
    def max_resource(self) -> int:
        return self.header.max_resource

    @property
    def resource(self) -> str:
        return self.header.resource

    def __len__(self) -> int:
        return len(self._configs)

    def space_spec(self) -> dict[str, dict[str, Any]]:
        """The search space in the study-spec shape (``spec.parameters``)."""
        return {k: dict(v) for k, v in self.header.parameters.items()}

    def fidelity_spec(self, reduction_factor: int = 3) -> dict[str, Any]:
        """The study-spec ``fidelity`` block matching this table."""
        return {"resource": self.header.resource, "min": 1, "max": self.header.max_resource,
                "reductionFactor": reduction_factor}

    def goal(self, metric: str) -> str:
        return str(self.header.metrics[metric].get("goal", "minimize"))

    def index_of(self, config: int | Mapping[str, Any]) -> int:
        if isinstance(config, (int, np.integer)) and not isinstance(config, bool):
            if not 0 <= config < len(self._configs):
                raise IndexError(f"config index {config} out of range 0..{len(self._configs) - 1}")
            return int(config)
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be an index or a mapping, got {type(config).__name__}")
        try:
            return self._index_by_key[config_key(config)]
        except KeyError:
            raise KeyError(
                f"config {dict(config)!r} is not in table {self.name!r}; use nearest_index() to map "
                "a config from the continuous space onto the table") from None

    def memory_gib(self, config: int | Mapping[str, Any]) -> float:
        return float(self._memory[self.index_of(config)])

    def curve(self, config: int | Mapping[str, Any], metric: str, seed: int = 0) -> np.ndarray:
        """All ``max_resource`` values of one metric (a view; do not modify)."""
        if metric not in self._metric_index:
            raise KeyError(f"metric {metric!r} not in table (has {', '.join(self.metric_names)})")
        return self._curves[self.index_of(config), self._seed_slot(seed), :, self._metric_index[metric]]

    def metric_array(self, metric: str) -> np.ndarray:
        """(configs, seeds, epochs) array of one metric (a view; do not modify)."""
        if metric not in self._metric_index:
            raise KeyError(f"metric {metric!r} not in table (has {', '.join(self.metric_names)})")
        return self._curves[..., self._metric_index[metric]]

    def memory_array(self) -> np.ndarray:
        return self._memory

    def nearest_index(self, config: Mapping[str, Any]) -> int:
        """The table config closest to ``config`` in the unit-cube encoding (log scales in log
        space, ordinals by position, categoricals as a mismatch of 1). Lets tuners that sample
        the continuous space (Optuna, Syne Tune) run on a table."""
        try:
            return self._index_by_key[config_key(config)]
        except KeyError:
            pass
        if self._encoded is None:
            self._encoded = np.array([self._encode(c) for c in self._configs])
        diff = np.abs(self._encoded - self._encode(config))
        return int(np.argmin((diff**2).sum(axis=1)))

    def _encode(self, config: Mapping[str, Any]) -> list[float]:
        vec = []
        for pname, dom in self.header.parameters.items():
            value = config.get(pname)
            if dom["type"] == "categorical":
                # one-hot, scaled so two different categories are distance 1 apart
                values = dom["values"]
                vec.extend(math.sqrt(0.5) * float(value == v) for v in values)
            elif "values" in dom:
                values = [float(v) for v in dom["values"]]
                pos = int(np.argmin([abs(float(value) - v) for v in values])) if value is not None else 0
                vec.append(pos / max(len(values) - 1, 1))
            else:
                lo, hi, v = float(dom["min"]), float(dom["max"]), float(value if value is not None else dom["min"])
                if dom.get("scale", "linear") == "log":
                    lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, dom["min"]))
                vec.append((v - lo) / (hi - lo))
        return vec

    def _seed_slot(self, seed: int) -> int:
        slot = self._seed_index.get(int(seed))
        return slot if slot is not None else int(seed) % len(self.header.seeds)

    def subset(self, config_indices: Sequence[int], name: str | None = None) -> "BenchmarkTable":
        """A table of some configs only (tests, quick runs)."""
        header = dataclasses.replace(self.header, name=name or self.header.name,
                                     num_configs=len(config_indices))
        return BenchmarkTable(header, (self._run(i, s) for i in config_indices for s in self.seeds),
                              source=self.source)

    def _run(self, i: int, seed: int) -> TableRun:
        j = self._seed_index[seed]
        return TableRun(i, seed, self._configs[i], float(self._memory[i]),
                        {m: self._curves[i, j, :, k].tolist() for k, m in enumerate(self.metric_names)})

    def runs(self) -> Iterator[TableRun]:
        for i in range(len(self)):
            for seed in self.seeds:
                yield self._run(i, seed)


# --------------------------------------------------------------------------------------------
# Files


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield lineno, line


def load_table(path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> BenchmarkTable:
    """Read and validate a table file. ``allow_incomplete`` drops configs that lack some seed
    (a generation still running) instead of failing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"benchmark table {path} does not exist (generate it with benchmarks/make_table.py)")
    lines = _read_lines(path)
    try:
        lineno, first = next(lines)
    except StopIteration:
        raise TableFormatError(f"{path}: empty file, expected a header line") from None
    header = TableHeader.from_json(_json(first, path, lineno), f"{path}:{lineno} header")
    runs = []
    for lineno, line in lines:
        try:
            data = _json(line, path, lineno)
        except TableFormatError:
            if allow_incomplete:
                continue  # a torn last line from an interrupted generator
            raise
        runs.append(_parse_run(data, header, f"{path}:{lineno}"))
    return BenchmarkTable(header, runs, source=str(path), allow_incomplete=allow_incomplete)


def _json(line: str, path: Path, lineno: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise TableFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None


class TableWriter:
    """Appends runs to a table file; a rerun with the same header skips runs already written,
    so an interrupted generation resumes where it stopped."""

    def __init__(self, path: str | os.PathLike[str], header: TableHeader, *, durable: bool = True):
        self.path = Path(path)
        self.header = header
        self.durable = durable  # fsync every run: a generation killed at any point loses one run at most
        self.done: set[tuple[int, int]] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._resume()
        else:
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(header.to_json(), separators=(",", ":")) + "\n")

    def _resume(self) -> None:
        with open(self.path, "rb") as fh:
            raw = fh.read()
        # drop a torn last line (the process was killed mid-write)
        keep = raw[: raw.rfind(b"\n") + 1]
        if len(keep) != len(raw):
            with open(self.path, "wb") as fh:
                fh.write(keep)
        lines = keep.decode("utf-8").splitlines()
        existing = TableHeader.from_json(json.loads(lines[0]), f"{self.path}:1 header")
        mine = self.header.to_json()
        theirs = existing.to_json()
        for key in ("parameters", "fidelity", "seeds", "metrics", "memoryModel"):
            if mine[key] != theirs[key]:
                raise TableFormatError(
                    f"{self.path}: exists with a different header ({key} differs); delete it or pick another name")
        for lineno, line in enumerate(lines[1:], start=2):
            if line.strip():
                run = _parse_run(json.loads(line), existing, f"{self.path}:{lineno}")
                self.done.add((run.config_id, run.seed))

    def has(self, config_id: int, seed: int) -> bool:
        return (config_id, seed) in self.done

    def append(self, run: TableRun) -> None:
        line = json.dumps(run.to_json(), separators=(",", ":"))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            if self.durable:
                fh.flush()
                os.fsync(fh.fileno())
        self.done.add((run.config_id, run.seed))

    @classmethod
    def write_all(cls, path: str | os.PathLike[str], table: BenchmarkTable) -> Path:
        """Write a whole in-memory table to a fresh file."""
        path = Path(path)
        if path.exists():
            path.unlink()
        writer = cls(path, table.header, durable=False)
        for run in table.runs():
            writer.append(run)
        return path

"""Hardware: the pool catalog, the hardware dimension of the search space, and the model that
turns work into runtime, memory fit and cost.

- ``PoolSpec``: one HardwarePool (GPU type and memory, GPUs per node, price, relative speed,
  scheduling hints). ``DEFAULT_CATALOG`` holds t4, a100, h100 and cpu.
- ``HardwareSpace``: the (pool, GPU count) choices a study searches over, from ``spec.hardware``.
- ``HardwareModel``: runtime, memory fit, cost and GPU-hours of a trial on a choice.

The model (documented for users in the same words):

- speedup(pool, n) = relative_throughput(pool) * n * scaling_efficiency ** log2(n); with the
  default efficiency 0.9, 2 GPUs give 1.8x, 4 give 3.24x, 8 give 5.83x the one-GPU speed.
- runtime = seconds on the reference device / speedup. The reference device (relative
  throughput 1.0) is the one benchmark tables and the local backend measured on; the catalog
  treats it as a T4.
- memory: a trial's ``memory_gib`` need is for its whole batch on one device; data parallelism
  splits the batch, so each of n GPUs needs memory_gib / n. It must fit the pool's GPU memory,
  otherwise the trial fails as out of memory. Without a table value, the need is estimated as
  ``fixed_memory_gib + batch_size * per_sample_memory_gib`` when both are configured.
- cost = runtime in hours * (price per GPU-hour * n, or price per node-hour * ceil(n / GPUs per
  node)): what the cloud bills for the GPUs or whole nodes held while the trial runs.
- GPU-hours = runtime in hours * n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware
from hwtune.space.errors import SpecError, join_key, join_path

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_POOL",
    "DEFAULT_SCALING_EFFICIENCY",
    "REFERENCE_POOL",
    "HardwareModel",
    "HardwareSpace",
    "OutOfMemory",
    "PoolSpec",
    "catalog_from_specs",
    "resolve_hardware",
]

# Where trials run when a study has no ``hardware`` block (TrialRecord.hardware is then None).
DEFAULT_POOL = "default"
DEFAULT_SCALING_EFFICIENCY = 0.9

# camelCase spec key -> PoolSpec attribute
_POOL_FIELDS = {
    "gpuType": "gpu_type",
    "gpuMemoryGiB": "gpu_memory_gib",
    "gpusPerNode": "gpus_per_node",
    "pricePerGPUHour": "price_per_gpu_hour",
    "pricePerNodeHour": "price_per_node_hour",
    "relativeThroughput": "relative_throughput",
    "nodeSelector": "node_selector",
    "tolerations": "tolerations",
    "maxNodes": "max_nodes",
}


def _number(value: Any, path: str, *, positive: bool = False, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(path, f"must be a finite number, got {value!r}")
    if integer and (not float(value).is_integer() or value < 1):
        raise SpecError(path, f"must be an integer >= 1, got {value!r}")
    if positive and value <= 0:
        raise SpecError(path, f"must be > 0, got {value!r}")
    if value < 0:
        raise SpecError(path, f"must be >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class PoolSpec:
    """One pool of identical nodes. Exactly one of the two prices is set."""

    gpu_type: str
    gpu_memory_gib: float
    gpus_per_node: int = 1
    price_per_gpu_hour: float | None = None
    price_per_node_hour: float | None = None
    relative_throughput: float = 1.0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    max_nodes: int | None = None

    def __post_init__(self) -> None:
        self._check("")

    def _check(self, path: str) -> None:
        if not isinstance(self.gpu_type, str) or not self.gpu_type:
            raise SpecError(join_path(path, "gpuType"), f"must be a non-empty string, got {self.gpu_type!r}")
        if not (isinstance(self.gpu_memory_gib, (int, float)) and not isinstance(self.gpu_memory_gib, bool)
                and self.gpu_memory_gib > 0):
            raise SpecError(join_path(path, "gpuMemoryGiB"), f"must be > 0, got {self.gpu_memory_gib!r}")
        _number(self.gpus_per_node, join_path(path, "gpusPerNode"), integer=True)
        object.__setattr__(self, "gpus_per_node", int(self.gpus_per_node))
        if (self.price_per_gpu_hour is None) == (self.price_per_node_hour is None):
            raise SpecError(join_path(path, "pricePerGPUHour"),
                            "set exactly one of pricePerGPUHour and pricePerNodeHour")
        if self.price_per_gpu_hour is not None:
            _number(self.price_per_gpu_hour, join_path(path, "pricePerGPUHour"))
        if self.price_per_node_hour is not None:
            _number(self.price_per_node_hour, join_path(path, "pricePerNodeHour"))
        _number(self.relative_throughput, join_path(path, "relativeThroughput"), positive=True)
        if not isinstance(self.node_selector, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.node_selector.items()):
            raise SpecError(join_path(path, "nodeSelector"), "must be a map of string -> string")
        if not isinstance(self.tolerations, (list, tuple)) or not all(
                isinstance(t, Mapping) for t in self.tolerations):
            raise SpecError(join_path(path, "tolerations"), "must be a list of toleration maps")
        object.__setattr__(self, "tolerations", tuple(self.tolerations))
        if self.max_nodes is not None:
            _number(self.max_nodes, join_path(path, "maxNodes"), integer=True)
            object.__setattr__(self, "max_nodes", int(self.max_nodes))

    @classmethod
    def from_spec(cls, spec: Any, path: str = "spec") -> "PoolSpec":
        """Parse a HardwarePool ``spec`` (camelCase keys)."""
        if not isinstance(spec, Mapping):
            raise SpecError(path, f"must be a map, got {type(spec).__name__}")
        unknown = sorted(str(k) for k in spec if k not in _POOL_FIELDS)
        if unknown:
            raise SpecError(join_path(path, unknown[0]), f"unknown field (known: {', '.join(_POOL_FIELDS)})")
        for required in ("gpuType", "gpuMemoryGiB"):
            if required not in spec:
                raise SpecError(join_path(path, required), "is required")
        kwargs = {_POOL_FIELDS[k]: v for k, v in spec.items() if v is not None}
        return _build(kwargs, path)

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, attr in _POOL_FIELDS.items():
            value = getattr(self, attr)
            if value is None or (attr in ("node_selector", "tolerations") and not value):
                continue
            out[key] = list(value) if attr == "tolerations" else (dict(value) if attr == "node_selector" else value)
        return out

    def with_overrides(self, overrides: Any, path: str) -> "PoolSpec":
        """This pool with some fields replaced (a study's ``hardware.overrides.<pool>``). Setting
        one price clears the other."""
        if not isinstance(overrides, Mapping):
            raise SpecError(path, f"must be a map of pool fields, got {type(overrides).__name__}")
        unknown = sorted(str(k) for k in overrides if k not in _POOL_FIELDS)
        if unknown:
            raise SpecError(join_path(path, unknown[0]), f"unknown field (known: {', '.join(_POOL_FIELDS)})")
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        if "pricePerGPUHour" in overrides:
            kwargs["price_per_node_hour"] = None
        if "pricePerNodeHour" in overrides:
            kwargs["price_per_gpu_hour"] = None
        kwargs.update({_POOL_FIELDS[k]: v for k, v in overrides.items()})
        return _build(kwargs, path)

    def nodes_for(self, gpu_count: int) -> int:
        return math.ceil(gpu_count / self.gpus_per_node)

    def price_per_hour(self, gpu_count: int) -> float:
        """What holding ``gpu_count`` GPUs of this pool costs per hour."""
        if self.price_per_gpu_hour is not None:
            return self.price_per_gpu_hour * gpu_count
        assert self.price_per_node_hour is not None
        return self.price_per_node_hour * self.nodes_for(gpu_count)


def _build(kwargs: dict[str, Any], path: str) -> PoolSpec:
    try:
        return PoolSpec(**kwargs)
    except SpecError as exc:
        raise SpecError(join_path(path, exc.path) if exc.path else path, exc.reason) from None


# Rough public on-demand prices (AWS us-east-1, per GPU) and training throughput relative to a T4
# for mid-sized vision/language models in mixed precision. They are defaults for a model, not
# quotes: studies override them (hardware.overrides) and clusters declare HardwarePools.
DEFAULT_CATALOG: Mapping[str, PoolSpec] = {
    # g4dn.xlarge: 1x T4 16 GB, $0.526/h. The reference device (throughput 1.0).
    "t4": PoolSpec(gpu_type="nvidia-tesla-t4", gpu_memory_gib=16, gpus_per_node=1,
                   price_per_gpu_hour=0.53, relative_throughput=1.0),
    # p4d/p4de.24xlarge: 8x A100, $32.77/h list price = $4.10 per GPU-hour; an A100 trains
    # roughly 4x faster than a T4 (TF32/bf16 tensor cores, 5x the memory bandwidth).
    "a100": PoolSpec(gpu_type="nvidia-a100-80gb", gpu_memory_gib=80, gpus_per_node=8,
                     price_per_gpu_hour=4.10, relative_throughput=4.0),
    # p5.48xlarge: 8x H100, $55.04/h after the 2025 price cut = $6.88 per GPU-hour; roughly
    # 1.7-2x an A100 in training, so about 7x a T4.
    "h100": PoolSpec(gpu_type="nvidia-h100-80gb", gpu_memory_gib=80, gpus_per_node=8,
                     price_per_gpu_hour=6.88, relative_throughput=7.0),
    # CPU-only node (c6i.2xlarge-like, 8 vCPU, 16 GiB, $0.34/h): one "GPU" slot is the whole
    # node (and counts as one GPU-hour per hour against maxGPUHours). About 5x slower than a T4
    # on small nets; priced per node.
    "cpu": PoolSpec(gpu_type="cpu", gpu_memory_gib=16, gpus_per_node=1,
                    price_per_node_hour=0.34, relative_throughput=0.2),
}

# The pool behind DEFAULT_POOL: the reference device itself, free, with no memory limit, so a
# study without hardware gets runtimes as measured and a cost of 0.
REFERENCE_POOL = PoolSpec(gpu_type="reference", gpu_memory_gib=math.inf, gpus_per_node=1,
                          price_per_gpu_hour=0.0, relative_throughput=1.0)


def catalog_from_specs(specs: Mapping[str, Any], path: str = "pools") -> dict[str, PoolSpec]:
    """Pools from HardwarePool specs by name (``{name: spec}``), e.g. the HardwarePool documents
    next to a study in a YAML file. Merge with ``DEFAULT_CATALOG`` yourself if wanted."""
    return {name: PoolSpec.from_spec(spec, join_key(path, name)) for name, spec in specs.items()}


class OutOfMemory(Exception):
    """A trial's per-GPU memory need exceeds its pool's GPU memory."""

    def __init__(self, hardware: Hardware | None, needed_gib: float, available_gib: float) -> None:
        self.hardware, self.needed_gib, self.available_gib = hardware, needed_gib, available_gib
        where = str(hardware) if hardware is not None else DEFAULT_POOL
        super().__init__(f"out of memory: needs {needed_gib:.3g} GiB per GPU on {where}, "
                         f"which has {available_gib:.3g} GiB")


class HardwareSpace(Sequence[Hardware]):
    """The hardware choices of a study, in a fixed order (pools as listed, then GPU counts).
    Empty when the study has no hardware dimension."""

    def __init__(self, choices: Iterable[Hardware] = ()) -> None:
        self._choices = tuple(choices)
        if len(set(self._choices)) != len(self._choices):
            raise ValueError("hardware choices must be unique")
        self._index = {h: i for i, h in enumerate(self._choices)}

    def __len__(self) -> int:
        return len(self._choices)

    def __getitem__(self, i):  # type: ignore[override]
        return self._choices[i]

    def __iter__(self) -> Iterator[Hardware]:
        return iter(self._choices)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HardwareSpace) and self._choices == other._choices

    def __repr__(self) -> str:
        return f"HardwareSpace([{', '.join(map(str, self._choices))}])"

    def index(self, hardware: Hardware, *args: Any) -> int:  # type: ignore[override]
        try:
            return self._index[hardware]
        except KeyError:
            raise ValueError(f"{hardware} is not one of this study's hardware choices") from None

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.pool for h in self._choices))

    def sample(self, rng: np.random.Generator) -> Hardware | None:
        """A uniformly drawn choice; None when there is no hardware dimension."""
        if not self._choices:
            return None
        return self._choices[int(rng.integers(len(self._choices)))]

    @property
    def width(self) -> int:
        return len(self._choices)

    def encode(self, hardware: Hardware | None) -> np.ndarray:
        """One-hot over the choices (empty vector without a hardware dimension)."""
        out = np.zeros(len(self._choices))
        if hardware is not None:
            out[self.index(hardware)] = 1.0
        return out


class HardwareModel:
    """Runtime, memory fit and cost on each pool. ``pools`` should include ``DEFAULT_POOL``
    (``resolve_hardware`` adds it) for trials without hardware."""

    def __init__(
        self,
        pools: Mapping[str, PoolSpec],
        *,
        scaling_efficiency: float = DEFAULT_SCALING_EFFICIENCY,
        per_sample_memory_gib: float | None = None,
        fixed_memory_gib: float = 0.0,
    ) -> None:
        if not 0 < scaling_efficiency <= 1:
            raise ValueError(f"scaling_efficiency must be in (0, 1], got {scaling_efficiency}")
        self.pools: dict[str, PoolSpec] = {DEFAULT_POOL: REFERENCE_POOL, **pools}
        self.scaling_efficiency = float(scaling_efficiency)
        self.per_sample_memory_gib = per_sample_memory_gib
        self.fixed_memory_gib = fixed_memory_gib

    def pool(self, hardware: Hardware | None) -> PoolSpec:
        name = DEFAULT_POOL if hardware is None else hardware.pool
        try:
            return self.pools[name]
        except KeyError:
            raise KeyError(f"unknown hardware pool {name!r} (known: {', '.join(sorted(self.pools))})") from None

    @staticmethod
    def _count(hardware: Hardware | None) -> int:
        return 1 if hardware is None else hardware.gpu_count

    def speedup(self, hardware: Hardware | None) -> float:
        """Speed relative to one reference device."""
        n = self._count(hardware)
        return self.pool(hardware).relative_throughput * n * self.scaling_efficiency ** math.log2(n)

    def runtime(self, reference_seconds: float, hardware: Hardware | None, *,
                batch_size: int | None = None, memory_gib_needed: float | None = None) -> float:
        """Seconds that ``reference_seconds`` of work on the reference device take on
        ``hardware``. Raises ``OutOfMemory`` when the memory need (given, or estimated from
        ``batch_size``) does not fit."""
        if reference_seconds < 0 or not math.isfinite(reference_seconds):
            raise ValueError(f"reference_seconds must be a finite number >= 0, got {reference_seconds}")
        if memory_gib_needed is None and batch_size is not None:
            memory_gib_needed = self.estimate_memory_gib(batch_size)
        if memory_gib_needed is not None:
            self.check_memory(hardware, memory_gib_needed)
        return reference_seconds / self.speedup(hardware)

    def estimate_memory_gib(self, batch_size: int) -> float | None:
        """``fixed_memory_gib + batch_size * per_sample_memory_gib`` (whole batch, one device),
        or None when no per-sample figure is configured."""
        if self.per_sample_memory_gib is None:
            return None
        return self.fixed_memory_gib + batch_size * self.per_sample_memory_gib

    def memory_per_gpu(self, memory_gib_needed: float, hardware: Hardware | None) -> float:
        return memory_gib_needed / self._count(hardware)

    def fits(self, hardware: Hardware | None, memory_gib_needed: float) -> bool:
        return self.memory_per_gpu(memory_gib_needed, hardware) <= self.pool(hardware).gpu_memory_gib

    def check_memory(self, hardware: Hardware | None, memory_gib_needed: float) -> None:
        if not self.fits(hardware, memory_gib_needed):
            raise OutOfMemory(hardware, self.memory_per_gpu(memory_gib_needed, hardware),
                              self.pool(hardware).gpu_memory_gib)

    def cost(self, runtime_seconds: float, hardware: Hardware | None) -> float:
        """Dollars for holding the trial's GPUs (or nodes) for ``runtime_seconds``."""
        return runtime_seconds / 3600.0 * self.pool(hardware).price_per_hour(self._count(hardware))

    def gpu_hours(self, runtime_seconds: float, hardware: Hardware | None) -> float:
        return runtime_seconds / 3600.0 * self._count(hardware)


_HARDWARE_FIELDS = ("pools", "gpuCounts", "scalingEfficiency", "overrides")


def resolve_hardware(spec: Any, catalog: Mapping[str, PoolSpec] = DEFAULT_CATALOG,
                     path: str = "spec.hardware") -> tuple[HardwareSpace, HardwareModel]:
    """The hardware choices and model of a study's ``hardware`` block over ``catalog``.

    Omitted block: no hardware dimension (trials get no hardware, run on ``DEFAULT_POOL``).
    Omitted or empty ``pools``: every catalog pool. ``gpuCounts`` defaults to [1]; counts above
    a pool's GPUs per node are skipped for that pool (trials run on one node), and it is an error
    when no choice remains."""
    if spec is None:
        return HardwareSpace(), HardwareModel(catalog)
    if not isinstance(spec, Mapping):
        raise SpecError(path, f"must be a map, got {type(spec).__name__}")
    unknown = sorted(str(k) for k in spec if k not in _HARDWARE_FIELDS)
    if unknown:
        raise SpecError(join_path(path, unknown[0]), f"unknown field (known: {', '.join(_HARDWARE_FIELDS)})")
    efficiency = spec.get("scalingEfficiency", DEFAULT_SCALING_EFFICIENCY)
    if isinstance(efficiency, bool) or not isinstance(efficiency, (int, float)) or not 0 < efficiency <= 1:
        raise SpecError(join_path(path, "scalingEfficiency"), f"must be in (0, 1], got {efficiency!r}")
    pools = dict(catalog)
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise SpecError(join_path(path, "overrides"), "must be a map of pool name -> fields")
    for name, fields_ in overrides.items():
        opath = join_key(join_path(path, "overrides"), name)
        if name not in pools:
            raise SpecError(opath, f"unknown pool {name!r} (known: {', '.join(sorted(pools))})")
        pools[name] = pools[name].with_overrides(fields_, opath)
    names = spec.get("pools") or list(catalog)
    if not isinstance(names, (list, tuple)):
        raise SpecError(join_path(path, "pools"), f"must be a list of pool names, got {names!r}")
    if not names:
        raise SpecError(join_path(path, "pools"), "the catalog is empty: declare HardwarePools")
    for i, name in enumerate(names):
        if name not in pools:
            raise SpecError(f"{join_path(path, 'pools')}[{i}]",
                            f"unknown pool {name!r} (known: {', '.join(sorted(pools)) or 'none'})")
    if len(set(names)) != len(names):
        raise SpecError(join_path(path, "pools"), f"pools must be unique, got {list(names)}")
    counts = spec.get("gpuCounts") or [1]
    if not isinstance(counts, (list, tuple)):
        raise SpecError(join_path(path, "gpuCounts"), f"must be a list of integers, got {counts!r}")
    for i, n in enumerate(counts):
        _number(n, f"{join_path(path, 'gpuCounts')}[{i}]", integer=True)
    counts = [int(n) for n in counts]
    if len(set(counts)) != len(counts):
        raise SpecError(join_path(path, "gpuCounts"), f"counts must be unique, got {counts}")
    choices = [Hardware(name, n) for name in names for n in counts if n <= pools[name].gpus_per_node]
    if not choices:
        per_node = ", ".join(f"{name}: {pools[name].gpus_per_node}" for name in names)
        raise SpecError(join_path(path, "gpuCounts"),
                        f"no (pool, GPU count) choice remains: every count in {counts} exceeds the "
                        f"GPUs per node of every pool ({per_node})")
    return HardwareSpace(choices), HardwareModel(pools, scaling_efficiency=float(efficiency))

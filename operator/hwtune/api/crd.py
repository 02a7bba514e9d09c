"""The custom resources of hwtune (group ``hwtune.io``, version ``v1alpha1``) as pydantic models.

These models are the single source of truth of the API: ``hwtune.api.crdgen`` turns them into the
CRDs in ``crds/`` (OpenAPI schema + CEL rules), the CLI and the operator's admission webhook
validate with them, and the engine runs the validated ``TuningStudySpec``
(``hwtune.engine.StudyConfig.from_model``). The status models are the shape the operator writes
once it runs studies (being built; today the operator is the admission webhook only).

- ``TuningStudy`` (namespaced): what to tune, on which hardware, within which budget; its status
  is the study's public progress report (counts, spend, hypervolume, Pareto front).
- ``TuningTrial`` (namespaced, owned by its study): one configuration on one hardware choice; its
  status holds the learning curve, runtime and cost.
- ``HardwarePool`` (cluster-scoped): a kind of GPU node the optimizer may pick, with its price.

Use ``parse_manifest(doc)`` to validate a decoded YAML document of any of these kinds; it raises
``ManifestError`` whose ``errors`` carry API-server field paths (``spec.parameters[lr].min``).
References between objects (a study naming a pool) are checked by
``hwtune.api.pools.validate_study_against_pools``: a schema cannot see other objects.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping

from pydantic import Field, StrictFloat, StrictInt, ValidationError

# JSON has no NaN or Infinity, so the API server never sees one: refuse them offline too, on the
# field that holds them.
FiniteFloat = typing.Annotated[StrictFloat, Field(allow_inf_nan=False)]

from hwtune.api._base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    CrdModel,
    Enforcement,
    FieldError,
    FreeForm,
    JsonScalar,
    ManifestError,
    Reason,
    Rule,
    StatusModel,
    field_errors,
    name_type,
    unique_list,
)
from hwtune.api import algorithms
from hwtune.api.yamlio import load_manifests
from hwtune.api.records import (
    BUILTIN_METRICS,
    METRIC_NAME_MAX_LENGTH,
    METRIC_NAME_PATTERN,
    Goal,
    Hardware,
    Objective,
    TrialPhase,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AlgorithmSpec",
    "BestValue",
    "BudgetSpec",
    "CheckpointSpec",
    "Condition",
    "ConditionStatus",
    "ConditionSpec",
    "ContainerTemplate",
    "JobTemplate",
    "PodTemplate",
    "CrdInfo",
    "FidelitySpec",
    "FieldError",
    "FrontPoint",
    "HardwareChoice",
    "HardwarePool",
    "HardwarePoolSpec",
    "HardwarePoolStatus",
    "HardwareSpec",
    "LearningCurvePoint",
    "ManifestError",
    "MetricStrategy",
    "MetricsCollectorKind",
    "MetricsCollectorSpec",
    "ObjectMeta",
    "ObjectiveSpec",
    "ParameterSpec",
    "ParameterType",
    "PodSpecTemplate",
    "PoolOverride",
    "PrinterColumn",
    "RESOURCES",
    "Scale",
    "SchedulerName",
    "SearcherName",
    "StudyObjectMeta",
    "StudyPhase",
    "TaintEffect",
    "Toleration",
    "TolerationOperator",
    "TransferMethod",
    "TransferSpec",
    "TrialCounts",
    "TrialTemplate",
    "TuningStudy",
    "TuningStudySpec",
    "TuningStudyStatus",
    "TuningTrial",
    "TuningTrialSpec",
    "TuningTrialStatus",
    "load_documents",
    "parse_manifest",
    "parse_spec",
    "param_env_name",
    "parse_study_spec",
    "validation_errors",
]

GROUP = "hwtune.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# ``-`` is allowed because Katib specs use it (``learning-rate``); the env name replaces it by
# ``_`` and upper-cases (HWTUNE_PARAM_LEARNING_RATE), and two names may not map to one env name.
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"
MAX_STEP_VALUES = 10000  # grid points a stepped range may have (it becomes an ordinal domain)
METRIC_NAME = METRIC_NAME_PATTERN  # the report protocol's rule too
MAX_PARAMETERS = 64
MAX_VALUES = 128
MAX_OBJECTIVES = 8

ParameterName = name_type(PARAMETER_NAME, 63)
MetricName = name_type(METRIC_NAME, METRIC_NAME_MAX_LENGTH)
PoolName = name_type(DNS_LABEL, 63)
ObjectName = name_type(DNS_SUBDOMAIN, 253)
NonNegFloat = typing.Annotated[FiniteFloat, Field(ge=0)]
PosFloat = typing.Annotated[FiniteFloat, Field(gt=0)]
NonNegInt = typing.Annotated[StrictInt, Field(ge=0)]


def _absent(*values: Any) -> bool:
    return all(v is None for v in values)


# ---------------------------------------------------------------------------------------------
# TuningStudy spec


class MetricStrategy(str, enum.Enum):
    """Which value of a metric's learning curve counts."""

    LATEST = "latest"
    MIN = "min"
    MAX = "max"


class ObjectiveSpec(CrdModel):
    """One objective: a metric the trainer reports (or the built-in ``runtime``/``cost``)."""

    metric: MetricName
    """Metric name as the trainer reports it; ``runtime`` (seconds the trial really ran) and
    ``cost`` (runtime priced by its hardware) are measured by hwtune itself."""
    goal: Goal = Goal.MINIMIZE
    """``minimize`` or ``maximize`` (Katib's ``objective.type``)."""
    target: FiniteFloat | None = None
    """Stop the study once a trial's value reaches this (``<=`` when minimising, ``>=`` when
    maximising; Katib's ``objective.goal``). With several targets, the study stops when one
    observation of one trial reaches every target that is set."""
    strategy: MetricStrategy | None = None
    """Which value of the learning curve counts at each report: ``latest`` (default: the value just
    reported), ``min`` or ``max`` (best so far over the trial's curve). Schedulers, the front and
    the target all see the value this picks (Katib's ``metricStrategies``)."""

    def to_record(self) -> Objective:
        return Objective(metric=self.metric, goal=self.goal)


class ParameterType(str, enum.Enum):
    """Kind of a search-space dimension."""

    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


class Scale(str, enum.Enum):
    """How a numeric range is sampled and encoded."""

    LINEAR = "linear"
    LOG = "log"


class ConditionSpec(CrdModel):
    """Makes a parameter active only while another parameter takes one of some values."""

    parameter: ParameterName
    """The parameter this one depends on."""
    in_: typing.Annotated[list[JsonScalar], Field(alias="in", min_length=1, max_length=MAX_VALUES)]
    """Values of that parameter for which this one is active."""


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _values_match_type(p: "ParameterSpec") -> bool:
    if p.values is None:
        return True
    if p.type is ParameterType.INT:
        return all(_is_int(v) for v in p.values)
    if p.type is ParameterType.FLOAT:
        return all(_is_number(v) for v in p.values)
    return True  # JsonScalar already admits only strings, numbers and booleans


def _values_unique(p: "ParameterSpec") -> bool:
    if p.values is None:
        return True
    # Same rule as CEL's: 1 and 1.0 are different values (int vs double).
    keys = [(type(v).__name__, v) for v in p.values]
    return len(set(keys)) == len(keys)


def _default_in_domain(p: "ParameterSpec") -> bool:
    d = p.default
    if d is None:
        return True
    if p.values is not None:
        return any(type(v) is type(d) and v == d for v in p.values)
    if p.type is ParameterType.CATEGORICAL or not _is_number(d):
        return False
    if p.type is ParameterType.INT and not _is_int(d):
        return False
    return p.min is not None and p.max is not None and p.min <= d <= p.max


_NUMERIC_VALUE_CEL = "type(v) == int || type(v) == double"


class ParameterSpec(CrdModel):
    """One dimension of the search space.

    ``float``/``int`` take ``min`` and ``max`` (optionally ``scale: log``) or a ``values`` list
    (an ordinal dimension); ``categorical`` takes ``values``.
    """

    type: ParameterType
    """``float``, ``int`` or ``categorical``."""
    min: FiniteFloat | None = None
    """Lower bound (inclusive) of a float or int range."""
    max: FiniteFloat | None = None
    """Upper bound (inclusive) of a float or int range."""
    scale: Scale | None = None
    """``linear`` (the default) or ``log`` (needs min > 0); ranges only."""
    values: typing.Annotated[
        list[JsonScalar] | None, Field(min_length=1, max_length=MAX_VALUES)] = None
    """The choices: strings, numbers or booleans for categorical; numbers (ordinal) for int/float."""
    step: PosFloat | None = None
    """Grid of a min/max range: only min, min + step, ... (up to max) are tried (Katib's
    ``feasibleSpace.step``); linear ranges only, an integer for int parameters."""
    default: JsonScalar | None = None
    """Value to try first; must lie in the domain."""
    condition: ConditionSpec | None = None
    """Active only while another parameter takes one of the given values."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("min must be less than max", field="min",
             cel="!has(self.min) || !has(self.max) || self.min < self.max",
             check=lambda p: _absent(p.min) or _absent(p.max) or p.min < p.max),
        Rule("min and max must be set together", field="max", reason=Reason.REQUIRED,
             cel="has(self.min) == has(self.max)",
             check=lambda p: (p.min is None) == (p.max is None)),
        Rule("log scale needs min > 0", field="min",
             cel="!has(self.scale) || self.scale != 'log' || !has(self.min) || self.min > 0.0",
             check=lambda p: p.scale is not Scale.LOG or p.min is None or p.min > 0),
        Rule("scale applies to a min/max range only", field="scale", reason=Reason.FORBIDDEN,
             cel="!has(self.scale) || has(self.min)",
             check=lambda p: p.scale is None or p.min is not None),
        Rule("min, max and scale apply to int and float parameters only", field="type",
             reason=Reason.FORBIDDEN,
             cel="self.type != 'categorical' || !(has(self.min) || has(self.max) || has(self.scale))",
             check=lambda p: p.type is not ParameterType.CATEGORICAL or _absent(p.min, p.max, p.scale)),
        Rule("an int parameter needs integer min and max", field="min",
             cel="self.type != 'int' || ((!has(self.min) || self.min == double(int(self.min))) && "
                 "(!has(self.max) || self.max == double(int(self.max))))",
             check=lambda p: p.type is not ParameterType.INT
             or all(v is None or float(v).is_integer() for v in (p.min, p.max))),
        Rule("step applies to a linear min/max range only", field="step",
             reason=Reason.FORBIDDEN,
             cel="!has(self.step) || (has(self.min) && (!has(self.scale) || self.scale != 'log'))",
             check=lambda p: p.step is None or (p.min is not None and p.scale is not Scale.LOG)),
        Rule("an int parameter needs an integer step", field="step",
             cel="!has(self.step) || self.type != 'int' || self.step == double(int(self.step))",
             check=lambda p: p.step is None or p.type is not ParameterType.INT
             or float(p.step).is_integer()),
        Rule(f"step must leave at most {MAX_STEP_VALUES} values between min and max",
             field="step",
             cel=f"!has(self.step) || !has(self.min) || !has(self.max) || "
                 f"(self.max - self.min) / self.step < {MAX_STEP_VALUES}.0",
             check=lambda p: p.step is None or p.min is None or p.max is None
             or (p.max - p.min) / p.step < MAX_STEP_VALUES),
        # ``values``, ``default`` and ``condition.in`` mix strings and floats, so the schema leaves
        # them untyped and CRD rules cannot read them: the admission policy checks these.
        Rule("a categorical parameter needs values", field="values", reason=Reason.REQUIRED,
             enforced_by=Enforcement.POLICY,
             cel="self.type != 'categorical' || has(self.values)",
             check=lambda p: p.type is not ParameterType.CATEGORICAL or p.values is not None),
        Rule("an int or float parameter takes either values or min and max, not both",
             field="values", enforced_by=Enforcement.POLICY,
             cel="self.type == 'categorical' || has(self.values) != has(self.min)",
             check=lambda p: p.type is ParameterType.CATEGORICAL
             or (p.values is not None) != (p.min is not None)),
        Rule("values of an int parameter must be integers, of a float parameter numbers",
             field="values", enforced_by=Enforcement.POLICY,
             cel="!has(self.values) || self.type == 'categorical' || self.values.all(v, "
                 f"self.type == 'int' ? type(v) == int : ({_NUMERIC_VALUE_CEL}))",
             check=_values_match_type),
        Rule("values must be unique", field="values", enforced_by=Enforcement.POLICY,
             cel="!has(self.values) || self.values.all(v, self.values.exists_one(w, "
                 "type(w) == type(v) && w == v))",
             check=_values_unique),
        Rule("default must be one of values, or a number of the parameter's type within "
             "[min, max]", field="default", enforced_by=Enforcement.POLICY,
             cel="!has(self.default) || (has(self.values) ? self.values.exists(v, "
                 "type(v) == type(self.default) && v == self.default) : "
                 "(self.type != 'categorical' && has(self.min) && has(self.max) && "
                 "(self.type == 'int' ? type(self.default) == int : "
                 "(type(self.default) == int || type(self.default) == double)) && "
                 "self.default >= self.min && self.default <= self.max))",
             check=_default_in_domain),
    )

    def step_values(self) -> list[int | float] | None:
        """The grid of a stepped range (min, min + step, ... <= max), None without ``step``."""
        if self.step is None or self.min is None or self.max is None:
            return None
        count = int(math.floor((self.max - self.min) / self.step + 1e-9)) + 1
        if self.type is ParameterType.INT:
            return [int(round(self.min + k * self.step)) for k in range(count)]
        # Rounded so that 0.1 + 2 * 0.1 prints as 0.3 in the trial's env and args.
        return [round(self.min + k * self.step, 12) for k in range(count)]


def _keys_matching(pattern: str, what: str) -> Any:
    """Check that every key of a map matches ``pattern``; names the first that does not."""

    def check(keys: Any) -> bool | str:
        bad = [k for k in keys or () if not re.fullmatch(pattern, k)]
        return f"{what} {bad[0]} must match {pattern}" if bad else True

    return check


def _keys_rule(field: str, pattern: str, what: str, getter: Callable[[Any], Any],
               enforced_by: Enforcement = Enforcement.SCHEMA) -> Rule:
    """A rule that every key of the map ``field`` matches ``pattern`` (maps cannot carry
    a pattern for their keys in a structural schema)."""
    check = _keys_matching(pattern, what)
    return Rule(
        f"{what}s must match {pattern}", field=field, enforced_by=enforced_by,
        cel=f"!has(self.{field}) || self.{field}.all(k, k.matches('{pattern}'))",
        message_expression=f"'{what} ' + self.{field}.filter(k, !k.matches('{pattern}'))[0] + "
                           f"' must match {pattern}'",
        check=lambda model: check(getter(model)))


# The offending parameter of the two condition rules below, for CEL messages.
_CONDITION_TARGET = "self.parameters[name].condition.parameter"


def _condition_refs(spec: "TuningStudySpec") -> bool | str:
    for name, p in spec.parameters.items():
        if p.condition is None:
            continue
        target = p.condition.parameter
        if target == name:
            return f"condition of parameter {name} refers to the parameter itself"
        if target not in spec.parameters:
            return f"condition of parameter {name} refers to unknown parameter {target}"
    return True


def _condition_values(spec: "TuningStudySpec") -> bool | str:
    for name, p in spec.parameters.items():
        if p.condition is None or p.condition.parameter not in spec.parameters:
            continue
        target = spec.parameters[p.condition.parameter]
        if target.values is None:
            continue
        allowed = {(type(v).__name__, v) for v in target.values}
        if any((type(v).__name__, v) not in allowed for v in p.condition.in_):
            return (f"condition of parameter {name} lists a value that parameter "
                    f"{p.condition.parameter} does not take")
    return True


def param_env_name(name: str) -> str:
    """The ``HWTUNE_PARAM_`` suffix of a parameter (``learning-rate`` -> ``LEARNING_RATE``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def _env_names_unique(spec: "TuningStudySpec") -> bool | str:
    seen: dict[str, str] = {}
    for name in spec.parameters:
        env = param_env_name(name)
        if env in seen:
            return (f"parameters {seen[env]} and {name} both become env variable "
                    f"HWTUNE_PARAM_{env}; rename one")
        seen[env] = name
    return True


def _condition_cycles(spec: "TuningStudySpec") -> bool | str:
    for start in spec.parameters:
        seen = [start]
        current = spec.parameters[start]
        while current.condition is not None and current.condition.parameter in spec.parameters:
            nxt = current.condition.parameter
            if nxt in seen:
                return f"conditions form a cycle: {' -> '.join(seen + [nxt])}"
            seen.append(nxt)
            current = spec.parameters[nxt]
    return True


class HardwareChoice(CrdModel):
    """Where a trial runs: a HardwarePool and how many of its GPUs."""

    pool: PoolName
    """HardwarePool name."""
    gpu_count: typing.Annotated[StrictInt, Field(ge=1, le=1024)] = 1
    """GPUs the trial uses."""

    def to_record(self) -> Hardware:
        return Hardware(pool=self.pool, gpu_count=self.gpu_count)


class PoolOverride(CrdModel):
    """Fields of a HardwarePool replaced for this study only (e.g. a negotiated price)."""

    gpu_memory_gib: PosFloat | None = Field(default=None, alias="gpuMemoryGiB")
    """GPU memory in GiB."""
    gpus_per_node: typing.Annotated[StrictInt, Field(ge=1, le=64)] | None = None
    """GPUs on one node of the pool."""
    price_per_gpu_hour: NonNegFloat | None = Field(default=None, alias="pricePerGPUHour")
    """Price of one GPU for one hour (USD)."""
    price_per_node_hour: NonNegFloat | None = Field(default=None, alias="pricePerNodeHour")
    """Price of one node for one hour (USD)."""
    relative_throughput: PosFloat | None = None
    """Speed relative to the reference device the runtimes were measured on."""
    max_nodes: typing.Annotated[StrictInt, Field(ge=1)] | None = None
    """Most nodes of this pool the study may use at once."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("set at most one of pricePerGPUHour and pricePerNodeHour", field="pricePerNodeHour",
             reason=Reason.FORBIDDEN,
             cel="!(has(self.pricePerGPUHour) && has(self.pricePerNodeHour))",
             check=lambda o: o.price_per_gpu_hour is None or o.price_per_node_hour is None),
    )


class HardwareSpec(CrdModel):
    """The hardware dimension of the search: every (pool, GPU count) pair is a choice."""

    pools: unique_list(PoolName, max_items=32) | None = None
    """HardwarePool names to search over; omitted or empty means every pool in the cluster."""
    gpu_counts: unique_list(typing.Annotated[StrictInt, Field(ge=1, le=1024)],
                            max_items=16) | None = None
    """GPU counts to search over (default [1]); counts above a pool's gpusPerNode are skipped
    for that pool."""
    scaling_efficiency: typing.Annotated[FiniteFloat, Field(gt=0, le=1)] | None = None
    """Multi-GPU speedup model: n GPUs run n * efficiency^(log2 n) times faster than one."""
    overrides: typing.Annotated[
        dict[str, PoolOverride] | None, Field(max_length=32)] = None
    """Per-pool changes of catalog fields for this study, by pool name."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        _keys_rule("overrides", DNS_LABEL, "pool name", lambda h: h.overrides),
        Rule("overrides must name pools listed in pools", field="overrides",
             cel="!has(self.overrides) || !has(self.pools) || size(self.pools) == 0 || "
                 "self.overrides.all(name, name in self.pools)",
             message_expression="'override for pool ' + self.overrides.filter(name, "
                                "!(name in self.pools))[0] + ' names a pool not listed in pools'",
             check=lambda h: not h.overrides or not h.pools or next(
                 (f"override for pool {n} names a pool not listed in pools"
                  for n in h.overrides if n not in h.pools), True)),
    )


class FidelitySpec(CrdModel):
    """The resource level trials report at (epochs, steps, ...) and the rungs built on it."""

    resource: MetricName = "epoch"
    """Name of the resource level the trainer reports."""
    min: typing.Annotated[StrictInt, Field(ge=1)] = 1
    """Lowest resource level (the first rung)."""
    max: typing.Annotated[StrictInt, Field(ge=1)]
    """Highest resource level: a trial that reaches it is complete."""
    reduction_factor: typing.Annotated[StrictInt, Field(ge=2, le=100)] = 3
    """eta: rungs at min * eta^k; the top 1/eta (by non-dominated sorting) go on."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("min must be less than max", field="min", cel="self.min < self.max",
             check=lambda f: f.min < f.max),
    )


class _AlgorithmName(str, enum.Enum):
    """Base of the two name enums, built from the one list in ``hwtune.api.algorithms``."""

    @property
    def entry(self) -> algorithms.Algorithm:
        raise NotImplementedError

    @property
    def needs_fidelity(self) -> bool:
        return self.entry.needs_fidelity

    @property
    def needs_transfer(self) -> bool:
        return self.entry.needs_transfer


class _SchedulerBase(_AlgorithmName):
    @property
    def entry(self) -> algorithms.Algorithm:
        return algorithms.scheduler(self.value)


class _SearcherBase(_AlgorithmName):
    @property
    def entry(self) -> algorithms.Algorithm:
        return algorithms.searcher(self.value)


def _member(name: str) -> str:
    return name.upper().replace("-", "_")


# Decides continue / pause / stop at each reported resource level.
SchedulerName = _SchedulerBase(
    "SchedulerName", [(_member(n), n) for n in algorithms.scheduler_names()], module=__name__)
# Proposes configurations (hardware included).
SearcherName = _SearcherBase(
    "SearcherName", [(_member(n), n) for n in algorithms.searcher_names()], module=__name__)


def _cel_list(names: list[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


_SINGLE_FIDELITY_SCHEDULERS = [a.name for a in algorithms.SCHEDULERS if not a.needs_fidelity]
_MULTI_FIDELITY_SEARCHERS = [a.name for a in algorithms.SEARCHERS if a.needs_fidelity]
_TRANSFER_SEARCHERS = [a.name for a in algorithms.SEARCHERS if a.needs_transfer]


class AlgorithmSpec(CrdModel):
    """The scheduler and searcher, and their options."""

    scheduler: SchedulerName = SchedulerName.FIFO  # type: ignore[valid-type]
    """A scheduler of hwtune.api.algorithms (the enum lists them)."""
    searcher: SearcherName = SearcherName.RANDOM  # type: ignore[valid-type]
    """A searcher of hwtune.api.algorithms (the enum lists them)."""
    seed: NonNegInt | None = None
    """Seed of every random choice of the algorithm."""
    settings: FreeForm | None = None
    """Options of the scheduler and searcher (e.g. tieBreak: epsilon-net | crowding)."""


# How searcher 'transfer' uses the earlier studies (hwtune.api.algorithms.TRANSFER_METHODS).
TransferMethod = enum.Enum(  # type: ignore[misc]
    "TransferMethod", [(_member(n), n) for n in algorithms.TRANSFER_METHODS], type=str,
    module=__name__)


class TransferSpec(CrdModel):
    """Earlier studies whose trials warm-start this one."""

    from_studies: unique_list(name_type(DNS_SUBDOMAIN, 253), min_items=1, max_items=16)
    """Names of TuningStudies in the same namespace."""
    method: TransferMethod | None = None  # type: ignore[valid-type]
    """How searcher 'transfer' uses them: only-new | drop-unimportant | best-first |
    transfer-tpe | best-first-tpe (default) | mo-copula."""
    mapping: typing.Annotated[
        dict[str, ParameterName] | None, Field(max_length=MAX_PARAMETERS)] = None
    """Renamed parameters: name in the earlier studies -> name in this study. Parameters with
    the same name in both need no entry."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        _keys_rule("mapping", PARAMETER_NAME, "parameter name", lambda t: t.mapping),
    )


class BudgetSpec(CrdModel):
    """Limits; the study stops starting trials when one is reached."""

    max_trials: typing.Annotated[StrictInt, Field(ge=1)] | None = None
    """Most trials to start."""
    max_parallel_trials: typing.Annotated[StrictInt, Field(ge=1)] | None = None
    """Most trials running at once."""
    max_cost_usd: NonNegFloat | None = Field(default=None, alias="maxCostUSD")
    """Most money to spend (USD)."""
    max_gpu_hours: NonNegFloat | None = Field(default=None, alias="maxGPUHours")
    """Most GPU-hours to use."""
    max_duration_seconds: NonNegInt | None = None
    """Deadline in seconds after the study started."""
    max_failed_trials: NonNegInt | None = None
    """The study fails (phase Failed, with the reason) once more than this many trials failed
    (Katib's ``maxFailedTrialCount``); 0 fails it at the first failure."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("maxParallelTrials must not exceed maxTrials", field="maxParallelTrials",
             cel="!has(self.maxParallelTrials) || !has(self.maxTrials) || "
                 "self.maxParallelTrials <= self.maxTrials",
             check=lambda b: _absent(b.max_parallel_trials) or _absent(b.max_trials)
             or b.max_parallel_trials <= b.max_trials),
    )


class CheckpointSpec(CrdModel):
    """Where trials keep checkpoints so paused or preempted trials resume."""

    persistent_volume_claim: ObjectName | None = None
    """A PVC in the study's namespace, mounted into every trial."""
    path: typing.Annotated[str, Field(pattern=r"^/", max_length=4096)] | None = None
    """Mount path of the PVC (default /checkpoints)."""
    uri: typing.Annotated[
        str, Field(pattern=r"^[a-z][a-z0-9+.-]*://\S+$", max_length=4096)] | None = None
    """An object-store or file URI: s3://bucket/prefix, file:///data/ckpt."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("set exactly one of persistentVolumeClaim or uri",
             cel="has(self.persistentVolumeClaim) != has(self.uri)",
             check=lambda c: (c.persistent_volume_claim is None) != (c.uri is None)),
        Rule("path applies to persistentVolumeClaim only", field="path", reason=Reason.FORBIDDEN,
             cel="!has(self.path) || has(self.persistentVolumeClaim)",
             check=lambda c: c.path is None or c.persistent_volume_claim is not None),
    )


class MetricsCollectorKind(str, enum.Enum):
    """How a trial's metrics reach hwtune."""

    SDK = "sdk"  # the trainer calls hwtune.trainer (decisions reach it: pause with a checkpoint)
    STDOUT = "stdout"  # ``name=value`` pairs in the output, as Katib's StdOut collector reads
    JSON = "json"  # one JSON object per line: {"epoch": 3, "loss": 0.25}
    REGEX = "regex"  # the user's pattern with named groups


def _regex_error(pattern: str | None) -> bool | str:
    if pattern is None:
        return True
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"pattern is not a valid regular expression: {exc}"
    groups = set(compiled.groupindex)
    if not groups:
        return "pattern needs named groups: (?P<name>...) and (?P<value>...), or one per metric"
    if ("name" in groups) != ("value" in groups):
        return "pattern must have both groups name and value, or neither"
    return True


class MetricsCollectorSpec(CrdModel):
    """Where metrics come from. Anything but ``sdk`` is parsed from the trainer's output
    (stdout and stderr) by hwtune, outside the trainer: any language, any image, unchanged.
    Without the SDK a trainer cannot checkpoint on request, so a scheduler's pause or stop
    ends its process and the trial is stopped (``hwtune.report.collector``)."""

    kind: MetricsCollectorKind = MetricsCollectorKind.SDK
    """``sdk`` (default), ``stdout`` (``loss=0.3`` pairs), ``json`` (JSON lines) or ``regex``."""
    pattern: typing.Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """``regex`` only, Python syntax: groups ``name`` and ``value`` (one metric per match, many
    matches per line), or one group per metric name (``(?P<epoch>\\d+) .* (?P<loss>\\S+)``)."""
    resource_metric: MetricName | None = None
    """A printed metric whose value is the resource level (e.g. ``epoch``). Omitted: levels are
    counted, one per group of lines that gives every objective a new value."""
    additional_metrics: unique_list(MetricName, max_items=16) | None = None
    """Printed metrics that are not objectives (Katib's ``additionalMetricNames``): read with
    the objectives and recorded in each report, so they appear in the trials' learning curves;
    never optimised. Not ``cost`` or ``runtime`` (hwtune measures those)."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("pattern is required with kind regex and applies to it only", field="pattern",
             cel="has(self.pattern) == (has(self.kind) && self.kind == 'regex')",
             check=lambda c: (c.pattern is not None) == (c.kind is MetricsCollectorKind.REGEX)),
        Rule("resourceMetric applies to a collector that parses output (not sdk)",
             field="resourceMetric", reason=Reason.FORBIDDEN,
             cel="!has(self.resourceMetric) || (has(self.kind) && self.kind != 'sdk')",
             check=lambda c: c.resource_metric is None
             or c.kind is not MetricsCollectorKind.SDK),
        Rule("pattern must be a valid regular expression with named groups", field="pattern",
             enforced_by=Enforcement.OPERATOR, check=lambda c: _regex_error(c.pattern)),
        Rule("additionalMetrics applies to a collector that parses output (not sdk: SDK "
             "reports may carry any extra metric)", field="additionalMetrics",
             reason=Reason.FORBIDDEN,
             cel="!has(self.additionalMetrics) || (has(self.kind) && self.kind != 'sdk')",
             check=lambda c: c.additional_metrics is None
             or c.kind is not MetricsCollectorKind.SDK),
        Rule(f"additionalMetrics must not name a built-in metric "
             f"({', '.join(BUILTIN_METRICS)}): hwtune measures them",
             field="additionalMetrics",
             cel=f"!has(self.additionalMetrics) || self.additionalMetrics.all(m, !(m in "
                 f"{_cel_list(list(BUILTIN_METRICS))}))",
             check=lambda c: not any(m in BUILTIN_METRICS for m in c.additional_metrics or ())),
    )


class ContainerTemplate(CrdModel):
    """A container of the trial pod; fields other than name and image pass through unchecked
    (hwtune adds GPU limits, env and the checkpoint mount to the primary container)."""

    model_config = {"extra": "allow"}

    name: name_type(DNS_LABEL, 63)
    """Container name."""
    image: typing.Annotated[str, Field(min_length=1, max_length=1024)]
    """Container image."""


class PodSpecTemplate(CrdModel):
    """An ordinary pod spec; only containers are checked here."""

    model_config = {"extra": "allow"}

    containers: typing.Annotated[list[ContainerTemplate], Field(min_length=1, max_length=16)]
    """The containers; the trainer is the one named by primaryContainerName, else the first."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("container names must be unique", field="containers",
             cel="self.containers.all(c, self.containers.exists_one(d, d.name == c.name))",
             check=lambda s: len({c.name for c in s.containers}) == len(s.containers)),
    )


class PodTemplate(CrdModel):
    """A pod template (core/v1 PodTemplateSpec shape): metadata and spec."""

    metadata: FreeForm | None = None
    """Labels and annotations of the trial pods."""
    spec: PodSpecTemplate
    """The pod spec."""


class JobTemplate(CrdModel):
    """The batch/v1 Job of each trial, for the fields a pod spec cannot say. hwtune owns
    ``parallelism``, ``completions``, ``restartPolicy`` and the selector; other Job fields are
    not accepted."""

    backoff_limit: typing.Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    """Pod restarts before the Job (and the trial) fails; default 0 (hwtune resumes trials from
    checkpoints itself)."""
    active_deadline_seconds: typing.Annotated[StrictInt, Field(ge=1)] | None = None
    """Wall-clock limit of one Job (one launch of the trial); past it the trial fails."""
    ttl_seconds_after_finished: typing.Annotated[StrictInt, Field(ge=0)] | None = None
    """Delete the finished Job (and its pods, logs included) this long after it ends."""
    template: PodTemplate
    """The pod template."""


class TrialTemplate(CrdModel):
    """What runs a trial: a pod spec (``spec``) or a Job (``job``), exactly one. Hyperparameters
    reach the primary container as env and ``$(HWTUNE_PARAM_X)`` in args.

    Kinds are sibling fields, so a kind for GPU counts beyond one node (an indexed Job or a
    JobSet over several pods, ``multiNode``) can be added later beside ``job`` without changing
    these. Readers use ``pod_template()`` and ``primary_container()``, never the fields."""

    metadata: FreeForm | None = None
    """Labels and annotations of the trial pods (with ``spec``)."""
    spec: PodSpecTemplate | None = None
    """The pod spec, run in a Job hwtune makes with its defaults."""
    job: JobTemplate | None = None
    """A Job template: Job fields plus the pod template."""
    primary_container_name: name_type(DNS_LABEL, 63) | None = None
    """The trainer container (gets the env, GPU limits and the checkpoint mount; its output is
    what a metrics collector reads). Default: the first container."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("set exactly one of spec or job", field="spec",
             cel="has(self.spec) != has(self.job)",
             check=lambda t: (t.spec is None) != (t.job is None)),
        Rule("primaryContainerName must name one of the containers",
             field="primaryContainerName",
             cel="!has(self.primaryContainerName) || (has(self.spec) ? "
                 "self.spec.containers.exists(c, c.name == self.primaryContainerName) : "
                 "!has(self.job) || "
                 "self.job.template.spec.containers.exists(c, c.name == self.primaryContainerName))",
             check=lambda t: t.primary_container_name is None
             or (t.spec is None and t.job is None)
             or any(c.name == t.primary_container_name for c in t.pod_spec().containers)),
        Rule("metadata applies to spec; with job, set job.template.metadata", field="metadata",
             reason=Reason.FORBIDDEN, cel="!has(self.metadata) || !has(self.job)",
             check=lambda t: t.metadata is None or t.job is None),
    )

    # -- the accessors every backend uses (the operator builds its Job from these) ------------
    def pod_spec(self) -> PodSpecTemplate:
        """The pod spec, whichever kind holds it."""
        if self.job is not None:
            return self.job.template.spec
        assert self.spec is not None
        return self.spec

    def pod_metadata(self) -> dict[str, Any]:
        """Labels and annotations of the trial pods (may be empty)."""
        meta = self.job.template.metadata if self.job is not None else self.metadata
        return dict(meta or {})

    def pod_template(self) -> tuple[dict[str, Any], PodSpecTemplate, int]:
        """(pod metadata, pod spec, index of the primary container in ``spec.containers``)."""
        return self.pod_metadata(), self.pod_spec(), self.primary_index()

    def primary_index(self) -> int:
        containers = self.pod_spec().containers
        if self.primary_container_name is None:
            return 0
        return next(i for i, c in enumerate(containers) if c.name == self.primary_container_name)

    def primary_container(self) -> ContainerTemplate:
        """The trainer container."""
        return self.pod_spec().containers[self.primary_index()]

    def job_fields(self) -> dict[str, int]:
        """The Job-level fields the user set (camelCase, as in a batch/v1 JobSpec)."""
        if self.job is None:
            return {}
        return {k: v for k, v in self.job.to_dict().items() if k != "template"}

    def pod_spec_path(self) -> str:
        """Field path of the pod spec, for messages (``spec.trialTemplate.job.template.spec``)."""
        return "spec.trialTemplate." + ("job.template.spec" if self.job is not None else "spec")


# Rules that exist only while some listed searcher needs them (an empty CEL list says nothing).
_SEARCHER_RULES: tuple[Rule, ...] = tuple(rule for names, rule in (
    (_MULTI_FIDELITY_SEARCHERS, Rule(
        "this searcher needs fidelity", field="fidelity", reason=Reason.REQUIRED,
        cel="has(self.fidelity) || !has(self.algorithm) || !has(self.algorithm.searcher) || "
            f"!(self.algorithm.searcher in {_cel_list(_MULTI_FIDELITY_SEARCHERS)})",
        check=lambda s: s.fidelity is not None or s.algorithm is None
        or not s.algorithm.searcher.needs_fidelity)),
    (_TRANSFER_SEARCHERS, Rule(
        "this searcher needs transfer.fromStudies", field="transfer", reason=Reason.REQUIRED,
        cel="has(self.transfer) || !has(self.algorithm) || !has(self.algorithm.searcher) || "
            f"!(self.algorithm.searcher in {_cel_list(_TRANSFER_SEARCHERS)})",
        check=lambda s: s.transfer is not None or s.algorithm is None
        or not s.algorithm.searcher.needs_transfer)),
) if names)


class TuningStudySpec(CrdModel):
    """What to tune, on which hardware, and within which budget."""

    objectives: typing.Annotated[
        list[ObjectiveSpec], Field(min_length=1, max_length=MAX_OBJECTIVES)]
    """The objectives, optimised together (the Pareto front is over all of them)."""
    parameters: typing.Annotated[
        dict[str, ParameterSpec], Field(min_length=1, max_length=MAX_PARAMETERS)]
    """The search space: parameter name -> domain."""
    hardware: HardwareSpec | None = None
    """Hardware searched together with the parameters; omitted: every trial on one default pool."""
    fidelity: FidelitySpec | None = None
    """Resource levels for multi-fidelity scheduling (epochs ...)."""
    algorithm: AlgorithmSpec | None = None
    """Scheduler and searcher (default fifo + random)."""
    transfer: TransferSpec | None = None
    """Warm start from earlier studies."""
    budget: BudgetSpec | None = None
    """When to stop."""
    checkpoints: CheckpointSpec | None = None
    """Where checkpoints live."""
    metrics_collector: MetricsCollectorSpec | None = None
    """How metrics are collected: the SDK (default) or parsed from the trainer's output."""
    trial_template: TrialTemplate
    """Pod template of the trials."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("objective metric names must be unique", field="objectives",
             cel="self.objectives.all(o, self.objectives.exists_one(p, p.metric == o.metric))",
             check=lambda s: len({o.metric for o in s.objectives}) == len(s.objectives)),
        _keys_rule("parameters", PARAMETER_NAME, "parameter name", lambda s: s.parameters),
        Rule("a condition must refer to another parameter of the study", field="parameters",
             cel="self.parameters.all(name, !has(self.parameters[name].condition) || "
                 f"({_CONDITION_TARGET} != name && {_CONDITION_TARGET} in self.parameters))",
             message_expression="self.parameters.filter(name, "
                                "has(self.parameters[name].condition) && "
                                f"({_CONDITION_TARGET} == name || "
                                f"!({_CONDITION_TARGET} in self.parameters)))"
                                ".map(name, 'condition of parameter ' + name + "
                                f"({_CONDITION_TARGET} == name ? ' refers to the parameter itself'"
                                f" : ' refers to unknown parameter ' + {_CONDITION_TARGET}))[0]",
             check=_condition_refs),
        Rule("condition values must be values of the parameter they refer to",
             field="parameters", enforced_by=Enforcement.POLICY,
             cel="self.parameters.all(name, !has(self.parameters[name].condition) || "
                 f"!({_CONDITION_TARGET} in self.parameters) || "
                 f"!has(self.parameters[{_CONDITION_TARGET}].values) || "
                 "self.parameters[name].condition['in'].all(v, "
                 f"self.parameters[{_CONDITION_TARGET}].values.exists(w, "
                 "type(w) == type(v) && w == v)))",
             message_expression="self.parameters.filter(name, "
                                "has(self.parameters[name].condition) && "
                                f"{_CONDITION_TARGET} in self.parameters && "
                                f"has(self.parameters[{_CONDITION_TARGET}].values) && "
                                "!self.parameters[name].condition['in'].all(v, "
                                f"self.parameters[{_CONDITION_TARGET}].values.exists(w, "
                                "type(w) == type(v) && w == v)))"
                                ".map(name, 'condition of parameter ' + name + "
                                f"' lists a value that parameter ' + {_CONDITION_TARGET} + "
                                "' does not take')[0]",
             check=_condition_values),
        Rule(f"parameter names must differ from the built-in metrics "
             f"{', '.join(BUILTIN_METRICS)}", field="parameters",
             cel="self.parameters.all(name, !(name in "
                 f"{_cel_list(list(BUILTIN_METRICS))}))",
             message_expression="'parameter ' + self.parameters.filter(name, name in "
                                f"{_cel_list(list(BUILTIN_METRICS))})[0] + ' is named like a "
                                "built-in metric; pick another name'",
             check=lambda s: next((f"parameter {n} is named like a built-in metric; pick "
                                   "another name" for n in s.parameters
                                   if n in BUILTIN_METRICS), True)),
        Rule("parameter names must stay distinct as env names (- becomes _, upper case)",
             field="parameters",
             cel="self.parameters.all(a, self.parameters.exists_one(b, "
                 "b.upperAscii().replace('-', '_') == a.upperAscii().replace('-', '_')))",
             check=_env_names_unique),
        Rule("metricsCollector.resourceMetric must not be an objective metric",
             field="metricsCollector.resourceMetric",
             cel="!has(self.metricsCollector) || !has(self.metricsCollector.resourceMetric) || "
                 "self.objectives.all(o, o.metric != self.metricsCollector.resourceMetric)",
             check=lambda s: s.metrics_collector is None
             or s.metrics_collector.resource_metric is None
             or all(o.metric != s.metrics_collector.resource_metric for o in s.objectives)),
        Rule("conditions must not form a cycle", field="parameters",
             enforced_by=Enforcement.OPERATOR, check=_condition_cycles),
        Rule(f"this scheduler needs fidelity (only {', '.join(_SINGLE_FIDELITY_SCHEDULERS)} "
             "run without)",
             field="fidelity", reason=Reason.REQUIRED,
             cel="has(self.fidelity) || !has(self.algorithm) || !has(self.algorithm.scheduler) || "
                 f"self.algorithm.scheduler in {_cel_list(_SINGLE_FIDELITY_SCHEDULERS)}",
             check=lambda s: s.fidelity is not None or s.algorithm is None
             or not s.algorithm.scheduler.needs_fidelity),
    ) + _SEARCHER_RULES

    def objective_records(self) -> list[Objective]:
        return [o.to_record() for o in self.objectives]


# ---------------------------------------------------------------------------------------------
# Status (written by the operator)


class ConditionStatus(str, enum.Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A condition in the shape of metav1.Condition (e.g. type Valid, Ready, BudgetExhausted)."""

    type: typing.Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=316)]
    """CamelCase condition type."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: typing.Annotated[str, Field(max_length=1024)] = ""
    """CamelCase reason for the last transition."""
    message: typing.Annotated[str, Field(max_length=32768)] = ""
    """Human-readable details."""
    last_transition_time: dt.datetime | None = None
    """When status last changed."""
    observed_generation: NonNegInt | None = None
    """metadata.generation this condition was computed from."""


class StudyPhase(str, enum.Enum):
    """Where a study is in its life."""

    PENDING = "Pending"  # accepted, no trial started yet (or waiting for pools)
    RUNNING = "Running"
    COMPLETED = "Completed"  # a budget was reached or the search space is exhausted
    FAILED = "Failed"  # invalid spec (see the Valid condition) or an unrecoverable error


class TrialCounts(StatusModel):
    """Trials of the study by phase."""

    total: NonNegInt = 0
    pending: NonNegInt = 0
    running: NonNegInt = 0
    paused: NonNegInt = 0
    completed: NonNegInt = 0
    stopped: NonNegInt = 0
    failed: NonNegInt = 0


class FrontPoint(StatusModel):
    """One trial on the current Pareto front."""

    trial: ObjectName
    """TuningTrial name."""
    trial_id: NonNegInt
    """Trial number within the study."""
    hardware: HardwareChoice | None = None
    """Where the trial ran."""
    parameters: dict[str, JsonScalar] = Field(default_factory=dict)
    """The trial's configuration."""
    objectives: dict[str, FiniteFloat] = Field(default_factory=dict)
    """Objective values by metric (in the metric's own direction)."""


class BestValue(StatusModel):
    """The best trial for one objective alone."""

    trial: ObjectName
    trial_id: NonNegInt
    value: FiniteFloat
    hardware: HardwareChoice | None = None


class TuningStudyStatus(StatusModel):
    """Progress of a study, written by the operator. A public API: dashboards and scripts read it."""

    phase: StudyPhase | None = None
    """Pending, Running, Completed or Failed."""
    conditions: list[Condition] = Field(default_factory=list)
    """Valid, Ready, BudgetExhausted, ... (metav1.Condition shape)."""
    observed_generation: NonNegInt | None = None
    """metadata.generation the status reflects."""
    trials: TrialCounts | None = None
    """Trials by phase."""
    spent_cost_usd: NonNegFloat | None = Field(default=None, alias="spentCostUSD")
    """Money spent so far (USD), from the runtime trials really had."""
    gpu_hours: NonNegFloat | None = Field(default=None, alias="gpuHours")
    """GPU-hours used so far."""
    hypervolume: FiniteFloat | None = None
    """Hypervolume of the current front (normalised objectives, fixed reference point)."""
    front_size: NonNegInt | None = None
    """Number of trials on the Pareto front."""
    pareto_front: list[FrontPoint] = Field(default_factory=list)
    """The non-dominated trials over all objectives; at most 50 points and 40 KiB (the best of
    each objective, then points spread along the first objective: see frontOmitted)."""
    front_omitted: NonNegInt | None = None
    """Front points not listed in paretoFront (the status stays small at any study size)."""
    front_source: typing.Annotated[str, Field(max_length=1024)] | None = None
    """Where the whole front lives (set when points are omitted): the study's TuningTrials."""
    best_per_objective: dict[str, BestValue] = Field(default_factory=dict)
    """The best trial for each objective alone, by metric."""
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    message: typing.Annotated[str, Field(max_length=32768)] | None = None
    """Short human-readable summary."""


# ---------------------------------------------------------------------------------------------
# TuningTrial


class TuningTrialSpec(CrdModel):
    """One configuration on one hardware choice. Created by the operator; never changes."""

    study_name: ObjectName
    """The owning TuningStudy (same namespace)."""
    trial_id: NonNegInt
    """Trial number within the study (0, 1, ...)."""
    parameters: typing.Annotated[
        dict[str, JsonScalar], Field(max_length=MAX_PARAMETERS)] = Field(default_factory=dict)
    """Parameter values (inactive conditional parameters are absent)."""
    hardware: HardwareChoice | None = None
    """Pool and GPU count."""
    target_resource: typing.Annotated[StrictInt, Field(ge=1)] | None = None
    """Resource level to run up to before the next decision (a rung); omitted: the study max."""
    resume_from_checkpoint: typing.Annotated[str, Field(max_length=4096)] | None = None
    """Checkpoint to resume from (a path in the checkpoint store, or a URI)."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        # A map of untyped values is invisible to CRD rules; the operator writes trials anyway.
        _keys_rule("parameters", PARAMETER_NAME, "parameter name", lambda t: t.parameters,
                   enforced_by=Enforcement.OPERATOR),
    )


class LearningCurvePoint(StatusModel):
    """Metrics the trainer reported at one resource level."""

    resource: typing.Annotated[StrictInt, Field(ge=1)]
    metrics: dict[str, FiniteFloat]
    time: dt.datetime | None = None


class TuningTrialStatus(StatusModel):
    """What happened to a trial, written by the operator."""

    phase: TrialPhase | None = None
    """Pending, Running, Paused, Completed, Stopped or Failed."""
    resource: NonNegInt | None = None
    """Last resource level reported."""
    learning_curve: list[LearningCurvePoint] = Field(default_factory=list)
    """The reports, in order (objectives per resource level); at most 100 points and 48 KiB:
    the last, the first, the best of each objective, then points spread over the curve."""
    reports: NonNegInt | None = None
    """Reports in all (the study's event log holds every one)."""
    runtime_seconds: NonNegFloat | None = None
    """Seconds the trial really ran (all its Jobs together)."""
    cost_usd: NonNegFloat | None = Field(default=None, alias="costUSD")
    """runtime priced by the trial's hardware (USD)."""
    gpu_hours: NonNegFloat | None = Field(default=None, alias="gpuHours")
    last_checkpoint: typing.Annotated[str, Field(max_length=4096)] | None = None
    """Newest checkpoint (path or URI); a resumed trial starts from it."""
    job_name: ObjectName | None = None
    """The batch/v1 Job running (or last running) the trial."""
    reason: typing.Annotated[str, Field(max_length=1024)] | None = None
    """CamelCase reason of the phase (e.g. StoppedByScheduler, OOMKilled, Preempted)."""
    message: typing.Annotated[str, Field(max_length=32768)] | None = None
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    observed_generation: NonNegInt | None = None


# ---------------------------------------------------------------------------------------------
# HardwarePool


class TolerationOperator(str, enum.Enum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(str, enum.Enum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(CrdModel):
    """A pod toleration (core/v1 shape) added to trials on this pool."""

    key: typing.Annotated[str, Field(max_length=316)] | None = None
    operator: TolerationOperator | None = None
    value: typing.Annotated[str, Field(max_length=63)] | None = None
    effect: TaintEffect | None = None
    toleration_seconds: StrictInt | None = None

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("operator Exists takes no value", field="value", reason=Reason.FORBIDDEN,
             cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
             check=lambda t: t.operator is not TolerationOperator.EXISTS or t.value is None),
    )


class HardwarePoolSpec(CrdModel):
    """A kind of GPU node the optimizer may choose, and what it costs."""

    gpu_type: typing.Annotated[str, Field(min_length=1, max_length=128)]
    """GPU model, e.g. nvidia-a100-80gb."""
    gpu_memory_gib: PosFloat = Field(alias="gpuMemoryGiB")
    """Memory of one GPU in GiB (trials that need more fail as OOM)."""
    gpus_per_node: typing.Annotated[StrictInt, Field(ge=1, le=64)]
    """GPUs on one node."""
    price_per_gpu_hour: NonNegFloat | None = Field(default=None, alias="pricePerGPUHour")
    """Price of one GPU for one hour (USD)."""
    price_per_node_hour: NonNegFloat | None = Field(default=None, alias="pricePerNodeHour")
    """Price of one node for one hour (USD)."""
    relative_throughput: PosFloat = 1.0
    """Speed of one GPU relative to the reference device the runtimes were measured on."""
    node_selector: typing.Annotated[
        dict[str, typing.Annotated[str, Field(max_length=63)]], Field(max_length=32)] = Field(
        default_factory=dict)
    """Node labels that select this pool's nodes."""
    tolerations: typing.Annotated[list[Toleration], Field(max_length=32)] = Field(
        default_factory=list)
    """Tolerations for the pool's taints."""
    max_nodes: typing.Annotated[StrictInt, Field(ge=1)] | None = None
    """Most nodes of this pool hwtune may use at once."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule("set exactly one of pricePerGPUHour or pricePerNodeHour",
             cel="has(self.pricePerGPUHour) != has(self.pricePerNodeHour)",
             check=lambda p: (p.price_per_gpu_hour is None) != (p.price_per_node_hour is None)),
    )

    @property
    def gpu_hour_price(self) -> float:
        """Price of one GPU-hour whichever way the pool is priced."""
        if self.price_per_gpu_hour is not None:
            return self.price_per_gpu_hour
        return float(self.price_per_node_hour or 0.0) / self.gpus_per_node


class HardwarePoolStatus(StatusModel):
    """What the operator found in the cluster for this pool."""

    nodes: NonNegInt | None = None
    """Nodes matching nodeSelector."""
    allocatable_gpus: NonNegInt | None = Field(default=None, alias="allocatableGPUs")
    """Sum of allocatable GPUs over those nodes."""
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: NonNegInt | None = None


# ---------------------------------------------------------------------------------------------
# The resources


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class CrdInfo:
    """Identity of a resource: never guessed from the kind."""

    kind: str
    plural: str
    singular: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("hwtune",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


class ObjectMeta(CrdModel):
    """The parts of metav1.ObjectMeta hwtune reads; the rest passes through."""

    model_config = {"extra": "allow"}

    name: name_type(DNS_SUBDOMAIN, 253) | None = None
    namespace: name_type(DNS_LABEL, 63) | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class StudyObjectMeta(ObjectMeta):
    """Study names are short: trial names append "-<trialId>" and Job names a further suffix,
    and Job names end up in 63-character labels."""

    name: name_type(DNS_SUBDOMAIN, 48) | None = None


class _Resource(CrdModel):
    __crd__: ClassVar[CrdInfo]
    api_version: Literal["hwtune.io/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)


class TuningStudy(_Resource):
    """A hardware-aware multi-objective hyperparameter tuning study."""

    __crd__ = CrdInfo(
        kind="TuningStudy", plural="tuningstudies", singular="tuningstudy", scope="Namespaced",
        short_names=("ts", "tstudy"),
        printer_columns=(
            PrinterColumn("Phase", ".status.phase", "string"),
            PrinterColumn("Trials", ".status.trials.total", "integer", "Trials started"),
            PrinterColumn("Completed", ".status.trials.completed", "integer"),
            PrinterColumn("Running", ".status.trials.running", "integer"),
            PrinterColumn("Front", ".status.frontSize", "integer", "Trials on the Pareto front"),
            PrinterColumn("Cost", ".status.spentCostUSD", "number", "Spent USD"),
            PrinterColumn("GPU-Hours", ".status.gpuHours", "number", priority=1),
            PrinterColumn("Hypervolume", ".status.hypervolume", "number", priority=1),
            _AGE,
        ),
    )
    kind: Literal["TuningStudy"] = "TuningStudy"
    metadata: StudyObjectMeta = Field(default_factory=StudyObjectMeta)
    spec: TuningStudySpec
    status: TuningStudyStatus | None = None


class TuningTrial(_Resource):
    """One trial of a TuningStudy."""

    __crd__ = CrdInfo(
        kind="TuningTrial", plural="tuningtrials", singular="tuningtrial", scope="Namespaced",
        short_names=("tt", "ttrial"),
        printer_columns=(
            PrinterColumn("Study", ".spec.studyName", "string"),
            PrinterColumn("Phase", ".status.phase", "string"),
            PrinterColumn("Hardware", ".spec.hardware.pool", "string", "HardwarePool"),
            PrinterColumn("GPUs", ".spec.hardware.gpuCount", "integer"),
            PrinterColumn("Resource", ".status.resource", "integer",
                          "Last resource level reported"),
            PrinterColumn("Cost", ".status.costUSD", "number", "USD"),
            PrinterColumn("Reason", ".status.reason", "string", priority=1),
            _AGE,
        ),
    )
    kind: Literal["TuningTrial"] = "TuningTrial"
    spec: TuningTrialSpec
    status: TuningTrialStatus | None = None


class HardwarePool(_Resource):
    """A pool of GPU nodes of one kind, with its price (cluster-scoped)."""

    __crd__ = CrdInfo(
        kind="HardwarePool", plural="hardwarepools", singular="hardwarepool", scope="Cluster",
        short_names=("hwp",),
        printer_columns=(
            PrinterColumn("GPU", ".spec.gpuType", "string"),
            PrinterColumn("GPUs/Node", ".spec.gpusPerNode", "integer"),
            PrinterColumn("Memory", ".spec.gpuMemoryGiB", "number", "GPU memory (GiB)",
                          priority=1),
            PrinterColumn("Price", ".spec.pricePerGPUHour", "number", "USD per GPU-hour"),
            PrinterColumn("Node-Price", ".spec.pricePerNodeHour", "number", "USD per node-hour",
                          priority=1),
            PrinterColumn("Throughput", ".spec.relativeThroughput", "number", priority=1),
            PrinterColumn("Nodes", ".status.nodes", "integer", priority=1),
            _AGE,
        ),
    )
    kind: Literal["HardwarePool"] = "HardwarePool"
    spec: HardwarePoolSpec
    status: HardwarePoolStatus | None = None


RESOURCES: tuple[type[_Resource], ...] = (TuningStudy, TuningTrial, HardwarePool)
_BY_KIND = {r.__crd__.kind: r for r in RESOURCES}

Manifest = TuningStudy | TuningTrial | HardwarePool


def validation_errors(doc: Any) -> list[FieldError]:
    """Every refusal of one decoded manifest (empty when it is valid)."""
    try:
        parse_manifest(doc)
    except ManifestError as exc:
        return exc.errors
    return []


def parse_manifest(doc: Any, source: str = "") -> Manifest:
    """Validate one decoded YAML/JSON document of a hwtune kind and return its model.

    Raises ManifestError naming each bad field (``spec.budget.maxTrials: ...``) and ``source``
    (e.g. "study.yaml, document 2") when given.
    """
    if not isinstance(doc, Mapping):
        raise ManifestError([FieldError("", "a manifest must be a mapping")], source)
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        raise ManifestError([FieldError(
            "apiVersion", f"must be {API_VERSION!r}, got {api_version!r}")], source)
    model = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ManifestError([FieldError(
            "kind", f"must be one of {', '.join(sorted(_BY_KIND))}, got {kind!r}")], source)
    try:
        return model.model_validate(dict(doc))
    except ValidationError as exc:
        raise ManifestError(field_errors(exc, model), source) from None


def parse_spec(model: type[CrdModel], spec: Any, prefix: str = "spec") -> Any:
    """Validate a bare spec mapping (e.g. ``TuningStudySpec``); errors are prefixed ``spec.``."""
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        raise ManifestError(field_errors(exc, model, prefix)) from None


class _StudySpecWithoutTemplate(TuningStudySpec):
    """TuningStudySpec for benchmarks and tests that never start a pod: the same fields and
    rules, only ``trialTemplate`` may be left out."""

    __rules__ = TuningStudySpec.__rules__
    trial_template: TrialTemplate | None = None


def parse_study_spec(spec: Any, *, require_trial_template: bool = True) -> TuningStudySpec:
    """Validate a TuningStudy ``spec`` map: the one entry point of every spec the engine runs
    (the operator, ``hwtune tune`` and the benchmarks). Raises ManifestError with ``spec.``
    field paths."""
    model = TuningStudySpec if require_trial_template else _StudySpecWithoutTemplate
    return parse_spec(model, spec)


def load_documents(text: str, source: str = "") -> list[Any]:
    """Decode a multi-document YAML string the way kubectl does (empty documents skipped, YAML
    1.2 numbers, duplicate keys refused, size, nesting and aliases bounded): see
    ``hwtune.api.yamlio``. Raises ManifestError."""
    return load_manifests(text, source)

"""``StudyConfig``: a validated TuningStudy spec, in engine terms.

``StudyConfig.from_spec(spec)`` takes the ``spec`` map of a TuningStudy (camelCase keys, the
shape in docs and in ``hwtune.api.crd``) and returns plain objects: objectives, the search
space, the hardware choices and the hardware model that prices them, fidelity, budget and the
algorithm names. Every error is a ``SpecError`` naming the field path, e.g.
``parameters.lr.max: must be > min (0.1), got 0.01`` or ``budget.maxTrials: must be an integer >= 1``.

The Kubernetes-only fields (``trialTemplate``, ``checkpoints``) are kept as given; their schema
is checked by the CRD models. ``trialTemplate`` is required by the TuningStudy schema but not
here, so benchmarks can build a config without one (``require_trial_template=True`` checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from hwtune.api.records import BUILTIN_METRICS, Goal, Objective
from hwtune.engine.budget import Budget
from hwtune.optimize.hardware import (
    DEFAULT_CATALOG,
    HardwareModel,
    HardwareSpace,
    PoolSpec,
    resolve_hardware,
)
from hwtune.space import SearchSpace
from hwtune.space.errors import SpecError, join_path

__all__ = [
    "SCHEDULER_KINDS",
    "SEARCHER_KINDS",
    "AlgorithmSpec",
    "FidelitySpec",
    "SpecError",
    "StudyConfig",
]

SCHEDULER_KINDS = ("fifo", "random", "asha", "asha-promotion", "hyperband", "mo-asha",
                   "mo-asha-promotion", "dyhpo")
# dyhpo / fms and its ablations (fms-flat: flattened weights, fms-nocurve: no learning-curve
# CNN) are hwtune.surrogate's (see docs/surrogate.md).
SEARCHER_KINDS = ("random", "grid", "dyhpo", "fms", "fms-flat", "fms-nocurve", "transfer")

_TOP_LEVEL = ("objectives", "parameters", "hardware", "fidelity", "algorithm", "transfer",
              "budget", "checkpoints", "trialTemplate")


@dataclass(frozen=True)
class FidelitySpec:
    """Resource levels ``min..max`` the trainer reports at (epochs, usually). A study without
    a ``fidelity`` block gets ``min = max = 1``: each trial reports once, and that report
    completes it."""

    resource: str = "epoch"
    min: int = 1
    max: int = 1
    reduction_factor: int = 3
    declared: bool = True  # False when the spec had no fidelity block

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, path: str = "fidelity") -> "FidelitySpec":
        if spec is None:
            return cls(declared=False)
        _check_map(spec, path, ("resource", "min", "max", "reductionFactor"))
        resource = spec.get("resource", "epoch")
        if not isinstance(resource, str) or not resource:
            raise SpecError(join_path(path, "resource"), f"must be a non-empty string, got {resource!r}")
        lo = _int(spec.get("min", 1), join_path(path, "min"), minimum=1)
        if "max" not in spec:
            raise SpecError(join_path(path, "max"), "is required")
        hi = _int(spec["max"], join_path(path, "max"), minimum=1)
        if hi <= lo:
            raise SpecError(join_path(path, "max"), f"must be > min ({lo}), got {hi}")
        eta = _int(spec.get("reductionFactor", 3), join_path(path, "reductionFactor"), minimum=2)
        return cls(resource=resource, min=lo, max=hi, reduction_factor=eta)

    def to_spec(self) -> dict[str, Any] | None:
        if not self.declared:
            return None
        return {"resource": self.resource, "min": self.min, "max": self.max,
                "reductionFactor": self.reduction_factor}


@dataclass(frozen=True)
class AlgorithmSpec:
    scheduler: str = "fifo"
    searcher: str = "random"
    seed: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, path: str = "algorithm") -> "AlgorithmSpec":
        if spec is None:
            return cls()
        _check_map(spec, path, ("scheduler", "searcher", "seed", "settings"))
        scheduler = spec.get("scheduler", "fifo")
        if scheduler not in SCHEDULER_KINDS:
            raise SpecError(join_path(path, "scheduler"),
                            f"unknown scheduler {scheduler!r} (one of: {', '.join(SCHEDULER_KINDS)})")
        searcher = spec.get("searcher", "random")
        if searcher not in SEARCHER_KINDS:
            raise SpecError(join_path(path, "searcher"),
                            f"unknown searcher {searcher!r} (one of: {', '.join(SEARCHER_KINDS)})")
        seed = spec.get("seed")
        if seed is not None:
            seed = _int(seed, join_path(path, "seed"), minimum=0)
        settings = spec.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise SpecError(join_path(path, "settings"), f"must be a map, got {type(settings).__name__}")
        return cls(scheduler=scheduler, searcher=searcher, seed=seed, settings=dict(settings))


@dataclass(frozen=True)
class StudyConfig:
    """Everything the engine needs to run a study. Build it with ``from_spec``."""

    objectives: tuple[Objective, ...]
    space: SearchSpace
    hardware: HardwareSpace  # the (pool, gpu count) choices; empty = no hardware dimension
    hardware_model: HardwareModel
    fidelity: FidelitySpec = field(default_factory=FidelitySpec)
    budget: Budget = field(default_factory=Budget)
    algorithm: AlgorithmSpec = field(default_factory=AlgorithmSpec)
    transfer_from: tuple[str, ...] = ()
    checkpoints: Mapping[str, Any] | None = None
    trial_template: Mapping[str, Any] | None = None

    @property
    def seed(self) -> int:
        return 0 if self.algorithm.seed is None else self.algorithm.seed

    @property
    def max_resource(self) -> int:
        return self.fidelity.max

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        catalog: Mapping[str, PoolSpec] | None = None,
        require_trial_template: bool = False,
    ) -> "StudyConfig":
        """Parse a TuningStudy ``spec``. ``catalog`` maps HardwarePool names to pools (the
        cluster's HardwarePools, or the local catalog); default ``DEFAULT_CATALOG``."""
        if not isinstance(spec, Mapping):
            raise SpecError("spec", f"must be a map, got {type(spec).__name__}")
        _check_map(spec, "", _TOP_LEVEL)
        objectives = _parse_objectives(spec.get("objectives"))
        if "parameters" not in spec:
            raise SpecError("parameters", "is required (at least one parameter)")
        space = SearchSpace.from_spec(spec["parameters"], path="parameters")
        clash = sorted(set(space.names) & set(BUILTIN_METRICS))
        if clash:
            raise SpecError(join_path("parameters", clash[0]),
                            "is the name of a built-in metric; pick another parameter name")
        hardware, model = resolve_hardware(spec.get("hardware"),
                                           DEFAULT_CATALOG if catalog is None else catalog,
                                           path="hardware")
        fidelity = FidelitySpec.from_spec(spec.get("fidelity"))
        budget = Budget.from_spec(spec.get("budget"))
        algorithm = AlgorithmSpec.from_spec(spec.get("algorithm"))
        transfer_from = _parse_transfer(spec.get("transfer"))
        if algorithm.searcher == "transfer" and not transfer_from:
            raise SpecError("transfer.fromStudies", "is required when algorithm.searcher is 'transfer'")
        checkpoints = spec.get("checkpoints")
        if checkpoints is not None:
            _check_checkpoints(checkpoints)
        template = spec.get("trialTemplate")
        if template is not None and not isinstance(template, Mapping):
            raise SpecError("trialTemplate", f"must be a map (a pod template), got {type(template).__name__}")
        if require_trial_template and template is None:
            raise SpecError("trialTemplate", "is required")
        return cls(objectives=objectives, space=space, hardware=hardware, hardware_model=model,
                   fidelity=fidelity, budget=budget, algorithm=algorithm,
                   transfer_from=transfer_from, checkpoints=checkpoints, trial_template=template)

    # -- building the algorithm ----------------------------------------------------------------
    def search_context(self, study_view=None, *, study_name: str = "", checkpoint_locator=None):
        """The ``SearchContext`` handed to searcher and scheduler factories. ``study_view`` (a
        ``StudyView``) is attached by ``Study``; without one a fresh, unattached view is used."""
        from hwtune.optimize.context import FidelityInfo, SearchContext, StudyView

        view = study_view if study_view is not None else StudyView(self.objectives, checkpoint_locator)
        f = self.fidelity
        return SearchContext(
            objectives=self.objectives, space=self.space, hardware=self.hardware,
            hardware_model=self.hardware_model,
            fidelity=FidelityInfo(f.resource, f.min, f.max, f.reduction_factor),
            seed=self.seed, settings=dict(self.algorithm.settings), study=view,
            study_name=study_name, checkpoints=self.checkpoints)

    def make_searcher(self, *, context=None, **extra: Any):
        """The searcher named by ``algorithm.searcher`` over this space and hardware."""
        from hwtune.optimize.searchers import make_searcher

        return make_searcher(self.algorithm.searcher, self.space, self.hardware, seed=self.seed,
                             settings=self.algorithm.settings,
                             context=context if context is not None else self.search_context(),
                             **extra)

    def make_scheduler(self, searcher=None, *, context=None):
        """The scheduler named by ``algorithm.scheduler``, owning ``searcher`` or a fresh one
        from ``make_searcher()``; both get the same ``context`` (default: a fresh, unattached
        one). A fresh call gives a fresh scheduler in its initial state: what ``Study.rebuild``
        replays into."""
        from hwtune.optimize.schedulers import make_scheduler

        context = context if context is not None else self.search_context()
        return make_scheduler(
            self.algorithm.scheduler,
            searcher=searcher if searcher is not None else self.make_searcher(context=context),
            objectives=self.objectives,
            resource_min=self.fidelity.min,
            resource_max=self.fidelity.max,
            reduction_factor=self.fidelity.reduction_factor,
            seed=self.seed,
            settings=dict(self.algorithm.settings),
            context=context,
        )


# -- helpers ------------------------------------------------------------------------------------
def _check_map(spec: Any, path: str, known: tuple[str, ...]) -> None:
    if not isinstance(spec, Mapping):
        raise SpecError(path or "spec", f"must be a map, got {type(spec).__name__}")
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise SpecError(join_path(path, unknown[0]), f"unknown field (known: {', '.join(known)})")


def _int(value: Any, path: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not float(value).is_integer():
        raise SpecError(path, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(path, f"must be >= {minimum}, got {value!r}")
    return int(value)


def _parse_objectives(spec: Any) -> tuple[Objective, ...]:
    if spec is None:
        raise SpecError("objectives", "is required (at least one objective)")
    if not isinstance(spec, (list, tuple)) or not spec:
        raise SpecError("objectives", "must be a non-empty list")
    out: list[Objective] = []
    seen: set[str] = set()
    for i, item in enumerate(spec):
        path = join_path("objectives", i)
        _check_map(item, path, ("metric", "goal"))
        metric = item.get("metric")
        if not isinstance(metric, str) or not metric:
            raise SpecError(join_path(path, "metric"), f"must be a non-empty string, got {metric!r}")
        if metric in seen:
            raise SpecError(join_path(path, "metric"), f"{metric!r} is listed twice")
        seen.add(metric)
        goal = item.get("goal", "minimize")
        try:
            goal = Goal(goal)
        except ValueError:
            raise SpecError(join_path(path, "goal"), f"must be minimize or maximize, got {goal!r}") from None
        out.append(Objective(metric, goal))
    return tuple(out)


def _parse_transfer(spec: Any) -> tuple[str, ...]:
    if spec is None:
        return ()
    _check_map(spec, "transfer", ("fromStudies", "mapping"))
    names = spec.get("fromStudies") or []
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise SpecError("transfer.fromStudies", f"must be a list of study names, got {names!r}")
    return tuple(names)


def _check_checkpoints(spec: Any) -> None:
    _check_map(spec, "checkpoints", ("persistentVolumeClaim", "path", "uri"))
    has_pvc, has_uri = "persistentVolumeClaim" in spec, "uri" in spec
    if has_pvc == has_uri:
        raise SpecError("checkpoints", "set exactly one of persistentVolumeClaim and uri")

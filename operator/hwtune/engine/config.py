"""``StudyConfig``: a TuningStudy spec, validated once by the CRD model, in engine terms.

The engine does not validate specs itself: ``hwtune.api.crd.TuningStudySpec`` (the model the
CRD is generated from, so the API server's own rules) does. ``StudyConfig.from_model(spec)``
takes that validated model and builds the engine's objects: objective records, the search space,
the hardware choices and the hardware model that prices them, the budget. The operator, the
local backend (``hwtune tune``) and the benchmarks all enter here.

``StudyConfig.from_spec(map)`` is the same after validating a raw ``spec`` map with the model;
a refusal is a ``SpecError``/``ManifestError`` naming ``spec.<field path>`` and the reason.
What the schema cannot see is checked here with the same error type: the hardware choices
against the pool catalog (a pool must exist, a GPU count must fit a node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hwtune.api import algorithms
from hwtune.api._base import ManifestError
from hwtune.api.crd import (
    AlgorithmSpec,
    FidelitySpec,
    HardwarePoolSpec,
    ParameterSpec,
    TuningStudySpec,
    parse_study_spec,
)
from hwtune.api.records import Objective
from hwtune.engine.budget import Budget
from hwtune.optimize.hardware import (
    DEFAULT_CATALOG,
    HardwareModel,
    HardwareSpace,
    PoolSpec,
    resolve_hardware,
)
from hwtune.space import SearchSpace, domain_from_model
from hwtune.space.errors import SpecError

__all__ = [
    "SCHEDULER_KINDS",
    "SEARCHER_KINDS",
    "SINGLE_FIDELITY",
    "SpecError",
    "StudyConfig",
    "pool_catalog",
    "space_from_model",
]

SCHEDULER_KINDS = algorithms.scheduler_names()
SEARCHER_KINDS = algorithms.searcher_names()

# A study without ``fidelity`` reports once per trial: level 1 is also the maximum. The CRD's
# FidelitySpec refuses min == max (a rung needs room), so this value is built, not validated.
SINGLE_FIDELITY = FidelitySpec.model_construct(resource="epoch", min=1, max=1, reduction_factor=3)


def pool_catalog(pools: Mapping[str, Any] | None = None, *,
                 base: Mapping[str, PoolSpec] | None = DEFAULT_CATALOG) -> dict[str, PoolSpec]:
    """The catalog a study's ``hardware`` is resolved against: ``base`` (default: the built-in
    catalog; None for none) plus HardwarePools by name, given as validated
    ``hwtune.api.crd.HardwarePoolSpec`` models (the operator's) or their spec maps (a study
    file's); a pool of the same name replaces the built-in one."""
    catalog = dict(base or {})
    for name, pool in (pools or {}).items():
        spec = pool.to_dict() if isinstance(pool, HardwarePoolSpec) else pool
        catalog[name] = PoolSpec.from_spec(spec, f"pools[{name}].spec")
    return catalog


def space_from_model(parameters: Mapping[str, ParameterSpec]) -> SearchSpace:
    """The search space of a validated ``spec.parameters``."""
    return SearchSpace([domain_from_model(name, p) for name, p in parameters.items()],
                       path="spec.parameters")


@dataclass(frozen=True)
class StudyConfig:
    """Everything the engine needs to run a study. Build it with ``from_model`` (or
    ``from_spec``). ``spec`` is the validated CRD model it came from."""

    spec: TuningStudySpec
    objectives: tuple[Objective, ...]
    space: SearchSpace
    hardware: HardwareSpace  # the (pool, gpu count) choices; empty = no hardware dimension
    hardware_model: HardwareModel
    budget: Budget = field(default_factory=Budget)
    # The earlier studies of transfer.fromStudies, loaded (hwtune.transfer.PastStudy): not in
    # the spec; the backend that can read them attaches them with ``with_transfer_studies``.
    transfer_studies: tuple[Any, ...] = ()

    # -- views of the spec -------------------------------------------------------------------
    @property
    def fidelity(self) -> FidelitySpec:
        """``spec.fidelity``, or ``SINGLE_FIDELITY`` (one report per trial) when omitted."""
        return self.spec.fidelity if self.spec.fidelity is not None else SINGLE_FIDELITY

    @property
    def fidelity_declared(self) -> bool:
        return self.spec.fidelity is not None

    @property
    def algorithm(self) -> AlgorithmSpec:
        return self.spec.algorithm if self.spec.algorithm is not None else AlgorithmSpec()

    @property
    def scheduler_name(self) -> str:
        return self.algorithm.scheduler.value

    @property
    def searcher_name(self) -> str:
        return self.algorithm.searcher.value

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.algorithm.settings or {})

    @property
    def seed(self) -> int:
        return 0 if self.algorithm.seed is None else self.algorithm.seed

    @property
    def max_resource(self) -> int:
        return self.fidelity.max

    @property
    def transfer_from(self) -> tuple[str, ...]:
        return tuple(self.spec.transfer.from_studies) if self.spec.transfer else ()

    @property
    def transfer_method(self) -> str:
        """``transfer.method``; default ``algorithms.DEFAULT_TRANSFER_METHOD``."""
        method = self.spec.transfer.method if self.spec.transfer else None
        return method.value if method is not None else algorithms.DEFAULT_TRANSFER_METHOD

    @property
    def transfer_renames(self) -> dict[str, str]:
        """``transfer.mapping``: parameter name in the earlier studies -> name here."""
        return dict(self.spec.transfer.mapping or {}) if self.spec.transfer else {}

    def with_transfer_studies(self, studies: Any) -> "StudyConfig":
        """This config with the loaded earlier studies of ``transfer.fromStudies``."""
        import dataclasses

        return dataclasses.replace(self, transfer_studies=tuple(studies))

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_model(
        cls,
        spec: TuningStudySpec,
        *,
        catalog: Mapping[str, PoolSpec] | None = None,
    ) -> "StudyConfig":
        """The engine's view of a validated TuningStudy spec. ``catalog`` maps HardwarePool
        names to pools (the cluster's HardwarePools, or the local catalog); default
        ``DEFAULT_CATALOG``. Raises ``SpecError`` for what only the catalog can tell (an
        unknown pool, no GPU count that fits)."""
        hardware_spec = spec.hardware.to_dict() if spec.hardware is not None else None
        hardware, model = resolve_hardware(hardware_spec,
                                           DEFAULT_CATALOG if catalog is None else catalog,
                                           path="spec.hardware")
        budget = Budget.from_model(spec.budget)
        return cls(spec=spec, objectives=tuple(spec.objective_records()),
                   space=space_from_model(spec.parameters), hardware=hardware,
                   hardware_model=model, budget=budget)

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        catalog: Mapping[str, PoolSpec] | None = None,
        require_trial_template: bool = False,
    ) -> "StudyConfig":
        """Validate a TuningStudy ``spec`` map with the CRD model, then ``from_model``.
        Benchmarks and tests may leave ``trialTemplate`` out unless ``require_trial_template``.
        Raises ``ManifestError`` listing every refusal (``spec.budget.maxTrials: ...``)."""
        return cls.from_model(parse_study_spec(spec, require_trial_template=require_trial_template),
                              catalog=catalog)

    # -- building the algorithm ----------------------------------------------------------------
    @property
    def checkpoints(self) -> dict[str, Any] | None:
        """``spec.checkpoints`` as a map (``uri`` or ``persistentVolumeClaim`` + ``path``)."""
        c = self.spec.checkpoints
        return None if c is None else c.to_dict()

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
            seed=self.seed, settings=self.settings, study=view, study_name=study_name,
            checkpoints=self.checkpoints)

    def make_searcher(self, *, context=None, **extra: Any):
        """The searcher named by ``algorithm.searcher`` over this space and hardware, given
        ``context`` (default: a fresh, unattached one)."""
        from hwtune.optimize.searchers import make_searcher

        extra.setdefault("objectives", self.objectives)
        entry = algorithms.searcher(self.searcher_name)
        if entry.needs_transfer or (entry.uses_transfer and self.transfer_studies):
            extra.setdefault("transfer_studies", self.transfer_studies)
            extra.setdefault("transfer_method", self.transfer_method)
            extra.setdefault("transfer_renames", self.transfer_renames)
        return make_searcher(self.searcher_name, self.space, self.hardware, seed=self.seed,
                             settings=self.settings,
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
            self.scheduler_name,
            searcher=searcher if searcher is not None else self.make_searcher(context=context),
            objectives=self.objectives,
            resource_min=self.fidelity.min,
            resource_max=self.fidelity.max,
            reduction_factor=self.fidelity.reduction_factor,
            seed=self.seed,
            settings=self.settings,
            context=context,
        )

    def check_algorithm(self) -> None:
        """Build the searcher and scheduler once, so a study whose algorithm cannot run is
        refused before anything starts (its provider failed to import, a setting is bad).
        Raises ``SpecError`` at ``spec.algorithm``. A transfer study whose earlier studies are
        not loaded yet (``hwtune validate``) checks its provider and scheduler only."""
        try:
            if self.searcher_name == "transfer" and not self.transfer_studies:
                import hwtune.transfer  # noqa: F401 - its provider must import
                from hwtune.optimize.searchers import make_searcher

                self.make_scheduler(make_searcher("random", self.space, self.hardware))
                return
            self.make_scheduler()
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise SpecError("spec.algorithm", str(exc)) from None

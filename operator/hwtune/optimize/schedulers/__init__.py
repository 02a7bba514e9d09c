"""Schedulers: decide CONTINUE / PAUSE / STOP for each report and which trial runs next.

Use :func:`make_scheduler` to build one from the study's ``algorithm.scheduler`` name:

==================== ===================================================================
kind                 behaviour
==================== ===================================================================
fifo, random         every trial runs to the maximum resource (random search when the
                     searcher is random)
asha                 asynchronous successive halving, stopping variant: at each rung a
                     trial continues iff it is in the top 1/eta of its rung, else STOP
asha-promotion       ASHA, promotion variant: trials PAUSE at every rung and are resumed
                     when they rank in the top 1/eta of it
hyperband            several ASHA brackets (stopping variant) with different minimum
                     resources; new trials are spread over brackets
mo-asha              MO-ASHA, stopping variant: the rung ranking is non-dominated sorting
                     over all objectives with an epsilon-net (or crowding) tie-break
mo-asha-promotion    MO-ASHA, promotion variant
dyhpo                freeze-thaw (DyHPO): every trial PAUSEs after each step; a surrogate
                     (the searcher name picks it: dyhpo, fms, fms-flat, fms-nocurve)
                     picks by multi-fidelity EI whether a paused trial trains one step
                     more or a new one starts (``hwtune.surrogate``, needs torch)
==================== ===================================================================

Factories also get the study's ``SearchContext`` (``hwtune.optimize.context``) as ``context=``.

Scheduler options come from ``algorithm.settings`` (camelCase keys):
``tieBreak`` (``epsilon-net`` | ``crowding``, MO-ASHA only) and ``brackets`` (int >= 1,
Hyperband only, default: every bracket that fits). Other keys belong to the searcher and are
ignored here.
"""

from __future__ import annotations

import importlib
import numbers
from typing import Any, Callable, Mapping, Sequence

from hwtune.api import algorithms
from hwtune.api.records import Objective
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.schedulers.fifo import FIFOScheduler
from hwtune.optimize.searchers.base import Searcher

__all__ = [
    "SCHEDULER_KINDS",
    "FIFOScheduler",
    "Scheduler",
    "SchedulerFactory",
    "TrialSuggestion",
    "make_scheduler",
    "register_scheduler",
    "scheduler_names",
]

# The names a study may use; the one list lives in hwtune.api.algorithms.
SCHEDULER_KINDS = algorithms.scheduler_names()

# factory(searcher=, objectives=, resource_min=, resource_max=, reduction_factor=, seed=,
# settings=, context=) -> Scheduler; every argument is passed by keyword.
SchedulerFactory = Callable[..., Scheduler]
_REGISTRY: dict[str, SchedulerFactory] = {}


def register_scheduler(name: str, factory: SchedulerFactory) -> None:
    """Make ``make_scheduler(name, ...)`` call ``factory(**arguments)`` (see SchedulerFactory).
    The name must also be listed in ``hwtune.api.algorithms.SCHEDULERS``."""
    _REGISTRY[name] = factory


def scheduler_names() -> tuple[str, ...]:
    return algorithms.scheduler_names()


def _setting(settings: Mapping[str, Any], key: str, default: Any) -> Any:
    return settings[key] if key in settings else default


def _fifo(*, searcher, objectives, resource_min, resource_max, **_: Any) -> Scheduler:
    return FIFOScheduler(searcher, objectives, resource_min=resource_min,
                         resource_max=resource_max)


def _asha(promotion: bool) -> SchedulerFactory:
    def build(*, searcher, objectives, resource_min, resource_max, reduction_factor,
              **_: Any) -> Scheduler:
        # Imported here so that the light FIFO path does not pull the Pareto machinery in.
        from hwtune.optimize.schedulers.asha import ASHAScheduler

        return ASHAScheduler(searcher, objectives, promotion=promotion, resource_min=resource_min,
                             resource_max=resource_max, reduction_factor=reduction_factor)
    return build


def _hyperband(*, searcher, objectives, resource_min, resource_max, reduction_factor, seed,
               settings, **_: Any) -> Scheduler:
    from hwtune.optimize.schedulers.hyperband import HyperbandScheduler

    return HyperbandScheduler(searcher, objectives, brackets=_setting(settings, "brackets", None),
                              seed=int(seed), resource_min=resource_min,
                              resource_max=resource_max, reduction_factor=reduction_factor)


def _moasha(promotion: bool) -> SchedulerFactory:
    def build(*, searcher, objectives, resource_min, resource_max, reduction_factor, settings,
              **_: Any) -> Scheduler:
        from hwtune.optimize.schedulers.moasha import MOASHAScheduler

        return MOASHAScheduler(searcher, objectives, promotion=promotion,
                               tie_break=_setting(settings, "tieBreak", "epsilon-net"),
                               resource_min=resource_min, resource_max=resource_max,
                               reduction_factor=reduction_factor)
    return build


register_scheduler("fifo", _fifo)
register_scheduler("random", _fifo)
register_scheduler("asha", _asha(promotion=False))
register_scheduler("asha-promotion", _asha(promotion=True))
register_scheduler("hyperband", _hyperband)
register_scheduler("mo-asha", _moasha(promotion=False))
register_scheduler("mo-asha-promotion", _moasha(promotion=True))


def make_scheduler(
    kind: str,
    *,
    searcher: Searcher,
    objectives: Sequence[Objective],
    resource_min: int = 1,
    resource_max: int,
    reduction_factor: float = 3,
    seed: int = 0,
    settings: Mapping[str, Any] | None = None,
    context: Any = None,
) -> Scheduler:
    """Build the scheduler named ``kind`` (see the module docstring for the kinds and settings).

    ``objectives`` is the study's list; single-objective schedulers rank by ``objectives[0]``.
    ``resource_min`` is ASHA's grace period (the first rung), ``resource_max`` the level at which
    a trial completes. ``seed`` makes every random choice (Hyperband's bracket draw) repeatable.
    """
    if not isinstance(kind, str) or kind.lower() not in algorithms.scheduler_names():
        raise ValueError(
            f"algorithm.scheduler: unknown scheduler {kind!r}; expected one of "
            f"{', '.join(algorithms.scheduler_names())}"
        )
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"algorithm.seed: must be an integer, got {seed!r}")
    kind = kind.lower()
    entry = algorithms.scheduler(kind)
    if kind not in _REGISTRY:
        try:
            importlib.import_module(entry.provider)
        except ImportError as exc:
            raise ValueError(f"scheduler {kind!r} needs {entry.provider}, which failed to "
                             f"import: {exc}") from exc
    factory = _REGISTRY.get(kind)
    if factory is None:
        raise ValueError(f"scheduler {kind!r} is listed but {entry.provider} registered no "
                         "factory for it")
    return factory(searcher=searcher, objectives=objectives, resource_min=resource_min,
                   resource_max=resource_max, reduction_factor=reduction_factor, seed=int(seed),
                   settings=dict(settings or {}), context=context)

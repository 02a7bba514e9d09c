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

Schedulers of other packages plug in with :func:`register_scheduler`; factories get the study's
``SearchContext`` (``hwtune.optimize.context``) as ``context=``.

Scheduler options come from ``algorithm.settings`` (camelCase keys):
``tieBreak`` (``epsilon-net`` | ``crowding``, MO-ASHA only) and ``brackets`` (int >= 1,
Hyperband only, default: every bracket that fits). Other keys belong to the searcher and are
ignored here.
"""

from __future__ import annotations

import importlib
import numbers
from typing import Any, Callable, Mapping, Sequence

from hwtune.api.records import Objective
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.schedulers.fifo import FIFOScheduler
from hwtune.optimize.searchers.base import Searcher

__all__ = [
    "SCHEDULER_KINDS",
    "FIFOScheduler",
    "Scheduler",
    "TrialSuggestion",
    "make_scheduler",
    "register_scheduler",
]

SCHEDULER_KINDS = (
    "fifo",
    "random",
    "asha",
    "asha-promotion",
    "hyperband",
    "mo-asha",
    "mo-asha-promotion",
    "dyhpo",
)

# name -> factory(searcher=, objectives=, resource_min=, resource_max=, reduction_factor=, seed=,
# settings=, context=) for schedulers that live outside this package.
_REGISTRY: dict[str, Callable[..., Scheduler]] = {}
# Importing the module registers the scheduler (it needs torch, so it is not imported eagerly).
_PROVIDERS = {"dyhpo": "hwtune.surrogate"}


def register_scheduler(name: str, factory: Callable[..., Scheduler]) -> None:
    """Make ``make_scheduler(name, ...)`` call ``factory(**the same keyword arguments)``."""
    _REGISTRY[name] = factory


def _setting(settings: Mapping[str, Any], key: str, default: Any) -> Any:
    return settings[key] if key in settings else default


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
    settings = dict(settings or {})
    if not isinstance(kind, str) or (kind.lower() not in SCHEDULER_KINDS and kind not in _REGISTRY):
        raise ValueError(
            f"algorithm.scheduler: unknown scheduler {kind!r}; expected one of "
            f"{', '.join(SCHEDULER_KINDS)}"
        )
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"algorithm.seed: must be an integer, got {seed!r}")
    kind = kind.lower()
    if kind in _PROVIDERS and kind not in _REGISTRY:
        try:
            importlib.import_module(_PROVIDERS[kind])
        except ImportError as exc:
            raise ValueError(f"algorithm.scheduler: {kind!r} needs {_PROVIDERS[kind]}, which "
                             f"failed to import: {exc}") from exc
    if kind in _REGISTRY:
        return _REGISTRY[kind](searcher=searcher, objectives=objectives, resource_min=resource_min,
                               resource_max=resource_max, reduction_factor=reduction_factor,
                               seed=int(seed), settings=settings, context=context)
    fidelity = dict(
        resource_min=resource_min, resource_max=resource_max, reduction_factor=reduction_factor
    )
    if kind in ("fifo", "random"):
        return FIFOScheduler(
            searcher, objectives, resource_min=resource_min, resource_max=resource_max
        )
    # Imported here so that the light FIFO path does not pull the Pareto machinery in.
    from hwtune.optimize.schedulers.asha import ASHAScheduler
    from hwtune.optimize.schedulers.hyperband import HyperbandScheduler
    from hwtune.optimize.schedulers.moasha import MOASHAScheduler

    if kind in ("asha", "asha-promotion"):
        return ASHAScheduler(
            searcher, objectives, promotion=kind == "asha-promotion", **fidelity
        )
    if kind == "hyperband":
        return HyperbandScheduler(
            searcher,
            objectives,
            brackets=_setting(settings, "brackets", None),
            seed=int(seed),
            **fidelity,
        )
    return MOASHAScheduler(
        searcher,
        objectives,
        promotion=kind == "mo-asha-promotion",
        tie_break=_setting(settings, "tieBreak", "epsilon-net"),
        **fidelity,
    )

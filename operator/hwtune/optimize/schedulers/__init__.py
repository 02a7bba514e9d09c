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
==================== ===================================================================

Scheduler options come from ``algorithm.settings`` (camelCase keys):
``tieBreak`` (``epsilon-net`` | ``crowding``, MO-ASHA only) and ``brackets`` (int >= 1,
Hyperband only, default: every bracket that fits). Other keys belong to the searcher and are
ignored here.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

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
]

SCHEDULER_KINDS = (
    "fifo",
    "random",
    "asha",
    "asha-promotion",
    "hyperband",
    "mo-asha",
    "mo-asha-promotion",
)


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
) -> Scheduler:
    """Build the scheduler named ``kind`` (see the module docstring for the kinds and settings).

    ``objectives`` is the study's list; single-objective schedulers rank by ``objectives[0]``.
    ``resource_min`` is ASHA's grace period (the first rung), ``resource_max`` the level at which
    a trial completes. ``seed`` makes every random choice (Hyperband's bracket draw) repeatable.
    """
    settings = dict(settings or {})
    if not isinstance(kind, str) or kind.lower() not in SCHEDULER_KINDS:
        raise ValueError(
            f"algorithm.scheduler: unknown scheduler {kind!r}; expected one of "
            f"{', '.join(SCHEDULER_KINDS)}"
        )
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"algorithm.seed: must be an integer, got {seed!r}")
    kind = kind.lower()
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

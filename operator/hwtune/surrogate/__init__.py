"""The surrogate: DyHPO's deep-kernel GP over hyperparameters, budget and learning curves, and
FMS's graph metanetwork over checkpoint weights; as hwtune algorithms and as a service.

- ``scheduler: dyhpo`` — freeze-thaw: one step at a time, the next step chosen by
  multi-fidelity EI among paused trials and fresh configs (``freeze_thaw.DyHPOScheduler``).
- ``searcher: dyhpo | fms | fms-flat | fms-nocurve`` — the surrogate variant (under
  ``scheduler: dyhpo``), or a model-based searcher of new configs under any other scheduler.
- ``hwtune surrogate serve`` — the model behind HTTP + JSON (``service``), used when
  ``algorithm.settings.surrogateUrl`` is set; ``docs/surrogate-protocol.md``.

This is the only package that imports torch, gpytorch and torch-geometric, and only in
``models``, ``store``, ``service`` and the benchmark: importing ``hwtune.surrogate`` (which
registers the names above) and building a study that talks to a remote service stay light.
"""

from __future__ import annotations

from typing import Any

from hwtune.optimize.schedulers import register_scheduler
from hwtune.optimize.searchers import register_searcher

__all__ = ["CHECKPOINT_SEARCHERS", "SURROGATE_SEARCHERS"]

SURROGATE_SEARCHERS = ("dyhpo", "fms", "fms-flat", "fms-nocurve")
# The variants that read trials' checkpoints (backends keep per-level copies for them).
CHECKPOINT_SEARCHERS = ("fms", "fms-flat", "fms-nocurve")


def _bare_context(space, hardware, seed, settings, objectives=None, resource_min=1,
                  resource_max=1, reduction_factor=3):
    """A context for a searcher built outside a study (no trials, so it proposes random configs
    until a study gives it data). Studies always pass their own."""
    from hwtune.api.records import Objective
    from hwtune.optimize.context import FidelityInfo, SearchContext
    from hwtune.optimize.searchers.random import as_hardware_space

    return SearchContext(objectives=tuple(objectives or (Objective("objective"),)), space=space,
                         hardware=as_hardware_space(hardware),
                         fidelity=FidelityInfo("epoch", resource_min, resource_max,
                                               int(reduction_factor)),
                         seed=int(seed or 0), settings=dict(settings or {}))


def _searcher_factory(variant: str):
    def build(space, hardware, seed, settings, *, context=None, candidates=None, predictor=None,
              transfer_studies=(), transfer_renames=None, **_: Any):
        from hwtune.surrogate.freeze_thaw import SurrogateSearcher

        context = context or _bare_context(space, hardware, seed, settings)
        return SurrogateSearcher(context, variant, candidates=candidates, predictor=predictor,
                                 transfer_studies=transfer_studies,
                                 transfer_renames=transfer_renames)
    return build


def _dyhpo_scheduler(*, searcher, objectives, resource_min, resource_max, reduction_factor, seed,
                     settings, context=None, **_: Any):
    from hwtune.surrogate.freeze_thaw import DyHPOScheduler, SurrogateSearcher

    if context is None:
        if isinstance(searcher, SurrogateSearcher):
            context = searcher.context
        else:
            context = _bare_context(getattr(searcher, "space"), getattr(searcher, "hardware", ()),
                                    seed, settings, objectives, resource_min, resource_max,
                                    reduction_factor)
    return DyHPOScheduler(searcher, context)


for _name in SURROGATE_SEARCHERS:
    register_searcher(_name, _searcher_factory(_name))
register_scheduler("dyhpo", _dyhpo_scheduler)

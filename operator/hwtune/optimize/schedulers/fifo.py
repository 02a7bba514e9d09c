"""FIFO: start configurations from the searcher one after another and run each to the end.

Also the "random" scheduler kind: the scheduler never interferes, so what is tried is entirely
the searcher's choice (random search when the searcher is random, grid search with a grid, ...).
"""

from __future__ import annotations

from typing import Sequence

from hwtune.api.records import Decision, Objective, Observation, TrialRecord
from hwtune.optimize.schedulers._common import SearcherScheduler, check_fidelity
from hwtune.optimize.schedulers.base import TrialSuggestion
from hwtune.optimize.searchers.base import Searcher

__all__ = ["FIFOScheduler"]


class FIFOScheduler(SearcherScheduler):
    """Every trial runs to ``resource_max``; every report is answered CONTINUE.

    A report at ``resource_max`` is also answered CONTINUE: completing the trial is the engine's
    job (it knows the study maximum), the scheduler only learns of it in ``on_trial_complete``.
    """

    def __init__(
        self,
        searcher: Searcher,
        objectives: Sequence[Objective],
        *,
        resource_min: int = 1,
        resource_max: int = 1,
    ) -> None:
        super().__init__(searcher, objectives)
        check_fidelity(resource_min, resource_max, 2)
        self.resource_min = resource_min
        self.resource_max = resource_max

    def suggest(self) -> TrialSuggestion | None:
        return self._new_trial(max_resource=None)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        self._forward_result(trial, observation)
        return Decision.CONTINUE

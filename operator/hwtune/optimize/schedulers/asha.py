"""ASHA: asynchronous successive halving (Li et al., 2020), stopping and promotion variants.

Rungs sit at ``r_min * eta^k`` below ``r_max`` (defaults: grace period r_min = 1, eta = 3).
When a trial first reaches a rung, its result there is recorded and ranked among every result
recorded at that rung so far (its own included):

* stopping variant (``promotion=False``, kind ``asha``): the trial CONTINUEs iff its position
  (0-based) is below ``n / eta``, else STOP. New trials are started with no target level and
  run until stopped or until ``r_max``.
* promotion variant (``promotion=True``, kind ``asha-promotion``): the trial PAUSEs at every
  rung. ``suggest()`` first looks, from the highest rung down, for a paused trial among the top
  ``floor(n / eta)`` of its rung that was not promoted yet, and resumes it up to the next rung;
  only then does it start a new trial (target: the first rung). ``floor`` and not ``ceil``: with
  a single trial at a rung nothing is promoted yet, otherwise every first trial would go through.

Reports below the first rung or between rungs are answered CONTINUE. A report that jumps over
several rungs is recorded only at the highest one it reached (the lower rungs never saw the
trial at their level). A report at ``r_max`` is answered CONTINUE: completing the trial is the
engine's job, the scheduler hears of it in ``on_trial_complete``.

State is a cache of the trial records: the rungs are rebuilt by replaying observations in
order, and a promotion is also inferred from the trial reporting beyond the rung where it had
paused. Only trials whose record is in phase Paused are resumed, so a trial resumed just before
a rebuild (phase Pending or Running, no report since) is not resumed twice, and a trial that
failed or was stopped while paused never comes back.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hwtune.api.records import Decision, Objective, Observation, TrialPhase, TrialRecord
from hwtune.optimize.pareto.tiebreak import TieBreak
from hwtune.optimize.schedulers._common import SearcherScheduler, check_fidelity, objective_losses
from hwtune.optimize.schedulers.base import TrialSuggestion
from hwtune.optimize.schedulers.rungs import Rung, rung_levels
from hwtune.optimize.searchers.base import Searcher

__all__ = ["ASHAScheduler"]


class ASHAScheduler(SearcherScheduler):
    """Single-objective ASHA: ranks by ``objectives[0]`` (other objectives are only recorded by
    the study). Subclasses change what is ranked (MO-ASHA) or add brackets (Hyperband)."""

    def __init__(
        self,
        searcher: Searcher,
        objectives: Sequence[Objective],
        *,
        resource_min: int = 1,
        resource_max: int,
        reduction_factor: float = 3,
        promotion: bool = False,
    ) -> None:
        super().__init__(searcher, objectives)
        check_fidelity(resource_min, resource_max, reduction_factor)
        self.resource_min = resource_min
        self.resource_max = resource_max
        self.reduction_factor = reduction_factor
        self.promotion = bool(promotion)
        self.levels = rung_levels(resource_min, resource_max, reduction_factor)
        # Bracket b uses the rung levels from index b on; plain ASHA has the one bracket 0.
        self._brackets: list[list[Rung]] = [self._make_rungs(self.levels)]
        self._bracket_of: dict[int, int] = {}
        self._records: dict[int, TrialRecord] = {}

    # -- what is ranked: overridden by MO-ASHA --------------------------------------------
    @property
    def ranked_objectives(self) -> tuple[Objective, ...]:
        return self.objectives[:1]

    @property
    def tie_break(self) -> TieBreak:
        return TieBreak.EPSILON_NET

    def _make_rungs(self, levels: Sequence[int]) -> list[Rung]:
        return [Rung(level, len(self.ranked_objectives), self.tie_break) for level in levels]

    def _assign_bracket(self, trial: TrialRecord) -> int:
        return 0

    # -- inspection (tests, status, debugging) ----------------------------------------------
    def rungs(self, bracket: int = 0) -> tuple[Rung, ...]:
        return tuple(self._brackets[bracket])

    def bracket_of(self, trial_id: int) -> int:
        return self._bracket_of[trial_id]

    # -- Scheduler API ----------------------------------------------------------------------
    def on_trial_add(self, trial: TrialRecord) -> None:
        super().on_trial_add(trial)
        self._records[trial.trial_id] = trial
        self._bracket_of[trial.trial_id] = self._assign_bracket(trial)

    def suggest(self) -> TrialSuggestion | None:
        if not self.promotion:
            return self._new_trial(max_resource=None)
        resumed = self._promote()
        if resumed is not None:
            return resumed
        first_target = self.levels[0] if self.levels else self.resource_max
        return self._new_trial(max_resource=first_target)

    def suggest_resume(self) -> TrialSuggestion | None:
        """Promotion variant: the paused trial ``suggest()`` would resume, without falling back
        to a new trial. Stopping variant: None (nothing is ever paused)."""
        return self._promote() if self.promotion else None

    def replay_new_suggestion(self) -> TrialSuggestion | None:
        # suggest() found nothing to promote then (a promotion has side effects only when it
        # succeeds), so the same searcher call follows.
        if not self.promotion:
            return self._new_trial(max_resource=None)
        return self._new_trial(max_resource=self.levels[0] if self.levels else self.resource_max)

    def replay_resume(self, trial_id: int, max_resource: int | None) -> bool:
        if not self.promotion or trial_id not in self._bracket_of:
            return False
        rungs = self._brackets[self._bracket_of[trial_id]]
        for k, rung in enumerate(rungs):
            target = rungs[k + 1].level if k + 1 < len(rungs) else self.resource_max
            if target == max_resource and trial_id in rung and not rung.is_promoted(trial_id):
                rung.mark_promoted(trial_id)
                return True
        return False

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        return self._result(trial, observation, None)

    def replay_result(self, trial: TrialRecord, observation: Observation, answer: Decision,
                      budget_stop: bool) -> Decision:
        # A STOP under a budget stop may have been the budget's: only then decide again.
        if answer is Decision.STOP and budget_stop and not self.promotion:
            return self._result(trial, observation, None)
        return self._result(trial, observation, answer)

    def replay_done(self) -> None:
        for rungs in self._brackets:
            for rung in rungs:
                rung.fronts  # noqa: B018 - settles the fronts deferred during the rebuild

    def _result(self, trial: TrialRecord, observation: Observation, known: Decision | None) -> Decision:
        """``on_trial_result``; with ``known`` (a rebuild: the logged answer), the rung only
        records and its ranking is left for later, the answer saying whether the trial passed."""
        self._forward_result(trial, observation)
        self._records[trial.trial_id] = trial
        rungs = self._brackets[self._bracket_of[trial.trial_id]]
        resource = observation.resource
        # Reporting past a rung where the trial is recorded means it was let through.
        for rung in rungs:
            if rung.level < resource and trial.trial_id in rung:
                rung.mark_promoted(trial.trial_id)
        if resource >= self.resource_max:
            return Decision.CONTINUE
        rung = self._rung_reached(rungs, trial.trial_id, resource)
        if rung is None:
            return Decision.CONTINUE
        losses = objective_losses(self.ranked_objectives, trial, observation)
        if known is None:
            rung.record(trial.trial_id, losses)
        else:
            rung.record(trial.trial_id, losses, defer=True)
        if self.promotion:
            return Decision.PAUSE
        if known is not None:
            keep = known is not Decision.STOP
        else:
            keep = rung.in_top_fraction(trial.trial_id, self.reduction_factor)
        if keep:
            return Decision.CONTINUE
        self._finish(trial)
        return Decision.STOP

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _rung_reached(rungs: Sequence[Rung], trial_id: int, resource: int) -> Rung | None:
        """The highest rung at or below ``resource`` above every rung the trial is recorded at,
        or None when this report reaches no new rung."""
        reached = None
        for rung in rungs:
            if rung.level > resource:
                break
            if trial_id in rung:
                reached = None  # anything below or at a recorded rung is old news
                continue
            reached = rung
        return reached

    def _resumable(self, trial_id: int) -> bool:
        # The record is the engine's (shared, kept up to date); its phase is the truth.
        return trial_id not in self._finished and self._records[trial_id].phase is TrialPhase.PAUSED

    def _promote(self) -> TrialSuggestion | None:
        for rungs in self._brackets:
            # Highest rung first: finishing promising trials beats widening the search.
            for k in range(len(rungs) - 1, -1, -1):
                rung = rungs[k]
                quota = rung.promotion_quota(self.reduction_factor)
                if quota == 0:
                    continue
                trial_id = rung.first_promotable(quota, self._resumable)
                if trial_id is None:
                    continue
                rung.mark_promoted(trial_id)
                target = rungs[k + 1].level if k + 1 < len(rungs) else self.resource_max
                return TrialSuggestion.resume(trial_id, max_resource=target)
        return None

    def describe_rungs(self, bracket: int = 0) -> list[dict[str, object]]:
        """Level, size and ranked trial ids of every rung of a bracket (for status and logs)."""
        return [
            {
                "level": rung.level,
                "recorded": len(rung),
                "ranking": rung.ranked_trial_ids(),
                "promoted": sorted(rung.promoted),
                "losses": np.asarray(rung.losses).tolist(),
            }
            for rung in self._brackets[bracket]
        ]

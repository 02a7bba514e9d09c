"""Pieces every hwtune scheduler shares: argument checks, objective extraction and the searcher
plumbing (a scheduler owns one searcher and forwards the trial life cycle to it)."""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from hwtune.api.records import Objective, Observation, TrialRecord
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.searchers.base import Searcher

__all__ = [
    "SearcherScheduler",
    "check_fidelity",
    "check_objectives",
    "objective_losses",
]


def check_objectives(objectives: Sequence[Objective]) -> tuple[Objective, ...]:
    """Return the objectives as a tuple, refusing an empty list, foreign types and duplicates."""
    objectives = tuple(objectives)
    if not objectives:
        raise ValueError("objectives: at least one objective is required")
    seen: set[str] = set()
    for i, objective in enumerate(objectives):
        if not isinstance(objective, Objective):
            raise TypeError(f"objectives[{i}]: expected an Objective, got {type(objective).__name__}")
        if objective.metric in seen:
            raise ValueError(f"objectives[{i}]: metric {objective.metric!r} is listed twice")
        seen.add(objective.metric)
    return objectives


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_fidelity(resource_min: int, resource_max: int, reduction_factor: float) -> None:
    """Validate the fidelity settings shared by all multi-fidelity schedulers."""
    if not _is_int(resource_min) or resource_min < 1:
        raise ValueError(f"resource_min: must be an integer >= 1, got {resource_min!r}")
    if not _is_int(resource_max) or resource_max < resource_min:
        raise ValueError(
            f"resource_max: must be an integer >= resource_min ({resource_min}), got {resource_max!r}"
        )
    if (
        not isinstance(reduction_factor, numbers.Real)
        or isinstance(reduction_factor, bool)
        or not math.isfinite(reduction_factor)
        or reduction_factor <= 1
    ):
        raise ValueError(f"reduction_factor: must be a number > 1, got {reduction_factor!r}")


def objective_losses(
    objectives: Sequence[Objective], trial: TrialRecord, observation: Observation
) -> np.ndarray:
    """The observation's objective values as losses (smaller is better), in objective order.

    A missing metric is a contract violation by the trainer or the backend, so it raises with the
    trial, the resource level and the metrics that did arrive."""
    losses = np.empty(len(objectives), dtype=float)
    for i, objective in enumerate(objectives):
        try:
            value = observation.metrics[objective.metric]
        except KeyError:
            reported = ", ".join(sorted(observation.metrics)) or "none"
            raise ValueError(
                f"trial {trial.trial_id} reported at resource {observation.resource} without the "
                f"objective metric {objective.metric!r} (reported: {reported})"
            ) from None
        losses[i] = objective.loss(value)
    return losses


class SearcherScheduler(Scheduler):
    """A scheduler that draws new configurations from a searcher and keeps it informed.

    The searcher sees every trial once in ``on_trial_add``, every observation, and exactly one
    ``on_trial_complete`` per trial, whether the trial completed, failed, was stopped by this
    scheduler or was removed from outside.
    """

    def __init__(self, searcher: Searcher, objectives: Sequence[Objective]) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(f"searcher: expected a Searcher, got {type(searcher).__name__}")
        self.searcher = searcher
        self.objectives = check_objectives(objectives)
        self._known: set[int] = set()
        self._finished: set[int] = set()

    # -- helpers for subclasses -------------------------------------------------------------
    def _new_trial(self, max_resource: int | None = None) -> TrialSuggestion | None:
        proposal = self.searcher.suggest()
        if proposal is None:
            return None
        config, hardware = proposal
        return TrialSuggestion.new(config, hardware, max_resource=max_resource)

    def _finish(self, trial: TrialRecord) -> None:
        """Tell the searcher, once, that this trial will report no more."""
        if trial.trial_id in self._finished:
            return
        self._finished.add(trial.trial_id)
        self.searcher.on_trial_complete(trial)

    def _check_known(self, trial: TrialRecord) -> None:
        if trial.trial_id not in self._known:
            raise ValueError(
                f"trial {trial.trial_id} was never added to this scheduler (call on_trial_add first)"
            )

    # -- life cycle ---------------------------------------------------------------------------
    def on_trial_add(self, trial: TrialRecord) -> None:
        if trial.trial_id in self._known:
            raise ValueError(f"trial {trial.trial_id} was already added to this scheduler")
        self._known.add(trial.trial_id)
        self.searcher.on_trial_add(trial)

    def on_trial_error(self, trial: TrialRecord) -> None:
        self._check_known(trial)
        self._finish(trial)

    def on_trial_complete(self, trial: TrialRecord) -> None:
        self._check_known(trial)
        self._finish(trial)

    def on_trial_remove(self, trial: TrialRecord) -> None:
        self._check_known(trial)
        self._finish(trial)

    def on_trial_pause(self, trial: TrialRecord) -> None:
        self.searcher.on_trial_pause(trial)

    def on_trial_resume(self, trial: TrialRecord) -> None:
        self.searcher.on_trial_resume(trial)

    def _forward_result(self, trial: TrialRecord, observation: Observation) -> None:
        self._check_known(trial)
        if trial.trial_id in self._finished:
            raise ValueError(
                f"trial {trial.trial_id} already finished; its report at resource "
                f"{observation.resource} is refused"
            )
        if observation.trial_id != trial.trial_id:
            raise ValueError(
                f"observation belongs to trial {observation.trial_id}, not trial {trial.trial_id}"
            )
        self.searcher.on_trial_result(trial, observation)

"""The scheduler contract: the only thing the engine and the backends know of an algorithm.

A scheduler proposes trials (new, or the resumption of a paused one) and answers each reported
observation with CONTINUE / PAUSE / STOP. It never knows where trials run and never reads a
clock of its own. Subclasses keep state only as a cache of what the trial records say, so a
scheduler fed the same records in the same order decides the same (see ``Study.rebuild``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hwtune.api.records import Decision, Hardware, Objective, Observation, TrialRecord

__all__ = ["Scheduler", "TrialSuggestion"]


@dataclass(frozen=True)
class TrialSuggestion:
    """Start a new trial with ``config`` on ``hardware``, or resume paused trial
    ``resume_trial_id``. ``max_resource``, when set, tells the backend to let the trial run up to
    that resource level (a rung) and expect a decision there; None means the study's maximum."""

    config: Mapping[str, Any] | None = None
    hardware: Hardware | None = None
    resume_trial_id: int | None = None
    max_resource: int | None = None

    def __post_init__(self) -> None:
        if (self.config is None) == (self.resume_trial_id is None):
            raise ValueError("a suggestion is either a new config or the resumption of a trial")
        if self.resume_trial_id is not None and self.hardware is not None:
            raise ValueError("a resumed trial keeps its hardware; do not pass one")
        if self.max_resource is not None and self.max_resource < 1:
            raise ValueError(f"max_resource must be >= 1, got {self.max_resource}")

    @classmethod
    def new(cls, config: Mapping[str, Any], hardware: Hardware | None = None,
            max_resource: int | None = None) -> "TrialSuggestion":
        return cls(config=dict(config), hardware=hardware, max_resource=max_resource)

    @classmethod
    def resume(cls, trial_id: int, max_resource: int | None = None) -> "TrialSuggestion":
        return cls(resume_trial_id=trial_id, max_resource=max_resource)

    @property
    def is_resume(self) -> bool:
        return self.resume_trial_id is not None


class Scheduler(abc.ABC):
    """Base of every scheduler (FIFO, ASHA, Hyperband, MO-ASHA, ...)."""

    objectives: Sequence[Objective]

    @abc.abstractmethod
    def suggest(self) -> TrialSuggestion | None:
        """The next trial to run, or None when nothing should start now (exhausted search space,
        or a synchronous scheduler waiting for a rung to fill)."""

    def suggest_resume(self) -> TrialSuggestion | None:
        """A paused trial to resume now, never a new one, or None. The engine asks this when
        the budget forbids new trials (maxTrials reached) so that promotion schedulers can
        still take their best paused trials further. Schedulers that never pause: None."""
        return None

    def on_trial_add(self, trial: TrialRecord) -> None:
        """A trial was created from one of this scheduler's suggestions."""

    # -- rebuild (``Study.rebuild``): apply what the log says was suggested ---------------------
    def replay_new_suggestion(self) -> TrialSuggestion | None:
        """The log says this scheduler's next suggestion was a new trial: return it as
        ``suggest()`` did. A scheduler may skip work that could only have found something else
        (a promotion scheduler need not look for a paused trial to resume). Default:
        ``suggest()``."""
        return self.suggest()

    def replay_resume(self, trial_id: int, max_resource: int | None) -> bool:
        """The log says this scheduler resumed ``trial_id`` up to ``max_resource`` here. Return
        True after updating the state as that suggestion did, without searching again; False
        (the default) makes the study ask ``suggest()`` and compare."""
        return False

    def replay_result(self, trial: TrialRecord, observation: Observation, answer: Decision,
                      budget_stop: bool) -> Decision:
        """The log says the study answered ``answer`` to this observation; ``budget_stop`` is
        whether a budget stop applied at that moment (then a STOP may have been the budget's,
        not this scheduler's). Return the decision ``on_trial_result`` gave, updating the state
        the same way; a scheduler may skip ranking work the answer already tells. Default:
        ``on_trial_result``."""
        return self.on_trial_result(trial, observation)

    def replay_done(self) -> None:
        """The rebuild is over: finish any work deferred during it (the first live decision
        should not pay for it)."""

    @abc.abstractmethod
    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        """Decide for one reported observation; ``trial.observations`` already holds it."""

    def on_trial_error(self, trial: TrialRecord) -> None:
        """The trial failed (crash, OOM, eviction without checkpoint)."""

    def on_trial_complete(self, trial: TrialRecord) -> None:
        """The trial reached the study's maximum resource."""

    def on_trial_remove(self, trial: TrialRecord) -> None:
        """The trial was stopped from outside (user, budget)."""

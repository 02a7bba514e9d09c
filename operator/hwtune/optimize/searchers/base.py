"""The searcher contract: proposes (config, hardware) pairs. Schedulers own a searcher. Today
``random`` and ``grid`` implement it; a new searcher implements it, registers a factory with
``register_searcher`` and is listed in ``hwtune.api.algorithms``."""

from __future__ import annotations

import abc
from typing import Any, Mapping

from hwtune.api.records import Hardware, Observation, TrialRecord

__all__ = ["Searcher"]


class Searcher(abc.ABC):
    @abc.abstractmethod
    def suggest(self) -> tuple[Mapping[str, Any], Hardware | None] | None:
        """A new (config, hardware) pair, or None when the space is exhausted (grid)."""

    def on_trial_add(self, trial: TrialRecord) -> None:
        """A trial was created (possibly from a config this searcher did not propose)."""

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> None:
        """An observation arrived; model-based searchers update their data here."""

    def on_trial_complete(self, trial: TrialRecord) -> None:
        """The trial will report no more."""

    def on_trial_pause(self, trial: TrialRecord) -> None:
        """The trial paused with a checkpoint (by a decision or from outside); it may resume."""

    def on_trial_resume(self, trial: TrialRecord) -> None:
        """A paused trial was resumed from its checkpoint (it reports again after
        ``trial.last_resource``)."""

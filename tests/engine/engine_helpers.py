"""Shared pieces for engine tests: a small study spec, a manual clock, a tiny FIFO scheduler
(so engine tests do not depend on the real schedulers' algorithms), and a small table."""

from __future__ import annotations

import copy
from typing import Any

from hwtune.api.records import Decision, Observation, TrialRecord
from hwtune.backends.simulated import InMemoryTable
from hwtune.engine import StudyConfig
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.searchers import RandomSearcher

BASE_SPEC: dict[str, Any] = {
    "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
    "parameters": {
        "lr": {"type": "int", "values": [1, 2, 3, 4, 5, 6]},
        "opt": {"type": "categorical", "values": ["sgd", "adam"]},
    },
    "hardware": {"pools": ["t4", "a100"], "gpuCounts": [1, 2]},
    "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
    "algorithm": {"scheduler": "fifo", "seed": 3},
    "budget": {"maxTrials": 20, "maxParallelTrials": 3},
}


def spec(**changes: Any) -> dict[str, Any]:
    """BASE_SPEC with top-level blocks replaced (None deletes the block)."""
    out = copy.deepcopy(BASE_SPEC)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def config(**changes: Any) -> StudyConfig:
    return StudyConfig.from_spec(spec(**changes))


class ManualClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


class TinyFIFO(Scheduler):
    """Runs every trial to the end; records every call (to check the engine's hook calls)."""

    def __init__(self, config: StudyConfig) -> None:
        self.objectives = config.objectives
        self.searcher = RandomSearcher(config.space, config.hardware, config.seed)
        self.calls: list[tuple] = []

    def suggest(self) -> TrialSuggestion | None:
        proposal = self.searcher.suggest()
        return None if proposal is None else TrialSuggestion.new(*proposal)

    def on_trial_add(self, trial: TrialRecord) -> None:
        self.calls.append(("add", trial.trial_id))
        self.searcher.on_trial_add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        self.calls.append(("result", trial.trial_id, observation.resource))
        return Decision.CONTINUE

    def on_trial_error(self, trial: TrialRecord) -> None:
        self.calls.append(("error", trial.trial_id))

    def on_trial_complete(self, trial: TrialRecord) -> None:
        self.calls.append(("complete", trial.trial_id))

    def on_trial_remove(self, trial: TrialRecord) -> None:
        self.calls.append(("remove", trial.trial_id))


class StatefulFIFO(TinyFIFO):
    """A FIFO whose suggestions depend on how often ``suggest`` was called, not only on the
    trials it was told about (like a round-robin over brackets): a rebuild must replay the
    calls, not just the trials."""

    def __init__(self, config: StudyConfig) -> None:
        super().__init__(config)
        self.suggested = 0

    def suggest(self) -> TrialSuggestion | None:
        suggestion = super().suggest()
        self.suggested += 1
        if suggestion is None:
            return None
        return TrialSuggestion.new(suggestion.config, suggestion.hardware, max_resource=1 + self.suggested % 4)


def small_table(study_config: StudyConfig, *, memory_gib: float | None = None) -> InMemoryTable:
    """Every config of BASE_SPEC's space: val_error falls with epochs, better for lr near 3 and
    adam; epochs take 60-160 reference seconds."""
    rows = []
    for c in study_config.space.grid(1):
        base = 0.1 + 0.05 * abs(c["lr"] - 3) + (0.0 if c["opt"] == "adam" else 0.07)
        rows.append({
            "config": c,
            "metrics": {"val_error": [base + 0.5 / e for e in range(1, study_config.max_resource + 1)]},
            "epoch_runtime": 60.0 + 20.0 * c["lr"],
            "memory_gib": memory_gib if memory_gib is not None else 4.0 * c["lr"],
        })
    return InMemoryTable(rows, seeds=(0, 1), noise=0.01)

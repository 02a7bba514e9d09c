"""Study budgets and the rules that enforce them.

The rules (also in the user docs):

- A new trial starts only while every budget has room: trials started < ``maxTrials``, spent
  cost < ``maxCostUSD``, spent GPU-hours < ``maxGPUHours``, elapsed < ``maxDurationSeconds``,
  and fewer than ``maxParallelTrials`` trials are pending or running. Resuming a paused trial
  counts against the parallel limit and the spend/deadline budgets, not against ``maxTrials``
  (it is the same trial); once ``maxTrials`` is reached the scheduler is not asked at all, so
  paused trials stay paused.
- Running trials are stopped (phase Stopped, reason ``budget: ...``) as soon as spent cost
  reaches ``maxCostUSD``, spent GPU-hours reach ``maxGPUHours`` or the deadline passes. The
  report that crosses the line is answered STOP; the tuner stops the others. ``maxTrials`` never
  stops a running trial.
- Spend is what was really used: every trial's cumulative runtime on its hardware, priced by the
  hardware model, including trials that later failed, paused or were stopped. Between two reports
  a running trial's spend is its value at the last report (the backend may add the tail when the
  trial ends), so a cost budget can be overshot by at most one report interval per running trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from hwtune.space.errors import SpecError, join_path

__all__ = ["Budget", "Spend"]

_FIELDS = {
    "maxTrials": "max_trials",
    "maxParallelTrials": "max_parallel_trials",
    "maxCostUSD": "max_cost_usd",
    "maxGPUHours": "max_gpu_hours",
    "maxDurationSeconds": "max_duration_seconds",
}


@dataclass(frozen=True)
class Spend:
    """What the study has used so far."""

    trials_started: int = 0
    running: int = 0  # pending or running trials
    cost_usd: float = 0.0
    gpu_hours: float = 0.0
    elapsed_seconds: float = 0.0


@dataclass(frozen=True)
class Budget:
    """Limits of one study; None means unlimited."""

    max_trials: int | None = None
    max_parallel_trials: int | None = None
    max_cost_usd: float | None = None
    max_gpu_hours: float | None = None
    max_duration_seconds: float | None = None
    # Not a spend limit: the study fails past it (Study.failure_reason). Validated by the model.
    max_failed_trials: int | None = None

    def __post_init__(self) -> None:
        for key, attr in _FIELDS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            path = join_path("spec.budget", key)
            integral = attr in ("max_trials", "max_parallel_trials")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(path, f"must be a number, got {value!r}")
            if integral and (not float(value).is_integer() or value < 1):
                raise SpecError(path, f"must be an integer >= 1, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise SpecError(path, f"must be a finite number >= 0, got {value!r}")
            if integral:
                object.__setattr__(self, attr, int(value))
        if (self.max_trials is not None and self.max_parallel_trials is not None
                and self.max_parallel_trials > self.max_trials):
            raise SpecError("spec.budget.maxParallelTrials",
                            f"must be <= maxTrials ({self.max_trials}), got {self.max_parallel_trials}")

    @classmethod
    def from_model(cls, spec: Any) -> "Budget":
        """From a validated ``hwtune.api.crd.BudgetSpec`` (None: unlimited)."""
        if spec is None:
            return cls()
        return cls(max_trials=spec.max_trials, max_parallel_trials=spec.max_parallel_trials,
                   max_cost_usd=spec.max_cost_usd, max_gpu_hours=spec.max_gpu_hours,
                   max_duration_seconds=spec.max_duration_seconds,
                   max_failed_trials=spec.max_failed_trials)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, path: str = "spec.budget") -> "Budget":
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise SpecError(path, f"must be a map, got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(_FIELDS))
        if unknown:
            raise SpecError(join_path(path, unknown[0]),
                            f"unknown field (known: {', '.join(_FIELDS)})")
        return cls(**{_FIELDS[k]: v for k, v in spec.items() if v is not None})

    def to_spec(self) -> dict[str, Any]:
        return {k: getattr(self, a) for k, a in _FIELDS.items() if getattr(self, a) is not None}

    # -- the rules ---------------------------------------------------------------------------
    def running_stop_reason(self, spend: Spend) -> str | None:
        """Why running trials must stop now, or None. Spend and time budgets only."""
        if self.max_cost_usd is not None and spend.cost_usd >= self.max_cost_usd:
            return f"budget: spent ${spend.cost_usd:.4g} reached maxCostUSD ${self.max_cost_usd:.4g}"
        if self.max_gpu_hours is not None and spend.gpu_hours >= self.max_gpu_hours:
            return (f"budget: used {spend.gpu_hours:.4g} GPU-hours, reached maxGPUHours "
                    f"{self.max_gpu_hours:.4g}")
        if (self.max_duration_seconds is not None
                and spend.elapsed_seconds >= self.max_duration_seconds):
            return (f"budget: {spend.elapsed_seconds:.4g}s elapsed, reached maxDurationSeconds "
                    f"{self.max_duration_seconds:.4g}")
        return None

    def trials_exhausted(self, spend: Spend) -> bool:
        """maxTrials reached: no new trial, though paused ones may still be resumed."""
        return self.max_trials is not None and spend.trials_started >= self.max_trials

    def new_trial_block(self, spend: Spend) -> str | None:
        """Why no new trial may start, or None (the parallel limit is checked apart)."""
        if self.trials_exhausted(spend):
            return f"budget: {spend.trials_started} trials started, reached maxTrials {self.max_trials}"
        return self.running_stop_reason(spend)

    def free_slots(self, running: int, override: int | None = None) -> int:
        """How many more trials may be pending/running at once. ``override`` (e.g. a CLI
        ``--max-parallel``) takes the place of maxParallelTrials when given."""
        limit = override if override is not None else self.max_parallel_trials
        if limit is None:
            limit = 1
        return max(0, limit - running)

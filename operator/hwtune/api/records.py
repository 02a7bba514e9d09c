"""Plain records shared by every layer: objectives, hardware, trials, observations, decisions.

These are the engine's vocabulary. They are frozen dataclasses (not pydantic) because the
simulated backend creates millions of them; the CRD models in ``hwtune.api.crd`` convert to and
from them at the edge. Nothing here imports Kubernetes, kopf or torch.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from hwtune.api.clock import Clock, WallClock

__all__ = [
    "BUILTIN_METRICS",
    "METRIC_NAME_MAX_LENGTH",
    "METRIC_NAME_PATTERN",
    "Clock",
    "Decision",
    "Goal",
    "Hardware",
    "Objective",
    "Observation",
    "SystemClock",
    "TrialPhase",
    "TrialRecord",
]

# Metrics every backend measures itself: wall-clock seconds the trial really ran, and that
# runtime priced by the hardware it ran on. Users name them as objectives like any other metric.
BUILTIN_METRICS = ("runtime", "cost")

# The one rule for metric names, shared by the CRD schema (objectives, fidelity.resource) and the
# report protocol: a name the schema admits is a name a trainer can report.
METRIC_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_./-]*$"
METRIC_NAME_MAX_LENGTH = 128


class Goal(str, enum.Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    @property
    def sign(self) -> float:
        """Multiply a value by this to turn it into a loss (smaller is better)."""
        return 1.0 if self is Goal.MINIMIZE else -1.0


@dataclass(frozen=True)
class Objective:
    metric: str
    goal: Goal = Goal.MINIMIZE

    def loss(self, value: float) -> float:
        return self.goal.sign * float(value)


class Decision(str, enum.Enum):
    """What a scheduler answers to one reported observation."""

    CONTINUE = "continue"
    PAUSE = "pause"  # keep the checkpoint; the scheduler may resume the trial later
    STOP = "stop"  # never resume

    @property
    def halts(self) -> bool:
        return self is not Decision.CONTINUE


class TrialPhase(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    STOPPED = "Stopped"
    FAILED = "Failed"

    def is_finished(self) -> bool:
        return self in (TrialPhase.COMPLETED, TrialPhase.STOPPED, TrialPhase.FAILED)

    def is_active(self) -> bool:
        return self in (TrialPhase.PENDING, TrialPhase.RUNNING)


@dataclass(frozen=True, order=True)
class Hardware:
    """Where a trial runs: a pool (HardwarePool name) and how many GPUs of it."""

    pool: str
    gpu_count: int = 1

    def __post_init__(self) -> None:
        if not self.pool:
            raise ValueError("hardware pool name must not be empty")
        if self.gpu_count < 1:
            raise ValueError(f"gpu_count must be >= 1, got {self.gpu_count}")

    def __str__(self) -> str:
        return f"{self.pool}x{self.gpu_count}"


@dataclass(frozen=True)
class Observation:
    """One report of a trial at a resource level (e.g. epoch 3). Immutable: the study state is
    rebuilt from the ordered list of these."""

    trial_id: int
    resource: int
    metrics: Mapping[str, float]
    time: float = 0.0  # clock time at which it was reported

    def __post_init__(self) -> None:
        if self.resource < 1:
            raise ValueError(f"resource level must be >= 1, got {self.resource}")
        for name, value in self.metrics.items():
            if not isinstance(value, (int, float)) or math.isnan(float(value)):
                raise ValueError(f"metric {name!r} must be a number, got {value!r}")


@dataclass
class TrialRecord:
    """A trial as the engine knows it. ``config`` and ``hardware`` never change after creation;
    the rest is derived from observations and backend events."""

    trial_id: int
    config: Mapping[str, Any]
    hardware: Hardware | None = None
    phase: TrialPhase = TrialPhase.PENDING
    observations: list[Observation] = field(default_factory=list)
    reason: str = ""

    @property
    def last_resource(self) -> int:
        return self.observations[-1].resource if self.observations else 0

    def metric_at(self, resource: int) -> Mapping[str, float] | None:
        for obs in reversed(self.observations):
            if obs.resource == resource:
                return obs.metrics
        return None


# The clock lives in hwtune.api.clock; these names stay importable from here.
SystemClock = WallClock

"""The study's persisted event log: the ordered facts from which ``Study.rebuild`` recreates the
whole study state, scheduler decisions included.

Each event is a small frozen record with a global sequence number. Backends persist them as they
come (the local backend appends ``to_dict()`` as one JSON line per event; the operator keeps the
same facts in TuningTrial objects plus a per-study sequence counter). Replaying them in ``seq``
order through a fresh scheduler reproduces the original decisions, because schedulers and
searchers are deterministic functions of the calls they receive.

Kinds and the fields each one carries:

- ``created``:   config, hardware, max_resource. The trial exists (phase Pending).
- ``resumed``:   max_resource. A paused trial was resumed (phase Pending again).
- ``running``:   the backend has the trial running (starts the runtime clock of this segment).
- ``observed``:  resource, metrics (with the built-in ``runtime`` and ``cost``), runtime_seconds,
                 decision, reason. One report and the answer it got.
- ``completed``: runtime_seconds. Finished normally (max resource, or the trainer ended).
- ``failed``:    reason, runtime_seconds.
- ``stopped``:   reason, runtime_seconds. Stopped from outside (user, budget), not by a decision.
- ``paused``:    reason, runtime_seconds. Paused from outside (user, preemption); the scheduler
                 is not told, so only an explicit ``Study.resume_trial`` brings it back.

``created`` and ``resumed`` carry ``suggested``: True when the trial came from the scheduler's
``suggest()`` (replay then asks the fresh scheduler again, so its internal state advances the
same way), False when a user or a backend added it directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from hwtune.api.records import Decision, Hardware

__all__ = ["EventKind", "StudyEvent"]


class EventKind(str, enum.Enum):
    CREATED = "created"
    RESUMED = "resumed"
    RUNNING = "running"
    OBSERVED = "observed"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    PAUSED = "paused"


@dataclass(frozen=True)
class StudyEvent:
    seq: int
    kind: EventKind
    trial_id: int
    time: float
    config: Mapping[str, Any] | None = None
    hardware: Hardware | None = None
    max_resource: int | None = None
    resource: int | None = None
    metrics: Mapping[str, float] | None = None
    decision: Decision | None = None
    runtime_seconds: float | None = None
    reason: str = ""
    suggested: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # backend notes; never read by replay

    def __post_init__(self) -> None:
        if not isinstance(self.kind, EventKind):
            object.__setattr__(self, "kind", EventKind(self.kind))
        if self.kind is EventKind.CREATED and self.config is None:
            raise ValueError(f"event {self.seq}: a 'created' event needs the trial's config")
        if self.kind is EventKind.OBSERVED and (self.resource is None or self.metrics is None):
            raise ValueError(f"event {self.seq}: an 'observed' event needs resource and metrics")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: only the fields this kind carries."""
        out: dict[str, Any] = {"seq": self.seq, "kind": self.kind.value, "trialId": self.trial_id,
                               "time": self.time}
        if self.config is not None:
            out["config"] = dict(self.config)
        if self.hardware is not None:
            out["hardware"] = {"pool": self.hardware.pool, "gpuCount": self.hardware.gpu_count}
        if self.max_resource is not None:
            out["maxResource"] = self.max_resource
        if self.resource is not None:
            out["resource"] = self.resource
        if self.metrics is not None:
            out["metrics"] = {k: float(v) for k, v in self.metrics.items()}
        if self.decision is not None:
            out["decision"] = self.decision.value
        if self.runtime_seconds is not None:
            out["runtimeSeconds"] = self.runtime_seconds
        if self.reason:
            out["reason"] = self.reason
        if self.suggested:
            out["suggested"] = True
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StudyEvent":
        try:
            hardware = data.get("hardware")
            decision = data.get("decision")
            return cls(
                seq=int(data["seq"]),
                kind=EventKind(data["kind"]),
                trial_id=int(data["trialId"]),
                time=float(data["time"]),
                config=data.get("config"),
                hardware=None if hardware is None else Hardware(str(hardware["pool"]),
                                                                int(hardware.get("gpuCount", 1))),
                max_resource=data.get("maxResource"),
                resource=data.get("resource"),
                metrics=data.get("metrics"),
                decision=None if decision is None else Decision(decision),
                runtime_seconds=data.get("runtimeSeconds"),
                reason=str(data.get("reason", "")),
                suggested=bool(data.get("suggested", False)),
                extra=data.get("extra") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed study event {dict(data)!r}: {exc}") from exc

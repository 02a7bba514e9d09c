"""One record type for an earlier study, whatever it was loaded from.

``PastStudy`` holds what transfer needs of a finished (or interrupted) study: its name and where
it came from, its objectives, search space and hardware choices (the spec it ran with), the
highest resource level it trained to, and its trials as ``PastTrial`` (config, hardware, phase
and the learning curve: one ``(resource, metrics)`` point per reported level, the latest report
wins when a level was reported twice after a resume). The loaders in ``hwtune.transfer.sources``
build the same records from a ``hwtune tune`` work directory, a benchmark table, or TuningTrial
objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Goal, Hardware, Objective, TrialPhase
from hwtune.space import SearchSpace

__all__ = ["PastStudy", "PastTrial", "TransferError", "study_from_dict", "study_to_dict"]


class TransferError(ValueError):
    """An earlier study cannot be loaded or used; the message names the study and the reason."""


@dataclass(frozen=True)
class PastTrial:
    trial_id: int
    config: Mapping[str, Any]
    hardware: Hardware | None = None
    phase: TrialPhase = TrialPhase.COMPLETED
    curve: tuple[tuple[int, Mapping[str, float]], ...] = ()  # (resource, metrics), by resource
    # (level, checkpoint location) the surrogate's weight encoder (FMS) may read: level 0 is the
    # weights the trial started from (a pretrained model). Empty when the source kept none.
    checkpoints: tuple[tuple[int, str], ...] = ()

    @property
    def last_resource(self) -> int:
        return self.curve[-1][0] if self.curve else 0

    @property
    def final(self) -> Mapping[str, float]:
        """Metrics at the highest level reported (empty when the trial never reported)."""
        return self.curve[-1][1] if self.curve else {}

    def checkpoint_at(self, level: int) -> str | None:
        for lv, location in self.checkpoints:
            if lv == level:
                return location
        return None

    def metric_at(self, resource: int) -> Mapping[str, float] | None:
        for level, metrics in self.curve:
            if level == resource:
                return metrics
        return None


@dataclass(frozen=True)
class PastStudy:
    name: str
    source: str  # e.g. "workdir:/path", "table:/path", "cluster:<namespace>/<study>"
    parameters: Mapping[str, Mapping[str, Any]]  # the study's spec.parameters
    objectives: tuple[Objective, ...] = ()
    hardware: tuple[Hardware, ...] = ()  # the choices it searched over (empty: none)
    max_resource: int = 1
    trials: tuple[PastTrial, ...] = field(default_factory=tuple)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_spec(self.parameters)

    def reported(self) -> list[PastTrial]:
        """Trials with at least one report (the ones transfer can learn from)."""
        return [t for t in self.trials if t.curve]

    def metric_names(self) -> set[str]:
        names: set[str] = set()
        for t in self.trials:
            for _, metrics in t.curve:
                names.update(metrics)
        return names

    def goal_of(self, metric: str, default: Goal | None = None) -> Goal:
        for o in self.objectives:
            if o.metric == metric:
                return o.goal
        if default is not None:
            return default
        raise TransferError(f"earlier study {self.name!r} ({self.source}) has no objective {metric!r}")

    def ranked(self, objective: Objective) -> list[tuple[PastTrial, float]]:
        """Reported trials with ``objective``'s loss at their last level, best first.

        A trial that trained further ranks before one that stopped earlier (a scheduler stopped
        that one because it looked worse at a rung); equal levels rank by loss. The loss of a
        trial that lacks the metric is +inf (it ranks last)."""
        rows = []
        for t in self.reported():
            value = t.final.get(objective.metric)
            loss = float("inf") if value is None else objective.loss(value)
            rows.append((t, loss))
        rows.sort(key=lambda r: (-r[0].last_resource, r[1], r[0].trial_id))
        return rows

    def best(self, objective: Objective) -> PastTrial | None:
        rows = [r for r in self.ranked(objective) if np.isfinite(r[1])]
        return rows[0][0] if rows else None

    def check_metric(self, metric: str) -> None:
        if not self.reported():
            raise TransferError(f"earlier study {self.name!r} ({self.source}) has no trial with a report")
        if metric not in self.metric_names():
            raise TransferError(f"earlier study {self.name!r} ({self.source}) never reported metric "
                                f"{metric!r} (it reported: {', '.join(sorted(self.metric_names()))})")

    def subset(self, trials: Sequence[PastTrial]) -> "PastStudy":
        return PastStudy(self.name, self.source, self.parameters, self.objectives, self.hardware,
                         self.max_resource, tuple(trials))


# -- a JSON form, so a study keeps exactly the data it transferred from (replays stay exact even
# when the earlier study changes later) ------------------------------------------------------------
def study_to_dict(study: PastStudy) -> dict[str, Any]:
    return {
        "name": study.name, "source": study.source,
        "parameters": {k: dict(v) for k, v in study.parameters.items()},
        "objectives": [{"metric": o.metric, "goal": o.goal.value} for o in study.objectives],
        "hardware": [{"pool": h.pool, "gpuCount": h.gpu_count} for h in study.hardware],
        "maxResource": study.max_resource,
        "trials": [{"trialId": t.trial_id, "config": dict(t.config), "phase": t.phase.value,
                    "hardware": None if t.hardware is None else {"pool": t.hardware.pool,
                                                                 "gpuCount": t.hardware.gpu_count},
                    "curve": [{"resource": r, "metrics": dict(m)} for r, m in t.curve],
                    **({"checkpoints": [[lv, loc] for lv, loc in t.checkpoints]}
                       if t.checkpoints else {})}
                   for t in study.trials],
    }


def study_from_dict(data: Mapping[str, Any], where: str = "transfer snapshot") -> PastStudy:
    try:
        def hw(h: Any) -> Hardware | None:
            return None if h is None else Hardware(str(h["pool"]), int(h.get("gpuCount", 1)))

        trials = tuple(
            PastTrial(int(t["trialId"]), dict(t["config"]), hw(t.get("hardware")),
                      TrialPhase(t.get("phase", "Completed")),
                      tuple((int(p["resource"]), {k: float(v) for k, v in p["metrics"].items()})
                            for p in t.get("curve", ())),
                      tuple((int(lv), str(loc)) for lv, loc in t.get("checkpoints", ())))
            for t in data["trials"])
        return PastStudy(str(data["name"]), str(data.get("source", where)), dict(data["parameters"]),
                         tuple(Objective(o["metric"], Goal(o.get("goal", "minimize")))
                               for o in data.get("objectives", ())),
                         tuple(h for h in map(hw, data.get("hardware", ())) if h is not None),
                         int(data.get("maxResource", 1)), trials)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TransferError(f"{where}: malformed earlier study: {exc}") from None

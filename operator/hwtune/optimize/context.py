"""``SearchContext``: everything a model-based searcher or scheduler may know of its study.

Searcher and scheduler factories get one (``make_searcher(..., context=)``,
``make_scheduler(..., context=)``): the objectives with their directions, the search space and
hardware choices, the hardware model that prices them, the fidelity, the seed and settings, and a
read-only ``StudyView`` of the study's trials: each trial's learning curve and its latest
checkpoint URI. Algorithms read history from this view (the study's records), never from their
own memory, so a rebuilt study gives them the same picture.

``note(message)`` is the one way back: a searcher states something the user should see (e.g.
"surrogate service unreachable, fell back to random") and the study attaches it to the next event
it records (``extra["notes"]``), so it is visible in the event log and to every listener.

Pure Python: no I/O, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from hwtune.api.records import Hardware, Objective, TrialPhase, TrialRecord
from hwtune.space import SearchSpace

if TYPE_CHECKING:  # pragma: no cover
    from hwtune.optimize.hardware import HardwareModel, HardwareSpace

__all__ = ["FidelityInfo", "SearchContext", "StudyView", "note_event"]

# (trial, resource level) -> the URI of the checkpoint taken at that level, or None.
CheckpointLocator = Callable[[TrialRecord, int], "str | None"]


def note_event(message: str) -> tuple[str, str, bool] | None:
    """How a searcher's note is shown as a Kubernetes Event on the study (and a line of the local
    CLI's output): ``(reason, message, warning)``, or None for a note that only repeats a state
    already shown (a surrogate that is still being skipped after a failure says why once)."""
    if message.startswith("surrogate:"):
        if "still falling back" in message:
            return None
        return ("SurrogateFallback", message, True)
    return ("SearcherNote", message, False)


@dataclass(frozen=True)
class FidelityInfo:
    """The resource levels trials report at: ``min..max`` of ``resource`` (epochs, usually)."""

    resource: str = "epoch"
    min: int = 1
    max: int = 1
    reduction_factor: int = 3


class StudyView:
    """A read-only window on a study's trials. Built unattached (a factory may run before the
    study exists); ``Study`` attaches itself. Until then it shows no trials.

    Trial records are the study's own objects, shared for speed: treat them as read-only."""

    def __init__(self, objectives: Sequence[Objective] = (),
                 checkpoint_locator: CheckpointLocator | None = None) -> None:
        self._objectives = tuple(objectives)
        self._source: Any = None  # the Study (duck-typed: .trials, .trial(id), .note(msg))
        self.checkpoint_locator = checkpoint_locator
        self.name = ""  # the study's name, set by the Study that attaches itself

    def attach(self, study: Any) -> None:
        self._source = study

    @property
    def attached(self) -> bool:
        return self._source is not None

    def trials(self) -> list[TrialRecord]:
        return [] if self._source is None else self._source.trials

    def trial(self, trial_id: int) -> TrialRecord:
        if self._source is None:
            raise KeyError(trial_id)
        return self._source.trial(trial_id)

    def unfinished(self) -> list[TrialRecord]:
        """Trials that may still train (pending, running, paused)."""
        return [t for t in self.trials() if not t.phase.is_finished()]

    def paused(self) -> list[TrialRecord]:
        return [t for t in self.trials() if t.phase is TrialPhase.PAUSED]

    def learning_curve(self, trial: TrialRecord | int, metric: str | None = None
                       ) -> list[tuple[int, float]]:
        """(resource, value) of every report of ``metric`` (default: the first objective)."""
        record = self.trial(trial) if isinstance(trial, int) else trial
        metric = metric or (self._objectives[0].metric if self._objectives else None)
        if metric is None:
            return []
        return [(o.resource, float(o.metrics[metric])) for o in record.observations
                if metric in o.metrics]

    def checkpoint_uri(self, trial: TrialRecord | int, resource: int | None = None) -> str | None:
        """Where the trial's checkpoint at ``resource`` (default: its latest report) lives or
        lived, as a checkpoint location (``hwtune.trainer.checkpoint.CheckpointStore``: a
        directory or an fsspec URI), or None when the backend keeps none. Most backends keep only
        the latest checkpoint in one place (a reader checks the level it finds); benchmark
        tables keep one per level.
        Level 0 means the weights a trial starts from (a pretrained model), when the locator
        knows them; ``trial`` may then be a not-yet-created candidate (trial id -1)."""
        record = self.trial(trial) if isinstance(trial, int) else trial
        level = record.last_resource if resource is None else int(resource)
        if self.checkpoint_locator is None or level < 0:
            return None
        return self.checkpoint_locator(record, level)

    def target_resource(self, trial: TrialRecord | int) -> int | None:
        """The level the trial runs to before the scheduler decides (None: the maximum)."""
        tid = trial if isinstance(trial, int) else trial.trial_id
        return None if self._source is None else self._source.target_resource(tid)

    def recorded_suggestion(self) -> "tuple[Mapping[str, Any], Hardware | None] | None":
        """While ``Study.rebuild`` replays a suggested trial's creation: its (config, hardware),
        so a model-based searcher under a scheduler that asks it again can answer with the log
        instead of refitting. None otherwise."""
        return None if self._source is None else self._source.recorded_suggestion()


@dataclass(frozen=True)
class SearchContext:
    """What a searcher or scheduler factory is given (see the module docstring)."""

    objectives: tuple[Objective, ...]
    space: SearchSpace
    hardware: "HardwareSpace"
    hardware_model: "HardwareModel | None" = None
    fidelity: FidelityInfo = field(default_factory=FidelityInfo)
    seed: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    study: StudyView = field(default_factory=StudyView)
    study_name: str = ""
    checkpoints: Mapping[str, Any] | None = None  # the study's spec.checkpoints, as given

    @property
    def max_resource(self) -> int:
        return self.fidelity.max

    @property
    def name(self) -> str:
        """The study's name (models in the surrogate service are kept per study)."""
        return self.study_name or self.study.name

    def note(self, message: str) -> None:
        """Tell the user something (fallbacks, degraded modes): recorded with the study's next
        event. Dropped when no study is attached (a bare searcher in a unit test)."""
        source = self.study._source
        if source is not None and hasattr(source, "note"):
            source.note(message)

    def measure(self, kind: str, seconds: float = 0.0, ok: bool = True) -> None:
        """Report a timing or outcome to the study's metrics (``Study.measure``); dropped when
        no study is attached."""
        source = self.study._source
        if source is not None and hasattr(source, "measure"):
            source.measure(kind, seconds, ok)

    def losses(self, metrics: Mapping[str, float]) -> list[float]:
        """The objectives' values in ``metrics`` as losses (smaller is better), in order."""
        return [o.loss(metrics[o.metric]) for o in self.objectives]

    def hardware_choices(self) -> list[Hardware | None]:
        return list(self.hardware) or [None]

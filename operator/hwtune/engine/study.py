"""``Study``: the state of one tuning study, and the one place that changes it.

A study holds the trial records, the ordered event log, the spend, and the scheduler that
decides. Backends (local processes, the simulator; Kubernetes Jobs once that backend exists)
never decide anything; they call the study when something happens and act on what it answers:

- ``start_next()``: ask the scheduler for the next trial (new or resumed) and record it. Returns
  None when the budget forbids new trials or the scheduler has nothing to run now.
- ``trial_running(id)``: the backend has it running (starts the runtime clock of this segment).
- ``report(id, resource, metrics, runtime_seconds=None) -> Decision``: one observation. The
  study adds the built-in metrics ``runtime`` (seconds the trial has run in total, on its
  hardware) and ``cost`` (that runtime priced by the hardware model), asks the scheduler, applies
  the completion and budget rules, records the event and returns CONTINUE / PAUSE / STOP.
- ``complete_trial`` / ``fail_trial`` / ``stop_trial`` / ``pause_trial``: life-cycle facts.

Algorithms see the study through ``self.context`` (``hwtune.optimize.context.SearchContext``):
objectives, fidelity, hardware model and a read-only view of the trials (learning curves, latest
checkpoint URIs via ``checkpoint_locator``). What a searcher ``note()``s there is attached to the
next event (``extra["notes"]``).

Every change appends one ``StudyEvent``; listeners (``add_listener``) see each one, which is how
the local backend writes its JSON-lines log and the operator its TuningTrial objects.
``Study.rebuild(config, events)`` replays the log through a fresh scheduler and returns a study
whose future decisions equal the original's. Schedulers that set
``reuses_recorded_suggestions`` get the logged suggestions back (``replay_suggestion``) instead
of being asked again, so a model-based scheduler is not refitted once per past trial.

Completion: a report at the study's maximum resource completes the trial (phase Completed,
``scheduler.on_trial_complete``) and is answered STOP, because there is nothing left to train.
Budgets: see ``hwtune.engine.budget``. The study is not thread-safe; backends that receive
reports on other threads hold ``Backend.lock`` around every call (the base class does that).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from hwtune.api.records import (
    BUILTIN_METRICS,
    Clock,
    Decision,
    Hardware,
    Observation,
    SystemClock,
    TrialPhase,
    TrialRecord,
)
from hwtune.engine.budget import Spend
from hwtune.engine.config import StudyConfig
from hwtune.engine.errors import InvalidReportError, StudyError, TrialStateError, UnknownTrialError
from hwtune.engine.events import EventKind, StudyEvent
from hwtune.engine.gcpace import GcPacer
from hwtune.optimize.context import SearchContext, StudyView
from hwtune.optimize.pareto import pareto_front_mask
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion

__all__ = ["NO_REPORT_REASON", "FrontPoint", "Study", "StudySummary", "TrialStart",
           "no_report_advice"]

log = logging.getLogger(__name__)

EventListener = Callable[[StudyEvent], None]


@dataclass(frozen=True)
class TrialStart:
    """What the backend must launch: a new trial, or a paused one resumed from its checkpoint
    (``resumed``; it continues after ``trial.last_resource``). ``max_resource`` is the level the
    scheduler wants a decision at (a rung), None for the study maximum; backends pass it on to the
    trainer as a hint, the decisions stay authoritative."""

    trial: TrialRecord
    resumed: bool
    max_resource: int | None


@dataclass(frozen=True)
class FrontPoint:
    trial_id: int
    hardware: Hardware | None
    resource: int
    values: Mapping[str, float]  # objective metric -> value (not loss)


@dataclass(frozen=True)
class StudySummary:
    counts: Mapping[str, int]  # phase name -> number of trials
    spend: Spend
    front: tuple[FrontPoint, ...]
    best: Mapping[str, FrontPoint]  # objective metric -> the trial best on it alone
    reports: int


# How a failure reason starts when the trainer exited cleanly without a single report (any
# backend may fail a trial so; the study counts them for ``failure_reason``).
NO_REPORT_REASON = "ended without reporting its objectives"


def no_report_advice(config: StudyConfig) -> str:
    """What to fix when trainers end without reporting, in the words of the study's collector."""
    metrics = [o.metric for o in config.objectives if o.metric not in BUILTIN_METRICS]
    collector = config.spec.metrics_collector
    kind = "sdk" if collector is None else collector.kind.value
    names = ", ".join(metrics) or "the objectives"
    if kind == "sdk":
        return (f"the trainer must report {names} with the hwtune SDK (hwtune.trainer), or set "
                f"spec.metricsCollector (kind stdout reads lines like "
                f"'{' '.join(m + '=0.3' for m in metrics)}')")
    if kind == "stdout":
        return (f"spec.metricsCollector kind stdout found no line giving {names} as "
                f"name=value ('{' '.join(m + '=0.3' for m in metrics)}')"
                + (f" together with {collector.resource_metric}=<level>"
                   if collector.resource_metric else "")
                + "; check that the trainer prints them (to stdout or stderr) under these names")
    if kind == "json":
        return (f"spec.metricsCollector kind json found no JSON line with numbers for {names}"
                + (f" and {collector.resource_metric}" if collector.resource_metric else ""))
    return (f"spec.metricsCollector pattern {collector.pattern!r} matched no line giving "
            f"{names}; fix the pattern or what the trainer prints")


class Study:
    """One study's state. Build it with a ``StudyConfig``; the scheduler defaults to
    ``config.make_scheduler()``. ``clock`` gives event times, measured runtimes when the backend
    reports none, and the deadline (the simulator passes its simulated clock). The deadline
    (``budget.maxDurationSeconds``) counts from ``start_time``, by default the time of the first
    event. ``checkpoint_locator(trial, resource) -> location`` tells searchers where a trial's
    checkpoint at a level is or was (default: ``<spec.checkpoints.uri>/<trial id>`` when the study
    sets a URI, as the local backend stores them, overwritten at every level: readers check the
    level they find there); backends that know better pass their own."""

    #: Trials that exit cleanly without a report, with no report at all in the study, after
    #: which the study fails with advice (a trainer that never reports is a setup mistake).
    NO_REPORT_LIMIT = 3

    def __init__(
        self,
        config: StudyConfig,
        scheduler: Scheduler | None = None,
        *,
        clock: Clock | None = None,
        start_time: float | None = None,
        checkpoint_locator: Callable[[TrialRecord, int], str | None] | None = None,
        name: str = "",
    ) -> None:
        self.config = config
        self._notes: list[str] = []
        view: StudyView | None = None
        if scheduler is not None:
            # A scheduler built outside (benchmarks, tests) may carry an unattached context.
            context = getattr(scheduler, "context", None)
            if isinstance(context, SearchContext) and not context.study.attached:
                view = context.study
        if view is None:
            view = StudyView(config.objectives)
        if view.checkpoint_locator is None:
            view.checkpoint_locator = checkpoint_locator or _default_locator(config)
        view.attach(self)
        view.name = view.name or name
        self.view = view
        self.context: SearchContext = config.search_context(view, study_name=name)
        self.scheduler = scheduler if scheduler is not None else config.make_scheduler(context=self.context)
        self.clock: Clock = clock if clock is not None else SystemClock()
        # The deadline counts from here; by default from the first event (the first trial's
        # creation), which the log holds, so a rebuilt study keeps the same deadline.
        self.start_time: float | None = None if start_time is None else float(start_time)
        self.replay_mismatches: list[str] = []
        self._trials: dict[int, TrialRecord] = {}
        self._events: list[StudyEvent] = []
        self._listeners: list[EventListener] = []
        self._measure_listeners: list[Callable[[str, float, bool], None]] = []
        self._target: dict[int, int | None] = {}
        # Runtime accounting: runtime frozen at the last halt/report, and when the current
        # segment began (only used when the backend does not measure runtime itself).
        self._runtime: dict[int, float] = {}
        self._segment_start: dict[int, float] = {}
        # After a rebuild: the last moment the log shows the study alive. A trial that was
        # running then is charged up to there, never for the time the tuner was down.
        self._segment_cap: dict[int, float] = {}
        # Spend of running trials since their last report (see ``accrue``), over what is
        # accounted. Not in the event log, so decisions replayed from the log never read it.
        self._live_cost: dict[int, float] = {}
        self._live_gpu_hours: dict[int, float] = {}
        self._cost: dict[int, float] = {}
        self._gpu_hours: dict[int, float] = {}
        self._total_cost = 0.0
        self._total_gpu_hours = 0.0
        self._trials_started = 0
        self._reports = 0
        self._failed_unreported = 0  # trials that failed before their first report
        self._ended_unreported = 0  # trials whose trainer exited 0 without reporting
        self._failed = 0  # trials failed, for budget.maxFailedTrials
        self._target_reached: str | None = None  # why the objective targets count as reached
        self._replay_time: float | None = None
        self._replay_event: StudyEvent | None = None
        self._gc = GcPacer()

    # -- reading ----------------------------------------------------------------------------
    def now(self) -> float:
        return self._replay_time if self._replay_time is not None else float(self.clock.now())

    @property
    def events(self) -> tuple[StudyEvent, ...]:
        return tuple(self._events)

    @property
    def trials(self) -> list[TrialRecord]:
        """All trials in creation order. Treat them as read-only."""
        return list(self._trials.values())

    def trial(self, trial_id: int) -> TrialRecord:
        try:
            return self._trials[trial_id]
        except KeyError:
            raise UnknownTrialError(trial_id) from None

    def trials_in(self, *phases: TrialPhase) -> list[TrialRecord]:
        return [t for t in self._trials.values() if t.phase in phases]

    def active_trials(self) -> list[TrialRecord]:
        """Pending or running: the trials that hold a slot."""
        return self.trials_in(TrialPhase.PENDING, TrialPhase.RUNNING)

    def target_resource(self, trial_id: int) -> int | None:
        self.trial(trial_id)
        return self._target.get(trial_id)

    def runtime_of(self, trial_id: int) -> float:
        """Seconds the trial has run on its hardware, as last accounted."""
        self.trial(trial_id)
        return self._runtime.get(trial_id, 0.0)

    def cost_of(self, trial_id: int) -> float:
        self.trial(trial_id)
        return self._cost.get(trial_id, 0.0)

    def live_spend_of(self, trial_id: int) -> tuple[float, float]:
        """(cost USD, GPU-hours) of one trial, its spend since the last report included, so
        per-pool sums equal ``spend`` (the metrics exporter reads this)."""
        self.trial(trial_id)
        return (self._cost.get(trial_id, 0.0) + self._live_cost.get(trial_id, 0.0),
                self._gpu_hours.get(trial_id, 0.0) + self._live_gpu_hours.get(trial_id, 0.0))

    @property
    def spend(self) -> Spend:
        """What was used, running trials' spend since their last report included."""
        return self._spend(running=len(self.active_trials()))

    def _spend(self, running: int = 0, *, live: bool = True) -> Spend:
        # Budget checks run on every report: they skip the O(trials) count of active trials.
        cost, gpu_hours = self._total_cost, self._total_gpu_hours
        if live:
            cost += sum(self._live_cost.values())
            gpu_hours += sum(self._live_gpu_hours.values())
        return Spend(
            trials_started=self._trials_started,
            running=running,
            cost_usd=cost,
            gpu_hours=gpu_hours,
            elapsed_seconds=0.0 if self.start_time is None else max(0.0, self.now() - self.start_time),
        )

    @property
    def reports(self) -> int:
        return self._reports

    @property
    def failed_before_reporting(self) -> int:
        """Trials that failed without a single report (a launch error, out of memory)."""
        return self._failed_unreported

    @property
    def ended_without_reporting(self) -> int:
        """Trials whose trainer exited cleanly without a single report (failed for it)."""
        return self._ended_unreported

    def new_trial_block(self) -> str | None:
        """Why no trial (new or resumed) may start now, or None."""
        return self.failure_reason() or self._target_reached \
            or self.config.budget.new_trial_block(self._spend())

    def stop_reason(self) -> str | None:
        """Why running trials must be stopped now (the study failed, its objective targets
        were reached, cost, GPU-hours, deadline), or None."""
        return self.failure_reason() or self._target_reached \
            or self.config.budget.running_stop_reason(self._spend())

    def failure_reason(self) -> str | None:
        """Why the study has failed (phase Failed), or None: more trials failed than
        ``budget.maxFailedTrials`` allows, or the first trials all ended without reporting."""
        limit = self.config.budget.max_failed_trials
        if limit is not None and self._failed > limit:
            return (f"failed: {self._failed} trials failed, more than budget.maxFailedTrials "
                    f"({limit}); see the trials' reasons")
        if self._reports == 0 and self._ended_unreported >= self.NO_REPORT_LIMIT:
            return (f"failed: the first {self._ended_unreported} trials ended without "
                    f"reporting their objectives; {no_report_advice(self.config)}")
        return None

    @property
    def target_reached(self) -> str | None:
        """Why the objectives' ``target``s count as reached, or None."""
        return self._target_reached

    def accrue(self, runtimes: Mapping[int, float] | None = None) -> None:
        """Charge running trials' spend as time passes, not only at their reports, so a trial
        that never reports cannot run past maxCostUSD or maxGPUHours. ``runtimes`` is what the
        backend measured (trial id -> total runtime on its hardware); running trials it leaves
        out are timed by the study's clock. The next report or halt of a trial replaces this
        provisional charge with the accounted one."""
        runtimes = runtimes or {}
        model = self.config.hardware_model
        now = self.now()
        for tid, start in self._segment_start.items():
            record = self._trials[tid]
            runtime = runtimes.get(tid)
            if runtime is None:
                if record.phase is not TrialPhase.RUNNING:
                    continue  # pending: nothing runs (yet)
                end = min(now, self._segment_cap.get(tid, now))
                runtime = self._runtime[tid] + max(0.0, end - start)
            runtime = max(float(runtime), self._runtime[tid])
            self._live_cost[tid] = model.cost(runtime, record.hardware) - self._cost[tid]
            self._live_gpu_hours[tid] = (model.gpu_hours(runtime, record.hardware)
                                         - self._gpu_hours[tid])

    def seconds_until_budget(self) -> float | None:
        """Seconds of the clock until the running trials, at the rate they spend now, reach
        maxCostUSD or maxGPUHours (0 when reached; None when neither budget is set or nothing
        runs). The tuner waits no longer than this, so the simulator's clock stops there."""
        budget = self.config.budget
        if (budget.max_cost_usd is None and budget.max_gpu_hours is None) \
                or not self._segment_start:
            return None
        model = self.config.hardware_model
        cost_rate = gpu_rate = 0.0
        for tid in self._segment_start:
            record = self._trials[tid]
            if record.phase is TrialPhase.RUNNING:
                cost_rate += model.cost(3600.0, record.hardware) / 3600.0
                gpu_rate += model.gpu_hours(3600.0, record.hardware) / 3600.0
        spend = self._spend()
        waits = []
        if budget.max_cost_usd is not None and cost_rate > 0:
            waits.append(max(0.0, budget.max_cost_usd - spend.cost_usd) / cost_rate)
        if budget.max_gpu_hours is not None and gpu_rate > 0:
            waits.append(max(0.0, budget.max_gpu_hours - spend.gpu_hours) / gpu_rate)
        return min(waits) if waits else None

    def recorded_suggestion(self) -> tuple[dict[str, Any], Hardware | None] | None:
        """During rebuild, the (config, hardware) of the suggested creation being replayed."""
        e = self._replay_event
        if e is None or e.kind is not EventKind.CREATED or not e.suggested:
            return None
        return dict(e.config or {}), e.hardware

    def note(self, message: str) -> None:
        """Something the user should see (a searcher's fallback, a degraded mode): attached to
        the next recorded event as ``extra["notes"]``."""
        if message and message not in self._notes:
            self._notes.append(str(message))

    def add_measure_listener(self, listener: Callable[[str, float, bool], None]) -> None:
        """Call ``listener(kind, seconds, ok)`` for every ``measure`` from now on (metrics)."""
        self._measure_listeners.append(listener)

    def measure(self, kind: str, seconds: float = 0.0, ok: bool = True) -> None:
        """A searcher's timing or outcome that is no study event and never enters the log
        (``surrogate_call``: one call's latency and success; ``surrogate_fallback``: a
        suggestion made without the surrogate). Only listeners see it."""
        for listener in self._measure_listeners:
            listener(kind, seconds, ok)

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for every event appended from now on (not during replay)."""
        self._listeners.append(listener)

    # -- starting trials ----------------------------------------------------------------------
    def start_next(self) -> TrialStart | None:
        """Ask the scheduler for the next trial and record it, atomically: a suggestion is never
        asked for and then dropped, so replay sees the same sequence of calls. None when the
        budget forbids starting (see ``new_trial_block``) or the scheduler has nothing now. The
        parallel limit is the caller's to check."""
        if self.stop_reason() is not None:
            return None
        suggestion = self._ask_scheduler()
        if suggestion is None:
            return None
        return self._apply_suggestion(suggestion)

    def _ask_scheduler(self) -> TrialSuggestion | None:
        """The one place that picks the scheduler call, live and in replay alike: once maxTrials
        is reached only a resume may be asked for, so a promotion scheduler still takes its best
        paused trials further (otherwise they would stay paused forever)."""
        if self.config.budget.trials_exhausted(self._spend()):
            return self.scheduler.suggest_resume()
        return self.scheduler.suggest()

    def _apply_suggestion(self, suggestion: TrialSuggestion) -> TrialStart:
        if suggestion.is_resume:
            assert suggestion.resume_trial_id is not None
            record = self._resume(suggestion.resume_trial_id, suggestion.max_resource, suggested=True)
            return TrialStart(record, True, suggestion.max_resource)
        assert suggestion.config is not None
        record = self._create(suggestion.config, suggestion.hardware, suggestion.max_resource,
                              suggested=True)
        return TrialStart(record, False, suggestion.max_resource)

    def create_trial(self, config: Mapping[str, Any], hardware: Hardware | None = None, *,
                     max_resource: int | None = None) -> TrialStart:
        """Add a trial that the scheduler did not suggest (a user's baseline, a warm start). It
        counts against ``maxTrials`` like any other; the scheduler learns of it via
        ``on_trial_add``."""
        record = self._create(config, hardware, max_resource, suggested=False)
        return TrialStart(record, False, max_resource)

    def resume_trial(self, trial_id: int, *, max_resource: int | None = None) -> TrialStart:
        """Resume a paused trial from outside the scheduler (a user, or after ``pause_trial``)."""
        record = self._resume(trial_id, max_resource, suggested=False)
        return TrialStart(record, True, max_resource)

    def _create(self, config: Mapping[str, Any], hardware: Hardware | None,
                max_resource: int | None, *, suggested: bool, trial_id: int | None = None) -> TrialRecord:
        config = self.config.space.validate(config, path="config")
        hardware = self._check_hardware(hardware)
        if max_resource is not None and not 1 <= max_resource <= self.config.max_resource:
            raise StudyError(f"max_resource must be in 1..{self.config.max_resource}, got {max_resource}")
        new_id = len(self._trials)
        if trial_id is not None and trial_id != new_id:
            raise StudyError(f"event log out of order: expected trial {new_id}, got {trial_id}")
        record = TrialRecord(trial_id=new_id, config=config, hardware=hardware)
        self._trials[new_id] = record
        self._target[new_id] = max_resource
        self._runtime[new_id] = 0.0
        self._cost[new_id] = 0.0
        self._gpu_hours[new_id] = 0.0
        self._trials_started += 1
        now = self.now()
        self._segment_start[new_id] = now
        self.scheduler.on_trial_add(record)
        self._emit(StudyEvent(seq=0, kind=EventKind.CREATED, trial_id=new_id, time=now,
                              config=dict(config), hardware=hardware, max_resource=max_resource,
                              suggested=suggested))
        return record

    def _check_hardware(self, hardware: Hardware | None) -> Hardware | None:
        choices = self.config.hardware
        if hardware is None:
            if len(choices):
                raise StudyError("this study searches hardware: a trial needs a (pool, gpu count)")
            return None
        if not isinstance(hardware, Hardware):
            raise StudyError(f"hardware must be a Hardware, got {type(hardware).__name__}")
        self.config.hardware_model.pool(hardware)  # raises for an unknown pool
        return hardware

    def _resume(self, trial_id: int, max_resource: int | None, *, suggested: bool) -> TrialRecord:
        record = self.trial(trial_id)
        if record.phase is not TrialPhase.PAUSED:
            raise TrialStateError(f"trial {trial_id} is {record.phase.value}; only a Paused trial "
                                  "can be resumed")
        if max_resource is not None and not record.last_resource < max_resource <= self.config.max_resource:
            raise StudyError(f"trial {trial_id}: max_resource must be in "
                             f"{record.last_resource + 1}..{self.config.max_resource}, got {max_resource}")
        record.phase = TrialPhase.PENDING
        record.reason = ""
        self.scheduler.on_trial_resume(record)
        self._target[trial_id] = max_resource
        now = self.now()
        self._segment_start[trial_id] = now
        self._segment_cap.pop(trial_id, None)
        self._emit(StudyEvent(seq=0, kind=EventKind.RESUMED, trial_id=trial_id, time=now,
                              max_resource=max_resource, suggested=suggested))
        return record

    def trial_running(self, trial_id: int) -> None:
        """The backend has the trial running now (pod started, process spawned). Optional: a
        report implies it. Restarts the runtime clock of this segment."""
        record = self.trial(trial_id)
        if record.phase is TrialPhase.RUNNING:
            return
        if record.phase is not TrialPhase.PENDING:
            raise TrialStateError(f"trial {trial_id} is {record.phase.value}; cannot mark it Running")
        record.phase = TrialPhase.RUNNING
        now = self.now()
        self._segment_start[trial_id] = now
        self._segment_cap.pop(trial_id, None)
        self._emit(StudyEvent(seq=0, kind=EventKind.RUNNING, trial_id=trial_id, time=now))

    # -- reports ------------------------------------------------------------------------------
    def report(self, trial_id: int, resource: int, metrics: Mapping[str, float],
               runtime_seconds: float | None = None) -> Decision:
        """Record one observation and return what the trial must do.

        ``runtime_seconds`` is the trial's total runtime so far on its hardware (all segments,
        across pauses), as the backend measured or simulated it; None lets the study measure it
        with its clock. Raises ``UnknownTrialError``, ``TrialStateError`` (trial not running) or
        ``InvalidReportError`` (bad resource, metric or runtime) and then records nothing."""
        record = self.trial(trial_id)
        if not record.phase.is_active():
            raise TrialStateError(f"trial {trial_id} is {record.phase.value}; reports are accepted "
                                  "only from Pending or Running trials")
        resource = self._check_resource(record, resource)
        clean = self._check_metrics(metrics)
        runtime = self._check_runtime(record, runtime_seconds)
        self._account(trial_id, runtime)
        clean["runtime"] = runtime
        clean["cost"] = self._cost[trial_id]
        return self._observe(record, resource, clean, runtime)

    def _check_resource(self, record: TrialRecord, resource: Any) -> int:
        if isinstance(resource, bool) or not isinstance(resource, (int, np.integer)):
            if isinstance(resource, float) and resource.is_integer():
                resource = int(resource)
            else:
                raise InvalidReportError(f"resource must be an integer, got {resource!r}")
        resource = int(resource)
        if resource <= record.last_resource:
            raise InvalidReportError(f"trial {record.trial_id}: resource {resource} does not advance "
                                     f"past the last reported {record.last_resource}")
        if resource > self.config.max_resource:
            raise InvalidReportError(f"trial {record.trial_id}: resource {resource} exceeds the "
                                     f"study maximum {self.config.max_resource}")
        return resource

    def _check_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        if not isinstance(metrics, Mapping):
            raise InvalidReportError(f"metrics must be a map of name -> number, got {type(metrics).__name__}")
        clean: dict[str, float] = {}
        for name, value in metrics.items():
            if not isinstance(name, str) or not name:
                raise InvalidReportError(f"metric names must be non-empty strings, got {name!r}")
            if name in BUILTIN_METRICS:
                raise InvalidReportError(f"metric {name!r} is built in (measured by the backend); "
                                         "do not report it")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(float(value)):
                raise InvalidReportError(f"metric {name!r} must be a finite number, got {value!r}")
            clean[name] = float(value)
        missing = [o.metric for o in self.config.objectives
                   if o.metric not in BUILTIN_METRICS and o.metric not in clean]
        if missing:
            raise InvalidReportError(f"objective metric {missing[0]!r} is missing from the report "
                                     f"(got: {', '.join(sorted(clean)) or 'none'})")
        return clean

    def _check_runtime(self, record: TrialRecord, runtime_seconds: float | None) -> float:
        tid = record.trial_id
        if runtime_seconds is None:
            now = self.now()
            end = min(now, self._segment_cap.get(tid, now))  # not the time the tuner was down
            return self._runtime[tid] + max(0.0, end - self._segment_start.get(tid, end))
        if isinstance(runtime_seconds, bool) or not isinstance(runtime_seconds, (int, float, np.number)) \
                or not math.isfinite(float(runtime_seconds)) or runtime_seconds < 0:
            raise InvalidReportError(f"runtime_seconds must be a finite number >= 0, got {runtime_seconds!r}")
        # A clock hiccup must never make spend go down: runtime only grows.
        return max(float(runtime_seconds), self._runtime[tid])

    def _account(self, trial_id: int, runtime: float) -> None:
        record = self._trials[trial_id]
        model = self.config.hardware_model
        cost = model.cost(runtime, record.hardware)
        gpu_hours = model.gpu_hours(runtime, record.hardware)
        self._total_cost += cost - self._cost[trial_id]
        self._total_gpu_hours += gpu_hours - self._gpu_hours[trial_id]
        self._runtime[trial_id] = runtime
        self._cost[trial_id] = cost
        self._gpu_hours[trial_id] = gpu_hours
        self._segment_start[trial_id] = self.now()
        self._segment_cap.pop(trial_id, None)
        self._live_cost.pop(trial_id, None)
        self._live_gpu_hours.pop(trial_id, None)

    def _observe(self, record: TrialRecord, resource: int, metrics: dict[str, float],
                 runtime: float, replayed: Decision | None = None) -> Decision:
        now = self.now()
        if record.phase is TrialPhase.PENDING:
            record.phase = TrialPhase.RUNNING
        raw = metrics
        metrics = self._by_strategy(record, metrics)
        observation = Observation(trial_id=record.trial_id, resource=resource, metrics=metrics, time=now)
        record.observations.append(observation)
        self._reports += 1
        decision = self._decide(record, observation, replayed)
        if not isinstance(decision, Decision):
            raise StudyError(f"scheduler returned {decision!r}, not a Decision")
        # Accounted spend only: this decision is replayed from the log, which holds no accruals.
        budget_reason = self.config.budget.running_stop_reason(self._spend(live=False))
        if resource >= self.config.max_resource:
            record.phase = TrialPhase.COMPLETED
            record.reason = f"completed: reached {self.config.fidelity.resource} {resource}"
            answer = Decision.STOP
            self.scheduler.on_trial_complete(record)
        elif decision is Decision.CONTINUE and budget_reason is not None:
            record.phase = TrialPhase.STOPPED
            record.reason = budget_reason
            answer = Decision.STOP
            self.scheduler.on_trial_remove(record)
        elif decision is Decision.PAUSE:
            record.phase = TrialPhase.PAUSED
            record.reason = f"paused by the scheduler at {self.config.fidelity.resource} {resource}"
            answer = decision
        elif decision is Decision.STOP:
            record.phase = TrialPhase.STOPPED
            record.reason = f"stopped by the scheduler at {self.config.fidelity.resource} {resource}"
            answer = decision
        else:
            record.phase = TrialPhase.RUNNING
            answer = decision
        if answer.halts:
            self._segment_start.pop(record.trial_id, None)
        if answer is Decision.PAUSE:
            self.scheduler.on_trial_pause(record)
        if self._target_reached is None:
            self._target_reached = self._targets_met(record.trial_id, metrics)
        # The log keeps what was reported; a replay applies the strategies again.
        self._emit(StudyEvent(seq=0, kind=EventKind.OBSERVED, trial_id=record.trial_id, time=now,
                              resource=resource, metrics=dict(raw), runtime_seconds=runtime,
                              decision=answer, reason=record.reason if answer.halts else ""))
        return answer

    def _by_strategy(self, record: TrialRecord, metrics: dict[str, float]) -> dict[str, float]:
        """Objective values as their ``strategy`` reads the curve: the latest value, or the
        min/max over the trial's reports so far (the previous observation already holds it)."""
        previous = record.observations[-1].metrics if record.observations else None
        out = dict(metrics)
        for spec in self.config.spec.objectives:
            strategy = spec.strategy.value if spec.strategy is not None else "latest"
            if strategy == "latest" or previous is None or spec.metric not in out \
                    or spec.metric not in previous:
                continue
            pick = min if strategy == "min" else max
            out[spec.metric] = pick(out[spec.metric], float(previous[spec.metric]))
        return out

    def _targets_met(self, trial_id: int, metrics: Mapping[str, float]) -> str | None:
        """Every objective ``target`` that is set, reached by this one observation."""
        reached = []
        for spec in self.config.spec.objectives:
            if spec.target is None:
                continue
            value = metrics.get(spec.metric)
            if value is None:
                return None
            ok = value <= spec.target if spec.goal.value == "minimize" else value >= spec.target
            if not ok:
                return None
            reached.append(f"{spec.metric} {value:.6g} {'<=' if spec.goal.value == 'minimize' else '>='} "
                           f"{spec.target:.6g}")
        if not reached:
            return None
        return f"objective target reached by trial {trial_id}: {', '.join(reached)}"

    def _decide(self, record: TrialRecord, observation: Observation, replayed: Decision | None) -> Decision:
        """The scheduler's decision. In a rebuild (``replayed``: the answer the log holds) the
        scheduler may apply it instead of ranking again (``Scheduler.replay_result``)."""
        if replayed is None:
            return self.scheduler.on_trial_result(record, observation)
        # Budget stops only (a reached target or a failed study stops trials from outside).
        budget_stop = self.config.budget.running_stop_reason(self._spend()) is not None
        return self.scheduler.replay_result(record, observation, replayed, budget_stop)

    # -- life-cycle facts ---------------------------------------------------------------------
    def complete_trial(self, trial_id: int, runtime_seconds: float | None = None) -> None:
        """The trial ended normally before the study maximum (the trainer's loop finished). A
        trial that never reported fails instead: its objectives are unknown."""
        if self.trial(trial_id).phase.is_active() and not self.trial(trial_id).observations:
            self.fail_trial(trial_id, f"{NO_REPORT_REASON}: " + no_report_advice(self.config),
                            runtime_seconds)
            return
        record = self._halt(trial_id, runtime_seconds, "complete")
        record.phase = TrialPhase.COMPLETED
        record.reason = "completed: the trainer finished"
        self.scheduler.on_trial_complete(record)
        self._emit_halt(EventKind.COMPLETED, record)

    def fail_trial(self, trial_id: int, reason: str, runtime_seconds: float | None = None) -> None:
        """The trial crashed, ran out of memory, or was evicted without a checkpoint."""
        record = self._halt(trial_id, runtime_seconds, "fail")
        if not record.observations:
            self._failed_unreported += 1
            if reason.startswith(NO_REPORT_REASON):  # live and in replay alike
                self._ended_unreported += 1
        self._failed += 1
        record.phase = TrialPhase.FAILED
        record.reason = reason or "failed"
        self.scheduler.on_trial_error(record)
        self._emit_halt(EventKind.FAILED, record)

    def stop_trial(self, trial_id: int, reason: str, runtime_seconds: float | None = None) -> None:
        """Stop the trial from outside the scheduler (a user, a budget). Paused trials may be
        stopped too (they never run again)."""
        record = self._halt(trial_id, runtime_seconds, "stop", allow_paused=True)
        record.phase = TrialPhase.STOPPED
        record.reason = reason or "stopped"
        self.scheduler.on_trial_remove(record)
        self._emit_halt(EventKind.STOPPED, record)

    def pause_trial(self, trial_id: int, reason: str, runtime_seconds: float | None = None) -> None:
        """Pause from outside the scheduler (a user, a preemption with a checkpoint). The
        scheduler is not told and will not resume it; ``resume_trial`` does."""
        record = self._halt(trial_id, runtime_seconds, "pause")
        record.phase = TrialPhase.PAUSED
        record.reason = reason or "paused"
        self.scheduler.on_trial_pause(record)
        self._emit_halt(EventKind.PAUSED, record)

    def _halt(self, trial_id: int, runtime_seconds: float | None, verb: str, *,
              allow_paused: bool = False) -> TrialRecord:
        record = self.trial(trial_id)
        if not (record.phase.is_active() or (allow_paused and record.phase is TrialPhase.PAUSED)):
            raise TrialStateError(f"trial {trial_id} is {record.phase.value}; cannot {verb} it")
        if record.phase.is_active():
            self._account(trial_id, self._check_runtime(record, runtime_seconds))
        self._segment_start.pop(trial_id, None)
        return record

    def _emit_halt(self, kind: EventKind, record: TrialRecord) -> None:
        self._emit(StudyEvent(seq=0, kind=kind, trial_id=record.trial_id, time=self.now(),
                              runtime_seconds=self._runtime[record.trial_id], reason=record.reason))

    def _emit(self, event: StudyEvent) -> None:
        if self.start_time is None:
            self.start_time = event.time
        # Events are built with seq=0 and numbered here, the one place that appends.
        object.__setattr__(event, "seq", len(self._events))
        if self._notes:
            object.__setattr__(event, "extra", {**event.extra, "notes": list(self._notes)})
            self._notes.clear()
        self._events.append(event)
        self._gc.tick()  # bounded GC pauses however long the log grows (engine/gcpace.py)
        if self._replay_time is None:
            for listener in self._listeners:
                listener(event)

    # -- results ------------------------------------------------------------------------------
    def front(self) -> list[FrontPoint]:
        """The Pareto front over every trial's latest observation (the model it ended with, or
        has now), in trial order. Objectives are compared as losses (``Objective.loss``)."""
        points = [(t, t.observations[-1]) for t in self._trials.values() if t.observations]
        if not points:
            return []
        objectives = self.config.objectives
        losses = np.array([[o.loss(obs.metrics[o.metric]) for o in objectives] for _, obs in points])
        keep = pareto_front_mask(losses)
        return [_point(t, obs, objectives) for (t, obs), k in zip(points, keep, strict=True) if k]

    def summary(self) -> StudySummary:
        counts = {phase.value: 0 for phase in TrialPhase}
        for t in self._trials.values():
            counts[t.phase.value] += 1
        best: dict[str, FrontPoint] = {}
        for o in self.config.objectives:
            scored = [(o.loss(t.observations[-1].metrics[o.metric]), t.trial_id, t)
                      for t in self._trials.values() if t.observations]
            if scored:
                _, _, t = min(scored, key=lambda s: (s[0], s[1]))
                best[o.metric] = _point(t, t.observations[-1], self.config.objectives)
        return StudySummary(counts=counts, spend=self.spend, front=tuple(self.front()), best=best,
                            reports=self._reports)

    # -- rebuild --------------------------------------------------------------------------------
    @classmethod
    def rebuild(
        cls,
        config: StudyConfig,
        events: Iterable[StudyEvent | Mapping[str, Any]],
        *,
        scheduler: Scheduler | None = None,
        clock: Clock | None = None,
        start_time: float | None = None,
        strict: bool = False,
        checkpoint_locator: Callable[[TrialRecord, int], str | None] | None = None,
        name: str = "",
    ) -> "Study":
        """Recreate a study from its event log (``StudyEvent``s or their ``to_dict()`` form).

        Events are replayed in ``seq`` order through a fresh scheduler (``config.make_scheduler()``
        unless given): suggested trials are asked of the scheduler again (or, when it sets
        ``reuses_recorded_suggestions``, handed to its ``replay_suggestion``), observations are fed to
        it with their recorded metrics, so its state ends where the original's was. Where the
        log says what was suggested, the scheduler may apply it instead of searching again
        (``Scheduler.replay_new_suggestion`` / ``replay_resume``: a promotion scheduler does
        not re-rank its rungs for every resume), which keeps a 20,000-trial rebuild fast. Where the
        replayed scheduler answers differently from the log (a nondeterministic scheduler, a
        changed algorithm), the log wins and the difference is listed in ``replay_mismatches``
        (``strict=True`` raises ``StudyError`` instead). Pass the original's ``start_time``
        when it was set explicitly; by default both count from the first event."""
        ordered = sorted((e if isinstance(e, StudyEvent) else StudyEvent.from_dict(e) for e in events),
                         key=lambda e: e.seq)
        study = cls(config, scheduler, clock=clock, start_time=start_time,
                    checkpoint_locator=checkpoint_locator, name=name)
        try:
            for event in ordered:
                study._replay_time = event.time
                study._replay_event = event
                study._replay(event, strict)
            study.scheduler.replay_done()
        finally:
            study._replay_time = None
            study._replay_event = None
        if ordered:
            # Trials the log leaves running ran at most until its last event, as far as anyone
            # knows: whoever resumes the study must not charge them the time it was down.
            study._segment_cap = {tid: ordered[-1].time for tid in study._segment_start}
        return study

    def _mismatch(self, message: str, strict: bool) -> None:
        if strict:
            raise StudyError(f"replay diverged: {message}")
        log.warning("replay diverged: %s", message)
        self.replay_mismatches.append(message)

    def _replay(self, event: StudyEvent, strict: bool) -> None:
        kind, tid = event.kind, event.trial_id
        self._notes = list((event.extra or {}).get("notes") or [])  # keep what was noted
        reuse = self.scheduler.reuses_recorded_suggestions
        if kind is EventKind.CREATED and event.suggested and reuse:
            assert event.config is not None
            self.scheduler.replay_suggestion(TrialSuggestion.new(event.config, event.hardware,
                                                                 event.max_resource))
        elif kind is EventKind.RESUMED and event.suggested and reuse:
            self.scheduler.replay_suggestion(TrialSuggestion.resume(tid, event.max_resource))
        if kind is EventKind.CREATED:
            if event.suggested and not reuse:
                suggestion = self.scheduler.replay_new_suggestion()
                expected = (dict(event.config or {}), event.hardware, event.max_resource)
                got = None if suggestion is None else (
                    None if suggestion.is_resume else
                    (dict(suggestion.config or {}), suggestion.hardware, suggestion.max_resource))
                if got != expected:
                    self._mismatch(f"event {event.seq}: the scheduler suggested {suggestion!r}, the log "
                                   f"created trial {tid} with {expected!r}", strict)
            assert event.config is not None
            self._create(event.config, event.hardware, event.max_resource,
                         suggested=event.suggested, trial_id=tid)
        elif kind is EventKind.RESUMED:
            if event.suggested and not reuse \
                    and not self.scheduler.replay_resume(tid, event.max_resource):
                suggestion = self._ask_scheduler()
                if suggestion is None or suggestion.resume_trial_id != tid \
                        or suggestion.max_resource != event.max_resource:
                    self._mismatch(f"event {event.seq}: the scheduler suggested {suggestion!r}, the log "
                                   f"resumed trial {tid}", strict)
            self._resume(tid, event.max_resource, suggested=event.suggested)
        elif kind is EventKind.RUNNING:
            self.trial_running(tid)
        elif kind is EventKind.OBSERVED:
            record = self.trial(tid)
            assert event.metrics is not None and event.resource is not None
            metrics = {k: float(v) for k, v in event.metrics.items()}
            runtime = float(event.runtime_seconds if event.runtime_seconds is not None
                            else metrics.get("runtime", 0.0))
            self._account(tid, max(runtime, self._runtime[tid]))
            decision = self._observe(record, int(event.resource), metrics, runtime, event.decision)
            if event.decision is not None and decision is not event.decision:
                self._mismatch(f"event {event.seq}: trial {tid} at resource {event.resource} got "
                               f"{decision.value} on replay, {event.decision.value} originally", strict)
        elif kind is EventKind.COMPLETED:
            self.complete_trial(tid, event.runtime_seconds)
            self.trial(tid).reason = event.reason or self.trial(tid).reason
        elif kind is EventKind.FAILED:
            self.fail_trial(tid, event.reason, event.runtime_seconds)
        elif kind is EventKind.STOPPED:
            self.stop_trial(tid, event.reason, event.runtime_seconds)
        elif kind is EventKind.PAUSED:
            self.pause_trial(tid, event.reason, event.runtime_seconds)
        else:  # pragma: no cover - EventKind is closed
            raise StudyError(f"unknown event kind {kind!r}")


def _default_locator(config: StudyConfig) -> Callable[[TrialRecord, int], str | None] | None:
    uri = (config.checkpoints or {}).get("uri")
    if not uri:
        return None
    root = str(uri).rstrip("/")
    # One checkpoint location per trial, overwritten each level: readers check the level.
    return lambda trial, level: f"{root}/{trial.trial_id}" if level >= 1 and trial.trial_id >= 0 else None


def _point(trial: TrialRecord, obs: Observation, objectives: Sequence[Any]) -> FrontPoint:
    return FrontPoint(trial_id=trial.trial_id, hardware=trial.hardware, resource=obs.resource,
                      values={o.metric: float(obs.metrics[o.metric]) for o in objectives})

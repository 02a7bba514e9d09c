"""Prometheus metrics of studies, fed by the engine, for any backend.

One ``StudyMetrics`` per process owns one ``CollectorRegistry`` (never the global default, so
tests and embedded operators do not collide). Two kinds of series:

- **Counters and histograms** follow events: ``watch()`` adds a listener to the ``Study``, so
  every launch, resume, pause, stop, failure and report is counted once, live, whatever backend
  drives the study (events replayed by ``Study.rebuild`` are not re-counted: counters restart
  at zero with the process, as Prometheus expects of counters).
- **Gauges** are read from the study's state when Prometheus scrapes (a custom collector, under
  the backend's lock): trials by phase, spend and GPU time by pool, budgets, hypervolume, and
  the Pareto front as points. Nothing is kept between scrapes, so a front point that left the
  front has no series at the next scrape.

Bounded series per study (measured at 1,000 trials by tests/observe): the front is exported as
at most ``front_limit`` points (default ``FRONT_LIMIT``), chosen by ``select_front``: the front
sorted by the first objective's loss (then trial id), and when it is longer than the limit, the
points at evenly spaced ranks with both ends kept. Each point is one series per exported
coordinate (the study's objectives, plus the built-in ``runtime`` and ``cost`` when they are
not objectives) and one ``..._trial`` series naming its trial and hardware. Everything else is
per (pool, gpu_type) or per phase, so a study has at most
``phases + 2*pools + 7*pools + limit*(coords+1) + histograms`` series, whatever its size.

Label names: ``namespace``, ``study``, ``pool``, ``gpu_type``, ``objective``, ``phase``,
``point`` (rank in the exported front, "0".."limit-1").
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hwtune.api.records import BUILTIN_METRICS, TrialPhase
from hwtune.engine.events import EventKind, StudyEvent
from hwtune.engine.study import FrontPoint, Study
from hwtune.optimize.hardware import DEFAULT_POOL
from hwtune.optimize.pareto import default_reference_point, hypervolume

__all__ = ["FRONT_LIMIT", "StudyMetrics", "StudyObserver", "select_front"]

FRONT_LIMIT = 32  # front points exported per study (see select_front)

STUDY = ("namespace", "study")
HARDWARE = ("namespace", "study", "pool", "gpu_type")

# Latencies from ~1 ms (an engine decision) to 1 min (a surrogate refit).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


def select_front(points: Sequence[FrontPoint], objectives: Sequence[Any],
                 limit: int = FRONT_LIMIT) -> list[FrontPoint]:
    """The front points to export, in rank order: sorted by the first objective's loss (then
    trial id, the order of the TuningStudy status); longer than ``limit``: the points at ranks
    round(i*(n-1)/(limit-1)), so both extremes and an even spread survive."""
    if limit < 1:
        raise ValueError(f"front limit must be >= 1, got {limit}")
    first = objectives[0]
    ordered = sorted(points, key=lambda p: (first.loss(p.values[first.metric]), p.trial_id))
    n = len(ordered)
    if n <= limit:
        return ordered
    if limit == 1:
        return ordered[:1]
    ranks = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [ordered[r] for r in ranks]


@dataclass
class StudyObserver:
    """One watched study: its labels, its lock, and the label sets it has used (removed again
    by ``StudyMetrics.unwatch`` so a deleted study leaves no series behind)."""

    metrics: "StudyMetrics"
    study: Study
    namespace: str
    name: str
    lock: ContextManager[Any]
    used: set[tuple[Any, tuple[str, ...]]] = field(default_factory=set)
    measured: bool = False  # the searcher reports surrogate calls itself (on_measure)

    @property
    def labels(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def hardware_labels(self, trial_id: int) -> tuple[str, str, str, str]:
        hardware = self.study.trial(trial_id).hardware
        pool = DEFAULT_POOL if hardware is None else hardware.pool
        gpu_type = self.study.config.hardware_model.pool(hardware).gpu_type
        return (self.namespace, self.name, pool, gpu_type)

    def _inc(self, counter: Counter, values: tuple[str, ...], amount: float = 1.0) -> None:
        self.used.add((counter, values))
        counter.labels(*values).inc(amount)

    def _observe(self, histogram: Histogram, seconds: float) -> None:
        self.used.add((histogram, self.labels))
        histogram.labels(*self.labels).observe(seconds)

    # -- events -----------------------------------------------------------------------------
    def on_event(self, event: StudyEvent) -> None:
        m = self.metrics
        self._count_surrogate_notes(event)
        hw = self.hardware_labels(event.trial_id)
        kind = event.kind
        if kind is EventKind.CREATED:
            self._inc(m.launches, hw)
        elif kind is EventKind.RESUMED:
            self._inc(m.launches, hw)
            self._inc(m.resumes, hw)
        elif kind is EventKind.OBSERVED:
            self._inc(m.reports, hw)
            # The record's phase after the event says what the decision did (a STOP at the
            # maximum resource is a completion, not a stop).
            phase = self.study.trial(event.trial_id).phase
            if phase is TrialPhase.PAUSED:
                self._inc(m.pauses, hw)
            elif phase is TrialPhase.STOPPED:
                self._inc(m.stops, hw)
        elif kind is EventKind.STOPPED:
            self._inc(m.stops, hw)
        elif kind is EventKind.PAUSED:
            self._inc(m.pauses, hw)
            if "preempt" in event.reason.lower() or "evict" in event.reason.lower():
                self._inc(m.preemptions, hw)
        elif kind is EventKind.FAILED:
            self._inc(m.failures, hw)

    def on_measure(self, kind: str, seconds: float, ok: bool) -> None:
        """The searcher's own report of a surrogate call or fallback (``Study.measure``): exact
        counts, so the study notes are not counted any more for this study."""
        if kind == "surrogate_call":
            self.measured = True
            self._observe(self.metrics.surrogate_seconds, seconds)
            if not ok:
                self._inc(self.metrics.surrogate_errors, self.labels)
        elif kind == "surrogate_fallback":
            self.measured = True
            self._inc(self.metrics.surrogate_fallbacks, self.labels)

    def _count_surrogate_notes(self, event: StudyEvent) -> None:
        if self.measured:  # on_measure counts them exactly
            return
        # Surrogate searchers note a fallback to random search on the study (``Study.note``),
        # attached to the next event as extra["notes"]: "surrogate: <error>; this suggestion
        # fell back ..." (a failed call) or "surrogate: still falling back ..." (skipped while
        # backing off). Equal notes between two events are recorded once, so this counts at
        # least one per event that had fallbacks.
        notes = (event.extra or {}).get("notes") or ()
        for note in notes:
            if not isinstance(note, str) or not note.startswith("surrogate:"):
                continue
            self._inc(self.metrics.surrogate_fallbacks, self.labels)
            if "still falling back" not in note:
                self._inc(self.metrics.surrogate_errors, self.labels)

    def preempted(self, trial_id: int) -> None:
        """A backend saw the trial's pod preempted or evicted and replaced it without a study
        event (the Kubernetes Job retries it from its checkpoint)."""
        with self.lock:
            labels = self.hardware_labels(trial_id)
        self._inc(self.metrics.preemptions, labels)

    # -- timings ------------------------------------------------------------------------------
    def observe_decision(self, seconds: float) -> None:
        self._observe(self.metrics.decision_seconds, seconds)

    @contextlib.contextmanager
    def reconcile(self) -> Iterator[None]:
        """Time one reconcile pass (a tuner step and what the backend does after it)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._observe(self.metrics.reconcile_seconds, time.perf_counter() - start)

    @contextlib.contextmanager
    def surrogate_call(self) -> Iterator[None]:
        """Time one call to the surrogate service; an exception counts as an error (and is
        re-raised: the caller decides on a fallback and reports it with surrogate_fallback)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self._inc(self.metrics.surrogate_errors, self.labels)
            raise
        finally:
            self._observe(self.metrics.surrogate_seconds, time.perf_counter() - start)

    def surrogate_fallback(self) -> None:
        """The searcher fell back to its model-free proposal (surrogate down or too slow)."""
        self._inc(self.metrics.surrogate_fallbacks, self.labels)

    # -- scrape -------------------------------------------------------------------------------
    def snapshot(self) -> "_Snapshot":
        with self.lock:
            return _Snapshot.of(self)


@dataclass
class _Snapshot:
    """What one scrape exports of one study, read under the study's lock."""

    counts: dict[str, int]
    spend: dict[tuple[str, str], list[float]]  # (pool, gpu_type) -> [usd, gpu hours]
    total_usd: float
    total_gpu_hours: float
    budget: dict[str, float]
    front_size: int
    hypervolume: float | None
    points: list[tuple[int, str, str, dict[str, float]]]  # trial, pool, gpu_type, coordinates

    @classmethod
    def of(cls, obs: StudyObserver) -> "_Snapshot":
        study = obs.study
        config = study.config
        counts = {phase.value: 0 for phase in TrialPhase}
        spend: dict[tuple[str, str], list[float]] = {}
        for trial in study.trials:
            counts[trial.phase.value] += 1
            _, _, pool, gpu_type = obs.hardware_labels(trial.trial_id)
            usd, gpu_hours = study.live_spend_of(trial.trial_id)
            acc = spend.setdefault((pool, gpu_type), [0.0, 0.0])
            acc[0] += usd
            acc[1] += gpu_hours
        total = study.spend
        budget = {}
        if config.budget.max_cost_usd is not None:
            budget["usd"] = float(config.budget.max_cost_usd)
        if config.budget.max_gpu_hours is not None:
            budget["gpu_seconds"] = float(config.budget.max_gpu_hours) * 3600.0
        if config.budget.max_trials is not None:
            budget["trials"] = float(config.budget.max_trials)
        front = study.front()
        objectives = config.objectives
        hv = None
        if front:
            # The same number as TuningStudy status.hypervolume: the reference point is the
            # front's worst loss per objective pushed out by 10% of its range.
            losses = [[o.loss(p.values[o.metric]) for o in objectives] for p in front]
            try:
                hv = float(hypervolume(losses, default_reference_point(losses)))
            except ValueError:
                hv = None
        coords = [o.metric for o in objectives]
        coords += [b for b in sorted(BUILTIN_METRICS) if b not in coords]
        points = []
        for p in select_front(front, objectives, obs.metrics.front_limit):
            metrics = study.trial(p.trial_id).observations[-1].metrics
            values = {c: float(metrics[c]) for c in coords if c in metrics}
            _, _, pool, gpu_type = obs.hardware_labels(p.trial_id)
            points.append((p.trial_id, pool, gpu_type, values))
        return cls(counts, spend, total.cost_usd, total.gpu_hours, budget, len(front),
                   hv if hv is not None and math.isfinite(hv) else None, points)


class _StudyCollector(Collector):
    def __init__(self, metrics: "StudyMetrics") -> None:
        self.metrics = metrics

    def describe(self):  # no samples at registration time (the studies are read at scrape)
        return []

    def collect(self):
        trials = GaugeMetricFamily("hwtune_study_trials", "Trials of the study by phase.",
                                   labels=[*STUDY, "phase"])
        usd = GaugeMetricFamily("hwtune_study_spent_usd",
                                "Money spent by the study's trials (USD), by pool; running "
                                "trials' spend since their last report included.",
                                labels=list(HARDWARE))
        gpu = GaugeMetricFamily("hwtune_study_gpu_seconds",
                                "GPU time used by the study's trials (GPU-seconds; /3600 for "
                                "GPU-hours), by pool.", labels=list(HARDWARE))
        budget_usd = GaugeMetricFamily("hwtune_study_budget_usd", "spec.budget.maxCostUSD.",
                                       labels=list(STUDY))
        budget_gpu = GaugeMetricFamily("hwtune_study_budget_gpu_seconds",
                                       "spec.budget.maxGPUHours in GPU-seconds.", labels=list(STUDY))
        budget_trials = GaugeMetricFamily("hwtune_study_budget_trials", "spec.budget.maxTrials.",
                                          labels=list(STUDY))
        hv = GaugeMetricFamily("hwtune_study_hypervolume",
                               "Hypervolume of the current Pareto front (as status.hypervolume).",
                               labels=list(STUDY))
        size = GaugeMetricFamily("hwtune_study_front_size",
                                 "Points on the study's Pareto front (all, not only exported).",
                                 labels=list(STUDY))
        point = GaugeMetricFamily("hwtune_study_front_point",
                                  "One coordinate of one exported Pareto front point (objective "
                                  "value, or the built-in runtime seconds / cost USD).",
                                  labels=[*STUDY, "point", "objective"])
        point_trial = GaugeMetricFamily("hwtune_study_front_point_trial",
                                        "The trial id of an exported front point, with its "
                                        "hardware.", labels=[*STUDY, "point", "pool", "gpu_type"])
        for obs in self.metrics.observers():
            snap = obs.snapshot()
            ns, name = obs.labels
            for phase, n in snap.counts.items():
                trials.add_metric([ns, name, phase], n)
            for (pool, gpu_type), (cost, hours) in sorted(snap.spend.items()):
                usd.add_metric([ns, name, pool, gpu_type], cost)
                gpu.add_metric([ns, name, pool, gpu_type], hours * 3600.0)
            if "usd" in snap.budget:
                budget_usd.add_metric([ns, name], snap.budget["usd"])
            if "gpu_seconds" in snap.budget:
                budget_gpu.add_metric([ns, name], snap.budget["gpu_seconds"])
            if "trials" in snap.budget:
                budget_trials.add_metric([ns, name], snap.budget["trials"])
            if snap.hypervolume is not None:
                hv.add_metric([ns, name], snap.hypervolume)
            size.add_metric([ns, name], snap.front_size)
            for rank, (trial_id, pool, gpu_type, values) in enumerate(snap.points):
                point_trial.add_metric([ns, name, str(rank), pool, gpu_type], trial_id)
                for objective, value in values.items():
                    point.add_metric([ns, name, str(rank), objective], value)
        yield from (trials, usd, gpu, budget_usd, budget_gpu, budget_trials, hv, size, point,
                    point_trial)


class StudyMetrics:
    """The registry and the metrics of every study this process runs."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 front_limit: int = FRONT_LIMIT) -> None:
        if front_limit < 1:
            raise ValueError(f"front_limit must be >= 1, got {front_limit}")
        # No *_created series: they double the series count and no dashboard reads them.
        disable_created_metrics()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.front_limit = front_limit
        self._observers: dict[tuple[str, str], StudyObserver] = {}
        self._guard = threading.Lock()
        r = self.registry

        def counter(name: str, doc: str, labels: Sequence[str] = HARDWARE) -> Counter:
            return Counter(name, doc, labelnames=list(labels), registry=r)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, labelnames=list(STUDY), buckets=LATENCY_BUCKETS,
                             registry=r)

        # prometheus_client appends _total to counter names.
        self.launches = counter("hwtune_trial_launches", "Trial launches (new trials and resumes).")
        self.resumes = counter("hwtune_trial_resumes", "Paused trials resumed from a checkpoint.")
        self.pauses = counter("hwtune_trial_pauses", "Trials paused (by the scheduler or from outside).")
        self.stops = counter("hwtune_trial_stops", "Trials stopped early (scheduler, budget, user); completions excluded.")
        self.failures = counter("hwtune_trial_failures", "Trials that failed.")
        self.preemptions = counter("hwtune_trial_preemptions", "Trial pods preempted or evicted.")
        self.reports = counter("hwtune_trial_reports", "Reports (observations) received.")
        self.surrogate_errors = counter("hwtune_surrogate_errors", "Surrogate service calls that failed.", STUDY)
        self.surrogate_fallbacks = counter("hwtune_surrogate_fallbacks",
                                           "Suggestions made without the surrogate (it was down or slow).", STUDY)
        # Per replica, not per study: a standby forwards reports of studies it does not run.
        self.forwards = counter("hwtune_report_forwards",
                                "Reports this replica forwarded to the replica acting for their "
                                "study: answered (the holder's answer passed back, any status) "
                                "or failed (the holder not reached in time: 503 answered).",
                                ("outcome",))
        self.decision_seconds = histogram("hwtune_report_decision_seconds",
                                          "From a report's arrival at the engine to its decision (seconds).")
        self.reconcile_seconds = histogram("hwtune_reconcile_seconds", "One reconcile pass of a study (seconds).")
        self.surrogate_seconds = histogram("hwtune_surrogate_request_seconds",
                                           "One call to the surrogate service (seconds).")
        r.register(_StudyCollector(self))

    # -- studies ----------------------------------------------------------------------------
    def watch(self, study: Study, namespace: str, name: str, *,
              lock: ContextManager[Any] | None = None, time_reports: bool = True) -> StudyObserver:
        """Export ``study`` from now on. ``lock`` guards its state (the backend's ``lock``
        where reports arrive on other threads); scrapes read the study under it. With
        ``time_reports`` the study's ``report`` is timed into
        ``hwtune_report_decision_seconds`` (the operator times its whole report handling
        instead, the write-ahead log included: ``observe_decision``)."""
        key = (namespace, name)
        with self._guard:
            if key in self._observers:
                raise ValueError(f"study {namespace}/{name} is already watched")
            obs = StudyObserver(self, study, namespace, name,
                                lock if lock is not None else contextlib.nullcontext())
            self._observers[key] = obs
        study.add_listener(obs.on_event)
        if hasattr(study, "add_measure_listener"):
            study.add_measure_listener(obs.on_measure)
        if not time_reports:
            return obs
        inner = study.report

        def timed_report(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                obs.observe_decision(time.perf_counter() - start)

        study.report = timed_report  # type: ignore[method-assign]  # one wrapper, any backend
        return obs

    def observer(self, namespace: str, name: str) -> StudyObserver | None:
        with self._guard:
            return self._observers.get((namespace, name))

    def unwatch(self, namespace: str, name: str) -> None:
        """Forget a study (deleted): its gauges go at the next scrape, its counters now."""
        with self._guard:
            obs = self._observers.pop((namespace, name), None)
        if obs is None:
            return
        for metric, values in obs.used:
            with contextlib.suppress(KeyError):
                metric.remove(*values)

    def observers(self) -> list[StudyObserver]:
        with self._guard:
            return list(self._observers.values())

    # -- exposition ---------------------------------------------------------------------------
    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve /metrics on ``addr:port`` from a daemon thread; returns the server (call
        ``shutdown()`` to stop it). The chart's metrics port is 9090."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

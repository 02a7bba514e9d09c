"""The tuning loop: drives a ``Study`` with any ``Backend`` until the study is done.

One iteration, all under ``backend.lock``:

1. If a spend or deadline budget is exhausted (``Study.stop_reason``), stop every active trial.
2. Fill free slots: while fewer than the parallel limit are active, ``study.start_next()`` and
   ``backend.start_trial``. The limit is ``max_parallel`` (argument), else
   ``budget.maxParallelTrials``, else the backend's ``capacity``, else 1 (and never more than
   the backend's capacity).
3. If nothing is active, the study is done: the budget forbids new trials, or the scheduler has
   nothing left (an exhausted grid).
4. ``backend.wait(timeout)``: reports flow to the study through the backend while it waits; the
   timeout is at most ``poll_seconds`` and never past the deadline, so a simulated clock stops
   exactly at it.

``Tuner.run()`` returns a ``TuningResult``. The loop never reads a clock itself except through
the study (whose clock the simulator replaces), so the same code runs in real and simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Protocol

from hwtune.api.records import TrialRecord
from hwtune.engine.budget import Spend
from hwtune.engine.study import FrontPoint, Study, StudySummary

__all__ = ["FROM_BACKEND", "TrialBackend", "Tuner", "TuningResult"]


class TrialBackend(Protocol):
    """What the tuner needs of a backend. ``hwtune.backends.base.Backend`` (the template every
    backend is built on) satisfies it; the engine names only this protocol, so ``backends``
    imports ``engine`` and never the other way round (an import-linter layers contract)."""

    lock: ContextManager[Any]
    capacity: int | None
    poll_seconds: float | None

    def bind(self, sink: Study) -> None: ...

    def active_trial_ids(self) -> list[int]: ...

    @property
    def active_count(self) -> int: ...  # len(active_trial_ids()) without building the list

    def start_trial(self, start: Any) -> None: ...

    def stop_trial(self, trial_id: int, reason: str) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def running_runtimes(self) -> Mapping[int, float]: ...

FROM_BACKEND = object()  # default of Tuner(poll_seconds=...): use the backend's poll_seconds


@dataclass(frozen=True)
class TuningResult:
    trials: tuple[TrialRecord, ...]
    front: tuple[FrontPoint, ...]
    spend: Spend
    summary: StudySummary
    stop_reason: str  # why the loop ended
    iterations: int


class Tuner:
    """Run ``study`` on ``backend``. ``on_iteration(study)`` is called after every wait (the CLI
    redraws its progress view there). ``poll_seconds`` defaults to the backend's
    ``poll_seconds`` (None for the simulator: wait for the next event however far away)."""

    MAX_FAILED_LAUNCHES = 20  # consecutive trials that end at launch before the loop gives up
    BUDGET_WAKE_FLOOR = 1e-6  # seconds: the shortest wait for a spend budget

    def __init__(
        self,
        study: Study,
        backend: TrialBackend,
        *,
        max_parallel: int | None = None,
        poll_seconds: float | None | object = FROM_BACKEND,
        on_iteration: Callable[[Study], None] | None = None,
    ) -> None:
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        if poll_seconds is FROM_BACKEND:
            poll_seconds = backend.poll_seconds
        if poll_seconds is not None and not isinstance(poll_seconds, (int, float)):
            raise TypeError(f"poll_seconds must be a number or None, got {poll_seconds!r}")
        if poll_seconds is not None and poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {poll_seconds}")
        self.study = study
        self.backend = backend
        self.max_parallel = max_parallel
        self.poll_seconds = poll_seconds
        self.on_iteration = on_iteration
        self.iterations = 0
        self._stop_requested: str | None = None
        budget = study.config.budget
        self._spend_budget = budget.max_cost_usd is not None or budget.max_gpu_hours is not None
        # Trials in a row that failed before reporting, and the counters it is measured by.
        self._failure_streak = 0
        self._seen = (study.reports, study.failed_before_reporting)
        backend.bind(study)

    @property
    def parallel_limit(self) -> int:
        limit = self.max_parallel or self.study.config.budget.max_parallel_trials \
            or self.backend.capacity or 1
        if self.backend.capacity is not None:
            limit = min(limit, self.backend.capacity)
        return limit

    def request_stop(self, reason: str = "stopped by the user") -> None:
        """Ask the loop to stop every active trial and return (safe from a signal handler)."""
        self._stop_requested = reason

    def step(self) -> str | None:
        """One iteration; returns why the loop is over, or None to go on."""
        study, backend = self.study, self.backend
        with backend.lock:
            # Running trials' spend grows between reports: charge it before judging a spend
            # budget (without one, spend is accounted at reports and halts only).
            if self._spend_budget:
                study.accrue(getattr(backend, "running_runtimes", dict)())
            reason = self._stop_requested or study.stop_reason()
            if reason is not None:
                for trial_id in backend.active_trial_ids():
                    backend.stop_trial(trial_id, reason)
                return reason
            failed_launches = 0
            while True:
                started = self._fill()
                if backend.active_count:  # a count, not the sorted id list: once per step
                    break
                if started == 0:
                    return study.new_trial_block() or "the scheduler has no more trials to run"
                # Every trial started this round already ended (e.g. its launch failed): that
                # ends those trials, not the study. A run of such failures means a broken setup.
                failed_launches += started
                if failed_launches >= self.MAX_FAILED_LAUNCHES:
                    return (f"{failed_launches} trials in a row ended as they were launched; "
                            "see their reasons")
            timeout = self._timeout()
        backend.wait(timeout)
        self.iterations += 1
        if self.on_iteration is not None:
            self.on_iteration(study)
        return self._check_failure_streak()

    def _check_failure_streak(self) -> str | None:
        """End the loop when trial after trial fails before its first report with no report in
        between (every launch fails at once: no pool has the memory, the command is missing).
        Without this a simulated study would start failing trials forever at time 0."""
        reports, failed = self.study.reports, self.study.failed_before_reporting
        if reports > self._seen[0]:
            self._failure_streak = 0
        self._failure_streak += failed - self._seen[1]
        self._seen = (reports, failed)
        if self._failure_streak < self.MAX_FAILED_LAUNCHES:
            return None
        reason = (f"{self._failure_streak} trials in a row failed before their first report "
                  "(see their reasons); stopping instead of starting more")
        with self.backend.lock:
            for trial_id in self.backend.active_trial_ids():
                self.backend.stop_trial(trial_id, reason)
        return reason

    def run(self, max_iterations: int | None = None) -> TuningResult:
        reason: str | None = None
        while reason is None:
            if max_iterations is not None and self.iterations >= max_iterations:
                reason = f"stopped after {max_iterations} iterations"
                break
            reason = self.step()
        return self.result(reason)

    def result(self, reason: str) -> TuningResult:
        summary = self.study.summary()
        return TuningResult(trials=tuple(self.study.trials), front=summary.front,
                            spend=summary.spend, summary=summary, stop_reason=reason,
                            iterations=self.iterations)

    def _fill(self) -> int:
        """Start trials into the free slots; returns how many were started."""
        free = self.parallel_limit - self.backend.active_count
        started = 0
        while free > 0:
            start = self.study.start_next()
            if start is None:
                break
            self.backend.start_trial(start)
            started += 1
            free -= 1
        return started

    def _timeout(self) -> float | None:
        timeout = self.poll_seconds
        deadline = self.study.config.budget.max_duration_seconds
        if deadline is not None:
            left = max(0.0, deadline - self.study.spend.elapsed_seconds)
            timeout = left if timeout is None else min(timeout, left)
        # Wake when running trials would reach a spend budget, even if none of them reports
        # (a floor keeps float rounding from stalling a simulated clock).
        until_budget = self.study.seconds_until_budget()
        if until_budget is not None:
            until_budget = max(until_budget, self.BUDGET_WAKE_FLOOR)
            timeout = until_budget if timeout is None else min(timeout, until_budget)
        return timeout

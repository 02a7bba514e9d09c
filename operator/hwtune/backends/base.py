"""The template every backend is built on (local and simulated today; the kubernetes backend is
being built on it).

A backend runs trials; it never decides. The split follows the Syne Tune trial backend: the
public methods below do the bookkeeping (which trials this backend has, in which phase, how often
each was launched) and call one private hook each, which a concrete backend fills in.

Public (called by the ``Tuner``, under ``lock``):

- ``bind(sink)``: where reports and life-cycle facts go. ``sink`` is a ``TrialSink``; the
  ``Study`` is one.
- ``start_trial(start)``: launch a new trial or resume a paused one (``start.resumed``; the
  trainer continues after ``start.trial.last_resource`` from its checkpoint) -> hook ``_launch``.
- ``stop_trial(trial_id, reason)``: stop from outside (budget, user) -> hook ``_stop``, then
  ``sink.stop_trial`` with the runtime the hook measured.
- ``pause_trial(trial_id, reason)``: pause from outside, keeping the checkpoint -> hook
  ``_pause``, then ``sink.pause_trial``.
- ``wait(timeout)``: let trials make progress for at most ``timeout`` seconds of this backend's
  clock -> hook ``_wait``; returns True if anything happened (a report, an exit).
- ``active_trial_ids()``, ``close()``.

How reports flow back: whatever receives a report (the simulator's event loop, the local
backend's HTTP endpoint, the operator's endpoint) calls ``self._deliver_report(trial_id,
resource, metrics, runtime_seconds)``. That calls ``sink.report`` synchronously under ``lock``
and returns the ``Decision``, which the receiver hands to the trainer (the HTTP answer), so the
trainer knows at once whether to continue, checkpoint and pause, or stop. A halting decision
frees the trial's slot in this bookkeeping right away. When a trial's process ends, the backend
calls ``_deliver_exit(trial_id, ok=..., reason=..., runtime_seconds=...)``: an exit after a
halting decision or an outside stop/pause is expected and ignored; otherwise a clean exit
completes the trial and an unclean one fails it. ``_deliver_running(trial_id)`` tells the study
when a launched trial really runs (a pod leaves Pending), for backends whose ``_launch`` returns
False.

``runtime_seconds`` is always the trial's total runtime on its hardware, summed over all its
launches; backends that run on other hardware than the trial's (the local backend on the
developer's CPU) scale it with ``HardwareModel.runtime`` first. Pass None to let the study time it.

Threading: ``lock`` is an ``RLock`` shared with the tuner; every sink call made by this base
class holds it, so a backend may deliver reports from a server thread.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from hwtune.api.records import Decision, Hardware, TrialPhase, TrialRecord

__all__ = ["Backend", "BackendError", "BackendTrial", "InfrastructureError", "TrialSink"]


class BackendError(RuntimeError):
    """A backend was asked for something its bookkeeping forbids (start a running trial, stop
    an unknown one) or its machinery failed to launch a trial."""


class InfrastructureError(BackendError):
    """The machine failed, not the trial (a full disk, no processes or file descriptors left):
    the run must end. Trials keep their phase, so that a later run resumes them; none is
    failed for it, and none uses up ``maxTrials`` in vain."""


class TrialSink(Protocol):
    """Where a backend sends what happens to its trials. ``hwtune.engine.study.Study`` is one."""

    def trial(self, trial_id: int) -> TrialRecord: ...

    def trial_running(self, trial_id: int) -> None: ...

    def report(self, trial_id: int, resource: int, metrics: Mapping[str, float],
               runtime_seconds: float | None = None) -> Decision: ...

    def complete_trial(self, trial_id: int, runtime_seconds: float | None = None) -> None: ...

    def fail_trial(self, trial_id: int, reason: str, runtime_seconds: float | None = None) -> None: ...

    def stop_trial(self, trial_id: int, reason: str, runtime_seconds: float | None = None) -> None: ...

    def pause_trial(self, trial_id: int, reason: str, runtime_seconds: float | None = None) -> None: ...


class _Start(Protocol):  # structural view of hwtune.engine.study.TrialStart
    trial: TrialRecord
    resumed: bool
    max_resource: int | None


@dataclass
class BackendTrial:
    """This backend's view of one trial."""

    trial_id: int
    config: Mapping[str, Any]
    hardware: Hardware | None
    phase: TrialPhase = TrialPhase.PENDING
    launches: int = 0  # 1 for a fresh trial, +1 per resume
    start_resource: int = 1  # first resource level of the current launch
    max_resource: int | None = None  # the scheduler's hint for the current launch

    @property
    def active(self) -> bool:
        return self.phase.is_active()


class Backend(abc.ABC):
    """Base of every backend. Subclasses implement ``_launch``, ``_stop`` and ``_wait``, and
    ``_pause`` when they can pause from outside."""

    #: Most trials this backend can run at once (workers, cores); None = no limit of its own.
    capacity: int | None = None
    #: How long the tuner waits per iteration by default (None: until the next event).
    poll_seconds: float | None = 1.0

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._sink: TrialSink | None = None
        self._trials: dict[int, BackendTrial] = {}
        self._active: set[int] = set()  # ids of pending/running trials, kept with the phases

    def _set_phase(self, state: BackendTrial, phase: TrialPhase) -> None:
        state.phase = phase
        if phase.is_active():
            self._active.add(state.trial_id)
        else:
            self._active.discard(state.trial_id)

    # -- public ---------------------------------------------------------------------------------
    def bind(self, sink: TrialSink) -> None:
        self._sink = sink

    @property
    def sink(self) -> TrialSink:
        if self._sink is None:
            raise BackendError("backend is not bound to a study; call bind(study) first")
        return self._sink

    def trial_state(self, trial_id: int) -> BackendTrial:
        try:
            return self._trials[trial_id]
        except KeyError:
            raise BackendError(f"trial {trial_id} was never started on this backend") from None

    def active_trial_ids(self) -> list[int]:
        """Trials launched and not yet halted, in id order."""
        with self.lock:
            return sorted(self._active)

    @property
    def active_count(self) -> int:
        return len(self._active)

    def start_trial(self, start: _Start) -> None:
        """Launch ``start.trial`` (new, or resumed when ``start.resumed``)."""
        record = start.trial
        with self.lock:
            state = self._trials.get(record.trial_id)
            if start.resumed:
                if state is None:
                    # Resumed after a restart of this process: the backend learns of it now.
                    state = BackendTrial(record.trial_id, dict(record.config), record.hardware,
                                         phase=TrialPhase.PAUSED, launches=1)
                    self._trials[record.trial_id] = state
                if state.active:
                    raise BackendError(f"trial {record.trial_id} is already {state.phase.value}")
            elif state is not None:
                raise BackendError(f"trial {record.trial_id} was already started on this backend")
            else:
                state = BackendTrial(record.trial_id, dict(record.config), record.hardware)
                self._trials[record.trial_id] = state
            self._set_phase(state, TrialPhase.PENDING)
            state.launches += 1
            state.start_resource = record.last_resource + 1
            state.max_resource = start.max_resource
            try:
                running = self._launch(state, start.resumed)
            except InfrastructureError:
                raise
            except Exception as exc:
                self._set_phase(state, TrialPhase.FAILED)
                self.sink.fail_trial(record.trial_id, f"launch failed: {exc}")
                return
            if running and state.phase is TrialPhase.PENDING:
                self._deliver_running(record.trial_id)

    def stop_trial(self, trial_id: int, reason: str) -> None:
        """Stop a pending, running or paused trial from outside the scheduler."""
        with self.lock:
            state = self.trial_state(trial_id)
            if not (state.active or state.phase is TrialPhase.PAUSED):
                raise BackendError(f"trial {trial_id} is {state.phase.value}; cannot stop it")
            runtime = self._stop(state) if state.active else None
            self._set_phase(state, TrialPhase.STOPPED)
            self.sink.stop_trial(trial_id, reason, runtime)

    def pause_trial(self, trial_id: int, reason: str) -> None:
        """Pause a running trial from outside the scheduler; it keeps its checkpoint."""
        with self.lock:
            state = self.trial_state(trial_id)
            if not state.active:
                raise BackendError(f"trial {trial_id} is {state.phase.value}; cannot pause it")
            runtime = self._pause(state)
            self._set_phase(state, TrialPhase.PAUSED)
            self.sink.pause_trial(trial_id, reason, runtime)

    def wait(self, timeout: float | None = None) -> bool:
        """Let trials progress for at most ``timeout`` seconds (None: until something happens,
        if anything can). True if a report or an exit was delivered."""
        return self._wait(timeout)

    def running_runtimes(self) -> Mapping[int, float]:
        """Total runtime on its hardware, right now, of each running trial this backend can
        measure between reports (trial id -> seconds). The tuner charges it to the budget as
        time passes, so a trial that never reports cannot outrun maxCostUSD. Trials left out are
        timed by the study's clock."""
        return {}

    def close(self) -> None:
        """Kill everything still running and release resources. Idempotent. The study is not
        told: its trials stay Pending/Running in the log, so whoever rebuilds it after an
        interruption decides their fate (pause them if they left a checkpoint, else fail)."""
        self._close()

    # -- hooks ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _launch(self, trial: BackendTrial, resume: bool) -> bool:
        """Start the trial (from its checkpoint when ``resume``; the first level it reports is
        ``trial.start_resource``). Return True if it runs now, False if it will run later (then
        call ``_deliver_running`` when it does). Raise to fail the trial."""

    @abc.abstractmethod
    def _stop(self, trial: BackendTrial) -> float | None:
        """Kill the trial; return its total runtime on its hardware if measured, else None."""

    def _pause(self, trial: BackendTrial) -> float | None:
        """Make the trial checkpoint and exit; return its total runtime like ``_stop``."""
        raise BackendError(f"{type(self).__name__} cannot pause trials from outside")

    @abc.abstractmethod
    def _wait(self, timeout: float | None) -> bool:
        """Advance (sleep, poll processes, pop simulated events), delivering what happens."""

    def _close(self) -> None:
        with self.lock:
            for state in self._trials.values():
                if state.active:
                    self._stop(state)
                    self._set_phase(state, TrialPhase.STOPPED)

    # -- for subclasses: what happened ---------------------------------------------------------
    def _deliver_running(self, trial_id: int) -> None:
        with self.lock:
            state = self.trial_state(trial_id)
            if state.phase is TrialPhase.PENDING:
                self._set_phase(state, TrialPhase.RUNNING)
                self.sink.trial_running(trial_id)

    def _deliver_report(self, trial_id: int, resource: int, metrics: Mapping[str, float],
                        runtime_seconds: float | None = None) -> Decision:
        """Hand one report to the study and return its decision. Engine errors
        (``hwtune.engine.errors``) propagate to the caller, which answers the trainer with them."""
        with self.lock:
            state = self.trial_state(trial_id)
            decision = self.sink.report(trial_id, resource, metrics, runtime_seconds)
            if decision.halts:
                # Mirror the study's phase: Paused, Stopped, or Completed at the maximum.
                self._set_phase(state, self.sink.trial(trial_id).phase)
            elif state.phase is TrialPhase.PENDING:
                self._set_phase(state, TrialPhase.RUNNING)
            return decision

    def _deliver_exit(self, trial_id: int, *, ok: bool, reason: str = "",
                      runtime_seconds: float | None = None) -> None:
        """The trial's process ended. Ignored when it was expected (after a halting decision or
        an outside stop/pause); else a clean exit completes the trial, an unclean one fails it."""
        with self.lock:
            state = self.trial_state(trial_id)
            if not state.active:
                return
            if ok:
                self._set_phase(state, TrialPhase.COMPLETED)
                self.sink.complete_trial(trial_id, runtime_seconds)
            else:
                self._set_phase(state, TrialPhase.FAILED)
                self.sink.fail_trial(trial_id, reason or "the trial exited with an error",
                                     runtime_seconds)

"""``KubernetesBackend``: trials are TuningTrials and batch/v1 Jobs.

The hooks of the backend template never talk to the API server: they run under the engine lock,
so they only record *intents* (launch trial 7 as launch 2, delete the Job of trial 3), each
tagged with the log sequence number of the event that justifies it. The study runner
(``hwtune.backends.kubernetes.runner``) executes them once that event is durable, outside the
lock. What happens to Jobs and pods comes back through ``job_changed`` / ``pod_changed``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hwtune.api.records import Hardware, TrialPhase
from hwtune.backends.base import Backend, BackendTrial
from hwtune.backends.kubernetes.manifests import LABEL_LAUNCH, LABEL_TRIAL

__all__ = ["IntentKind", "Intent", "KubernetesBackend"]


class IntentKind(str, enum.Enum):
    LAUNCH = "launch"  # make the TuningTrial, the token Secret and this launch's Job exist
    DELETE_JOB = "delete-job"  # delete the trial's Job (of this launch or older)


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    trial_id: int
    launch: int
    seq: int  # the log event that justifies it; executed once that is durable
    resume: bool = False
    config: Mapping[str, Any] | None = None
    hardware: Hardware | None = None
    target_resource: int | None = None
    reported_resource: int = 0
    reason: str = ""
    # A finished Job of a halted trial, deleted to keep etcd small (no "Stopped" Event).
    cleanup: bool = False


class KubernetesBackend(Backend):
    """Bookkeeping plus intents; ``take_intents()`` hands them to the runner."""

    poll_seconds = 1.0
    #: Launches whose Job is not created yet, at most: the tuner starts trials in batches of
    #: this size (each holds the engine lock, which reports wait for), and later trials are
    #: sampled knowing more results, while the API calls stay pipelined.
    LAUNCHES_IN_FLIGHT = 48

    def __init__(self, *, last_seq: Callable[[], int], wake: Callable[[], None] = lambda: None,
                 max_parallel: int | None = None,
                 launches_in_flight: int = LAUNCHES_IN_FLIGHT) -> None:
        super().__init__()
        self._max_parallel = max_parallel
        self._in_flight_limit = launches_in_flight
        self._launching = 0  # launch intents handed out and not yet done
        self._last_seq = last_seq
        self._wake = wake
        self._intents: list[Intent] = []
        # Pod running time of each trial's current launch, for the cost of a Job that fails:
        # the runtime accounted when the launch began, and seconds run by each ended pod.
        self._launch_base: dict[int, float] = {}
        self._pod_seconds: dict[int, dict[str, float]] = {}

    @property  # type: ignore[override]
    def capacity(self) -> int | None:
        """Trials active plus the launches allowed now: a new batch once half of the last one
        is done, and always one when no trial is active (launches still in flight may all be
        of trials that ended meanwhile: the study must go on)."""
        room = self._in_flight_limit - self._launching \
            if self._launching <= self._in_flight_limit // 2 else 0
        active = self.active_count
        cap = active + (room if active else max(room, 1))
        return cap if self._max_parallel is None else min(self._max_parallel, cap)

    def launch_done(self) -> None:
        """The runner finished a launch intent (its Job exists, or it was superseded)."""
        with self.lock:
            self._launching = max(0, self._launching - 1)
            refill = self._launching == self._in_flight_limit // 2
        if refill:
            self._wake()

    # -- intents ------------------------------------------------------------------------------
    def take_intents(self) -> list[Intent]:
        with self.lock:
            intents, self._intents = self._intents, []
            return intents

    def _intend(self, intent: Intent) -> None:
        if intent.kind is IntentKind.LAUNCH:
            self._launching += 1
        self._intents.append(intent)
        self._wake()

    def launch_intent(self, trial_id: int, *, resume: bool, seq: int | None = None) -> Intent:
        """The launch intent of the trial's current launch (also used to re-run it at adoption)."""
        state = self.trial_state(trial_id)
        record = self.sink.trial(trial_id)
        target = state.max_resource
        return Intent(IntentKind.LAUNCH, trial_id, state.launches,
                      self._last_seq() if seq is None else seq, resume=resume,
                      config=dict(record.config), hardware=record.hardware,
                      target_resource=target, reported_resource=record.last_resource)

    def delete_intent(self, trial_id: int, reason: str, seq: int | None = None, *,
                      cleanup: bool = False) -> Intent:
        state = self.trial_state(trial_id)
        return Intent(IntentKind.DELETE_JOB, trial_id, state.launches,
                      self._last_seq() if seq is None else seq, reason=reason, cleanup=cleanup)

    def intend(self, intent: Intent) -> None:
        with self.lock:
            self._intend(intent)

    # -- adoption after a restart -------------------------------------------------------------
    def adopt(self, trial_id: int, phase: TrialPhase, launches: int,
              max_resource: int | None) -> None:
        """Take over a trial the rebuilt study holds (its Job may be running): no launch."""
        with self.lock:
            record = self.sink.trial(trial_id)
            state = BackendTrial(trial_id, dict(record.config), record.hardware,
                                 launches=launches, start_resource=record.last_resource + 1,
                                 max_resource=max_resource)
            self._trials[trial_id] = state
            self._set_phase(state, phase)

    # -- hooks ----------------------------------------------------------------------------------
    def _launch(self, trial: BackendTrial, resume: bool) -> bool:
        runtime_of = getattr(self.sink, "runtime_of", None)  # the Study's; not in TrialSink
        if runtime_of is not None:
            self._launch_base[trial.trial_id] = float(runtime_of(trial.trial_id))
            self._pod_seconds[trial.trial_id] = {}
        self._intend(self.launch_intent(trial.trial_id, resume=resume))
        return False  # Running when its pod runs (pod_changed)

    def _stop(self, trial: BackendTrial) -> float | None:
        # The study records the stop right after this hook: the deletion waits for that event.
        self._intend(Intent(IntentKind.DELETE_JOB, trial.trial_id, trial.launches,
                            self._last_seq() + 1, reason="stopped"))
        return None  # the study measures runtime with its (wall) clock

    def _pause(self, trial: BackendTrial) -> float | None:
        # SIGTERM makes the trainer checkpoint and exit; the next launch resumes from there.
        return self._stop(trial)

    def _wait(self, timeout: float | None) -> bool:
        return False  # the runner awaits reports and Job events in the event loop instead

    def _close(self) -> None:
        pass  # trials outlive the operator: a new one adopts them

    # -- what the cluster says ----------------------------------------------------------------
    def _failed_runtime(self, trial_id: int, job: Mapping[str, Any]) -> float | None:
        """The trial's runtime when its Job failed: what it had before this launch plus what
        this launch's pods ran, not the Job's retry back-off between them (a trial that dies at
        once, e.g. out of memory, costs seconds, not minutes). None (the study's clock) when a
        failed pod was not seen, e.g. the launch began before this operator started."""
        seconds = self._pod_seconds.get(trial_id)
        failed = int((job.get("status") or {}).get("failed") or 0)
        if trial_id not in self._launch_base or seconds is None or not seconds \
                or len(seconds) < failed:
            return None
        return self._launch_base[trial_id] + sum(seconds.values())

    def _current(self, obj: Mapping[str, Any]) -> BackendTrial | None:
        meta = obj.get("metadata") or {}
        try:
            trial_id = int((meta.get("labels") or {})[LABEL_TRIAL])
            launch = int((meta.get("annotations") or {})[LABEL_LAUNCH])
        except (KeyError, TypeError, ValueError):
            return None
        state = self._trials.get(trial_id)
        if state is None or state.launches != launch:
            return None  # an older launch's object: nothing it does concerns the study now
        return state

    def pod_changed(self, pod: Mapping[str, Any]) -> bool:
        """A pod of one of our Jobs changed; True if the study learnt something."""
        with self.lock:
            state = self._current(pod)
            if state is None:
                return False
            ran = _pod_run_seconds(pod)
            uid = (pod.get("metadata") or {}).get("uid")
            if ran is not None and uid and state.trial_id in self._pod_seconds:
                self._pod_seconds[state.trial_id][uid] = ran
            if state.phase is not TrialPhase.PENDING:
                return False
            if (pod.get("status") or {}).get("phase") == "Running" \
                    and not (pod.get("metadata") or {}).get("deletionTimestamp"):
                self._deliver_running(state.trial_id)
                return True
            return False

    def is_current(self, obj: Mapping[str, Any]) -> bool:
        """The Job or pod belongs to its trial's current launch, which is still active."""
        with self.lock:
            state = self._current(obj)
            return state is not None and state.active

    def job_changed(self, job: Mapping[str, Any]) -> bool:
        """A Job changed: its end (Complete / Failed) is the trial process's exit; a ready pod
        (``status.ready``, counted by the Job controller) is the trial running, so the operator
        needs no watch on pods."""
        with self.lock:
            state = self._current(job)
            if state is None or not state.active:
                return False
            status = job.get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("status") != "True":
                    continue
                if condition.get("type") == "Complete":
                    self._deliver_exit(state.trial_id, ok=True)
                    return True
                if condition.get("type") == "Failed":
                    why = condition.get("reason") or "Failed"
                    detail = condition.get("message") or ""
                    self._deliver_exit(state.trial_id, ok=False,
                                       reason=f"Job failed: {why}" + (f": {detail}" if detail else ""),
                                       runtime_seconds=self._failed_runtime(state.trial_id, job))
                    return True
            if state.phase is TrialPhase.PENDING and int(status.get("ready") or 0) > 0:
                self._deliver_running(state.trial_id)
                return True
            return False


def _time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _pod_run_seconds(pod: Mapping[str, Any]) -> float | None:
    """Seconds an ended pod's containers ran (first start to last finish), from their
    terminated states; None while it runs or when it never started."""
    status = pod.get("status") or {}
    if status.get("phase") not in ("Succeeded", "Failed"):
        return None
    starts, ends = [], []
    for container in status.get("containerStatuses") or []:
        ended = ((container or {}).get("state") or {}).get("terminated") or {}
        start, end = _time(ended.get("startedAt")), _time(ended.get("finishedAt"))
        if start is not None and end is not None:
            starts.append(start)
            ends.append(end)
    if not starts:
        return 0.0  # failed before any container started: nothing ran
    return max(0.0, max(ends) - min(starts))


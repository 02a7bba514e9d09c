"""The local backend: every trial is a process on this machine, talking to a report endpoint on
127.0.0.1.

- Launch: the trial template's first container command (see ``template``) with the HWTUNE_*
  environment (``hwtune.trainer.env``), its own session (a Ctrl-C in the terminal reaches
  ``hwtune tune``, which then stops trials in order), stdout+stderr appended to
  ``<workdir>/trials/<id>/trial.log``, and a fresh bearer token per launch, so a process of an
  earlier launch can no longer report.
- Reports: the endpoint thread hands each one to the study under ``lock`` and answers with the
  decision. A trainer told to pause or stop has ``halt_grace_seconds`` to exit before it is
  terminated.
- Hardware is simulated: the local CPU is the reference device, so the runtime measured here
  (wall seconds since the process was spawned, summed over launches) is scaled by the study's
  ``HardwareModel`` to the trial's pool and GPU count, and priced by it.
- Pause / stop from outside: SIGTERM to the process group (the trainer checkpoints and exits
  with ``EXIT_PREEMPTED``), SIGKILL after ``stop_grace_seconds``.
- A trial that exits with ``EXIT_PREEMPTED`` (or dies of SIGTERM) on its own (someone sent it
  SIGTERM, as an eviction would) is restarted from its checkpoint like a Job restarts a pod; the
  study is not told.
  After ``max_restarts`` restarts without a new report it fails.
- Exit 0 after a halting decision is expected; exit 0 before completes the trial; any other exit
  fails it with the last lines of its log as the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping

from hwtune.api.records import Hardware, TrialPhase
from hwtune.backends.base import Backend, BackendError, BackendTrial, TrialSink
from hwtune.backends.local.template import ProcessTemplate
from hwtune.engine.errors import InvalidReportError, TrialStateError
from hwtune.engine.errors import UnknownTrialError as EngineUnknownTrial
from hwtune.optimize.hardware import HardwareModel
from hwtune.report.protocol import (
    ReportPayload,
    ReportRejectedError,
    ReportReply,
    TrialFinishedError,
    UnknownTrialError,
)
from hwtune.report.collector import LineCollector
from hwtune.report.server import ReplyMemo, ReportServer, new_token
from hwtune.trainer.env import ENV_PREFIX, TrialEnv
from hwtune.trainer.trial import EXIT_PREEMPTED

__all__ = ["LocalBackend", "log_tail"]

LOG_NAME = "trial.log"


def log_tail(path: Path, lines: int = 20, max_bytes: int = 8192) -> str:
    """The last ``lines`` lines of a log file (at most ``max_bytes`` read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _utf8_boundary(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class _Launch:
    trial_id: int
    process: subprocess.Popen
    log: IO[bytes]
    started: float  # backend clock when spawned
    base_runtime: float  # runtime on the trial's hardware of the launches before this one
    hardware: Hardware | None
    restarts: int = 0  # automatic restarts after preemption since the last report
    halt_deadline: float | None = None  # after a halting decision: exit by then
    collector: LineCollector | None = None  # metrics parsed from the output (no SDK)
    log_offset: int = 0  # where this launch's output starts in the trial log


class LocalBackend(Backend):
    """Runs trials as local processes. ``bind(study)`` starts the report endpoint."""

    poll_seconds = 0.5

    def __init__(
        self,
        template: ProcessTemplate,
        *,
        workdir: str | os.PathLike,
        hardware_model: HardwareModel,
        max_resource: int,
        study_name: str = "study",
        resource_name: str = "epoch",
        max_parallel: int | None = None,
        cwd: str | os.PathLike | None = None,
        checkpoint_root: str | None = None,
        base_env: Mapping[str, str] | None = None,
        stop_grace_seconds: float = 10.0,
        halt_grace_seconds: float = 30.0,
        max_restarts: int = 3,
        clock: Callable[[], float] = time.monotonic,
        collector: Callable[[], LineCollector | None] | None = None,
        collect_whole_run: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        self.template = template
        self.workdir = Path(workdir)
        self.hardware_model = hardware_model
        self.max_resource = max_resource
        self.study_name = study_name
        self.resource_name = resource_name
        self.capacity = max_parallel
        self.cwd = str(cwd) if cwd is not None else os.getcwd()
        self.checkpoint_root = checkpoint_root or str(self.workdir / "checkpoints")
        self.stop_grace_seconds = stop_grace_seconds
        self.halt_grace_seconds = halt_grace_seconds
        self.max_restarts = max_restarts
        self._clock = clock
        # spec.metricsCollector other than sdk: a fresh parser per launch over its output.
        self._make_collector = collector
        # A study without fidelity: one report per trial, the run's summary when it exits
        # (objective -> strategy); None: every printed group is a report as it comes.
        self._whole_run = collect_whole_run
        self._base_env = self._clean_env(os.environ if base_env is None else base_env,
                                         max_parallel)
        self._launches: dict[int, _Launch] = {}
        self._runtime_total: dict[int, float] = {}  # at the end of each trial's last launch
        self._launch_failures: dict[int, str] = {}  # trial id -> why its process did not start
        self._tokens: dict[int, str] = {}
        self._memo = ReplyMemo()
        self._activity = threading.Event()
        self._server: ReportServer | None = None

    @staticmethod
    def _clean_env(env: Mapping[str, str], parallel: int | None) -> dict[str, str]:
        # A trial never inherits another trial's identity (hwtune run from inside a trial).
        clean = {k: v for k, v in env.items() if not k.startswith(ENV_PREFIX)}
        clean.setdefault("PYTHONUNBUFFERED", "1")  # logs show up as they are written
        # Like a CPU limit per pod: parallel trials share the cores instead of fighting.
        threads = str(max(1, (os.cpu_count() or 1) // (parallel or 1)))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            clean.setdefault(name, threads)
        return clean

    # -- paths ---------------------------------------------------------------------------------
    def trial_dir(self, trial_id: int) -> Path:
        return self.workdir / "trials" / str(trial_id)

    def log_path(self, trial_id: int) -> Path:
        return self.trial_dir(trial_id) / LOG_NAME

    def checkpoint_uri(self, trial_id: int) -> str:
        return f"{self.checkpoint_root.rstrip('/')}/{trial_id}"

    @property
    def report_url(self) -> str:
        if self._server is None:
            raise BackendError("the report endpoint is not started; bind the backend first")
        return self._server.url

    # -- life cycle ----------------------------------------------------------------------------
    def bind(self, sink: TrialSink) -> None:
        super().bind(sink)
        if self._server is None:
            self._server = ReportServer(self).start()

    def running_processes(self) -> dict[int, int]:
        """trial id -> pid of every live trial process."""
        with self.lock:
            return {tid: launch.process.pid for tid, launch in self._launches.items()
                    if launch.process.poll() is None}

    def wake(self) -> None:
        """Make a pending ``wait`` return now (e.g. from a signal handler)."""
        self._activity.set()

    def interrupt(self) -> list[int]:
        """Stop every trial process so that the study can continue later (``hwtune tune
        --resume``): SIGTERM, so trainers checkpoint, and nothing is told to the study. Returns
        the ids of the trials that were running."""
        with self.lock:
            ids = sorted(tid for tid, s in self._trials.items() if s.active)
            self._terminate_all(list(self._launches.values()))
            self._launches.clear()
        self._shutdown_server()
        return ids

    # -- hooks ---------------------------------------------------------------------------------
    def _launch(self, trial: BackendTrial, resume: bool) -> bool:
        record = self.sink.trial(trial.trial_id)
        base_runtime = self._current_runtime_base(trial.trial_id)
        self._spawn(trial, resume=resume, reported=record.last_resource, base_runtime=base_runtime)
        return True

    def _current_runtime_base(self, trial_id: int) -> float:
        if trial_id in self._runtime_total:
            # Measured up to the process's exit: includes the tail after its last report.
            return self._runtime_total[trial_id]
        # First launch here, possibly of a trial resumed after a restart of hwtune: the
        # study's runtime is frozen at the trial's total (a Study has runtime_of).
        runtime_of = getattr(self.sink, "runtime_of", None)
        return float(runtime_of(trial_id)) if runtime_of is not None else 0.0

    def _spawn(self, trial: BackendTrial, *, resume: bool, reported: int, base_runtime: float,
               restarts: int = 0) -> _Launch | None:
        tid = trial.trial_id
        token = new_token()
        trial_env = TrialEnv(
            trial_id=str(tid), study=self.study_name, params=dict(trial.config),
            hardware=trial.hardware, resource_name=self.resource_name,
            target_resource=trial.max_resource, max_resource=self.max_resource, resume=resume,
            reported_resource=reported, report_url=self.report_url, report_token=token,
            checkpoint_uri=self.checkpoint_uri(tid),
            # The endpoint is in this process: if it is gone, so is the study.
            report_retry_seconds=10.0,
        ).to_env()
        argv, env = self.template.build(self._base_env, trial_env)
        cwd = self.template.working_dir or self.cwd
        self.trial_dir(tid).mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(tid), "ab")
        how = "resumed" if resume else "started"
        log.write(f"=== hwtune: trial {tid} {how} on {trial.hardware or 'default'} at "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(argv)}\n".encode())
        log.flush()
        log_offset = log.tell()
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except OSError as exc:
            log.write(f"=== hwtune: could not start: {exc}\n".encode())
            log.close()
            # Delivered by the next wait, like a container that cannot start: failing inside
            # start_trial would end the tuner's fill loop early.
            self._launch_failures[tid] = (f"launch failed: cannot run {argv[0]!r} in {cwd}: "
                                          f"{exc.strerror or exc}")
            self._activity.set()
            return None
        launch = _Launch(trial_id=tid, process=process, log=log, started=self._clock(),
                         base_runtime=base_runtime, hardware=trial.hardware, restarts=restarts,
                         collector=self._make_collector() if self._make_collector else None,
                         log_offset=log_offset)
        self._tokens[tid] = token
        self._memo.forget(str(tid))
        self._launches[tid] = launch
        return launch

    def _runtime(self, launch: _Launch, until: float | None = None) -> float:
        """Total runtime on the trial's hardware: earlier launches plus this one, scaled."""
        measured = max(0.0, (self._clock() if until is None else until) - launch.started)
        return launch.base_runtime + self.hardware_model.runtime(measured, launch.hardware)

    def running_runtimes(self) -> dict[int, float]:
        """Runtime so far of every live process, on the trial's hardware (for the budget)."""
        with self.lock:
            return {tid: self._runtime(launch) for tid, launch in self._launches.items()}

    def _stop(self, trial: BackendTrial) -> float | None:
        launch = self._launches.pop(trial.trial_id, None)
        if launch is None:
            return None
        self._terminate(launch)
        return self._runtime_total[launch.trial_id]

    def _pause(self, trial: BackendTrial) -> float | None:
        # The trainer checkpoints on SIGTERM, so pausing and stopping kill the same way; the
        # difference is only what the study records.
        return self._stop(trial)

    def _terminate(self, launch: _Launch) -> None:
        self._terminate_all([launch])

    def _terminate_all(self, launches: list[_Launch]) -> None:
        """SIGTERM every process group at once (trainers checkpoint in parallel), then SIGKILL
        whatever is left after ``stop_grace_seconds``."""
        for launch in launches:
            self._runtime_total[launch.trial_id] = self._runtime(launch)
            if launch.process.poll() is None:
                self._signal_group(launch.process, signal.SIGTERM)
        deadline = self._clock() + self.stop_grace_seconds
        for launch in launches:
            try:
                launch.process.wait(timeout=max(0.0, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                self._signal_group(launch.process, signal.SIGKILL)
                launch.process.wait(timeout=10)
            self._signal_group(launch.process, signal.SIGKILL)  # stragglers of the group
            launch.log.close()

    @staticmethod
    def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)  # its own session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def _wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            happened = self._reap()
            if self._activity.is_set():
                self._activity.clear()
                happened = True
            if happened:
                return True
            with self.lock:
                if not self._launches and not self._launch_failures:
                    return False
            if deadline is not None and self._clock() >= deadline:
                return False
            slice_ = 0.1 if deadline is None else max(0.0, min(0.1, deadline - self._clock()))
            self._activity.wait(slice_)

    def _reap(self) -> bool:
        """Deliver the exits of finished processes; enforce the grace after a halt."""
        delivered = False
        with self.lock:
            for tid, reason in list(self._launch_failures.items()):
                del self._launch_failures[tid]
                if self._trials[tid].active:
                    self._deliver_exit(tid, ok=False, reason=reason,
                                       runtime_seconds=self._runtime_total.get(tid))
                    delivered = True
            now = self._clock()
            for tid, launch in list(self._launches.items()):
                code = launch.process.poll()
                if launch.collector is not None:
                    # Output first: what a process printed before it exited counts.
                    delivered |= self._collect(launch, final=code is not None)
                    if tid not in self._launches:
                        continue  # a decision ended it
                if code is None:
                    if launch.halt_deadline is not None and now > launch.halt_deadline:
                        # Told to pause or stop, still running: the slot is already given away.
                        launch.log.write(b"=== hwtune: did not exit after its decision; "
                                         b"terminating\n")
                        self._launches.pop(tid)
                        self._terminate(launch)
                    continue
                del self._launches[tid]
                launch.log.close()
                self._runtime_total[tid] = self._runtime(launch, now)
                delivered |= self._on_exit(launch, code, now)
        return delivered

    def _collect(self, launch: _Launch, *, final: bool) -> bool:
        """Parse what the trial printed since the last look (``spec.metricsCollector``) and
        deliver each complete group as a report. There is no SDK to hear a decision, so a
        halting one terminates the process here. Reports at levels the trial already reported
        (a process restarted from scratch prints them again) are skipped. True if any report
        was delivered."""
        assert launch.collector is not None
        tid = launch.trial_id
        try:
            with open(self.log_path(tid), "rb") as fh:
                fh.seek(launch.log_offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        # Only whole UTF-8 sequences: a character split between two reads is decoded next time.
        cut = len(data) if final else _utf8_boundary(data)
        launch.log_offset += cut
        found = launch.collector.feed_text(data[:cut].decode(errors="replace"))
        if final:
            found += launch.collector.close()
        if self._whole_run is not None:
            summary = launch.collector.summary(self._whole_run) if final else None
            found = [summary] if summary is not None else []
        delivered = False
        for report in found:
            record = self.sink.trial(tid)
            resource = min(report.resource, self.max_resource)
            if not self._trials[tid].active or resource <= record.last_resource:
                continue
            try:
                decision = self._deliver_report(tid, resource, report.metrics,
                                                self._runtime(launch))
            except (EngineUnknownTrial, TrialStateError, InvalidReportError, BackendError) as exc:
                launch.log.write(f"=== hwtune: report at {self.resource_name} {resource} "
                                 f"refused: {exc}\n".encode())
                continue
            launch.restarts = 0
            delivered = True
            if decision.halts:
                if not final:
                    launch.log.write(f"=== hwtune: {decision.value} at {self.resource_name} "
                                     f"{resource}; terminating (metrics from output: no SDK to "
                                     "tell the trainer)\n".encode())
                    launch.log.flush()
                    self._launches.pop(tid, None)
                    self._terminate(launch)
                break
        return delivered

    def _on_exit(self, launch: _Launch, code: int, now: float) -> bool:
        tid = launch.trial_id
        state = self._trials.get(tid)
        if state is None or not state.active:
            return False  # halted by a decision or from outside: the exit was expected
        runtime = self._runtime_total[tid]
        # 75: the SDK checkpointed after SIGTERM. A bare SIGTERM death: the signal came before
        # the trainer installed its handler (still importing); its last checkpoint, if any, is
        # intact. Either way, restart it like a Job restarts an evicted pod.
        if code in (EXIT_PREEMPTED, -signal.SIGTERM):
            if launch.restarts < self.max_restarts:
                record = self.sink.trial(tid)
                self._spawn(state, resume=True, reported=record.last_resource,
                            base_runtime=runtime, restarts=launch.restarts + 1)
                return True
            reason = (f"preempted {launch.restarts + 1} times without reporting progress; "
                      f"last log lines:\n{log_tail(self.log_path(tid))}")
            self._deliver_exit(tid, ok=False, reason=reason, runtime_seconds=runtime)
            return True
        if code == 0:
            self._deliver_exit(tid, ok=True, runtime_seconds=runtime)
        else:
            reason = f"{_describe_exit(code)}; last log lines:\n{log_tail(self.log_path(tid))}"
            self._deliver_exit(tid, ok=False, reason=reason, runtime_seconds=runtime)
        return True

    def _close(self) -> None:
        with self.lock:
            # Trainers told to stop or pause get their grace to exit on their own (the last
            # report of a study usually ends it while that trainer is still shutting down).
            for launch in list(self._launches.values()):
                if launch.halt_deadline is not None:
                    try:
                        launch.process.wait(timeout=max(0.0, launch.halt_deadline - self._clock()))
                    except subprocess.TimeoutExpired:
                        launch.log.write(b"=== hwtune: did not exit after its decision; "
                                         b"terminating\n")
            self._terminate_all(list(self._launches.values()))
            self._launches.clear()
            for state in self._trials.values():
                if state.active:
                    state.phase = TrialPhase.STOPPED
        self._shutdown_server()

    def _shutdown_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- ReportSink (called from the endpoint thread) ------------------------------------------
    def expected_token(self, trial: str) -> str | None:
        try:
            tid = int(trial)
        except ValueError:
            return None
        with self.lock:
            return self._tokens.get(tid)

    def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        replay = self._memo.replay(trial, payload)
        if replay is not None:
            return replay
        tid = int(trial)
        with self.lock:
            launch = self._launches.get(tid)
            if launch is None:
                raise TrialFinishedError(f"trial {tid} has no running process on this backend")
            runtime = self._runtime(launch)
            try:
                decision = self._deliver_report(tid, payload.resource, payload.metrics, runtime)
            except EngineUnknownTrial as exc:
                raise UnknownTrialError(str(exc)) from None
            except TrialStateError as exc:
                raise TrialFinishedError(str(exc)) from None
            except InvalidReportError as exc:
                raise ReportRejectedError(str(exc)) from None
            except BackendError as exc:
                raise UnknownTrialError(str(exc)) from None
            launch.restarts = 0
            reason = ""
            if decision.halts:
                reason = self.sink.trial(tid).reason
                launch.halt_deadline = self._clock() + self.halt_grace_seconds
        reply = ReportReply(decision, reason)
        self._memo.remember(trial, payload, reply)
        self._activity.set()
        return reply

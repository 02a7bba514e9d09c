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

import errno
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from hwtune.api.records import BUILTIN_METRICS, Hardware, TrialPhase
from hwtune.backends.base import (
    Backend,
    BackendError,
    BackendTrial,
    InfrastructureError,
    TrialSink,
)
from hwtune.backends.local import supervise
from hwtune.backends.local.lock import LockHeld, read_holder, try_lock
from hwtune.backends.local.retention import keep_level
from hwtune.backends.local.template import ProcessTemplate
from hwtune.backends.reporting import engine_refusals_as_protocol_errors
from hwtune.engine.errors import InvalidReportError, TrialStateError
from hwtune.engine.study import NO_REPORT_REASON, no_report_advice
from hwtune.engine.errors import UnknownTrialError as EngineUnknownTrial
from hwtune.optimize.hardware import HardwareModel
from hwtune.report.protocol import (
    EndpointUnavailableError,
    ReportPayload,
    ReportReply,
    TrialFinishedError,
    UnknownTrialError,
)
from hwtune.report.collector import LineCollector
from hwtune.report.server import ReplyMemo, ReportServer, new_token
from hwtune.trainer.env import ENV_PREFIX, TrialEnv
from hwtune.trainer.trial import EXIT_INFRASTRUCTURE, EXIT_PREEMPTED

__all__ = ["INFRASTRUCTURE_ERRNOS", "InactivityLimit", "LocalBackend", "cap_log",
           "infrastructure_error", "log_tail"]

logger = logging.getLogger(__name__)

LOG_NAME = "trial.log"
TRIAL_LOCK_NAME = ".lock"
SUPERVISOR = supervise.__file__


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


def cap_log(path: Path, max_bytes: int) -> bool:
    """Once ``path`` is larger than ``max_bytes``, keep its last half (from a line start) after a
    line saying how much was dropped: a trainer printing without end must not fill the disk.
    The trainer appends (O_APPEND) and keeps writing at the new end; what it writes while this
    runs may be lost. Returns whether the log was cut."""
    try:
        with open(path, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size <= max_bytes:
                return False
            keep = max_bytes // 2
            fh.seek(size - keep)
            tail = fh.read(keep)
            newline = tail.find(b"\n")
            if 0 <= newline < len(tail) - 1:
                tail = tail[newline + 1:]
            marker = (f"=== hwtune: {size - len(tail)} earlier bytes of this log dropped (logs "
                      f"keep their last part beyond {max_bytes} bytes)\n").encode()
            fh.seek(0)
            fh.write(marker + tail)
            fh.truncate()
    except FileNotFoundError:
        return False
    return True


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# Failures of the machine, not of a trial: the run ends and the trial is resumed later.
INFRASTRUCTURE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO,
                                   errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})
# What a trainer that is not using the SDK prints when the disk is full.
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "Read-only file system")


def infrastructure_error(exc: OSError, what: str) -> InfrastructureError:
    where = f" ({exc.filename})" if exc.filename else ""
    return InfrastructureError(f"{what}: {exc.strerror or exc}{where}")


def _cannot_run(command: str, cwd: str, path: str) -> OSError | None:
    """Why ``command`` cannot be executed in ``cwd`` (the template's fault), or None. Checked
    before the supervisor starts, so a wrong command fails the trial at launch."""
    if not os.path.isdir(cwd):
        return FileNotFoundError(errno.ENOENT, "no such working directory", cwd)
    if os.sep in command:
        target = command if os.path.isabs(command) else os.path.join(cwd, command)
        if not os.path.isfile(target):
            return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        if not os.access(target, os.X_OK):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
        return None
    if shutil.which(command, path=path) is None:
        return FileNotFoundError(errno.ENOENT, "not found on PATH", command)
    return None


@dataclass(frozen=True)
class InactivityLimit:
    """When a trial that stopped reporting is stopped and failed: after ``seconds`` without a
    report when set; else after ``factor`` times the trial's usual (median) time per level, but
    never less than ``floor_seconds``; ``first_level_seconds`` before any level of it has been
    timed (loading data and the first epoch may take long). Level times are measured between a
    launch (or report) and the next report, and taken from the study's recorded reports after a
    restart of hwtune."""

    seconds: float | None = None
    factor: float = 10.0
    floor_seconds: float = 120.0
    first_level_seconds: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("seconds", "factor", "floor_seconds", "first_level_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"inactivity limit: {name} must be > 0, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> "InactivityLimit":
        """``"600"`` (seconds) or ``"10x"`` (times the usual level time)."""
        raw = text.strip().lower()
        try:
            if raw.endswith("x"):
                return cls(factor=float(raw[:-1]))
            return cls(seconds=float(raw.removesuffix("s")))
        except ValueError:
            raise ValueError(f"{text!r}: give seconds (600) or a multiple of the trial's usual "
                             "time per level (10x), greater than 0") from None

    def limit(self, level_seconds: Sequence[float]) -> float:
        if self.seconds is not None:
            return self.seconds
        if not level_seconds:
            return self.first_level_seconds
        return max(self.floor_seconds, self.factor * statistics.median(level_seconds))


def _level_seconds(times: Sequence[tuple[int, float]]) -> list[float]:
    """Seconds per level between consecutive reports (resource, time) of one trial."""
    return [(t2 - t1) / (r2 - r1) for (r1, t1), (r2, t2) in zip(times, times[1:])
            if r2 > r1 and t2 >= t1]


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
    last_activity: float = 0.0  # backend clock of the spawn or the last report


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
        inactivity: InactivityLimit | None = None,
        log_max_bytes: int = 10 * 2**20,
        clock: Callable[[], float] = time.monotonic,
        collector: Callable[[], LineCollector | None] | None = None,
        collect_whole_run: Mapping[str, str] | None = None,
        keep_levels: int = 0,
    ) -> None:
        super().__init__()
        # Per-level checkpoint copies kept per trial (hwtune.backends.local.retention); 0: none.
        self.keep_levels = keep_levels
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
        self.inactivity = inactivity or InactivityLimit()
        if log_max_bytes < 4096:
            raise ValueError(f"log_max_bytes must be >= 4096, got {log_max_bytes}")
        self.log_max_bytes = log_max_bytes
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
        self._level_times: dict[int, list[float]] = {}  # seconds per level, for inactivity
        self._fatal: InfrastructureError | None = None  # raised by the endpoint thread
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
        try:
            return self._spawn_process(trial, resume=resume, reported=reported,
                                       base_runtime=base_runtime, restarts=restarts)
        except OSError as exc:
            # The trial directory, its log, fork(): the machine's, not the trial's.
            raise infrastructure_error(exc, f"trial {trial.trial_id} could not be launched"
                                       ) from exc

    def _spawn_process(self, trial: BackendTrial, *, resume: bool, reported: int,
                       base_runtime: float, restarts: int = 0) -> _Launch | None:
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
        problem = _cannot_run(argv[0], cwd, env.get("PATH", os.defpath))
        # No second process of this trial while one of an earlier run (an orphan of a tuner
        # killed with SIGKILL, stopping under its supervisor) may still write its checkpoint.
        lock_fd = self._lock_trial(tid)
        log = open(self.log_path(tid), "ab")
        how = "resumed" if resume else "started"
        log.write(f"=== hwtune: trial {tid} {how} on {trial.hardware or 'default'} at "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(argv)}\n".encode())
        log.flush()
        log_offset = log.tell()
        try:
            if problem is not None:
                raise problem
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", SUPERVISOR, str(os.getpid()),
                 repr(float(self.stop_grace_seconds)), "--", *argv],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(lock_fd,))
        except OSError as exc:
            os.close(lock_fd)
            if exc.errno in INFRASTRUCTURE_ERRNOS:
                log.close()
                raise
            log.write(f"=== hwtune: could not start: {exc}\n".encode())
            log.close()
            # Delivered by the next wait, like a container that cannot start: failing inside
            # start_trial would end the tuner's fill loop early.
            self._launch_failures[tid] = (f"launch failed: cannot run {argv[0]!r} in {cwd}: "
                                          f"{exc.strerror or exc}")
            self._activity.set()
            return None
        try:
            # The lock now lives in the trial's processes; the file says whose group it is.
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, json.dumps({"pid": process.pid, "pgid": process.pid,
                                           "trial": tid, "tuner": os.getpid()}).encode(), 0)
        finally:
            os.close(lock_fd)
        now = self._clock()
        launch = _Launch(trial_id=tid, process=process, log=log, started=now,
                         base_runtime=base_runtime, hardware=trial.hardware, restarts=restarts,
                         last_activity=now,
                         collector=self._make_collector() if self._make_collector else None,
                         log_offset=log_offset)
        self._tokens[tid] = token
        self._memo.forget(str(tid))
        self._launches[tid] = launch
        if tid not in self._level_times:
            self._level_times[tid] = self._recorded_level_seconds(tid)
        return launch

    def _recorded_level_seconds(self, trial_id: int) -> list[float]:
        """Seconds per level from the reports the study already holds (after a restart of
        hwtune), so that the inactivity limit knows the trial's pace at once."""
        try:
            record = self.sink.trial(trial_id)
        except Exception:  # a sink without records: measure from now on
            return []
        return _level_seconds([(o.resource, o.time) for o in record.observations])

    def _lock_trial(self, trial_id: int) -> int:
        """The trial's lock, waiting for processes of an earlier run to end (their supervisor
        stops them within ``stop_grace_seconds`` of their tuner's death), then killing their
        group."""
        path = self.trial_dir(trial_id) / TRIAL_LOCK_NAME
        holder = {"trial": trial_id, "tuner": os.getpid()}
        deadline = time.monotonic() + 1.5 * self.stop_grace_seconds + 1.0
        killed = False
        while True:
            try:
                return try_lock(path, holder, inheritable=True)
            except LockHeld as exc:
                previous = exc.holder
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            pgid = previous.get("pgid")
            if killed or not isinstance(pgid, int) or pgid <= 1:
                raise InfrastructureError(
                    f"trial {trial_id}: processes of an earlier run still hold {path} "
                    f"({read_holder(path) or 'unknown holder'}); end them, then resume")
            logger.warning("trial %d: processes of an earlier run (group %d) still run; killing "
                           "them", trial_id, pgid)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            killed = True
            deadline = time.monotonic() + 2.0

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
        """SIGTERM every trial at once (trainers checkpoint in parallel; the supervisor passes
        it on to the group), then SIGKILL whatever is left after ``stop_grace_seconds``."""
        for launch in launches:
            self._runtime_total[launch.trial_id] = self._runtime(launch)
            if launch.process.poll() is None:
                try:
                    launch.process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
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
            if self._fatal is not None:
                raise self._fatal
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
                    elif launch.halt_deadline is None and self._check_inactivity(launch, now):
                        delivered = True
                    elif os.fstat(launch.log.fileno()).st_size > self.log_max_bytes:
                        if cap_log(self.log_path(tid), self.log_max_bytes) \
                                and launch.collector is not None:
                            # Just read up to here; the cut log starts over after its marker.
                            launch.log_offset = os.path.getsize(self.log_path(tid))
                    continue
                del self._launches[tid]
                self._signal_group(launch.process, signal.SIGKILL)  # what it left behind
                launch.log.close()
                cap_log(self.log_path(tid), self.log_max_bytes)
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
            if found:
                launch.last_activity = self._clock()  # printing metrics: not inactive
            summary = launch.collector.summary(self._whole_run) if final else None
            found = [summary] if summary is not None else []
        delivered = False
        for report in found:
            record = self.sink.trial(tid)
            resource = min(report.resource, self.max_resource)
            if not self._trials[tid].active or resource <= record.last_resource:
                continue
            previous = record.last_resource
            try:
                decision = self._deliver_report(tid, resource, report.metrics,
                                                self._runtime(launch))
            except InfrastructureError as exc:
                self._fatal = exc  # the study cannot record reports: as submit_report does
                self._activity.set()
                return delivered
            except (EngineUnknownTrial, TrialStateError, InvalidReportError, BackendError) as exc:
                launch.log.write(f"=== hwtune: report at {self.resource_name} {resource} "
                                 f"refused: {exc}\n".encode())
                continue
            launch.restarts = 0
            now = self._clock()
            self._level_times.setdefault(tid, []).append(
                (now - launch.last_activity) / (resource - previous))
            launch.last_activity = now
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

    def _check_inactivity(self, launch: _Launch, now: float) -> bool:
        """Stop and fail a trial that has not reported for longer than its inactivity limit (a
        hung trainer would otherwise hold its slot, and the study, for ever)."""
        tid = launch.trial_id
        times = self._level_times.get(tid, [])
        limit = self.inactivity.limit(times)
        silent = now - launch.last_activity
        if silent <= limit:
            return False
        if self.inactivity.seconds is not None or not times:
            why = f"limit {limit:g} s"
        else:
            why = (f"limit {limit:g} s: {self.inactivity.factor:g}x its usual "
                   f"{statistics.median(times):.3g} s per {self.resource_name}")
        launch.log.write(f"=== hwtune: no report for {silent:.0f} s ({why}); stopping the "
                         f"trial\n".encode())
        launch.log.flush()
        del self._launches[tid]
        self._terminate(launch)
        reason = (f"inactive: no report for {silent:.0f} s ({why}); last log lines:\n"
                  f"{log_tail(self.log_path(tid))}")
        self._deliver_exit(tid, ok=False, reason=reason,
                           runtime_seconds=self._runtime_total[tid])
        return True

    def _on_exit(self, launch: _Launch, code: int, now: float) -> bool:
        tid = launch.trial_id
        state = self._trials.get(tid)
        if state is None or not state.active:
            return False  # halted by a decision or from outside: the exit was expected
        runtime = self._runtime_total[tid]
        if code == EXIT_INFRASTRUCTURE or (code not in (0, EXIT_PREEMPTED, -signal.SIGTERM) and any(
                words in log_tail(self.log_path(tid), lines=5) for words in _DISK_FULL_WORDS)):
            # Not the trial's fault: it stays running in the log and resumes from its
            # checkpoint in the next run; this run ends.
            raise InfrastructureError(f"trial {tid} could not write its files "
                                      f"({_describe_exit(code)}); last log lines:\n"
                                      f"{log_tail(self.log_path(tid), lines=5)}")
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
        if code == 0 and not self.sink.trial(tid).observations:
            # Completing it would put a trial without a single value into the study.
            config = getattr(self.sink, "config", None)
            objectives = ", ".join(
                o.metric for o in getattr(config, "objectives", ())
                if o.metric not in BUILTIN_METRICS) or "its objectives"
            advice = f" {no_report_advice(config)};" if config is not None else ""
            reason = (f"{NO_REPORT_REASON} ({objectives}): exited with status 0;{advice} "
                      f"last log lines:\n{log_tail(self.log_path(tid))}")
            self._deliver_exit(tid, ok=False, reason=reason, runtime_seconds=runtime)
        elif code == 0:
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
            previous = self.sink.trial(tid).last_resource
            try:
                with engine_refusals_as_protocol_errors():
                    decision = self._deliver_report(tid, payload.resource, payload.metrics,
                                                    runtime)
            except InfrastructureError as exc:
                self._fatal = exc
                self._activity.set()
                raise EndpointUnavailableError(f"the study cannot record reports: {exc}"
                                               ) from None
            except BackendError as exc:
                raise UnknownTrialError(str(exc)) from None
            launch.restarts = 0
            now = self._clock()
            if payload.resource > previous:
                self._level_times.setdefault(tid, []).append(
                    (now - launch.last_activity) / (payload.resource - previous))
            launch.last_activity = now
            reason = ""
            if decision.halts:
                reason = self.sink.trial(tid).reason
                launch.halt_deadline = self._clock() + self.halt_grace_seconds
        if self.keep_levels:  # before the answer: the trainer saves nothing until it has it
            keep_level(self.checkpoint_uri(tid), payload.resource, self.keep_levels)
        reply = ReportReply(decision, reason)
        self._memo.remember(trial, payload, reply)
        self._activity.set()
        return reply

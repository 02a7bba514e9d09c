"""A whole study on the local backend, persisted in a work directory so it survives an
interruption (``hwtune tune --resume``).

Work directory layout::

    <workdir>/.hwtune.lock          flock of the one tuner working here (see ``lock``)
    <workdir>/study.json            name, spec and pools the study started with
    <workdir>/events.jsonl          the study's event log, one ``StudyEvent.to_dict()`` a line
    <workdir>/trials/<id>/trial.log stdout + stderr of every launch of the trial
    <workdir>/checkpoints/<id>/     the trial's checkpoint (unless spec.checkpoints.uri is set)

Resuming replays ``events.jsonl`` with ``Study.rebuild`` (same trials, same scheduler state),
then every trial that was pending or running when the study stopped is recorded as paused
(``interrupted``) and resumed from its checkpoint at once, so no trial is lost or restarted from
scratch. The event log is the only state: a study killed with SIGKILL resumes the same way as
one stopped with Ctrl-C (which additionally lets trainers write a last checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from hwtune.api.clock import WallClock
from hwtune.api.records import TrialPhase
from hwtune.backends.base import InfrastructureError
from hwtune.backends.local.backend import (
    INFRASTRUCTURE_ERRNOS,
    LocalBackend,
    infrastructure_error,
)
from hwtune.backends.local.errors import WorkdirError
from hwtune.backends.local.eventlog import EventLog
from hwtune.backends.local.lock import LockHeld, WorkdirLock, describe_holder
from hwtune.backends.local.retention import DEFAULT_KEEP_LEVELS, level_location
from hwtune.backends.local.template import ProcessTemplate
from hwtune.engine import Study, StudyConfig, Tuner, TuningResult
from hwtune.optimize.hardware import DEFAULT_CATALOG, PoolSpec
from hwtune.surrogate import CHECKPOINT_SEARCHERS

__all__ = ["EventLog", "LocalStudyRun", "StudyInterrupted", "WallClock", "WorkdirError"]

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
EVENTS_FILE = "events.jsonl"
INTERRUPTED_REASON = "interrupted: hwtune stopped while the trial ran; resumed from its checkpoint"


class StudyInterrupted(Exception):
    """Ctrl-C / SIGTERM: trials were stopped to be resumed later with ``--resume``."""




class LocalStudyRun:
    """Set up (or resume) a study in ``workdir`` and run it with ``run()``.

    ``spec`` is the TuningStudy spec map; ``pools`` are HardwarePool specs by name that extend
    (or replace entries of) ``DEFAULT_CATALOG``; ``cwd`` is where trial processes start unless
    the container has a ``workingDir`` (relative ones are taken from ``base_dir``, the study
    file's directory). ``on_iteration(run)`` is called after every tuner iteration. ``config`` is
    ``StudyConfig.from_model`` of the validated study when the caller has it. Earlier studies
    named in ``transfer.fromStudies`` are work directories found by ``_load_transfer``."""

    def __init__(
        self,
        name: str,
        spec: Mapping[str, Any],
        *,
        config: StudyConfig | None = None,
        workdir: str | os.PathLike,
        pools: Mapping[str, Mapping[str, Any]] | None = None,
        resume: bool = False,
        max_parallel: int | None = None,
        cwd: str | os.PathLike | None = None,
        base_dir: str | os.PathLike | None = None,
        on_iteration: Callable[["LocalStudyRun"], None] | None = None,
        backend_options: Mapping[str, Any] | None = None,
        transfer_search_dirs: list[str | os.PathLike] | None = None,
    ) -> None:
        self.name = name
        self.workdir = Path(workdir)
        self.resume = resume
        pools = dict(pools or {})
        self.catalog: dict[str, PoolSpec] = dict(DEFAULT_CATALOG)
        for pool_name, pool_spec in pools.items():
            self.catalog[pool_name] = PoolSpec.from_spec(pool_spec, f"pools.{pool_name}")
        # ``config``: the engine's view of the already validated study (hwtune tune passes it);
        # otherwise the spec is validated here by the same CRD model.
        self.config = config if config is not None else StudyConfig.from_spec(
            spec, catalog=self.catalog, require_trial_template=True)
        if self.config.transfer_from:
            self.config = self.config.with_transfer_studies(
                self._load_transfer(transfer_search_dirs))
        template = ProcessTemplate.from_trial_template(
            spec["trialTemplate"], base_dir=None if base_dir is None else str(base_dir))
        self._lock = self._lock_workdir()
        try:
            self._setup(name, spec, pools, template, max_parallel, cwd, on_iteration,
                        backend_options)
        except BaseException:
            self._lock.release()
            raise

    def _setup(self, name: str, spec: Mapping[str, Any], pools: Mapping[str, Any],
               template: ProcessTemplate, max_parallel: int | None,
               cwd: str | os.PathLike | None,
               on_iteration: Callable[["LocalStudyRun"], None] | None,
               backend_options: Mapping[str, Any] | None) -> None:
        self._check_workdir(name, spec, pools)
        self.events = EventLog(self.workdir / EVENTS_FILE)
        root = self._checkpoint_root(spec)

        # FMS reads checkpoints by level: keep the last few levels' copies of each trial
        # (hwtune.backends.local.retention); other searchers need only the latest.
        reads = _value(self.config.spec.algorithm.searcher) in CHECKPOINT_SEARCHERS
        keep = DEFAULT_KEEP_LEVELS if reads else 0

        def locator(trial, level: int) -> str | None:
            # The kept copy of that level, else the trial's one location (readers check the level).
            if level < 1 or trial.trial_id < 0:
                return None
            if keep:
                return level_location(root, trial.trial_id, level)
            return f"{root}/{trial.trial_id}"

        if self.resume:
            self.study = Study.rebuild(self.config, self.events.read(), clock=WallClock(),
                                       checkpoint_locator=locator, name=name)
        else:
            self.study = Study(self.config, clock=WallClock(), checkpoint_locator=locator, name=name)
        self.study.add_listener(self.events.append)
        self.backend = LocalBackend(
            template,
            workdir=self.workdir,
            hardware_model=self.config.hardware_model,
            max_resource=self.config.max_resource,
            study_name=name,
            resource_name=self.config.fidelity.resource,
            max_parallel=max_parallel or self.config.budget.max_parallel_trials,
            cwd=cwd,
            checkpoint_root=self._checkpoint_root(spec),
            keep_levels=keep,
            collector=self._collector_factory(),
            collect_whole_run=None if self.config.fidelity_declared else {
                o.metric: (o.strategy.value if o.strategy is not None else "latest")
                for o in self.config.spec.objectives},
            **dict(backend_options or {}),
        )
        self._on_iteration = on_iteration
        self._interrupted = threading.Event()
        self.tuner = Tuner(self.study, self.backend, max_parallel=max_parallel,
                           on_iteration=self._iteration)
        if not self.resume:
            # Only now that everything the study needs was built: a study that cannot start
            # leaves no study.json behind to block the next attempt.
            self._write_study_record(name, spec, pools)
            if self.config.transfer_studies:
                from hwtune.backends.local.studies import write_snapshot

                write_snapshot(self.workdir, self.config.transfer_studies)
        self.resumed_trials: list[int] = []
        self.started_at = time.monotonic()

    # -- setup ---------------------------------------------------------------------------------
    def _load_transfer(self, search_dirs):
        """transfer.fromStudies: earlier studies' work directories, looked up by name next to
        this one (``<workdir>/../<name>``: ``.hwtune/<name>`` by default) or in
        ``transfer_search_dirs``; a name may also be a work directory's path. A resumed study
        uses the snapshot its first start wrote (``<workdir>/transfer.json``)."""
        from hwtune.backends.local.studies import load_studies, read_snapshot
        from hwtune.transfer import TransferError

        dirs = list(search_dirs) if search_dirs else [self.workdir.parent]
        try:
            studies = read_snapshot(self.workdir) if self.resume else None
            if studies is None:
                studies = load_studies(self.config.transfer_from, dirs)
            # Unusable studies (another metric, no reports) fail here, not in the tuner.
            self.config.with_transfer_studies(studies).make_searcher()
        except TransferError as exc:
            raise WorkdirError(str(exc)) from None
        return studies

    def _lock_workdir(self) -> WorkdirLock:
        """One tuner per work directory: a second one would run every trial twice and interleave
        two event logs into one that no resume can read."""
        if self.resume and not (self.workdir / STUDY_FILE).exists():
            raise WorkdirError(f"{self.workdir}: no study to resume (no {STUDY_FILE}); "
                               "run without --resume to start one")
        self.workdir.mkdir(parents=True, exist_ok=True)
        lock = WorkdirLock(self.workdir)
        try:
            lock.acquire()
        except LockHeld as exc:
            raise WorkdirError(
                f"{self.workdir} is in use by another hwtune tune ({describe_holder(exc.holder)}); "
                "wait for it to finish, or stop it (Ctrl-C) and continue with --resume"
            ) from None
        return lock

    def close(self) -> None:
        """Release the work directory (``run()`` does it when it returns)."""
        self._lock.release()

    def _check_workdir(self, name: str, spec: Mapping[str, Any],
                       pools: Mapping[str, Any]) -> None:
        study_file = self.workdir / STUDY_FILE
        record = {"name": name, "spec": spec, "pools": pools}
        if self.resume:
            if not study_file.exists():
                raise WorkdirError(f"{self.workdir}: no study to resume (no {STUDY_FILE}); "
                                   "run without --resume to start one")
            try:
                stored = json.loads(study_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise WorkdirError(f"{study_file}: not valid JSON ({exc}); it records the study "
                                   "this directory holds and cannot be resumed without it"
                                   ) from None
            # Compare through JSON so that YAML ints/floats and tuples compare as stored.
            if json.loads(json.dumps(record)) != stored:
                changed = sorted(k for k in set(stored.get("spec", {})) | set(spec)
                                 if json.loads(json.dumps(spec.get(k)))
                                 != stored.get("spec", {}).get(k))
                what = f"spec.{changed[0]}" if changed else ("name" if stored.get("name") != name
                                                             else "pools")
                raise WorkdirError(f"{self.workdir}: the study changed since it started "
                                   f"({what} differs); resume with the original file or start "
                                   "a new study in another --workdir")
            return
        if (self.workdir / EVENTS_FILE).exists() or study_file.exists():
            raise WorkdirError(f"{self.workdir} already holds a study; continue it with "
                               "--resume or pick another --workdir")

    def _write_study_record(self, name: str, spec: Mapping[str, Any],
                            pools: Mapping[str, Any]) -> None:
        record = {"name": name, "spec": spec, "pools": pools}
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Atomic: a tuner killed here leaves no half-written study file to trip a later resume.
        tmp = (self.workdir / STUDY_FILE).with_name(f".{STUDY_FILE}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(record, indent=2, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.workdir / STUDY_FILE)

    def _collector_factory(self) -> Callable[[], Any] | None:
        """A fresh output parser per launch when spec.metricsCollector is not the SDK."""
        from hwtune.api.records import BUILTIN_METRICS
        from hwtune.report.collector import make_collector

        spec = self.config.spec.metrics_collector
        metrics = [o.metric for o in self.config.objectives if o.metric not in BUILTIN_METRICS]
        if not metrics or make_collector(spec, metrics) is None:
            return None
        return lambda: make_collector(spec, metrics)

    def _checkpoint_root(self, spec: Mapping[str, Any]) -> str:
        checkpoints = spec.get("checkpoints") or {}
        uri = checkpoints.get("uri")
        if uri:
            return f"{str(uri).rstrip('/')}/{self.name}"
        # A persistentVolumeClaim means nothing on this machine: keep checkpoints in the workdir.
        return str(self.workdir / "checkpoints")

    # -- running -------------------------------------------------------------------------------
    def _iteration(self, study: Study) -> None:
        if self._interrupted.is_set():
            raise StudyInterrupted()
        if self._on_iteration is not None:
            self._on_iteration(self)

    def _relaunch_interrupted(self) -> None:
        """Trials the log shows pending or running had their process die with the previous
        run: record that, and resume each from its checkpoint. So are trials that an earlier
        resume paused for this and was killed before it resumed them (nobody else would)."""
        with self.backend.lock:
            for record in self.study.trials:
                interrupted = record.phase is TrialPhase.PAUSED \
                    and record.reason == INTERRUPTED_REASON
                if not (record.phase.is_active() or interrupted):
                    continue
                tid = record.trial_id
                target = self.study.target_resource(tid)
                if not interrupted:
                    self.study.pause_trial(tid, INTERRUPTED_REASON)
                if target is not None and target <= record.last_resource:
                    target = None
                self.backend.start_trial(self.study.resume_trial(tid, max_resource=target))
                self.resumed_trials.append(tid)

    def interrupt(self) -> None:
        """Ask a running ``run()`` to stop trials for a later ``--resume`` (thread-safe)."""
        self._interrupted.set()
        self.backend.wake()

    def run(self) -> TuningResult:
        """Run until the study is done. Raises ``StudyInterrupted`` after Ctrl-C / SIGTERM,
        with every trial process stopped and its checkpoint kept."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            def handle(signum: int, frame: Any) -> None:
                if self._interrupted.is_set():  # a second Ctrl-C: give up waiting
                    raise KeyboardInterrupt
                self.interrupt()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handle)
        try:
            if self.resume:
                self._relaunch_interrupted()
            result = self.tuner.run()
        except (StudyInterrupted, KeyboardInterrupt):
            self.backend.interrupt()
            raise StudyInterrupted() from None
        except (InfrastructureError, OSError) as exc:
            if isinstance(exc, OSError):
                if exc.errno not in INFRASTRUCTURE_ERRNOS:
                    raise
                exc = infrastructure_error(exc, "hwtune could not write its files")
            # The machine failed, not the trials: stop them as for Ctrl-C (they checkpoint) and
            # record nothing more, so that every one of them resumes in the next run.
            stopped = self.backend.interrupt()
            raise InfrastructureError(
                f"{exc}\nThe run stopped; trials that were running ("
                f"{', '.join(map(str, stopped)) or 'none'}) keep their checkpoints and resume "
                "with --resume once the machine is fixed (free disk space, ...)") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                self.backend.close()
                self.events.close()
            finally:
                self._lock.release()
        return result

    @property
    def simulated_pools(self) -> list[str]:
        """Pools whose runtime and cost are the model's, scaled from this machine's CPU."""
        return list(self.config.hardware.pools)


def _value(name: Any) -> str:
    return str(getattr(name, "value", name))

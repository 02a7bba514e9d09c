"""The backend template under real concurrency: trials are threads that report from their own
thread while the tuner waits, as the local backend's HTTP endpoint does. Runs the shared
contract suite against it, plus a check that the template refuses impossible requests."""

from __future__ import annotations

import threading
import time

import pytest

from hwtune.api.records import Hardware, TrialPhase, TrialRecord
from hwtune.backends.base import Backend, BackendError, BackendTrial
from hwtune.backends.simulated import InMemoryTable
from hwtune.engine import Study, StudyConfig, StudyError, TrialStart
from tests.contracts.backend_contract import CONTRACT_SPEC, BackendContract, ContractFIFO


class ThreadedBackend(Backend):
    """Each launch is a thread that 'trains' one level every ``level_seconds`` of real time,
    reports through ``_deliver_report`` and obeys the decision."""

    poll_seconds = 0.05

    def __init__(self, table: InMemoryTable, level_seconds: float = 0.002) -> None:
        super().__init__()
        self.table = table
        self.level_seconds = level_seconds
        self._changed = threading.Condition(self.lock)
        self._news = False
        self._halt: dict[int, threading.Event] = {}
        self._runtime: dict[int, float] = {}
        self._segment_start: dict[int, float] = {}
        self.threads: list[threading.Thread] = []

    def _launch(self, trial: BackendTrial, resume: bool) -> bool:
        halt = threading.Event()
        self._halt[trial.trial_id] = halt
        self._runtime.setdefault(trial.trial_id, 0.0)
        self._segment_start[trial.trial_id] = time.monotonic()
        thread = threading.Thread(target=self._train, args=(trial.trial_id, dict(trial.config),
                                                            trial.start_resource, halt), daemon=True)
        self.threads.append(thread)
        thread.start()
        return True

    def _elapsed(self, trial_id: int) -> float:
        return self._runtime[trial_id] + time.monotonic() - self._segment_start[trial_id]

    def _train(self, trial_id: int, config: dict, first: int, halt: threading.Event) -> None:
        level = first
        while True:
            time.sleep(self.level_seconds)
            with self.lock:
                if halt.is_set():
                    return
                metrics = {"val_error": self.table.lookup(config, level, 0)["val_error"]}
                try:
                    decision = self._deliver_report(trial_id, level, metrics, self._elapsed(trial_id))
                except StudyError:  # e.g. stopped between our check and the report
                    return
                self._news = True
                self._changed.notify_all()
                if decision.halts:
                    self._runtime[trial_id] = self._elapsed(trial_id)
                    return
            level += 1

    def _stop(self, trial: BackendTrial) -> float | None:
        self._halt[trial.trial_id].set()
        self._runtime[trial.trial_id] = self._elapsed(trial.trial_id)
        return self._runtime[trial.trial_id]

    _pause = _stop

    def _wait(self, timeout: float | None) -> bool:
        with self._changed:
            if not self._news:
                self._changed.wait(timeout)
            news, self._news = self._news, False
            return news

    def _close(self) -> None:
        super()._close()
        for thread in self.threads:
            thread.join(timeout=5)


def table_for(config: StudyConfig) -> InMemoryTable:
    rows = [{"config": c, "metrics": {"val_error": [1.0 / e for e in range(1, config.max_resource + 1)]},
             "epoch_runtime": 1.0} for c in config.space.grid(1)]
    return InMemoryTable(rows)


class TestThreadedBackendContract(BackendContract):
    wait_limit_seconds = 20.0

    def make_backend(self, config, tmp_path):
        return ThreadedBackend(table_for(config))


def test_template_refuses_impossible_requests():
    config = StudyConfig.from_spec(CONTRACT_SPEC)
    backend = ThreadedBackend(table_for(config), level_seconds=0.05)
    with pytest.raises(BackendError, match="not bound"):
        _ = backend.sink
    study = Study(config, ContractFIFO(config))
    backend.bind(study)
    start = study.start_next()
    backend.start_trial(start)
    with pytest.raises(BackendError, match="already started"):
        backend.start_trial(start)
    with pytest.raises(BackendError, match="never started"):
        backend.stop_trial(99, "x")
    backend.stop_trial(start.trial.trial_id, "user")
    with pytest.raises(BackendError, match="Stopped; cannot pause"):
        backend.pause_trial(start.trial.trial_id, "x")
    backend.close()


def test_a_failing_launch_fails_the_trial_and_an_exit_without_decision_completes_or_fails():
    config = StudyConfig.from_spec(CONTRACT_SPEC)

    class Flaky(ThreadedBackend):
        def _launch(self, trial, resume):
            if trial.trial_id == 0:
                raise OSError("image pull failed")
            return False  # runs later: the pod is still Pending

    backend = Flaky(table_for(config))
    study = Study(config, ContractFIFO(config))
    backend.bind(study)
    first, second, third = study.start_next(), study.start_next(), study.start_next()
    for start in (first, second, third):
        backend.start_trial(start)
    assert first.trial.phase is TrialPhase.FAILED and "image pull failed" in first.trial.reason
    assert second.trial.phase is TrialPhase.PENDING
    backend._deliver_running(second.trial.trial_id)
    assert second.trial.phase is TrialPhase.RUNNING
    backend._deliver_report(second.trial.trial_id, 1, {"val_error": 0.5}, 1.0)
    backend._deliver_exit(second.trial.trial_id, ok=True, runtime_seconds=3.0)
    assert second.trial.phase is TrialPhase.COMPLETED and study.runtime_of(1) == 3.0
    backend._deliver_exit(third.trial.trial_id, ok=False, reason="exit code 137")
    assert third.trial.phase is TrialPhase.FAILED and third.trial.reason == "exit code 137"
    backend._deliver_exit(third.trial.trial_id, ok=True)  # a late second exit changes nothing
    assert third.trial.phase is TrialPhase.FAILED
    assert backend.active_trial_ids() == []


def test_resume_after_restart_of_the_backend():
    """A new backend process (e.g. after `hwtune tune --resume`) can resume a paused trial it
    never launched itself."""
    config = StudyConfig.from_spec(CONTRACT_SPEC)
    study = Study(config, ContractFIFO(config))
    record = study.create_trial({"lr": 0.01, "width": 8}, Hardware("t4", 1)).trial
    study.report(record.trial_id, 1, {"val_error": 0.5}, runtime_seconds=1.0)
    study.pause_trial(record.trial_id, "interrupted")
    backend = ThreadedBackend(table_for(config))
    backend.bind(study)
    backend.start_trial(study.resume_trial(record.trial_id))
    deadline = time.monotonic() + 20
    while not record.phase.is_finished() and time.monotonic() < deadline:
        backend.wait(0.05)
    assert record.phase is TrialPhase.COMPLETED
    assert [o.resource for o in record.observations] == [1, 2, 3, 4]
    assert backend.trial_state(record.trial_id).launches == 2
    backend.close()


def test_trial_start_shape_is_what_backends_read():
    record = TrialRecord(3, {"lr": 0.1}, Hardware("t4"))
    start = TrialStart(record, True, 5)
    assert (start.trial, start.resumed, start.max_resource) == (record, True, 5)

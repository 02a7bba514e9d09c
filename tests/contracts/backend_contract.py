"""The shared backend test suite: what every backend (simulated, local, kubernetes) must do.

Use it by subclassing ``BackendContract`` in a test module whose class name starts with
``Test`` and implementing ``make_backend``::

    from tests.contracts.backend_contract import BackendContract

    class TestLocalBackendContract(BackendContract):
        def make_backend(self, config, tmp_path):
            return LocalBackend(..., hardware_model=config.hardware_model, workdir=tmp_path)

Override ``spec()`` when the backend's trainer needs other parameters (keep ``val_error`` as the
objective the trainer reports and the levels 1..``fidelity.max``), and set
``supports_outside_pause = False`` for a backend that cannot pause a trial from outside.

The trainer behind the backend must report every level from the one after its checkpoint up to
the maximum, one report per level, the metric ``val_error``, and stop, pause or continue as each
answer says; a resumed trial continues after its last reported level.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from hwtune.api.records import Decision, Observation, TrialPhase, TrialRecord
from hwtune.backends.base import Backend
from hwtune.engine import EventKind, Study, StudyConfig, Tuner
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.searchers import RandomSearcher

__all__ = ["BackendContract", "ContractFIFO", "PauseOnceScheduler"]

CONTRACT_SPEC: dict[str, Any] = {
    "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
    "parameters": {
        "lr": {"type": "float", "values": [0.001, 0.01, 0.1]},
        "width": {"type": "int", "values": [8, 16, 32]},
    },
    "hardware": {"pools": ["t4", "a100"], "gpuCounts": [1, 2]},
    "fidelity": {"resource": "epoch", "min": 1, "max": 4, "reductionFactor": 2},
    "algorithm": {"scheduler": "fifo", "searcher": "random", "seed": 11},
    "budget": {"maxTrials": 4, "maxParallelTrials": 2},
}


class ContractFIFO(Scheduler):
    """Every trial to the end; new configs from a seeded random searcher."""

    def __init__(self, config: StudyConfig) -> None:
        self.objectives = config.objectives
        self.searcher = RandomSearcher(config.space, config.hardware, config.seed)

    def suggest(self) -> TrialSuggestion | None:
        proposal = self.searcher.suggest()
        return None if proposal is None else TrialSuggestion.new(*proposal)

    def on_trial_add(self, trial: TrialRecord) -> None:
        self.searcher.on_trial_add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        return Decision.CONTINUE


class PauseOnceScheduler(ContractFIFO):
    """Pauses every trial once at ``pause_at`` and resumes paused trials before starting new
    ones: checks that a resumed trial continues after its checkpoint. Starts at most
    ``new_trials`` trials itself (the study's maxTrials would leave the last one paused: the
    scheduler is not asked once it is reached)."""

    def __init__(self, config: StudyConfig, pause_at: int = 2, new_trials: int = 2) -> None:
        super().__init__(config)
        self.pause_at = pause_at
        self.new_trials = new_trials
        self.started = 0
        self.paused: list[int] = []
        self.resumed: set[int] = set()

    def suggest(self) -> TrialSuggestion | None:
        for trial_id in self.paused:
            if trial_id not in self.resumed:
                self.resumed.add(trial_id)
                return TrialSuggestion.resume(trial_id)
        if self.started >= self.new_trials:
            return None
        suggestion = super().suggest()
        self.started += suggestion is not None
        return suggestion

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        if observation.resource == self.pause_at and trial.trial_id not in self.paused:
            self.paused.append(trial.trial_id)
            return Decision.PAUSE
        return Decision.CONTINUE


class BackendContract:
    """Subclass and implement ``make_backend``. Each test builds a fresh backend."""

    supports_outside_pause = True
    #: Real-time backends need a bound on how long a test may wait for something to happen.
    wait_limit_seconds = 120.0

    def spec(self) -> dict[str, Any]:
        return copy.deepcopy(CONTRACT_SPEC)

    def make_backend(self, config: StudyConfig, tmp_path) -> Backend:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------
    def _setup(self, tmp_path, scheduler_cls=ContractFIFO, **budget: Any):
        spec = self.spec()
        spec["budget"] = {**spec.get("budget", {}), **budget}
        config = StudyConfig.from_spec(spec)
        backend = self.make_backend(config, tmp_path)
        study = Study(config, scheduler_cls(config), clock=getattr(backend, "clock", None))
        return config, backend, study

    def _run(self, study: Study, backend: Backend):
        try:
            return Tuner(study, backend).run()
        finally:
            backend.close()

    def _one_trial_reporting(self, tmp_path):
        """A study of one trial, started by hand and past its first report."""
        config, backend, study = self._setup(tmp_path, maxTrials=1, maxParallelTrials=1)
        backend.bind(study)
        start = study.start_next()
        backend.start_trial(start)
        trial = start.trial
        self._wait_until(backend, lambda: trial.last_resource >= 1)
        return config, backend, study, trial

    def _wait_until(self, backend: Backend, condition) -> None:
        deadline = time.monotonic() + self.wait_limit_seconds
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail("the backend made no progress in time")
            backend.wait(0.05 if backend.poll_seconds is not None else None)

    # -- the contract -------------------------------------------------------------------------
    def test_trials_report_every_level_and_complete(self, tmp_path):
        config, backend, study = self._setup(tmp_path, maxTrials=3, maxParallelTrials=2)
        result = self._run(study, backend)
        assert len(result.trials) == 3
        for trial in result.trials:
            assert trial.phase is TrialPhase.COMPLETED, trial.reason
            assert [o.resource for o in trial.observations] == list(range(1, config.max_resource + 1))
            runtimes = [o.metrics["runtime"] for o in trial.observations]
            assert runtimes == sorted(runtimes) and runtimes[0] >= 0
            last = trial.observations[-1].metrics
            assert last["cost"] == pytest.approx(config.hardware_model.cost(last["runtime"], trial.hardware))
        assert backend.active_trial_ids() == []

    def test_parallel_limit_is_respected(self, tmp_path):
        config, backend, study = self._setup(tmp_path, maxTrials=4, maxParallelTrials=2)
        most = [0]
        study.add_listener(lambda e: most.__setitem__(0, max(most[0], len(study.active_trials()))))
        self._run(study, backend)
        assert most[0] <= 2
        assert len(study.trials) == 4

    def test_paused_trial_resumes_after_its_checkpoint(self, tmp_path):
        config, backend, study = self._setup(tmp_path, PauseOnceScheduler, maxTrials=4, maxParallelTrials=1)
        self._run(study, backend)
        resumed = [e for e in study.events if e.kind is EventKind.RESUMED]
        assert len(study.trials) == 2 and len(resumed) == 2
        for trial in study.trials:
            assert trial.phase is TrialPhase.COMPLETED, trial.reason
            # Levels continue after the pause at 2; they never restart at 1.
            assert [o.resource for o in trial.observations] == list(range(1, config.max_resource + 1))

    def test_stop_from_outside_halts_the_trial(self, tmp_path):
        config, backend, study, trial = self._one_trial_reporting(tmp_path)
        backend.stop_trial(trial.trial_id, "stopped by the user")
        assert trial.phase is TrialPhase.STOPPED and trial.reason == "stopped by the user"
        assert backend.active_trial_ids() == []
        reported = trial.last_resource
        backend.wait(0.2 if backend.poll_seconds is not None else None)
        assert trial.last_resource == reported  # nothing arrives after a stop
        assert study.runtime_of(trial.trial_id) >= trial.observations[-1].metrics["runtime"]
        backend.close()

    def test_pause_from_outside_then_resume(self, tmp_path):
        if not self.supports_outside_pause:
            pytest.skip("this backend cannot pause trials from outside")
        config, backend, study, trial = self._one_trial_reporting(tmp_path)
        backend.pause_trial(trial.trial_id, "maintenance")
        assert trial.phase is TrialPhase.PAUSED and backend.active_trial_ids() == []
        paused_at = trial.last_resource
        backend.start_trial(study.resume_trial(trial.trial_id))
        self._wait_until(backend, lambda: trial.phase.is_finished())
        assert trial.phase is TrialPhase.COMPLETED
        levels = [o.resource for o in trial.observations]
        assert levels == list(range(1, config.max_resource + 1)) and paused_at < config.max_resource
        backend.close()

    def test_event_log_rebuilds_the_study(self, tmp_path):
        config, backend, study = self._setup(tmp_path, maxTrials=3, maxParallelTrials=2)
        self._run(study, backend)
        log = [json.loads(json.dumps(e.to_dict())) for e in study.events]
        rebuilt = Study.rebuild(config, log, scheduler=ContractFIFO(config), strict=True)
        assert [(t.phase, [(o.resource, dict(o.metrics)) for o in t.observations]) for t in rebuilt.trials] == \
            [(t.phase, [(o.resource, dict(o.metrics)) for o in t.observations]) for t in study.trials]
        assert rebuilt.spend.cost_usd == pytest.approx(study.spend.cost_usd)

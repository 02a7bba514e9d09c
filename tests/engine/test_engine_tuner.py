"""Tuner loop: slot filling, ending conditions, user stop, results."""

from __future__ import annotations

import pytest
from engine_helpers import TinyFIFO, config, small_table

from hwtune.api.records import TrialPhase
from hwtune.backends.simulated import SimulatedBackend
from hwtune.engine import Study, Tuner


def setup(workers=4, scheduler=None, **changes):
    c = config(**changes)
    backend = SimulatedBackend(small_table(c), c.hardware_model, n_workers=workers)
    study = Study(c, scheduler(c) if scheduler else TinyFIFO(c), clock=backend.clock)
    return c, backend, study


def test_exhausted_search_space_ends_the_study():
    c, backend, study = setup(algorithm={"scheduler": "fifo", "searcher": "grid"},
                              budget={"maxTrials": 500, "maxParallelTrials": 4})
    study = Study(c, clock=backend.clock)  # the real FIFO with a grid searcher
    result = Tuner(study, backend).run()
    assert result.stop_reason == "the scheduler has no more trials to run"
    assert len(result.trials) == 12 * 3  # every config on every hardware choice, once
    assert all(t.phase.is_finished() for t in result.trials)


def test_max_parallel_argument_overrides_the_budget():
    _, backend, study = setup(budget={"maxTrials": 6, "maxParallelTrials": 3})
    most = [0]
    study.add_listener(lambda e: most.__setitem__(0, max(most[0], len(study.active_trials()))))
    tuner = Tuner(study, backend, max_parallel=1)
    assert tuner.parallel_limit == 1
    tuner.run()
    assert most[0] == 1
    with pytest.raises(ValueError, match="max_parallel"):
        Tuner(study, backend, max_parallel=0)


def test_user_stop_halts_running_trials():
    _, backend, study = setup(budget={"maxTrials": 50, "maxParallelTrials": 3})
    seen = []

    def on_iteration(s):
        seen.append(s.reports)
        if len(seen) == 10:
            tuner.request_stop("stopped by the user")

    tuner = Tuner(study, backend, on_iteration=on_iteration)
    result = tuner.run()
    assert result.stop_reason == "stopped by the user" and result.iterations == 10
    stopped = [t for t in result.trials if t.phase is TrialPhase.STOPPED]
    assert stopped and all(t.reason == "stopped by the user" for t in stopped)
    assert not study.active_trials() and backend.active_trial_ids() == []


def test_result_summarises_the_study():
    _, backend, study = setup(budget={"maxTrials": 8, "maxParallelTrials": 2})
    result = Tuner(study, backend).run()
    assert result.spend == study.spend and result.spend.trials_started == 8
    assert result.front == tuple(study.front()) and result.front
    assert result.summary.counts["Completed"] + result.summary.counts["Failed"] == 8
    assert sum(result.summary.counts.values()) == 8
    assert result.summary.reports == study.reports


class FlakyLaunchBackend(SimulatedBackend):
    """A simulated backend whose launch raises for chosen trial ids (a bad image, a quota)."""

    def __init__(self, *args, failing=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.failing = set(failing)

    def _launch(self, trial, resume):
        if trial.trial_id in self.failing:
            raise RuntimeError("image pull refused")
        return super()._launch(trial, resume)


def test_a_failed_launch_fails_that_trial_not_the_study():
    c = config(budget={"maxTrials": 8, "maxParallelTrials": 1})
    # with one slot, trial 0 failing at launch leaves no active trial: the loop must go on
    backend = FlakyLaunchBackend(small_table(c), c.hardware_model, n_workers=1, failing={0, 3})
    study = Study(c, TinyFIFO(c), clock=backend.clock)
    result = Tuner(study, backend).run()
    assert len(result.trials) == 8
    launch_failed = {t.trial_id for t in result.trials
                     if t.phase is TrialPhase.FAILED and "launch failed" in t.reason}
    assert launch_failed == {0, 3}
    assert all(study.trial(i).reason == "launch failed: image pull refused" for i in launch_failed)
    assert sum(t.phase is TrialPhase.COMPLETED for t in result.trials) >= 4
    assert "maxTrials" in result.stop_reason


def test_launches_that_always_fail_end_the_loop_with_a_reason():
    c = config(budget={"maxParallelTrials": 2, "maxTrials": None})
    backend = FlakyLaunchBackend(small_table(c), c.hardware_model, n_workers=2, failing=range(10_000))
    study = Study(c, TinyFIFO(c), clock=backend.clock)
    result = Tuner(study, backend).run()
    assert "in a row ended as they were launched" in result.stop_reason
    assert len(result.trials) == Tuner.MAX_FAILED_LAUNCHES

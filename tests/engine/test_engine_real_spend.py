"""Runtime and cost are what really ran: running trials are charged as time passes (a trial that
never reports cannot outrun maxCostUSD / maxGPUHours), and a study resumed after downtime does
not charge that downtime to the trials it paused."""

from __future__ import annotations

import pytest
from engine_helpers import ManualClock, TinyFIFO, config

from hwtune.api.records import TrialPhase
from hwtune.backends.simulated import InMemoryTable, SimulatedBackend
from hwtune.engine import Study, Tuner

NEVER = 1e7  # seconds per epoch: in practice, these trials never report


def never_reporting_table(study_config) -> InMemoryTable:
    rows = [{"config": c, "metrics": {"val_error": [0.5] * 9}, "epoch_runtime": NEVER}
            for c in ({"lr": lr, "opt": opt} for lr in range(1, 7) for opt in ("sgd", "adam"))]
    return InMemoryTable(rows)


@pytest.mark.parametrize(("key", "limit", "field"),
                         [("maxCostUSD", 2.0, "cost_usd"), ("maxGPUHours", 3.0, "gpu_hours")])
def test_trials_that_never_report_are_stopped_at_the_spend_budget(key, limit, field):
    study_config = config(budget={"maxTrials": 50, "maxParallelTrials": 3, key: limit})
    backend = SimulatedBackend(never_reporting_table(study_config), study_config.hardware_model,
                               n_workers=3, seed=0)
    study = Study(study_config, TinyFIFO(study_config), clock=backend.clock)
    result = Tuner(study, backend).run()
    assert key in result.stop_reason
    assert study.reports == 0  # not one report: only the passing time was charged
    spent = getattr(result.spend, field)
    # Charged as time passes: the budget holds to within one trial-step (here: exactly).
    assert limit <= spent <= limit * (1 + 1e-6), spent
    assert backend.clock.now() < NEVER  # the simulator did not jump to the first report
    stopped = [t for t in study.trials if t.phase is TrialPhase.STOPPED]
    assert len(stopped) == 3 and all(t.reason.startswith("budget:") for t in stopped)
    # The stops are in the event log with their runtimes: a rebuild spends the same.
    again = Study.rebuild(study_config, study.events, scheduler=TinyFIFO(study_config))
    assert getattr(again.spend, field) == pytest.approx(spent)


def test_accrual_shows_in_spend_between_reports():
    clock = ManualClock(0.0)
    study_config = config(budget={"maxTrials": 5, "maxParallelTrials": 1})
    study = Study(study_config, TinyFIFO(study_config), clock=clock)
    start = study.start_next()
    study.trial_running(start.trial.trial_id)
    clock.t = 3600.0
    assert study.spend.cost_usd == 0.0  # nothing accounted yet
    study.accrue()
    hourly = study_config.hardware_model.cost(3600.0, start.trial.hardware)
    assert study.spend.cost_usd == pytest.approx(hourly)
    # a backend's own measurement wins over the study's clock
    study.accrue({start.trial.trial_id: 7200.0})
    assert study.spend.cost_usd == pytest.approx(2 * hourly)
    # the report replaces the provisional charge with what it accounts
    study.report(start.trial.trial_id, 1, {"val_error": 0.3}, runtime_seconds=7300.0)
    assert study.spend.cost_usd == pytest.approx(
        study_config.hardware_model.cost(7300.0, start.trial.hardware))


def test_resume_does_not_charge_downtime_to_the_trials_it_pauses():
    clock = ManualClock(1000.0)
    study_config = config(budget={"maxTrials": 5, "maxParallelTrials": 2})
    study = Study(study_config, TinyFIFO(study_config), clock=clock)
    first, second = study.start_next(), study.start_next()
    for start in (first, second):
        study.trial_running(start.trial.trial_id)
    clock.t = 1005.0
    study.report(first.trial.trial_id, 1, {"val_error": 0.3})  # runtime 5 s by the study's clock
    clock.t = 1008.0
    study.report(second.trial.trial_id, 1, {"val_error": 0.4})  # 8 s
    runtime_before = {t.trial_id: study.runtime_of(t.trial_id) for t in study.trials}
    assert runtime_before == {first.trial.trial_id: 5.0, second.trial.trial_id: 8.0}
    # The tuner is killed here; a day later the study is rebuilt and its running trials paused.
    later = ManualClock(1008.0 + 86400.0)
    resumed = Study.rebuild(study_config, study.events, scheduler=TinyFIFO(study_config),
                            clock=later)
    for record in resumed.active_trials():
        resumed.pause_trial(record.trial_id, "interrupted")
        resumed.accrue()
    for tid, before in runtime_before.items():
        # first ran on to 1008 (the log's last event) while the tuner was alive; nothing after
        expected = before + (3.0 if tid == first.trial.trial_id else 0.0)
        assert resumed.runtime_of(tid) == pytest.approx(expected)
        assert resumed.trial(tid).phase is TrialPhase.PAUSED
    model = study_config.hardware_model
    assert resumed.spend.cost_usd == pytest.approx(sum(  # not a day of GPUs
        model.cost(resumed.runtime_of(t.trial_id), t.hardware) for t in resumed.trials))
    # Resumed trials start a fresh segment: they are charged from the resume on, as usual.
    restart = resumed.resume_trial(first.trial.trial_id)
    resumed.trial_running(restart.trial.trial_id)
    later.t += 10.0
    resumed.report(first.trial.trial_id, 2, {"val_error": 0.2})
    assert resumed.runtime_of(first.trial.trial_id) == pytest.approx(8.0 + 10.0)


def test_the_simulator_loop_ends_when_every_launch_fails():
    # Every config needs 1 TiB of GPU memory: every trial fails out of memory at launch, at
    # simulated time 0. No maxTrials: without the failure streak the loop would never end.
    study_config = config(budget={"maxParallelTrials": 3})
    rows = [{"config": {"lr": lr, "opt": opt}, "metrics": {"val_error": [0.5] * 9},
             "epoch_runtime": 10.0, "memory_gib": 1024.0}
            for lr in range(1, 7) for opt in ("sgd", "adam")]
    backend = SimulatedBackend(InMemoryTable(rows), study_config.hardware_model, n_workers=3)
    study = Study(study_config, TinyFIFO(study_config), clock=backend.clock)
    result = Tuner(study, backend).run(max_iterations=10_000)
    assert "failed before their first report" in result.stop_reason
    assert len(result.trials) <= Tuner.MAX_FAILED_LAUNCHES + 3
    failed = [t for t in result.trials if t.phase is TrialPhase.FAILED]
    assert len(failed) >= Tuner.MAX_FAILED_LAUNCHES
    assert all("out of memory" in t.reason for t in failed)
    # those still launching when the loop ended are stopped, not left running
    assert all(t.phase is TrialPhase.STOPPED for t in result.trials if t not in failed)
    assert not study.active_trials() and backend.active_trial_ids() == []

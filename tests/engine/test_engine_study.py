"""Study: reports with built-in runtime and cost, input checks, life cycle, events."""

from __future__ import annotations

import json
import math

import pytest
from engine_helpers import ManualClock, TinyFIFO, config

from hwtune.api.records import Decision, Hardware, TrialPhase
from hwtune.engine import (
    EventKind,
    InvalidReportError,
    Study,
    StudyError,
    StudyEvent,
    TrialStateError,
    UnknownTrialError,
)


def make_study(clock=None, **changes):
    c = config(**changes)
    scheduler = TinyFIFO(c)
    return Study(c, scheduler, clock=clock or ManualClock()), scheduler


def test_report_adds_cumulative_runtime_and_cost():
    study, scheduler = make_study()
    start = study.create_trial({"lr": 3, "opt": "adam"}, Hardware("a100", 2))
    tid = start.trial.trial_id
    assert study.report(tid, 1, {"val_error": 0.5}, runtime_seconds=1800.0) is Decision.CONTINUE
    obs = study.trial(tid).observations[-1]
    # Half an hour on 2 A100s at $4.10 per GPU-hour.
    assert obs.metrics["runtime"] == 1800.0 and obs.metrics["cost"] == pytest.approx(4.10)
    study.report(tid, 2, {"val_error": 0.4}, runtime_seconds=3600.0)
    obs = study.trial(tid).observations[-1]
    assert obs.metrics["runtime"] == 3600.0 and obs.metrics["cost"] == pytest.approx(8.20)
    spend = study.spend
    assert spend.cost_usd == pytest.approx(8.20) and spend.gpu_hours == pytest.approx(2.0)
    assert spend.trials_started == 1 and spend.running == 1
    assert scheduler.calls == [("add", 0), ("result", 0, 1), ("result", 0, 2)]


def test_runtime_measured_by_the_clock_across_a_pause():
    clock = ManualClock(0.0)
    study, _ = make_study(clock)
    tid = study.create_trial({"lr": 1, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    clock.t = 10.0
    study.trial_running(tid)
    clock.t = 70.0
    study.report(tid, 1, {"val_error": 0.9})
    assert study.runtime_of(tid) == 60.0
    clock.t = 75.0
    study.pause_trial(tid, "preempted")  # 5 more seconds were used before the pause
    assert study.runtime_of(tid) == 65.0 and study.trial(tid).phase is TrialPhase.PAUSED
    clock.t = 500.0  # paused time is free
    study.resume_trial(tid)
    clock.t = 530.0
    study.report(tid, 2, {"val_error": 0.8})
    assert study.runtime_of(tid) == 95.0
    assert study.cost_of(tid) == pytest.approx(95.0 / 3600 * 0.53)


def test_report_at_max_resource_completes_the_trial():
    study, scheduler = make_study()
    tid = study.create_trial({"lr": 2, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    for r in range(1, 9):
        assert study.report(tid, r, {"val_error": 1 / r}, runtime_seconds=r * 10.0) is Decision.CONTINUE
    assert study.report(tid, 9, {"val_error": 0.1}, runtime_seconds=90.0) is Decision.STOP
    trial = study.trial(tid)
    assert trial.phase is TrialPhase.COMPLETED and "completed" in trial.reason
    assert scheduler.calls[-1] == ("complete", tid)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"trial_id": 7}, UnknownTrialError, "trial 7 does not exist"),
        ({"resource": 1}, InvalidReportError, "does not advance"),
        ({"resource": 10}, InvalidReportError, "exceeds the study maximum 9"),
        ({"resource": 2.5}, InvalidReportError, "integer"),
        ({"metrics": {"val_error": float("nan")}}, InvalidReportError, "finite number"),
        ({"metrics": {"val_error": "low"}}, InvalidReportError, "finite number"),
        ({"metrics": {"val_error": 0.1, "cost": 3.0}}, InvalidReportError, "built in"),
        ({"metrics": {"loss": 0.1}}, InvalidReportError, "objective metric 'val_error' is missing"),
        ({"runtime_seconds": -1.0}, InvalidReportError, "runtime_seconds"),
    ],
)
def test_bad_reports_are_refused_and_change_nothing(kwargs, error, words):
    study, scheduler = make_study()
    tid = study.create_trial({"lr": 2, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    study.report(tid, 1, {"val_error": 0.5}, runtime_seconds=10.0)
    before = (len(study.events), len(scheduler.calls), study.spend.cost_usd)
    args = {"trial_id": tid, "resource": 2, "metrics": {"val_error": 0.4}, "runtime_seconds": 20.0, **kwargs}
    with pytest.raises(error, match=words):
        study.report(**args)
    assert (len(study.events), len(scheduler.calls), study.spend.cost_usd) == before
    assert study.trial(tid).last_resource == 1


def test_reports_for_halted_trials_are_refused():
    study, _ = make_study()
    tid = study.create_trial({"lr": 2, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    study.stop_trial(tid, "user asked")
    with pytest.raises(TrialStateError, match="Stopped"):
        study.report(tid, 1, {"val_error": 0.5})
    with pytest.raises(TrialStateError):
        study.resume_trial(tid)
    with pytest.raises(TrialStateError):
        study.fail_trial(tid, "boom")


def test_created_trials_are_validated():
    study, _ = make_study()
    with pytest.raises(Exception, match="config.lr"):
        study.create_trial({"lr": 9, "opt": "sgd"}, Hardware("t4", 1))
    with pytest.raises(StudyError, match="needs a"):
        study.create_trial({"lr": 2, "opt": "sgd"}, None)
    with pytest.raises(KeyError, match="unknown hardware pool 'tpu'"):
        study.create_trial({"lr": 2, "opt": "sgd"}, Hardware("tpu", 1))
    assert study.trials == [] and study.events == ()


def test_life_cycle_hooks_and_phases():
    study, scheduler = make_study()
    a = study.create_trial({"lr": 1, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    b = study.create_trial({"lr": 2, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    c = study.create_trial({"lr": 3, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    study.fail_trial(a, "OOMKilled", runtime_seconds=30.0)
    study.report(b, 1, {"val_error": 0.5}, runtime_seconds=20.0)
    study.complete_trial(b, runtime_seconds=60.0)
    study.stop_trial(c, "budget")
    assert [t.phase for t in study.trials] == [TrialPhase.FAILED, TrialPhase.COMPLETED, TrialPhase.STOPPED]
    assert study.trial(a).reason == "OOMKilled"
    assert ("error", a) in scheduler.calls and ("complete", b) in scheduler.calls and ("remove", c) in scheduler.calls
    # Failed trials' time still costs money.
    assert study.spend.cost_usd == pytest.approx(90.0 / 3600 * 0.53)
    kinds = [e.kind for e in study.events]
    assert kinds == [EventKind.CREATED] * 3 + [EventKind.FAILED, EventKind.OBSERVED,
                                                EventKind.COMPLETED, EventKind.STOPPED]
    assert [e.seq for e in study.events] == list(range(7))


def test_a_trial_that_completes_without_any_report_fails_and_says_why():
    study, scheduler = make_study()
    a = study.create_trial({"lr": 1, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
    study.complete_trial(a, runtime_seconds=5.0)
    record = study.trial(a)
    assert record.phase is TrialPhase.FAILED and ("error", a) in scheduler.calls
    assert record.reason.startswith("ended without reporting its objectives: the trainer must "
                                    "report val_error with the hwtune SDK")
    assert study.ended_without_reporting == 1 and study.failure_reason() is None
    for _ in range(2):
        tid = study.create_trial({"lr": 2, "opt": "sgd"}, Hardware("t4", 1)).trial.trial_id
        study.complete_trial(tid)
    assert study.failure_reason().startswith("failed: the first 3 trials ended without reporting")
    assert study.stop_reason() == study.failure_reason()
    rebuilt = Study.rebuild(study.config, [e.to_dict() for e in study.events],
                            scheduler=type(scheduler)(study.config))
    assert rebuilt.failure_reason() == study.failure_reason()


def test_start_next_respects_max_trials_and_never_drops_a_suggestion():
    study, scheduler = make_study(budget={"maxTrials": 2})
    assert study.start_next() is not None and study.start_next() is not None
    assert study.start_next() is None
    assert study.new_trial_block().startswith("budget: 2 trials started")
    # The scheduler was asked exactly twice: a suggestion is never thrown away.
    assert [c[0] for c in scheduler.calls] == ["add", "add"]


def test_listeners_see_each_event_and_events_survive_json():
    study, _ = make_study()
    seen = []
    study.add_listener(seen.append)
    start = study.start_next()
    tid = start.trial.trial_id
    study.trial_running(tid)
    study.report(tid, 1, {"val_error": 0.3}, runtime_seconds=5.0)
    study.pause_trial(tid, "user")
    study.resume_trial(tid, max_resource=3)
    assert seen == list(study.events)
    lines = [json.dumps(e.to_dict()) for e in study.events]
    back = [StudyEvent.from_dict(json.loads(line)) for line in lines]
    assert back == list(study.events)
    assert back[0].suggested and back[0].hardware == start.trial.hardware
    assert back[2].decision is Decision.CONTINUE and back[2].metrics["runtime"] == 5.0
    assert back[-1].kind is EventKind.RESUMED and back[-1].max_resource == 3


def test_malformed_events_are_named():
    with pytest.raises(ValueError, match="malformed study event"):
        StudyEvent.from_dict({"seq": 0, "kind": "exploded", "trialId": 0, "time": 0})
    with pytest.raises(ValueError, match="needs the trial's config"):
        StudyEvent(seq=0, kind=EventKind.CREATED, trial_id=0, time=0.0)


def test_front_and_summary():
    study, _ = make_study()
    ids = [study.create_trial({"lr": i, "opt": "adam"}, Hardware("t4", 1)).trial.trial_id for i in (1, 2, 3)]
    # trial 0: good and slow; trial 1: bad and fast; trial 2: dominated by trial 0.
    study.report(ids[0], 1, {"val_error": 0.1}, runtime_seconds=100.0)
    study.report(ids[1], 1, {"val_error": 0.5}, runtime_seconds=10.0)
    study.report(ids[2], 1, {"val_error": 0.2}, runtime_seconds=200.0)
    assert [p.trial_id for p in study.front()] == [0, 1]
    summary = study.summary()
    assert summary.best["val_error"].trial_id == 0 and summary.best["runtime"].trial_id == 1
    assert summary.counts["Running"] == 3 and summary.reports == 3
    assert math.isclose(summary.front[1].values["cost"], 10.0 / 3600 * 0.53)

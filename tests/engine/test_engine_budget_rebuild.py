"""Budgets enforced by the tuner on the simulated clock, and exact rebuilds from the event log."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from engine_helpers import ManualClock, StatefulFIFO, TinyFIFO, config, small_table

from hwtune.api.records import TrialPhase
from hwtune.backends.simulated import SimulatedBackend
from hwtune.engine import EventKind, Study, StudyEvent, Tuner
from hwtune.optimize.schedulers import SCHEDULER_KINDS


def run_simulated(study_config, *, workers=3, scheduler=None, seed=0):
    backend = SimulatedBackend(small_table(study_config), study_config.hardware_model,
                               n_workers=workers, seed=seed)
    study = Study(study_config, scheduler if scheduler is not None else TinyFIFO(study_config),
                  clock=backend.clock)
    active_counts = []
    study.add_listener(lambda e: active_counts.append(len(study.active_trials())))
    result = Tuner(study, backend).run()
    return study, backend, result, active_counts


def spend_crossing(study, limit, field):
    """Index of the first event after which the summed per-trial ``field`` reaches ``limit``."""
    per_trial: dict[int, float] = {}
    model = study.config.hardware_model
    for i, e in enumerate(study.events):
        if e.runtime_seconds is None:
            continue
        hw = study.trial(e.trial_id).hardware
        value = model.cost(e.runtime_seconds, hw) if field == "cost" else model.gpu_hours(e.runtime_seconds, hw)
        per_trial[e.trial_id] = value
        if sum(per_trial.values()) >= limit - 1e-9:
            return i
    raise AssertionError("the limit was never reached")


def test_max_trials_and_parallel_limit():
    study, backend, result, active = run_simulated(config(budget={"maxTrials": 12, "maxParallelTrials": 3}))
    assert len(result.trials) == 12
    assert "maxTrials 12" in result.stop_reason
    assert max(active) == 3
    assert all(t.phase.is_finished() for t in result.trials)
    # lr 5 and 6 need 20-24 GiB: on a T4 (16 GiB) they fail as out of memory, elsewhere they run.
    for t in result.trials:
        oom = t.config["lr"] >= 5 and t.hardware.pool == "t4"
        assert (t.phase is TrialPhase.FAILED) == oom, t
        if oom:
            assert "out of memory" in t.reason
        else:
            assert t.phase is TrialPhase.COMPLETED and [o.resource for o in t.observations] == list(range(1, 10))


@pytest.mark.parametrize(("key", "limit", "field"), [("maxCostUSD", 0.6, "cost"), ("maxGPUHours", 0.4, "gpu_hours")])
def test_spend_budgets_stop_running_trials(key, limit, field):
    study, backend, result, _ = run_simulated(config(budget={"maxTrials": 200, "maxParallelTrials": 3, key: limit}))
    assert key in result.stop_reason
    spent = result.spend.cost_usd if field == "cost" else result.spend.gpu_hours
    # Running trials are charged as time passes: the tuner stops them at the crossing itself.
    assert spent == pytest.approx(limit)
    crossing = spend_crossing(study, limit, field)
    crossed_at = study.events[crossing].time
    later = study.events[crossing + 1:]
    # No trial starts after the crossing, and every trial still running is stopped at that instant.
    assert not [e for e in later if e.kind in (EventKind.CREATED, EventKind.RESUMED)]
    assert all(e.time == crossed_at for e in later)
    assert not study.active_trials()
    stopped = [t for t in study.trials if t.phase is TrialPhase.STOPPED]
    assert stopped and all(t.reason.startswith("budget:") for t in stopped)
    assert backend.active_trial_ids() == []


def test_deadline_on_the_simulated_clock():
    deadline = 1000  # an integer, as the CRD says
    study, backend, result, _ = run_simulated(config(budget={"maxTrials": 200, "maxParallelTrials": 3,
                                                             "maxDurationSeconds": deadline}))
    assert "maxDurationSeconds" in result.stop_reason
    assert backend.clock.now() == deadline
    assert all(e.time <= deadline for e in study.events)
    stopped = [t for t in study.trials if t.phase is TrialPhase.STOPPED]
    assert stopped
    for t in stopped:
        created = next(e for e in study.events if e.kind is EventKind.CREATED and e.trial_id == t.trial_id)
        # Never paused: it ran from its creation to the deadline, the partial epoch included.
        assert study.runtime_of(t.trial_id) == pytest.approx(deadline - created.time)


# -- rebuild -----------------------------------------------------------------------------------
def drive(study: Study, steps: int, seed: int, table, parallel: int = 3) -> list[tuple]:
    """Deterministic workload from the study's own state: fill slots, then report the next epoch
    of a randomly picked active trial; now and then a trial fails."""
    rng = np.random.default_rng(seed)
    log: list[tuple] = []
    for _ in range(steps):
        while len(study.active_trials()) < parallel:
            start = study.start_next()
            if start is None:
                break
            log.append(("start", start.trial.trial_id, start.resumed, start.max_resource))
        active = study.active_trials()
        if not active:
            break
        trial = active[int(rng.integers(len(active)))]
        if rng.random() < 0.03:
            study.fail_trial(trial.trial_id, "flaky node")
            log.append(("fail", trial.trial_id))
            continue
        r = trial.last_resource + 1
        value = table.lookup(trial.config, r, trial.trial_id)["val_error"]
        runtime = study.runtime_of(trial.trial_id) + 10.0 * trial.config["lr"]
        decision = study.report(trial.trial_id, r, {"val_error": value}, runtime_seconds=runtime)
        log.append(("report", trial.trial_id, r, decision))
    return log


def state(study: Study) -> list[tuple]:
    return [(t.trial_id, dict(t.config), t.hardware, t.phase, t.reason,
             [(o.resource, dict(o.metrics)) for o in t.observations]) for t in study.trials]


TINY = {"tiny-fifo": TinyFIFO, "tiny-stateful": StatefulFIFO}


# dyhpo (a torch model per suggestion) has its own rebuild tests in tests/surrogate/.
@pytest.mark.parametrize("kind", [*TINY, *(k for k in SCHEDULER_KINDS if k != "dyhpo")])
def test_rebuild_then_continue_decides_the_same(kind):
    c = config(algorithm={"scheduler": "fifo" if kind in TINY else kind, "seed": 5},
               budget={"maxTrials": 40})
    table = small_table(c)

    def fresh_scheduler():
        return TINY[kind](c) if kind in TINY else c.make_scheduler()

    original = Study(c, fresh_scheduler(), clock=ManualClock())
    first = drive(original, 70, seed=1, table=table)
    assert any(entry[0] == "report" for entry in first)
    log = [json.loads(json.dumps(e.to_dict())) for e in original.events]  # as persisted
    rebuilt = Study.rebuild(c, log, scheduler=fresh_scheduler(), clock=ManualClock(), strict=True)
    assert rebuilt.replay_mismatches == []
    assert state(rebuilt) == state(original)
    assert rebuilt.spend == original.spend
    # Both continue with the same workload: every later decision must be the same.
    cont_original = drive(original, 250, seed=2, table=table)
    cont_rebuilt = drive(rebuilt, 250, seed=2, table=table)
    assert cont_rebuilt == cont_original
    assert [e.to_dict() for e in rebuilt.events] == [e.to_dict() for e in original.events]


def test_rebuild_of_a_finished_simulated_study_matches():
    c = config(algorithm={"scheduler": "asha", "seed": 2}, budget={"maxTrials": 30, "maxParallelTrials": 3})
    study, _, result, _ = run_simulated(c, scheduler=c.make_scheduler())
    rebuilt = Study.rebuild(c, [StudyEvent.from_dict(e.to_dict()) for e in study.events])
    assert rebuilt.replay_mismatches == []
    assert state(rebuilt) == state(study)
    assert rebuilt.summary().front == result.front
    assert rebuilt.start_time == study.start_time


def test_rebuild_reports_a_diverging_scheduler():
    c = config(algorithm={"scheduler": "fifo", "seed": 5})
    original = Study(c, TinyFIFO(c), clock=ManualClock())
    drive(original, 20, seed=1, table=small_table(c))
    other = config(algorithm={"scheduler": "fifo", "seed": 6})  # a different seed suggests other configs
    rebuilt = Study.rebuild(other, original.events, scheduler=TinyFIFO(other), clock=ManualClock())
    assert rebuilt.replay_mismatches and "suggested" in rebuilt.replay_mismatches[0]
    assert state(rebuilt) == state(original)  # the log wins
    with pytest.raises(Exception, match="replay diverged"):
        Study.rebuild(other, original.events, scheduler=TinyFIFO(other), clock=ManualClock(), strict=True)


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["tiny-stateful", "asha", "mo-asha-promotion"]), cut=st.integers(1, 120),
       seed=st.integers(0, 1000))
def test_rebuild_at_any_cut_point(kind, cut, seed):
    """Wherever the log is cut, the rebuilt study continues exactly like the original."""
    c = config(algorithm={"scheduler": "fifo" if kind in TINY else kind, "seed": seed % 7},
               budget={"maxTrials": 30})
    table = small_table(c)

    def fresh():
        return TINY[kind](c) if kind in TINY else c.make_scheduler()

    original = Study(c, fresh(), clock=ManualClock())
    drive(original, cut, seed=seed, table=table)
    rebuilt = Study.rebuild(c, original.events, scheduler=fresh(), clock=ManualClock(), strict=True)
    assert drive(rebuilt, 60, seed=seed + 1, table=table) == drive(original, 60, seed=seed + 1, table=table)


@pytest.mark.parametrize("kind", ["asha-promotion", "mo-asha-promotion"])
def test_promotion_goes_on_after_max_trials(kind):
    """Reaching maxTrials blocks new trials only: a promotion scheduler still resumes its best
    paused trials, so some reach the maximum resource instead of all ending Paused."""
    c = config(algorithm={"scheduler": kind, "seed": 4}, budget={"maxTrials": 12, "maxParallelTrials": 3})
    study, _, result, _ = run_simulated(c, scheduler=c.make_scheduler())
    created = [i for i, e in enumerate(study.events) if e.kind is EventKind.CREATED]
    assert len(created) == 12
    resumed_after_cap = [e for e in study.events[created[-1] + 1:] if e.kind is EventKind.RESUMED]
    assert resumed_after_cap, "no paused trial was promoted once maxTrials was reached"
    assert any(t.phase is TrialPhase.COMPLETED for t in study.trials)
    assert "maxTrials" in result.stop_reason
    # and the log still replays exactly
    rebuilt = Study.rebuild(c, study.events, scheduler=c.make_scheduler(), strict=True)
    assert state(rebuilt) == state(study)

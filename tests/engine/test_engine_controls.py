"""Study controls Katib users rely on: an objective target ends the study, maxFailedTrials fails
it, a metric strategy decides which value of a curve counts, stepped ranges."""

from __future__ import annotations

from engine_helpers import TinyFIFO, config, small_table

from hwtune.api.records import TrialPhase
from hwtune.backends.simulated import SimulatedBackend
from hwtune.engine import Study, Tuner

OBJECTIVES = [{"metric": "val_error", "target": 0.25}, {"metric": "runtime"}, {"metric": "cost"}]


def run(**changes):
    c = config(**changes)
    backend = SimulatedBackend(small_table(c), c.hardware_model, n_workers=3)
    study = Study(c, clock=backend.clock)
    return c, study, Tuner(study, backend).run()


def test_a_study_stops_when_a_trial_reaches_the_target():
    c, study, result = run(objectives=OBJECTIVES, budget={"maxTrials": 200,
                                                          "maxParallelTrials": 3})
    assert result.stop_reason.startswith("objective target reached by trial ")
    assert not result.failed
    observed = [e for e in study.events if e.kind.value == "observed"]
    hits = [e for e in observed if e.metrics["val_error"] <= 0.25]
    # It stopped at the first observation that reached the target: nothing reported after it.
    assert hits and hits[0] is observed[-1]
    assert len(result.trials) < 200
    assert not study.active_trials()
    # A rebuilt study knows the target is reached and starts nothing.
    again = Study.rebuild(c, [e.to_dict() for e in study.events], strict=True)
    assert again.stop_reason() == study.stop_reason() and again.start_next() is None


def test_with_several_targets_one_observation_must_reach_all():
    objectives = [{"metric": "val_error", "target": 0.25},
                  {"metric": "runtime", "target": 1.0}, {"metric": "cost"}]
    _, study, result = run(objectives=objectives, budget={"maxTrials": 12,
                                                          "maxParallelTrials": 3})
    # Runtimes are minutes: the runtime target is never reached, so neither is the study's.
    assert result.stop_reason.startswith("budget: 12 trials started")
    assert study.target_reached is None


def test_a_study_whose_trials_fail_stops_at_max_failed_trials():
    # Every configuration needs more GPU memory than any pool has: each trial fails (OOM).
    c = config(budget={"maxTrials": 50, "maxParallelTrials": 2, "maxFailedTrials": 4})
    backend = SimulatedBackend(small_table(c, memory_gib=500.0), c.hardware_model, n_workers=2)
    study = Study(c, clock=backend.clock)
    result = Tuner(study, backend).run()
    assert result.failed
    assert result.stop_reason.startswith("failed: ") and "budget.maxFailedTrials (4)" in result.stop_reason
    failed = study.trials_in(TrialPhase.FAILED)
    assert 5 <= len(failed) <= 6 and len(result.trials) < 50  # 5 failures, one more in flight


def test_metric_strategy_min_feeds_the_best_value_so_far():
    objectives = [{"metric": "val_error", "strategy": "min"}, {"metric": "runtime"}]
    c = config(objectives=objectives)
    study = Study(c, TinyFIFO(c))
    tid = study.start_next().trial.trial_id
    study.trial_running(tid)
    for resource, value in ((1, 0.5), (2, 0.3), (3, 0.4)):
        study.report(tid, resource, {"val_error": value}, runtime_seconds=float(resource))
    record = study.trial(tid)
    assert [o.metrics["val_error"] for o in record.observations] == [0.5, 0.3, 0.3]
    # The log keeps what was reported; a rebuild applies the strategy again.
    logged = [e.metrics["val_error"] for e in study.events if e.kind.value == "observed"]
    assert logged == [0.5, 0.3, 0.4]
    again = Study.rebuild(c, [e.to_dict() for e in study.events], scheduler=TinyFIFO(c))
    assert [o.metrics["val_error"] for o in again.trial(tid).observations] == [0.5, 0.3, 0.3]
    assert study.front()[0].values["val_error"] == 0.3


def test_stepped_ranges_are_grids():
    c = config(parameters={"lr": {"type": "float", "min": 0.1, "max": 0.5, "step": 0.1},
                           "layers": {"type": "int", "min": 2, "max": 9, "step": 3},
                           "opt": {"type": "categorical", "values": ["sgd", "adam"]}},
               hardware=None)
    grid = list(c.space.grid(1))
    assert sorted({g["lr"] for g in grid}) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert sorted({g["layers"] for g in grid}) == [2, 5, 8]
    study = Study(c, TinyFIFO(c))
    for _ in range(20):
        trial = study.start_next().trial
        assert trial.config["lr"] in (0.1, 0.2, 0.3, 0.4, 0.5) and trial.config["layers"] in (2, 5, 8)


def test_parameter_names_with_dashes_reach_the_env():
    from hwtune.trainer.env import TrialEnv

    env = TrialEnv(trial_id="1", study="s", params={"learning-rate": 0.1}).to_env()
    assert env["HWTUNE_PARAM_LEARNING_RATE"] == "0.1"

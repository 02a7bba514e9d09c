"""Every scheduler kind through the same life cycle: suggest, add, result, pause/resume, error,
remove, complete. What holds for all of them is checked here; algorithm details live in
tests/optimize/."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from hwtune.api.records import (
    Decision,
    Goal,
    Hardware,
    Objective,
    Observation,
    TrialPhase,
    TrialRecord,
)
from hwtune.optimize.schedulers import SCHEDULER_KINDS, Scheduler, make_scheduler
from hwtune.optimize.schedulers.base import TrialSuggestion
from hwtune.optimize.schedulers.rungs import rung_levels
from hwtune.optimize.searchers.base import Searcher

R_MIN, R_MAX, ETA = 1, 27, 3
LEVELS = set(rung_levels(R_MIN, R_MAX, ETA))
OBJECTIVES = [Objective("val_error"), Objective("cost"), Objective("throughput", Goal.MAXIMIZE)]
STOPPING = {"asha", "hyperband", "mo-asha"}
PROMOTION = {"asha-promotion", "mo-asha-promotion"}
PLAIN = {"fifo", "random"}
# Freeze-thaw with a torch surrogate: its life cycle is checked in tests/surrogate/.
MODEL_BASED = {"dyhpo"}
assert STOPPING | PROMOTION | PLAIN | MODEL_BASED == set(SCHEDULER_KINDS)


class TinyRandomSearcher(Searcher):
    """Seeded random configs and hardware; records what the scheduler tells it."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.added: list[int] = []
        self.results: list[tuple[int, int]] = []
        self.completed: list[int] = []

    def suggest(self):
        config = {"lr": float(10 ** self.rng.uniform(-4, -1)), "width": int(self.rng.integers(1, 9))}
        hardware = [Hardware("t4", 1), Hardware("a100", 2), Hardware("h100", 8)][int(self.rng.integers(3))]
        return config, hardware

    def on_trial_add(self, trial):
        self.added.append(trial.trial_id)

    def on_trial_result(self, trial, observation):
        self.results.append((trial.trial_id, observation.resource))

    def on_trial_complete(self, trial):
        self.completed.append(trial.trial_id)


def metrics_for(trial: TrialRecord, resource: int) -> dict[str, float]:
    """A learning curve that depends on the config: better lr and width learn faster."""
    lr, width = trial.config["lr"], trial.config["width"]
    quality = abs(math.log10(lr) + 2.5) + 1.0 / width
    speed = {"t4": 1.0, "a100": 4.0, "h100": 7.0}[trial.hardware.pool]
    return {
        "val_error": quality / math.sqrt(resource),
        "cost": resource * width * trial.hardware.gpu_count / speed,
        "throughput": speed * 100.0 / width,
    }


@dataclass
class LifeCycle:
    """The engine's side of the contract, reduced to what every scheduler must tolerate."""

    scheduler: Scheduler
    trials: dict[int, TrialRecord] = field(default_factory=dict)
    targets: dict[int, int] = field(default_factory=dict)
    log: list[tuple] = field(default_factory=list)

    def start(self) -> TrialRecord | None:
        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        assert isinstance(suggestion, TrialSuggestion)
        if suggestion.is_resume:
            trial = self.trials[suggestion.resume_trial_id]
            assert trial.phase is TrialPhase.PAUSED, "only paused trials may be resumed"
            assert suggestion.max_resource is None or suggestion.max_resource > trial.last_resource
            trial.phase = TrialPhase.RUNNING
        else:
            trial = TrialRecord(len(self.trials), suggestion.config, suggestion.hardware,
                                phase=TrialPhase.RUNNING)
            self.trials[trial.trial_id] = trial
            self.scheduler.on_trial_add(trial)
        self.targets[trial.trial_id] = suggestion.max_resource or R_MAX
        self.log.append(("start", trial.trial_id, suggestion.is_resume, suggestion.max_resource))
        return trial

    def report(self, trial: TrialRecord) -> Decision:
        resource = trial.last_resource + 1
        observation = Observation(trial.trial_id, resource, metrics_for(trial, resource))
        trial.observations.append(observation)
        decision = self.scheduler.on_trial_result(trial, observation)
        assert isinstance(decision, Decision)
        self.log.append(("result", trial.trial_id, resource, decision))
        if resource >= R_MAX:
            trial.phase = TrialPhase.COMPLETED
            self.scheduler.on_trial_complete(trial)
        elif decision is Decision.PAUSE:
            trial.phase = TrialPhase.PAUSED
        elif decision is Decision.STOP:
            trial.phase = TrialPhase.STOPPED
        elif resource >= self.targets[trial.trial_id]:
            # The backend ran to the requested level; a scheduler that asked for a decision
            # there must have given one.
            raise AssertionError(
                f"trial {trial.trial_id} reached its target {resource} and was told to continue"
            )
        return decision

    def fail(self, trial: TrialRecord) -> None:
        trial.phase = TrialPhase.FAILED
        self.scheduler.on_trial_error(trial)
        self.log.append(("error", trial.trial_id))

    def remove(self, trial: TrialRecord) -> None:
        trial.phase = TrialPhase.STOPPED
        self.scheduler.on_trial_remove(trial)
        self.log.append(("remove", trial.trial_id))


def run_study(kind: str, seed: int = 0, max_trials: int = 40, workers: int = 4):
    searcher = TinyRandomSearcher(seed)
    scheduler = make_scheduler(kind, searcher=searcher, objectives=OBJECTIVES, resource_min=R_MIN,
                               resource_max=R_MAX, reduction_factor=ETA, seed=seed)
    cycle = LifeCycle(scheduler)
    rng = np.random.default_rng(seed + 1)
    running: list[TrialRecord] = []
    for _ in range(20_000):
        while len(running) < workers and len(cycle.trials) < max_trials:
            trial = cycle.start()
            if trial is None:
                break
            running.append(trial)
        if not running:
            break
        trial = running[int(rng.integers(len(running)))]
        # Trial 5 crashes before its first report; trial 7 is stopped by a user while running.
        if trial.trial_id == 5 and trial.last_resource == 0:
            cycle.fail(trial)
            running.remove(trial)
            continue
        if trial.trial_id == 7 and trial.last_resource == 0:
            cycle.remove(trial)
            running.remove(trial)
            continue
        cycle.report(trial)
        if trial.phase is not TrialPhase.RUNNING:
            running.remove(trial)
    else:
        raise AssertionError("the study did not settle")
    return cycle, searcher


@pytest.fixture(params=[k for k in SCHEDULER_KINDS if k not in MODEL_BASED])
def kind(request):
    return request.param


def test_life_cycle_invariants(kind):
    cycle, searcher = run_study(kind)
    trials = cycle.trials
    assert len(trials) == 40
    assert searcher.added == sorted(trials)
    results = [entry for entry in cycle.log if entry[0] == "result"]
    for _, trial_id, resource, decision in results:
        if decision is not Decision.CONTINUE:
            assert resource in LEVELS, f"{kind} decided {decision} off-rung at {resource}"
        if resource >= R_MAX:
            assert decision is Decision.CONTINUE
    decisions = {entry[3] for entry in results}
    if kind in PLAIN:
        assert decisions == {Decision.CONTINUE}
    if kind in STOPPING:
        assert Decision.PAUSE not in decisions and Decision.STOP in decisions
    if kind in PROMOTION:
        assert Decision.STOP not in decisions and Decision.PAUSE in decisions
        assert any(entry[0] == "start" and entry[2] for entry in cycle.log), "nothing was promoted"
    # Every trial ended somewhere sensible; the searcher heard once of every finished trial.
    phases = {t.phase for t in trials.values()}
    assert TrialPhase.RUNNING not in phases
    finished = sorted(t.trial_id for t in trials.values() if t.phase.is_finished())
    assert sorted(searcher.completed) == finished
    assert len(searcher.completed) == len(set(searcher.completed))
    assert trials[5].phase is TrialPhase.FAILED and trials[7].phase is TrialPhase.STOPPED
    assert len(searcher.results) == len(results)
    # With new trials forbidden, only a paused trial may come back.
    resume = cycle.scheduler.suggest_resume()
    if kind not in PROMOTION:
        assert resume is None
    elif resume is not None:
        assert resume.is_resume and trials[resume.resume_trial_id].phase is TrialPhase.PAUSED


def test_decisions_are_repeatable(kind):
    first, _ = run_study(kind, seed=11)
    second, _ = run_study(kind, seed=11)
    assert first.log == second.log


def test_finished_trials_cannot_report(kind):
    cycle, _ = run_study(kind, max_trials=6)
    done = next(t for t in cycle.trials.values() if t.phase.is_finished())
    observation = Observation(done.trial_id, done.last_resource + 1, metrics_for(done, 1))
    with pytest.raises(ValueError, match=f"trial {done.trial_id} already finished"):
        cycle.scheduler.on_trial_result(done, observation)


def test_unknown_trials_cannot_report(kind):
    cycle, _ = run_study(kind, max_trials=2)
    stranger = TrialRecord(99, {"lr": 0.01, "width": 1}, Hardware("t4"))
    with pytest.raises(ValueError, match="trial 99 was never added"):
        cycle.scheduler.on_trial_result(stranger, Observation(99, 1, {"val_error": 1.0}))


def test_a_missing_objective_at_a_rung_is_a_clear_error(kind):
    if kind in PLAIN:
        pytest.skip("FIFO never ranks, so it never reads objective values")
    searcher = TinyRandomSearcher(0)
    scheduler = make_scheduler(kind, searcher=searcher, objectives=OBJECTIVES, resource_min=R_MIN,
                               resource_max=R_MAX, reduction_factor=ETA, seed=0,
                               settings={"brackets": 1} if kind == "hyperband" else None)
    trial = TrialRecord(0, {"lr": 0.01, "width": 1}, Hardware("t4"))
    scheduler.on_trial_add(trial)
    observation = Observation(0, R_MIN, {"cost": 1.0})
    trial.observations.append(observation)
    with pytest.raises(ValueError, match="without the objective metric 'val_error'"):
        scheduler.on_trial_result(trial, observation)


def test_paused_trials_stopped_from_outside_are_never_resumed(kind):
    cycle, _ = run_study(kind, max_trials=20)
    paused = [t for t in cycle.trials.values() if t.phase is TrialPhase.PAUSED]
    if kind not in PROMOTION:
        assert not paused
        return
    assert paused
    for trial in paused:
        cycle.remove(trial)
    for _ in range(5):
        suggestion = cycle.scheduler.suggest()
        assert suggestion is not None and not suggestion.is_resume


def test_runs_with_the_engines_random_searcher(kind):
    """The same life cycle with the real RandomSearcher over a real search space."""
    from hwtune.optimize.searchers.random import RandomSearcher
    from hwtune.space import SearchSpace

    space = SearchSpace.from_spec({
        "lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
        "width": {"type": "int", "min": 1, "max": 8},
    })
    hardware = [Hardware("t4", 1), Hardware("a100", 2), Hardware("h100", 8)]
    scheduler = make_scheduler(kind, searcher=RandomSearcher(space, hardware, seed=2),
                               objectives=OBJECTIVES, resource_min=R_MIN, resource_max=R_MAX,
                               reduction_factor=ETA, seed=2)
    cycle = LifeCycle(scheduler)
    running = []
    while len(cycle.trials) < 12 or running:
        while len(running) < 3 and len(cycle.trials) < 12:
            running.append(cycle.start())
        trial = running[0]
        cycle.report(trial)
        if trial.phase is not TrialPhase.RUNNING:
            running.remove(trial)
    assert all(t.hardware in hardware for t in cycle.trials.values())
    assert len({(tuple(sorted(t.config.items())), t.hardware) for t in cycle.trials.values()}) == 12

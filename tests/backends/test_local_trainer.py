"""The REAL reference trainer (trainer_image/train.py, PyTorch) through the local backend:
per-epoch metrics, MO-ASHA stopping and pausing, resumption from checkpoints after a pause, a
SIGTERM and an interrupted study. Kept small: tiny nets, 3-4 epochs, few trials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from hwtune.api.records import Decision, TrialPhase
from hwtune.backends.local import LocalStudyRun, StudyInterrupted
from hwtune.engine import EventKind, Study
from tests.backends.local_support import REFERENCE_TRAINER, digits_spec

pytest.importorskip("torch")
pytestmark = [pytest.mark.slow, pytest.mark.torch]


def offline_curve(config, epochs: int) -> dict[int, dict[str, str]]:
    """The same config trained without interruption, by hand (no study): epoch -> printed
    metrics (4 decimals, as the trainer prints them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWTUNE_")}
    env["HWTUNE_PARAMS"] = json.dumps(dict(config))
    out = subprocess.run([sys.executable, str(REFERENCE_TRAINER), "--max-epochs", str(epochs)],
                         env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    curve = {}
    for match in re.finditer(r"epoch (\d+) train_loss=(\S+) val_loss=(\S+) val_error=(\S+)", out):
        curve[int(match[1])] = {"train_loss": match[2], "val_loss": match[3],
                                "val_error": match[4]}
    return curve


def as_printed(metrics) -> dict[str, str]:
    return {k: f"{metrics[k]:.4f}" for k in ("train_loss", "val_loss", "val_error")}


def test_mo_asha_stops_some_trials_and_metrics_arrive_per_epoch(tmp_path):
    run = LocalStudyRun("digits", digits_spec(scheduler="mo-asha", max_trials=6, parallel=2),
                        workdir=tmp_path / "w")
    result = run.run()
    assert len(result.trials) == 6
    stopped = [t for t in result.trials if t.phase is TrialPhase.STOPPED]
    completed = [t for t in result.trials if t.phase is TrialPhase.COMPLETED]
    assert stopped and completed, [(t.trial_id, t.phase, t.reason) for t in result.trials]
    for trial in stopped:
        assert trial.reason == "stopped by the scheduler at epoch 1"
        assert [o.resource for o in trial.observations] == [1]
    model = run.config.hardware_model
    for trial in completed:
        assert [o.resource for o in trial.observations] == [1, 2, 3]
        for obs in trial.observations:
            assert 0.0 <= obs.metrics["val_error"] <= 1.0
            assert obs.metrics["train_loss"] > 0 and obs.metrics["val_loss"] > 0
            assert obs.metrics["cost"] == pytest.approx(model.cost(obs.metrics["runtime"],
                                                                   trial.hardware))
        runtimes = [o.metrics["runtime"] for o in trial.observations]
        assert runtimes == sorted(runtimes) and runtimes[0] > 0
    # Every report is in the event log, with the decision it got.
    observed = [json.loads(line) for line in (tmp_path / "w" / "events.jsonl").open()
                if '"observed"' in line]
    assert len(observed) == sum(len(t.observations) for t in result.trials)
    assert {o["decision"] for o in observed} <= {"continue", "stop"}
    log = run.backend.log_path(completed[0].trial_id).read_text()
    assert "epoch 3 " in log and "-> stop" in log


def test_paused_trial_resumes_from_its_checkpoint(tmp_path):
    # Promotion: every trial pauses at rung 1; with 3 trials there, the best is resumed.
    run = LocalStudyRun("digits", digits_spec(scheduler="mo-asha-promotion", max_trials=5,
                                              parallel=2),
                        workdir=tmp_path / "w")
    result = run.run()
    resumed = [e.trial_id for e in run.study.events if e.kind is EventKind.RESUMED]
    assert resumed, [(t.trial_id, t.phase, t.reason) for t in result.trials]
    trial = run.study.trial(resumed[0])
    assert [o.resource for o in trial.observations] == [1, 2, 3]  # continued, not restarted
    assert trial.phase is TrialPhase.COMPLETED
    first = [e for e in run.study.events
             if e.kind is EventKind.OBSERVED and e.trial_id == trial.trial_id][0]
    assert first.decision is Decision.PAUSE
    log = run.backend.log_path(trial.trial_id).read_text()
    assert "resumed from the checkpoint of epoch 1" in log
    assert log.count("=== hwtune: trial") == 2
    # Paused, checkpointed and resumed, it computed exactly what an uninterrupted run does.
    curve = offline_curve(trial.config, 3)
    assert [as_printed(o.metrics) for o in trial.observations] == [curve[1], curve[2], curve[3]]


def test_sigterm_trial_is_restarted_from_its_checkpoint(tmp_path):
    killed: list[int] = []

    def preempt(run: LocalStudyRun) -> None:
        trial = run.study.trials[0] if run.study.trials else None
        if not killed and trial is not None and trial.last_resource >= 2:
            pid = run.backend.running_processes().get(0)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)  # as an eviction would
                killed.append(trial.last_resource)

    spec = digits_spec(scheduler="fifo", max_trials=1, parallel=1, max_epochs=5,
                       sleep_per_epoch=0.6)
    run = LocalStudyRun("digits", spec, workdir=tmp_path / "w", on_iteration=preempt)
    result = run.run()
    trial = result.trials[0]
    assert killed, "the trial finished before it could be preempted"
    assert trial.phase is TrialPhase.COMPLETED, trial.reason
    assert [o.resource for o in trial.observations] == [1, 2, 3, 4, 5]
    log = run.backend.log_path(0).read_text()
    assert "preempted (SIGTERM)" in log and "exiting with 75" in log
    assert re.search(r"resumed from the checkpoint of epoch [2-5]", log)
    assert log.count("=== hwtune: trial 0 resumed") == 1
    runtimes = [o.metrics["runtime"] for o in trial.observations]
    assert runtimes == sorted(runtimes)  # the second launch adds to the first
    # The study was not told: a preemption with a checkpoint is not a pause or a failure.
    kinds = {e.kind for e in run.study.events}
    assert EventKind.PAUSED not in kinds and EventKind.FAILED not in kinds


def test_interrupted_study_resumes_without_losing_trials(tmp_path):
    spec = digits_spec(scheduler="mo-asha", max_trials=4, parallel=2, max_epochs=4,
                       sleep_per_epoch=0.4)
    workdir = tmp_path / "w"

    def interrupt_midway(run: LocalStudyRun) -> None:
        if run.study.reports >= 3 and run.study.active_trials():
            run.interrupt()

    first = LocalStudyRun("digits", spec, workdir=workdir, on_iteration=interrupt_midway)
    with pytest.raises(StudyInterrupted):
        first.run()
    before = {t.trial_id: (dict(t.config), t.hardware, t.last_resource, t.phase)
              for t in first.study.trials}
    running_then = [tid for tid, (_, _, _, phase) in before.items() if phase.is_active()]
    assert running_then, before
    assert first.backend.running_processes() == {}

    second = LocalStudyRun("digits", spec, workdir=workdir, resume=True)
    assert second.study.replay_mismatches == []
    result = second.run()
    assert sorted(second.resumed_trials) == sorted(running_then)
    assert len(result.trials) == 4
    for tid, (config, hardware, reported, _) in before.items():
        trial = second.study.trial(tid)
        assert (dict(trial.config), trial.hardware) == (config, hardware)
        levels = [o.resource for o in trial.observations]
        assert levels == sorted(set(levels))  # one report per level, never restarted
        assert trial.last_resource >= reported
        assert trial.phase.is_finished()
    for tid in running_then:
        log = second.backend.log_path(tid).read_text()
        assert f"=== hwtune: trial {tid} resumed" in log
        if before[tid][2] >= 1:  # it had checkpointed an epoch before the interruption
            assert re.search(r"resumed from the checkpoint of epoch \d", log)
    # The whole log (both runs) rebuilds the final study exactly.
    events = [json.loads(line) for line in (workdir / "events.jsonl").open()]
    rebuilt = Study.rebuild(second.config, events, strict=True)
    assert [(t.phase, t.last_resource) for t in rebuilt.trials] == \
        [(t.phase, t.last_resource) for t in second.study.trials]

"""Chaos: ``hwtune tune`` killed with SIGKILL at 20 random moments of one study, each time
followed at once by ``--resume``. Afterwards no trial is lost or duplicated, no level is missing
or reported twice, no trainer process is left, and the budget (maxTrials) held."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hwtune.backends.local import LocalStudyRun
from hwtune.backends.local.lock import LockHeld, read_holder, try_lock
from tests.backends.test_local_faults import (
    REPO,
    cli,
    events_of,
    fault_spec,
    group_alive,
    trial_groups,
    wait_for,
    write_study,
)

KILLS = 20
MAX_TRIALS = 12


def _tune(path: Path, workdir: Path, resume: bool) -> subprocess.Popen:
    command = cli("tune", str(path), "--workdir", str(workdir), "--quiet")
    if resume:
        command.append("--resume")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)])}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


@pytest.mark.slow
def test_twenty_kill_9s_then_resume_lose_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("HWTUNE_CHAOS_SEED", "9")))
    spec = fault_spec(max_trials=MAX_TRIALS, parallel=2, max_epochs=3,
                      env={"FAULT_SLEEP": "0.35", "FAULT_EVAL_SLEEP": "0.05"})
    path = write_study(tmp_path / "s.yaml", spec, name="chaos")
    workdir = tmp_path / "w"
    started = time.monotonic()
    kills = 0
    while kills < KILLS:
        tuner = _tune(path, workdir, resume=(workdir / "study.json").exists())
        if kills % 5 == 4:
            delay = rng.uniform(0.05, 1.0)  # while it starts, rebuilds, waits for orphans
        else:
            # Counted from when it holds the work directory, so that a loaded machine's slow
            # start does not eat every cycle and the study makes progress between kills.
            wait_for(lambda: read_holder(workdir / ".hwtune.lock").get("pid") == tuner.pid
                     or tuner.poll() is not None, timeout=60, what="the tuner to start")
            delay = rng.uniform(0.15, 1.2)
        try:
            tuner.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(tuner.pid, signal.SIGKILL)  # the tuner only: its trainers are orphaned
            tuner.communicate()
            kills += 1
            continue
        out, err = tuner.communicate()
        assert tuner.returncode == 0, out + err
        assert "Traceback" not in err
        break  # the study ended between two kills
    final = _tune(path, workdir, resume=True)
    out, err = final.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert final.returncode == 0, out + err
    assert "Traceback" not in err
    print(f"chaos: {kills} kill -9s, study done in {elapsed:.1f} s")

    events = events_of(workdir)
    assert [e["seq"] for e in events] == list(range(len(events)))
    created = [e["trialId"] for e in events if e["kind"] == "created"]
    assert created == list(range(MAX_TRIALS)), created  # none lost, none twice, budget held
    study = LocalStudyRun("chaos", spec, workdir=workdir, resume=True)
    try:
        assert study.study.replay_mismatches == []
        for trial in study.study.trials:
            levels = [o.resource for o in trial.observations]
            assert levels == [1, 2, 3], (trial.trial_id, levels, trial.reason)
            assert trial.phase.is_finished()
        assert study.study.spend.trials_started == MAX_TRIALS
    finally:
        study.close()
    assert not [e for e in events if e["kind"] == "failed"]
    # No orphan: every trial lock is free, no process of any trial's last group lives.
    for group in trial_groups(workdir).values():
        assert not group_alive(group)
    for lock in workdir.glob("trials/*/.lock"):
        try:
            os.close(try_lock(lock, {"pid": os.getpid()}))
        except LockHeld as exc:
            pytest.fail(f"{lock} still held by {exc.holder}")
    if kills < KILLS:
        pytest.fail(f"the study ended after {kills} kills; make it longer")
    assert json.loads((workdir / "study.json").read_text())["name"] == "chaos"

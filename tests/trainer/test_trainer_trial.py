"""The Trial object a training script uses: params, reports, levels, checkpoints, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hwtune.api.records import Decision
from hwtune.report.protocol import ReportReply
from hwtune.trainer import EXIT_PREEMPTED, Trial, TrialEnv
from hwtune.trainer.checkpoint import CheckpointStore


class ScriptedClient:
    def __init__(self, decisions):
        self.decisions = list(decisions)
        self.sent = []

    def report(self, resource, metrics):
        self.sent.append((resource, dict(metrics)))
        return ReportReply(self.decisions.pop(0), "scripted")

    def close(self):
        pass


def make_trial(tmp_path=None, decisions=(), **env):
    env.setdefault("max_resource", 5)
    if tmp_path is not None:
        env.setdefault("checkpoint_uri", str(tmp_path / "ckpt"))
    client = ScriptedClient(decisions)
    return Trial(TrialEnv(**env), client=client, handle_sigterm=False), client


def test_params_with_defaults_and_a_clear_error():
    trial, _ = make_trial(params={"lr": 0.1})
    assert trial.param("lr") == 0.1
    assert trial.param("momentum", 0.9) == 0.9
    with pytest.raises(KeyError, match="'momentum' is not set for this trial \\(set: lr\\)"):
        trial.param("momentum")


def test_levels_run_to_the_maximum_and_stop_at_a_halting_decision():
    trial, client = make_trial(decisions=[Decision.CONTINUE, Decision.CONTINUE, Decision.PAUSE])
    seen = []
    for level in trial.resource_levels():
        seen.append(level)
        trial.report(level, val_error=1.0 / level)
    assert seen == [1, 2, 3]
    assert trial.last_decision is Decision.PAUSE
    assert [r for r, _ in client.sent] == [1, 2, 3]


def test_levels_continue_after_the_checkpoint():
    trial, _ = make_trial(decisions=[Decision.CONTINUE] * 5)
    assert list(trial.resource_levels(start=4)) == [4, 5]


def test_levels_without_a_maximum_need_one():
    trial, _ = make_trial(max_resource=None)
    with pytest.raises(ValueError, match="HWTUNE_MAX_RESOURCE"):
        list(trial.resource_levels())
    assert list(trial.resource_levels(max_resource=2)) == [1, 2]


def test_bad_reports_fail_in_the_trainer():
    trial, client = make_trial(decisions=[Decision.CONTINUE] * 3)
    with pytest.raises(ValueError, match="metrics.val_error"):
        trial.report(1, val_error=float("nan"))
    with pytest.raises(ValueError, match="metrics: must hold at least one metric"):
        trial.report(1)
    with pytest.raises(ValueError, match="metrics.runtime"):
        trial.report(1, runtime=3.0)
    trial.report(2, val_error=0.5)
    with pytest.raises(ValueError, match="went backwards"):
        trial.report(1, val_error=0.5)
    assert [r for r, _ in client.sent] == [2]


def test_levels_the_study_already_holds_are_not_sent_again():
    trial, client = make_trial(decisions=[Decision.CONTINUE], reported_resource=3, resume=True)
    assert trial.report(2, val_error=0.3) is Decision.CONTINUE
    assert trial.report(3, val_error=0.3) is Decision.CONTINUE
    assert trial.report(4, val_error=0.2) is Decision.CONTINUE
    assert [r for r, _ in client.sent] == [4]


def test_offline_report_continues():
    trial = Trial(TrialEnv(max_resource=2), handle_sigterm=False)
    assert trial.report(1, val_error=0.5) is Decision.CONTINUE
    assert trial.last_reason == "offline"


def test_checkpoint_round_trip_and_none_without_location(tmp_path):
    trial, _ = make_trial(tmp_path)
    assert trial.load_checkpoint() is None
    trial.save_checkpoint({"w": 1}, 2)
    again, _ = make_trial(tmp_path, resume=True)
    checkpoint = again.load_checkpoint()
    assert (checkpoint.resource, checkpoint.state) == (2, {"w": 1})
    no_store, _ = make_trial()
    no_store.save_checkpoint({"w": 1}, 1)  # a script run by hand: nothing to do
    assert no_store.load_checkpoint() is None


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from hwtune.trainer import Trial, TrialEnv
    trial = Trial(TrialEnv(max_resource=100, checkpoint_uri=sys.argv[1]))
    weights = {"w": 0}
    if sys.argv[2] == "callback":
        trial.on_preempt(lambda: {"w": weights["w"], "from": "callback"})
    for level in trial.resource_levels():
        if sys.argv[2] == "save" or level == 1:
            trial.save_checkpoint({"w": level, "from": "save"}, level)
        trial.report(level, val_error=1.0 / level)
        weights["w"] = level
        print("done", level, flush=True)
        time.sleep(0.05)
    """)


@pytest.mark.parametrize("mode", ["save", "callback"])
def test_sigterm_checkpoints_and_exits_75(tmp_path, mode):
    location = str(tmp_path / "ckpt")
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, location, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    levels = 0
    deadline = time.monotonic() + 60
    while levels < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("done"):
            levels = int(line.split()[1])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "preempted (SIGTERM)" in err
    checkpoint = CheckpointStore(location).load()
    assert checkpoint.resource >= 3
    assert checkpoint.state["from"] == mode
    # The callback's state belongs to the last completed level (the signal may land between
    # the report and the script's own bookkeeping, hence the one-level slack).
    assert checkpoint.resource - 1 <= checkpoint.state["w"] <= checkpoint.resource
    assert not [n for n in os.listdir(location) if n.endswith(".tmp")]


def test_sdk_import_is_standard_library_only():
    code = ("import sys, hwtune.trainer\n"
            "heavy = ('aiohttp', 'torch', 'numpy', 'pydantic', 'fsspec', 'yaml', 'kubernetes')\n"
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


# -- the report of a checkpointed level survives the process (issue 9) -----------------------------

class UnreachableClient(ScriptedClient):
    def report(self, resource, metrics):
        from hwtune.trainer.client import ReportError

        raise ReportError("report endpoint unreachable after 3 attempts")


def test_an_unacknowledged_report_is_kept_and_sent_first_on_resume(tmp_path):
    location = str(tmp_path / "ckpt")
    first = Trial(TrialEnv(max_resource=5, checkpoint_uri=location),
                  client=UnreachableClient([]), handle_sigterm=False)
    first.save_checkpoint({"w": 2}, 2)
    with pytest.raises(Exception, match="unreachable"):
        first.report(2, val_error=0.25)
    assert CheckpointStore(location).pending_report() == (2, {"val_error": 0.25})

    again, client = make_trial(tmp_path, decisions=[Decision.CONTINUE, Decision.CONTINUE],
                               resume=True, reported_resource=1)
    checkpoint = again.load_checkpoint()
    assert checkpoint.resource == 2
    assert client.sent == [(2, {"val_error": 0.25})]  # before the script trains level 3
    assert CheckpointStore(location).pending_report() is None
    again.save_checkpoint({"w": 3}, 3)
    again.report(3, val_error=0.2)
    assert [r for r, _ in client.sent] == [2, 3]
    assert CheckpointStore(location).pending_report() is None  # acknowledged


def test_a_pending_report_the_study_already_holds_is_dropped(tmp_path):
    CheckpointStore(str(tmp_path / "ckpt")).save_pending_report(2, {"val_error": 0.25})
    trial, client = make_trial(tmp_path, decisions=[Decision.CONTINUE], resume=True,
                               reported_resource=2)
    trial.load_checkpoint()
    assert client.sent == []
    assert CheckpointStore(str(tmp_path / "ckpt")).pending_report() is None


def test_a_pending_report_that_halts_the_trial_ends_its_levels(tmp_path):
    CheckpointStore(str(tmp_path / "ckpt")).save_pending_report(2, {"val_error": 0.25})
    trial, client = make_trial(tmp_path, decisions=[Decision.PAUSE], resume=True,
                               reported_resource=1)
    assert list(trial.resource_levels(3)) == []
    assert client.sent == [(2, {"val_error": 0.25})]


SAVE_THEN_EVALUATE = textwrap.dedent("""
    import sys, time
    from hwtune.trainer import Trial, TrialEnv
    from hwtune.trainer.client import ReportError

    class Silent:  # the tuner is gone: nothing ever answers
        def report(self, resource, metrics):
            time.sleep(30)
        def close(self):
            pass

    trial = Trial(TrialEnv(max_resource=5, checkpoint_uri=sys.argv[1]), client=Silent())
    trial.save_checkpoint({"w": 1}, 1)
    print("saved", flush=True)
    time.sleep(0.5)  # evaluating level 1
    trial.report(1, val_error=0.5)
    print("not reached", flush=True)
    """)


def test_sigterm_between_checkpoint_and_report_waits_for_the_report_to_be_kept(tmp_path):
    location = str(tmp_path / "ckpt")
    proc = subprocess.Popen([sys.executable, "-c", SAVE_THEN_EVALUATE, location],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saved"
    proc.send_signal(signal.SIGTERM)  # while it evaluates
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "not reached" not in out
    assert CheckpointStore(location).pending_report() == (1, {"val_error": 0.5})

"""The local backend with the torch-free toy trainer: the shared backend contract, crashes,
trainers that ignore their decision, launch failures, templates, the work directory."""

from __future__ import annotations

import json
import sys

import pytest

from hwtune.api.records import TrialPhase
from hwtune.backends.local import (
    EventLog,
    LocalBackend,
    LocalStudyRun,
    ProcessTemplate,
    WorkdirError,
    expand_k8s_vars,
)
from hwtune.engine import EventKind, StudyConfig
from hwtune.space.errors import SpecError
from tests.backends.local_support import TOY_TRAINER, container, toy_spec
from tests.contracts.backend_contract import BackendContract


class TestLocalBackendContract(BackendContract):
    wait_limit_seconds = 90.0

    def make_backend(self, config: StudyConfig, tmp_path):
        # Slow enough that a test can stop or pause a trial between two levels.
        template = ProcessTemplate.from_trial_template(container(TOY_TRAINER,
                                                                 env={"TOY_SLEEP": "0.3"}))
        return LocalBackend(template, workdir=tmp_path, hardware_model=config.hardware_model,
                            max_resource=config.max_resource, stop_grace_seconds=10)


def run_toy(tmp_path, **kwargs):
    options = kwargs.pop("backend_options", None)
    spec = toy_spec(**kwargs)
    run = LocalStudyRun("toy", spec, workdir=tmp_path / "work", backend_options=options)
    return run, run.run()


def test_crashing_trial_fails_with_its_log_tail_and_the_study_goes_on(tmp_path):
    run, result = run_toy(tmp_path, max_trials=3, env={"TOY_CRASH_TRIAL": "0"})
    crashed, *others = result.trials
    assert crashed.phase is TrialPhase.FAILED
    assert crashed.reason.startswith("exit code 1; last log lines:")
    assert "RuntimeError: boom in trial 0 at epoch 1" in crashed.reason
    assert "about to fail" in crashed.reason
    assert [t.phase for t in others] == [TrialPhase.COMPLETED, TrialPhase.COMPLETED]
    assert result.stop_reason.startswith("budget: 3 trials started")
    failed = [e for e in run.study.events if e.kind is EventKind.FAILED]
    assert [e.trial_id for e in failed] == [0]


def test_trainer_ignoring_its_decision_is_terminated_after_the_grace(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import time, hwtune.trainer as hwt\n"
        "t = hwt.init()\n"
        "t.report(2, val_error=0.5)\n"  # the study's maximum: the trial completes, STOP
        "print('ignoring the decision', flush=True)\n"
        "time.sleep(60)\n")
    spec = toy_spec(max_trials=1, max_epochs=2)
    spec["trialTemplate"] = container(script)
    run = LocalStudyRun("stubborn", spec, workdir=tmp_path / "w",
                        backend_options={"halt_grace_seconds": 0.5})
    result = run.run()
    assert result.trials[0].phase is TrialPhase.COMPLETED
    # The tuner returns once no trial is active; closing the backend ends the straggler.
    assert run.backend.running_processes() == {}
    log = run.backend.log_path(0).read_text()
    assert "ignoring the decision" in log and "did not exit after its decision" in log


def test_missing_command_fails_the_trial_at_launch(tmp_path):
    spec = toy_spec(max_trials=2, parallel=1)
    spec["trialTemplate"]["spec"]["containers"][0]["command"] = ["/nonexistent/trainer"]
    run = LocalStudyRun("missing", spec, workdir=tmp_path / "w")
    result = run.run()
    assert [t.phase for t in result.trials] == [TrialPhase.FAILED, TrialPhase.FAILED]
    assert result.trials[0].reason.startswith("launch failed: cannot run '/nonexistent/trainer'")


def test_parameters_reach_args_through_kubernetes_style_expansion(tmp_path):
    script = tmp_path / "echo_args.py"
    script.write_text("import sys, hwtune.trainer as hwt\n"
                      "t = hwt.init()\nprint('ARGS', sys.argv[1:], flush=True)\n"
                      "t.report(1, val_error=0.1)\n")
    spec = toy_spec(max_trials=1, max_epochs=2)
    spec["trialTemplate"] = container(script, env={"MODE": "fast"},
                                      args=["--x=$(HWTUNE_PARAM_X)", "--mode=$(MODE)",
                                            "--literal=$$(MODE)", "--unknown=$(NOPE)"])
    run = LocalStudyRun("args", spec, workdir=tmp_path / "w")
    result = run.run()
    x = result.trials[0].config["x"]
    log = run.backend.log_path(0).read_text()
    assert f"'--x={x}'" in log
    assert "'--mode=fast'" in log and "'--literal=$(MODE)'" in log and "'--unknown=$(NOPE)'" in log


def test_expand_k8s_vars():
    env = {"A": "1", "B_C": "two"}
    assert expand_k8s_vars("$(A)-$(B_C)", env) == "1-two"
    assert expand_k8s_vars("$$(A) $(MISSING) $A", env) == "$(A) $(MISSING) $A"


@pytest.mark.parametrize(
    "template, field",
    [
        (None, "spec.trialTemplate"),
        ({"spec": {"containers": []}}, "spec.trialTemplate.spec.containers"),
        ({"spec": {"containers": [{"name": "t", "image": "i"}]}},
         "spec.trialTemplate.spec.containers[0].command"),
        ({"spec": {"containers": [{"name": "t", "image": "i", "command": "python x.py"}]}},
         "spec.trialTemplate.spec.containers[0].command"),
        ({"spec": {"containers": [{"name": "t", "image": "i", "args": ["--lr=1"]}]}},
         "spec.trialTemplate.spec.containers[0].command"),
        ({"spec": {"containers": [{"name": "t", "image": "i", "command": ["x"],
                                   "env": [{"name": "K", "valueFrom": {"secretKeyRef": {}}}]}]}},
         "spec.trialTemplate.spec.containers[0].env[0].valueFrom"),
    ],
)
def test_template_errors_name_the_field(template, field):
    with pytest.raises(SpecError) as info:
        ProcessTemplate.from_trial_template(template)
    assert info.value.path == field


def test_template_uses_this_interpreter_and_resolves_working_dir(tmp_path):
    template = ProcessTemplate.from_trial_template(
        {"spec": {"containers": [{"name": "t", "image": "i", "command": ["python3", "t.py"],
                                  "workingDir": "sub"}]}}, base_dir=str(tmp_path))
    assert template.argv == (sys.executable, "t.py")
    assert template.working_dir == str(tmp_path / "sub")
    argv, env = template.build({"PATH": "/bin", "HWTUNE_X": "kept"}, {"HWTUNE_TRIAL_ID": "3"})
    assert env["PATH"] == "/bin" and env["HWTUNE_TRIAL_ID"] == "3"


def test_workdir_refuses_a_second_study_and_a_changed_spec(tmp_path):
    spec = toy_spec(max_trials=1, max_epochs=2)
    LocalStudyRun("toy", spec, workdir=tmp_path / "w").run()
    with pytest.raises(WorkdirError, match="already holds a study"):
        LocalStudyRun("toy", spec, workdir=tmp_path / "w")
    changed = toy_spec(max_trials=2, max_epochs=2)
    with pytest.raises(WorkdirError, match="budget differs"):
        LocalStudyRun("toy", changed, workdir=tmp_path / "w", resume=True)
    with pytest.raises(WorkdirError, match="no study to resume"):
        LocalStudyRun("toy", spec, workdir=tmp_path / "elsewhere", resume=True)


def test_resume_of_a_finished_study_changes_nothing(tmp_path):
    spec = toy_spec(max_trials=2, max_epochs=2)
    first = LocalStudyRun("toy", spec, workdir=tmp_path / "w").run()
    again = LocalStudyRun("toy", spec, workdir=tmp_path / "w", resume=True)
    result = again.run()
    assert [(t.trial_id, t.phase, t.last_resource) for t in result.trials] == \
        [(t.trial_id, t.phase, t.last_resource) for t in first.trials]
    assert again.resumed_trials == [] and again.study.replay_mismatches == []


def test_event_log_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"seq": 0}) + "\n" + '{"seq": 1, "ki')
    assert EventLog(path).read() == [{"seq": 0}]
    path.write_text('{"seq": 0, "ki\n' + json.dumps({"seq": 1}) + "\n")
    with pytest.raises(WorkdirError, match=":1: not a JSON event line"):
        EventLog(path).read()

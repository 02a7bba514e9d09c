"""The hwtune command: validate (exit 2 with file, field path and reason), tune on the local
backend with the toy trainer (front table, plot), Ctrl-C then --resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hwtune.cli.main import app
from tests.backends.local_support import REPO, toy_spec

runner = CliRunner()


def write_study(path: Path, spec: dict, name: str = "toy", extra_docs: tuple = ()) -> Path:
    docs = [{"apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
             "metadata": {"name": name}, "spec": spec}, *extra_docs]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.startswith("hwtune ")


def test_validate_accepts_the_examples():
    for example in ("examples/local-study.yaml", "examples/study.yaml"):
        result = runner.invoke(app, ["validate", str(REPO / example)])
        assert result.exit_code == 0, result.output
        assert "ok: TuningStudy" in result.output


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s["budget"].update(maxTrials=0), "spec.budget.maxTrials"),
        (lambda s: s["objectives"][0].update(goal="minimise"), "spec.objectives[0].goal"),
        (lambda s: s.update(colour="blue"), "spec.colour"),
        (lambda s: s.update(hardware={"pools": ["tpu9"]}), "spec.hardware.pools[0]"),
        (lambda s: s.update(fidelity={"resource": "epoch", "min": 3, "max": 2}), "spec.fidelity"),
        (lambda s: s.pop("trialTemplate"), "spec.trialTemplate"),
        # the parameter's name is in brackets and must survive the terminal's markup
        (lambda s: s["parameters"].update(lr={"type": "float", "min": 1.0, "max": 0.1}),
         "spec.parameters[lr].min: min must be less than max"),
    ],
)
def test_validate_refuses_bad_studies_with_the_field(tmp_path, mutate, expected):
    spec = toy_spec()
    mutate(spec)
    path = write_study(tmp_path / "bad.yaml", spec)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: {expected}" in result.output


def test_validate_reports_yaml_syntax_and_missing_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec:\n  objectives: [\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2 and "not valid YAML" in result.output and "line " in result.output
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_validate_refuses_a_bad_pool_document(tmp_path):
    pool = {"apiVersion": "hwtune.io/v1alpha1", "kind": "HardwarePool",
            "metadata": {"name": "mine"},
            "spec": {"gpuType": "x", "gpuMemoryGiB": 8, "gpusPerNode": 1}}
    path = write_study(tmp_path / "s.yaml", toy_spec(), extra_docs=(pool,))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "document 2: spec" in result.output and "pricePerGPUHour" in result.output


def test_tune_runs_the_study_prints_the_front_and_writes_the_plot(tmp_path):
    spec = toy_spec(max_trials=3, max_epochs=2)
    spec["hardware"] = {"pools": ["t4", "l4"], "gpuCounts": [1]}
    pool = {"apiVersion": "hwtune.io/v1alpha1", "kind": "HardwarePool",
            "metadata": {"name": "l4"},
            "spec": {"gpuType": "nvidia-l4", "gpuMemoryGiB": 24, "gpusPerNode": 4,
                     "pricePerNodeHour": 4.6, "relativeThroughput": 1.5}}
    path = write_study(tmp_path / "s.yaml", spec, extra_docs=(pool,))
    workdir, plot = tmp_path / "w", tmp_path / "front.png"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "--plot",
                                 str(plot), "--max-parallel", "1"])
    assert result.exit_code == 0, result.output
    assert "budget: 3 trials started, reached maxTrials 3" in result.output
    assert "simulated pools: runtime scaled from the local CPU (t4, l4)" in result.output
    assert "Pareto front" in result.output and "val_error" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = [json.loads(line) for line in (workdir / "events.jsonl").open()]
    assert len([e for e in events if e["kind"] == "created"]) == 3
    # A second run in the same workdir must be asked for explicitly.
    again = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir)])
    assert again.exit_code == 2 and "--resume" in again.output


def test_ctrl_c_then_resume_loses_no_trials(tmp_path):
    spec = toy_spec(max_trials=4, parallel=2, max_epochs=3, env={"TOY_SLEEP": "0.4"})
    path = write_study(tmp_path / "s.yaml", spec)
    workdir = tmp_path / "w"
    command = [sys.executable, "-m", "hwtune.cli.main", "tune", str(path), "--workdir",
               str(workdir), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = workdir / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if events.exists() and events.read_text().count('"observed"') >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "--resume" in err
    first = [json.loads(line) for line in events.open()]
    created = {e["trialId"]: e["config"] for e in first if e["kind"] == "created"}

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming toy" in resumed.stdout
    final = [json.loads(line) for line in events.open()]
    configs = {e["trialId"]: e["config"] for e in final if e["kind"] == "created"}
    assert len(configs) == 4 and all(configs[t] == c for t, c in created.items())
    finished = {e["trialId"] for e in final if e["kind"] in ("completed", "failed", "stopped")}
    finished |= {e["trialId"] for e in final if e["kind"] == "observed" and e["decision"] != "continue"}
    assert finished == set(configs)
    assert not [e for e in final if e["kind"] == "failed"]


def test_progress_view_and_front_table_render(tmp_path):
    from io import StringIO

    from rich.console import Console

    from hwtune.backends.local import LocalStudyRun
    from hwtune.cli.view import front_configs, front_table, progress_view

    spec = toy_spec(max_trials=2, max_epochs=2)
    spec["hardware"] = {"pools": ["t4", "a100"], "gpuCounts": [1, 2]}
    run = LocalStudyRun("toy", spec, workdir=tmp_path / "w")
    result = run.run()
    out = StringIO()
    console = Console(file=out, width=120, color_system=None)
    console.print(progress_view(run.study, name="toy", workdir="w", started=time.monotonic(),
                                pools=run.simulated_pools))
    console.print(front_table(run.study, result.front))
    console.print(front_configs(run.study, result.front))
    text = out.getvalue()
    assert "2/2 trials finished (2 started)" in text
    assert "Completed 2" in text and "2 reports" not in text  # 4 reports: 2 levels x 2 trials
    assert "4 reports" in text
    assert "simulated pools: runtime scaled from the local CPU (t4, a100)" in text
    assert "best: val_error" in text
    assert f"Pareto front ({len(result.front)} of 2 trials)" in text
    for point in result.front:
        assert f"#{point.trial_id} x=" in text


def test_a_searcher_nothing_runs_is_refused_before_anything_is_written(tmp_path):
    spec = toy_spec()
    spec["algorithm"]["searcher"] = "fms"  # reserved for the surrogate; no factory yet
    path = write_study(tmp_path / "s.yaml", spec)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "spec.algorithm.searcher: Input should be 'random', 'grid', 'tpe' or 'transfer'" in result.output
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir)])
    assert result.exit_code == 2 and not workdir.exists()


def test_a_scheduler_that_fails_to_build_writes_nothing(tmp_path, monkeypatch):
    # A listed name whose provider cannot be imported (e.g. a missing optional dependency):
    # refused by validate, and tune leaves no study.json that would block a rerun.
    from hwtune.api import algorithms
    from hwtune.optimize import schedulers

    ghost = algorithms.Algorithm("fifo", "hwtune.no_such_module", "test only")
    monkeypatch.setattr(algorithms, "SCHEDULERS", (ghost,) + tuple(
        a for a in algorithms.SCHEDULERS if a.name != "fifo"))
    registry = dict(schedulers._REGISTRY)
    registry.pop("fifo")
    monkeypatch.setattr(schedulers, "_REGISTRY", registry)
    path = write_study(tmp_path / "s.yaml", toy_spec())
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "spec.algorithm: scheduler 'fifo' needs hwtune.no_such_module" in result.output
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir)])
    assert result.exit_code == 2 and not (workdir / "study.json").exists()


def test_a_command_is_a_check_of_tune_not_of_the_schema(tmp_path):
    spec = toy_spec()
    del spec["trialTemplate"]["spec"]["containers"][0]["command"]
    path = write_study(tmp_path / "s.yaml", spec)
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0  # fine for a cluster
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert "spec.trialTemplate.spec.containers[0].command: is required to run the trainer " \
           "locally" in result.output
    assert "hwtune tune starts each trial as a local process" in result.output
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        # YAML 1.2 numbers, as kubectl reads them
        (None, None),
        ("spec:\n  objectives: [{metric: a}]\n  objectives: [{metric: b}]\n",
         "spec.objectives: duplicate key 'objectives'"),
        ("x: &a [1, 2]\n" + "".join(f"x{i}: &x{i} [" + ", ".join([f"*{'a' if i == 0 else f'x{i-1}'}"] * 9)
                                    + "]\n" for i in range(8)),
         "aliases expand the document past"),
        ("spec: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than 100 levels deep"),
    ],
)
def test_yaml_is_read_as_the_api_server_reads_it(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    if text is None:  # min: 1e-4 is a number (YAML 1.2), not the string PyYAML 1.1 makes of it
        spec = toy_spec()
        write_study(path, spec)
        path.write_text(path.read_text().replace("min: 0.0", "min: 1e-4"))
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 0, result.output
        return
    path.write_text(text)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}: " in result.output and expected in result.output, result.output


def test_a_file_over_the_request_limit_is_refused(tmp_path):
    path = write_study(tmp_path / "s.yaml", toy_spec())
    with path.open("a") as fh:
        fh.write("# " + "x" * (3 * 1024 * 1024) + "\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "3 MiB" in result.output


def test_resume_after_a_day_does_not_charge_the_day(tmp_path, monkeypatch):
    # Ctrl-C a real run with trials mid-epoch, then resume "a day later" (the wall clock of the
    # resumed process is a day ahead): the trials paused by the shutdown are charged what they
    # ran, not the day.
    spec = toy_spec(max_trials=2, parallel=2, max_epochs=3, env={"TOY_SLEEP": "0.4"})
    spec["hardware"] = {"pools": ["a100"], "gpuCounts": [8]}  # $32.8/h: a day would be ~$787
    path = write_study(tmp_path / "s.yaml", spec)
    workdir = tmp_path / "w"
    command = [sys.executable, "-m", "hwtune.cli.main", "tune", str(path), "--workdir",
               str(workdir), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = workdir / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if events.exists() and events.read_text().count('"observed"') >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err

    import hwtune.backends.local.runner as local_runner
    from hwtune.api.clock import WallClock

    class DayLater(WallClock):
        def now(self) -> float:
            return super().now() + 86400.0

    monkeypatch.setattr(local_runner, "WallClock", DayLater)
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "--quiet",
                                 "--resume"])
    assert result.exit_code == 0, result.output
    final = [json.loads(line) for line in events.open()]
    paused = [e for e in final if e["kind"] == "paused" and "interrupted" in (e.get("reason") or "")]
    assert paused, "no trial was running at the interruption"
    for event in paused:
        assert event["runtimeSeconds"] < 60, event  # seconds of training, not a day
    spent = re.search(r"spent \$([0-9.e+-]+)", result.output)
    assert spent and float(spent.group(1)) < 5.0, result.output

"""An unmodified script that prints ``loss=...`` lines, tuned by ``hwtune tune`` with ASHA: the
collector turns its output into reports, ASHA stops trials early (the process is terminated),
and a script that prints nothing usable fails the study with advice instead of "0 reports"."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from hwtune.cli.main import EXIT_STUDY_FAILED, app

runner = CliRunner()
SCRIPT = Path(__file__).with_name("plain_train.py")


def study(tmp_path: Path, collector: dict, *, extra_args: tuple[str, ...] = (),
          max_trials: int = 8, scheduler: str = "asha") -> Path:
    spec = {
        "objectives": [{"metric": "loss", "goal": "minimize"}],
        "parameters": {"learning-rate": {"type": "float", "min": 1e-4, "max": 1.0,
                                         "scale": "log"}},
        "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
        "algorithm": {"scheduler": scheduler, "searcher": "random", "seed": 1},
        "budget": {"maxTrials": max_trials, "maxParallelTrials": 2},
        "metricsCollector": collector,
        "trialTemplate": {"spec": {"containers": [{
            "name": "train", "image": "python:3.12",
            "command": [sys.executable, str(SCRIPT)],
            "args": ["--learning-rate=$(HWTUNE_PARAM_LEARNING_RATE)", *extra_args]}]}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
                                    "metadata": {"name": "plain"}, "spec": spec}))
    return path


def events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "events.jsonl").open()]


def test_asha_tunes_a_script_printing_name_value_lines(tmp_path):
    path = study(tmp_path, {"kind": "stdout", "resourceMetric": "epoch"})
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "-q"])
    assert result.exit_code == 0, result.output
    log = events(workdir)
    observed = [e for e in log if e["kind"] == "observed"]
    assert observed and all(set(e["metrics"]) >= {"loss"} for e in observed)
    # Levels come from the printed epoch, in order per trial.
    per_trial: dict[int, list[int]] = {}
    for e in observed:
        per_trial.setdefault(e["trialId"], []).append(e["resource"])
    assert all(levels == sorted(levels) for levels in per_trial.values())
    stopped = {e["trialId"] for e in observed if e["decision"] == "stop"
               and e["resource"] < 9}
    completed = {e["trialId"] for e in observed if e["resource"] == 9}
    assert stopped, "ASHA stopped no trial early"
    assert completed, "no trial reached the maximum"
    # A stopped trial's process was terminated: it never printed its last epochs.
    for tid in stopped:
        text = (workdir / "trials" / str(tid) / "trial.log").read_text()
        assert "terminating (metrics from output" in text
        assert "training finished" not in text
    assert "8 trials" in result.output and not re.search(r"\b0 reports", result.output)


def test_json_lines_counted_levels(tmp_path):
    path = study(tmp_path, {"kind": "json"}, extra_args=("--json",), max_trials=2,
                 scheduler="fifo")
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "-q"])
    assert result.exit_code == 0, result.output
    observed = [e for e in events(workdir) if e["kind"] == "observed"]
    assert sorted(e["resource"] for e in observed) == sorted(list(range(1, 10)) * 2)


def test_a_script_that_reports_nothing_fails_the_study_with_advice(tmp_path):
    path = study(tmp_path, {"kind": "stdout"}, extra_args=("--silent", "--sleep=0"))
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "-q"])
    assert result.exit_code == EXIT_STUDY_FAILED, result.output
    # Parallel trials may finish together, so 3 or 4 of them.
    assert re.search(r"the first [34] trials ended without reporting their objectives",
                     result.output.replace("\n", " "))
    assert "loss=0.3" in result.output  # says what to print
    failed = [e for e in events(workdir) if e["kind"] == "failed"]
    # It stops at the limit instead of running all 8 trials.
    assert 3 <= len(failed) < 8
    assert all(e["reason"].startswith("ended without reporting its objectives") for e in failed)


def test_a_job_template_with_a_named_primary_container_runs_locally(tmp_path):
    """trialTemplate.job (Job fields + pod template) and primaryContainerName: the local
    backend runs the named container, not the first (a sidecar here)."""
    from hwtune.api.crd import parse_study_spec

    path = study(tmp_path, {"kind": "stdout", "resourceMetric": "epoch"}, max_trials=2,
                 scheduler="fifo")
    doc = yaml.safe_load(path.read_text())
    pod = doc["spec"].pop("trialTemplate")["spec"]
    sidecar = {"name": "sidecar", "image": "busybox", "command": ["false"]}
    doc["spec"]["trialTemplate"] = {
        "primaryContainerName": "train",
        "job": {"backoffLimit": 0, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60,
                "template": {"metadata": {"labels": {"team": "ml"}},
                             "spec": {"containers": [sidecar, *pod["containers"]]}}}}
    path.write_text(yaml.safe_dump(doc))
    template = parse_study_spec(doc["spec"]).trial_template
    assert template.primary_container().name == "train" and template.primary_index() == 1
    assert template.job_fields() == {"backoffLimit": 0, "activeDeadlineSeconds": 600,
                                     "ttlSecondsAfterFinished": 60}
    assert template.pod_metadata() == {"labels": {"team": "ml"}}
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "-q"])
    assert result.exit_code == 0, result.output
    assert len([e for e in events(workdir) if e["kind"] == "observed"]) == 18


def test_without_fidelity_a_trial_is_one_report_of_its_whole_run(tmp_path):
    """No fidelity: the trial runs to its end and its output is one report, each objective by
    its strategy (Katib's default reading of a trial)."""
    path = study(tmp_path, {"kind": "stdout"}, max_trials=2, scheduler="fifo")
    doc = yaml.safe_load(path.read_text())
    del doc["spec"]["fidelity"]
    doc["spec"]["objectives"][0]["strategy"] = "min"
    path.write_text(yaml.safe_dump(doc))
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "-q"])
    assert result.exit_code == 0, result.output
    observed = [e for e in events(workdir) if e["kind"] == "observed"]
    assert len(observed) == 2 and all(e["resource"] == 1 for e in observed)
    for e in observed:
        text = (workdir / "trials" / str(e["trialId"]) / "trial.log").read_text()
        assert "training finished" in text  # ran to its end
        losses = [float(m) for m in re.findall(r"loss=([\d.]+)", text)]
        assert len(losses) == 9 and e["metrics"]["loss"] == min(losses)


def test_additional_metrics_are_recorded_in_the_curve(tmp_path):
    """Katib's additionalMetricNames: read with the objectives, stored with each report,
    never waited for nor optimised."""
    path = study(tmp_path, {"kind": "stdout", "resourceMetric": "epoch",
                            "additionalMetrics": ["accuracy"]}, max_trials=3, scheduler="fifo")
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["tune", str(path), "--workdir", str(workdir), "-q"])
    assert result.exit_code == 0, result.output
    observed = [e for e in events(workdir) if e["kind"] == "observed"]
    assert len(observed) == 3 * 9
    for e in observed:
        assert e["metrics"]["accuracy"] == round(1.0 / (1.0 + e["metrics"]["loss"]), 6) or \
            abs(e["metrics"]["accuracy"] - 1.0 / (1.0 + e["metrics"]["loss"])) < 1e-5

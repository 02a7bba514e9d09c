"""Metrics from an unmodified script on the local control plane: the simulated trainer's exec mode
runs each trial pod's real command, KWOK serves its output as the container log, and the operator
follows that log through the API server (``hwtune.backends.kubernetes.podlog``).

- ``kubectl logs -f`` of an exec-mode pod shows what its command prints, while it prints;
- an ASHA study over a script that prints ``epoch=N loss=X`` (no hwtune import) completes, some
  trials are stopped early (their Jobs deleted, their processes killed), every learning curve
  is exactly what the script printed, and the best trial is the best of the curves;
- a script that prints nothing makes its trials fail as "ended without reporting its
  objectives", and the study stops (Failed) with the advice after its first trials.
"""

from __future__ import annotations

import math
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hwtune.controller.operator import EmbeddedOperator
from hwtune.engine.study import NO_REPORT_REASON
from hwtune.testing.cluster import LocalCluster
from hwtune.testing.simtrainer import SimTrainer
from tests.cluster.test_operator_studies import (
    delete_configurations,
    delete_studies,
    operator_settings,
)

ROOT = Path(__file__).resolve().parents[2]

# Katib's examples print like this; the script knows nothing of hwtune.
SCRIPT = textwrap.dedent("""\
    import argparse, math, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=9)
    args = parser.parse_args()
    print(f"training with lr={args.lr}", file=sys.stderr)
    for epoch in range(1, args.epochs + 1):
        time.sleep(0.25)
        loss = (math.log10(args.lr) + 2.5) ** 2 + 1.0 / epoch
        print(f"epoch={epoch} loss={loss:.6f} acc={1 / (1 + loss):.6f}")
    """)
SILENT = "import time\ntime.sleep(0.2)\nprint('done, but no metrics')\n"


def expected_loss(lr: float, epoch: int) -> float:
    return round((math.log10(lr) + 2.5) ** 2 + 1.0 / epoch, 6)


@pytest.fixture
def operator(kube: LocalCluster, namespace: str) -> Iterator[EmbeddedOperator]:
    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    kube.kubectl("apply", "-f", str(ROOT / "examples" / "pools.yaml"))
    configuration = f"stdout-{secrets.token_hex(3)}.hwtune.io"
    embedded = EmbeddedOperator(operator_settings(kube, namespace, configuration))
    try:
        embedded.start(timeout=60)
        yield embedded
    finally:
        try:
            delete_studies(kube, namespace)
            embedded.stop(check=False)
        finally:
            delete_configurations(kube, configuration)


@pytest.fixture
def sim(kube: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[SimTrainer]:
    with SimTrainer(None, kubeconfig=kube.kubeconfig, namespace=namespace, mode="exec",
                    log_root=tmp_path / "logs") as trainer:
        yield trainer


def study(name: str, script: Path, *, max_trials: int, parallel: int) -> dict[str, Any]:
    return {
        "apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy", "metadata": {"name": name},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"}},
            "hardware": {"pools": ["t4"], "gpuCounts": [1]},
            "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
            "algorithm": {"scheduler": "asha", "searcher": "random", "seed": 7},
            "budget": {"maxTrials": max_trials, "maxParallelTrials": parallel},
            "metricsCollector": {"kind": "stdout", "resourceMetric": "epoch",
                                 "additionalMetrics": ["acc"]},
            "trialTemplate": {
                "metadata": {"annotations": {"hwtune.io/sim-outcome": "hold"}},
                "spec": {"containers": [{
                    "name": "trainer", "image": "python:3.11",
                    "command": [sys.executable, str(script)],
                    "args": ["--lr=$(HWTUNE_PARAM_LR)", "--epochs=9"],
                    # What Python images set so that prints reach the log line by line.
                    "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}]}]}},
        },
    }


def status_of(kube: LocalCluster, name: str, namespace: str) -> dict[str, Any]:
    return kube.get_json("tuningstudy", name, namespace=namespace).get("status") or {}


def test_kubectl_logs_follows_an_exec_mode_pod(kube: LocalCluster, namespace: str,
                                               sim: SimTrainer, tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = tmp_path / "count.py"
    # Prints one line, then waits for the test to have read it through `kubectl logs -f`.
    script.write_text(textwrap.dedent(f"""\
        import os, sys, time
        print("step=1", flush=True)
        deadline = time.time() + 120
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.1)
        print("step=2", flush=True)
        print("bye", file=sys.stderr, flush=True)
        """))
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "count", "labels": {"hwtune.io/study": "none"},
                             "annotations": {"hwtune.io/sim-outcome": "hold"}},
                "spec": {"nodeSelector": {"hwtune.io/pool": "cpu"},
                         "containers": [{"name": "main", "image": "python:3.11",
                                         "command": [sys.executable, str(script)]}]}},
               namespace=namespace)
    command = [str(kube.bin_dir / "kubectl"), "--kubeconfig", str(kube.kubeconfig), "-n",
               namespace, "logs", "-f", "count", "-c", "main"]
    deadline = time.monotonic() + 60
    while True:  # the pod starts and its Logs object reaches the kwok server
        follow = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        first = follow.stdout.readline()
        if first:
            break
        follow.wait()
        assert time.monotonic() < deadline, "kubectl logs -f never showed the pod's output"
        time.sleep(0.5)
    try:
        assert first.strip() == "step=1"
        assert not sim.runs()[0].ended, "the line must be readable while the process runs"
        go.touch()
        rest = [follow.stdout.readline().strip() for _ in range(2)]  # followed, as printed
        assert sorted(rest) == ["bye", "step=2"]
    finally:
        follow.kill()
        follow.wait()
    run = sim.wait_for(lambda runs: runs and runs[0].ended and runs[0], 60, "the pod's process")
    assert (run.outcome, run.exit_code) == ("exited", 0)
    kube.wait_for(lambda: kube.get_json("pod", "count", namespace=namespace)["status"]["phase"]
                  == "Succeeded", 30, "the pod to succeed")
    logs = kube.kubectl("-n", namespace, "logs", "count", "-c", "main").stdout
    assert sorted(logs.split()) == ["bye", "step=1", "step=2"]


def test_asha_tunes_an_unmodified_script_from_its_log(
        kube: LocalCluster, namespace: str, operator: EmbeddedOperator, sim: SimTrainer,
        tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    name = "stdout-asha"
    kube.wait_for(lambda: kube.apply(study(name, script, max_trials=9, parallel=3),
                                     namespace=namespace), 30, "the study admitted")
    final = kube.wait_for(lambda: (s := status_of(kube, name, namespace)).get("phase")
                          in ("Completed", "Failed") and s, 300,
                          f"study {name} to end (runs: {sim.runs()})")
    assert final["phase"] == "Completed", final
    trials = kube.get_json("tuningtrials", namespace=namespace)["items"]
    assert len(trials) == 9 and final["trials"]["total"] == 9
    phases = {t["spec"]["trialId"]: t["status"]["phase"] for t in trials}
    stopped = [t for t in trials if t["status"]["phase"] == "Stopped"]
    assert stopped, f"ASHA stopped no trial early: {phases}"
    assert any(t["status"]["phase"] == "Completed" for t in trials), phases
    best = math.inf
    for trial in trials:
        lr = float(trial["spec"]["parameters"]["lr"])
        curve = trial["status"].get("learningCurve") or []
        levels = [p["resource"] for p in curve]
        assert levels == list(range(1, len(levels) + 1)), (trial["spec"]["trialId"], levels)
        for point in curve:  # exactly what the script printed for this lr
            assert point["metrics"]["loss"] == pytest.approx(
                expected_loss(lr, point["resource"]), abs=1e-6)
            # additionalMetrics: recorded in the curve, not optimised
            assert point["metrics"]["acc"] == pytest.approx(
                1 / (1 + point["metrics"]["loss"]), abs=1e-5)
        if trial["status"]["phase"] == "Stopped":
            assert len(curve) < 9 and trial["status"]["reason"] == "StoppedByScheduler"
        if trial["status"]["phase"] == "Completed":
            assert len(curve) == 9
        if curve:
            best = min(best, curve[-1]["metrics"]["loss"])
    assert final["bestPerObjective"]["loss"]["value"] == pytest.approx(best)
    # Stopped early: the Job is deleted (the deletion of the last ones may still be under way
    # when the study completes) and the process was killed before its last epoch.
    def jobs() -> set[str]:
        return {j["metadata"]["name"] for j in kube.get_json("jobs", namespace=namespace)["items"]}

    kube.wait_for(lambda: not {t["status"]["jobName"] for t in stopped} & jobs(), 60,
                  "the Jobs of the stopped trials to be deleted")
    stopped_ids = {str(t["spec"]["trialId"]) for t in stopped}
    runs = sim.wait_for(lambda rs: all(r.ended for r in rs if r.trial in stopped_ids) and rs,
                        60, "the stopped trials' processes to end")
    killed = [r for r in runs if r.outcome == "killed"]
    assert killed and all(r.exit_code in (143, 137) for r in killed), runs
    assert all(r.trial in stopped_ids for r in killed), runs


def test_a_script_that_never_reports_fails_its_trials_and_the_study(
        kube: LocalCluster, namespace: str, operator: EmbeddedOperator, sim: SimTrainer,
        tmp_path: Path) -> None:
    script = tmp_path / "silent.py"
    script.write_text(SILENT)
    name = "stdout-silent"
    kube.wait_for(lambda: kube.apply(study(name, script, max_trials=8, parallel=2),
                                     namespace=namespace), 30, "the study admitted")
    final = kube.wait_for(lambda: (s := status_of(kube, name, namespace)).get("phase")
                          in ("Completed", "Failed") and s, 240, f"study {name} to end")
    assert final["phase"] == "Failed", final
    assert "ended without reporting their objectives" in final["message"]
    assert "spec.metricsCollector kind stdout found no line giving loss" in final["message"]
    trials = kube.get_json("tuningtrials", namespace=namespace)["items"]
    assert 3 <= len(trials) < 8, "the study must stop after its first silent trials"
    failed = [t for t in trials if t["status"]["phase"] == "Failed"]
    assert len(failed) >= 3
    for trial in failed:
        assert trial["status"]["message"].startswith(NO_REPORT_REASON), trial["status"]


def test_an_operator_restart_loses_no_level_and_counts_none_twice(
        kube: LocalCluster, namespace: str, sim: SimTrainer, tmp_path: Path) -> None:
    """The operator stops while scripts print (and one ends): the next one reads every pod's
    log again, skips the levels the study's log holds and reads the rest, also of the pods that
    ended meanwhile."""
    from hwtune.backends.kubernetes.log import parse_chunks

    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    kube.kubectl("apply", "-f", str(ROOT / "examples" / "pools.yaml"))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    name = "stdout-restart"
    doc = study(name, script, max_trials=4, parallel=2)
    doc["spec"]["algorithm"]["scheduler"] = "fifo"  # every trial runs its 9 epochs
    configuration = f"stdout-{secrets.token_hex(3)}.hwtune.io"

    def curves() -> dict[int, list[dict[str, Any]]]:
        return {t["spec"]["trialId"]: (t.get("status") or {}).get("learningCurve") or []
                for t in kube.get_json("tuningtrials", namespace=namespace)["items"]}

    first = EmbeddedOperator(operator_settings(kube, namespace, configuration)).start(
        timeout=60)
    try:
        kube.wait_for(lambda: kube.apply(doc, namespace=namespace), 30, "the study admitted")
        kube.wait_for(lambda: any(len(c) >= 2 for c in curves().values()), 120,
                      "a trial to report two epochs")
    finally:
        first.stop(check=False)
    # Down while the scripts go on printing; at least one of them ends meanwhile.
    sim.wait_for(lambda runs: any(r.ended for r in runs), 60, "a script to end")
    second = EmbeddedOperator(operator_settings(kube, namespace, configuration)).start(
        timeout=60)
    try:
        final = kube.wait_for(lambda: (s := status_of(kube, name, namespace)).get("phase")
                              in ("Completed", "Failed") and s, 240, f"study {name} to end")
        assert final["phase"] == "Completed", final
        trials = kube.get_json("tuningtrials", namespace=namespace)["items"]
        assert len(trials) == 4
        for trial in trials:
            lr = float(trial["spec"]["parameters"]["lr"])
            curve = trial["status"]["learningCurve"]
            assert [p["resource"] for p in curve] == list(range(1, 10)), trial["status"]
            assert [p["metrics"]["loss"] for p in curve] == pytest.approx(
                [expected_loss(lr, e) for e in range(1, 10)], abs=1e-6)
            assert trial["status"]["phase"] == "Completed"
        # The study's own log holds each level once.
        chunks = kube.get_json("configmaps", namespace=namespace,
                               selector=f"hwtune.io/study={name},hwtune.io/log=true")["items"]
        events = parse_chunks((int(c["metadata"]["labels"]["hwtune.io/log-chunk"]),
                               c.get("data") or {}) for c in chunks).events
        observed = [(e["trialId"], e["resource"]) for e in events if e["kind"] == "observed"]
        assert len(observed) == len(set(observed)) == 4 * 9
    finally:
        try:
            kube.kubectl("-n", namespace, "delete", "tuningstudies", "--all", "--timeout=60s",
                         check=False)
            second.stop(check=False)
        finally:
            kube.kubectl("delete", "validatingwebhookconfiguration", configuration,
                         "--ignore-not-found", check=False)


def test_without_fidelity_a_trial_is_one_report_of_its_whole_log(
        kube: LocalCluster, namespace: str, operator: EmbeddedOperator, sim: SimTrainer,
        tmp_path: Path) -> None:
    """As Katib reads a trial: one value per objective over the whole output (strategy min
    here), read once the pod has ended."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    name = "stdout-whole"
    doc = study(name, script, max_trials=2, parallel=2)
    del doc["spec"]["fidelity"]
    doc["spec"]["algorithm"]["scheduler"] = "fifo"
    doc["spec"]["objectives"][0]["strategy"] = "min"
    doc["spec"]["metricsCollector"] = {"kind": "stdout"}
    doc["spec"]["trialTemplate"]["spec"]["containers"][0]["args"] = [
        "--lr=$(HWTUNE_PARAM_LR)", "--epochs=4"]
    kube.wait_for(lambda: kube.apply(doc, namespace=namespace), 30, "the study admitted")
    final = kube.wait_for(lambda: (s := status_of(kube, name, namespace)).get("phase")
                          in ("Completed", "Failed") and s, 240, f"study {name} to end")
    assert final["phase"] == "Completed", final
    for trial in kube.get_json("tuningtrials", namespace=namespace)["items"]:
        lr = float(trial["spec"]["parameters"]["lr"])
        curve = trial["status"]["learningCurve"]
        assert [p["resource"] for p in curve] == [1]
        assert curve[0]["metrics"]["loss"] == pytest.approx(
            min(expected_loss(lr, e) for e in range(1, 5)), abs=1e-6)
        assert trial["status"]["phase"] == "Completed"

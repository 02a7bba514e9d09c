"""The operator and the simulated trainer together on the local control plane: a study over the
committed benchmark table runs to completion, each trial's reported curve is the table's curve
for its config and hardware, and paused trials resume from their checkpoints in a new pod.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hwtune.bench.table import load_table
from hwtune.controller.operator import EmbeddedOperator
from hwtune.controller.settings import OperatorSettings
from hwtune.testing.cluster import LocalCluster
from hwtune.testing.simtrainer import SimTrainer, default_table_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table():
    return load_table(default_table_path())


@pytest.fixture
def operator(kube: LocalCluster, namespace: str) -> Iterator[EmbeddedOperator]:
    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    kube.kubectl("apply", "-f", str(ROOT / "examples" / "pools.yaml"))
    configuration = f"simtrainer-{secrets.token_hex(3)}.hwtune.io"
    embedded = EmbeddedOperator(OperatorSettings(
        kubeconfig=kube.kubeconfig, namespaces=(namespace,), webhook_host="127.0.0.1",
        webhook_port=None, webhook_configuration=configuration, standalone=True,
        shutdown_timeout_s=15, report_listen="127.0.0.1", report_port=None))
    try:
        embedded.start(timeout=60)
        yield embedded
    finally:
        try:
            embedded.stop(check=False)
        finally:
            kube.kubectl("delete", "validatingwebhookconfiguration", configuration,
                         "--ignore-not-found", check=False)


def kwok_study(**budget: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "kwok-study.yaml").read_text())
    doc["spec"]["budget"].update(budget)
    return doc


def test_study_runs_to_completion_with_the_simulated_trainer(
        kube: LocalCluster, namespace: str, operator: EmbeddedOperator, table,
        tmp_path: Path) -> None:
    doc = kwok_study(maxTrials=10, maxParallelTrials=5)
    doc["spec"]["algorithm"]["scheduler"] = "mo-asha-promotion"
    doc["spec"]["fidelity"]["max"] = 9
    name = doc["metadata"]["name"]
    # Pods report to the operator's endpoint; --report-url keeps their study-scoped path.
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace, time_scale=1.0,
                    report_url=operator.report_url, checkpoint_root=tmp_path) as sim:
        kube.wait_for(lambda: kube.apply(doc, namespace=namespace), 30, "the study admitted")

        def status() -> dict[str, Any]:
            body = kube.get_json("tuningstudy", name, namespace=namespace)
            return body.get("status") or {}

        final = kube.wait_for(lambda: (s := status()).get("phase") == "Completed" and s, 240,
                              f"study {name} to complete (sim runs: {len(sim.runs())})")
        runs = sim.runs()
    trials = kube.get_json("tuningtrials", namespace=namespace)["items"]
    assert len(trials) == 10 and final["trials"]["total"] == 10
    by_trial: dict[str, list] = {}
    for run in runs:
        by_trial.setdefault(run.trial, []).append(run)
    for trial in trials:
        tid = str(trial["spec"]["trialId"])
        curve = [(p["resource"], p["metrics"]) for p in trial["status"].get("learningCurve", [])]
        launches = by_trial.get(tid, [])
        # What the operator recorded is exactly what the simulated trainer sent, which is the
        # table's curve of the config it mapped the trial to.
        sent = [level for run in launches for level in run.levels]
        assert [level for level, _ in curve] == sent, (tid, curve, launches)
        for level, metrics in curve:
            expected = table.lookup(launches[0].config_index, level, launches[0].table_seed)
            assert metrics["val_error"] == pytest.approx(expected["val_error"])
        # A later launch continued after the checkpoint its predecessor left.
        for before, after in zip(launches, launches[1:]):
            if before.outcome == "paused":
                assert after.resumed_from == before.checkpoint_level
                assert after.levels[0] == before.levels[-1] + 1
    assert any(len(v) > 1 for v in by_trial.values()), "no trial was paused and resumed"
    assert all(run.ended and run.outcome != "failed" or "out of memory" in run.reason
               for run in runs)
    assert final["paretoFront"], json.dumps(final)[:2000]

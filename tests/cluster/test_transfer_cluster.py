"""Transfer on the local control plane: an earlier study read back from its TuningStudy and
TuningTrials (status written through the status subresource) as the same records a work
directory gives (tests/transfer/test_transfer_sources.py); the embedded operator running a study
that transfers from one it finished, and failing one whose earlier study does not exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hwtune.api.records import Hardware, TrialPhase
from hwtune.transfer import TransferError
from tests.transfer.test_transfer_sources import SPEC, TRIALS, _curve, trial_objects

pytestmark = pytest.mark.cluster

# The operator tests' fixtures (the CRDs and pools installed; an embedded operator).
from tests.cluster.test_operator_studies import cluster, operator  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]


def test_load_a_finished_study_from_its_trial_objects(cluster: Any, namespace: str) -> None:
    crds = cluster
    from kubernetes import config

    from hwtune.backends.kubernetes.transfer import load_cluster_study

    spec = {**SPEC, "hardware": {"pools": ["t4", "a100"]},
            "algorithm": {"scheduler": "fifo", "searcher": "random", "seed": 0}}
    study = {"apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
             "metadata": {"name": "old", "namespace": namespace}, "spec": spec}
    crds.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(study))
    objs = trial_objects()
    # A trial of another study in the same namespace must not be picked up.
    stray = json.loads(json.dumps(objs[0]))
    stray["metadata"]["name"] = "other-0"
    stray["spec"]["studyName"] = "other"
    for obj in objs + [stray]:
        obj["metadata"]["namespace"] = namespace
        obj["spec"]["hardware"] = {"pool": "a100", "gpuCount": 1}
        status = obj.pop("status")
        crds.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))
        crds.kubectl("-n", namespace, "patch", "tuningtrial", obj["metadata"]["name"],
                     "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))

    api = config.new_client_from_config(config_file=str(crds.kubeconfig))
    past = load_cluster_study(api, namespace, "old", page=2)  # pages of 2: continue tokens
    assert past.source == f"cluster:{namespace}/old"
    assert past.hardware == (Hardware("t4"), Hardware("a100"))
    got = [(t.trial_id, dict(t.config), t.hardware, t.phase, [(r, dict(m)) for r, m in t.curve])
           for t in past.trials]
    assert got == [(tid, c, Hardware("a100"), TrialPhase.COMPLETED, _curve(e, s))
                   for tid, (c, e, s) in enumerate(TRIALS)]
    with pytest.raises(TransferError, match=f"TuningStudy {namespace}/missing not found"):
        load_cluster_study(api, namespace, "missing")


def test_operator_runs_a_study_that_transfers_from_a_finished_one(
        cluster: Any, namespace: str, operator: Any) -> None:
    """Two studies through the embedded operator: the second names the first in
    transfer.fromStudies and starts with its best trial (method best-first)."""
    from kubernetes import config

    from hwtune.api.records import Objective
    from hwtune.backends.kubernetes.transfer import load_cluster_study
    from tests.cluster import test_operator_studies as ops
    from tests.cluster.trial_driver import TrialDriver

    old = ops.study_doc("old", max_trials=6, parallel=3)
    new = ops.study_doc("new", max_trials=4, parallel=2)
    new["spec"]["algorithm"]["searcher"] = "transfer"
    new["spec"]["transfer"] = {"fromStudies": ["old"], "method": "best-first"}
    driver = TrialDriver(cluster.kubeconfig, namespace).start()
    try:
        ops.apply(cluster, old, namespace)
        ops.wait_completed(cluster, "old", namespace, driver)
        ops.apply(cluster, new, namespace)
        status = ops.wait_completed(cluster, "new", namespace, driver)
    finally:
        driver.stop()
    assert not driver.errors, driver.errors
    assert status["trials"]["total"] == 4
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    best = load_cluster_study(api, namespace, "old").best(Objective("val_error"))
    first = next(t for t in ops.get(cluster, "tuningtrials", namespace, "hwtune.io/study=new")
                 if t["spec"]["trialId"] == 0)
    assert first["spec"]["parameters"] == dict(best.config)
    assert first["spec"]["hardware"] == {"pool": best.hardware.pool,
                                         "gpuCount": best.hardware.gpu_count}


def test_operator_fails_a_study_whose_earlier_study_is_missing(
        cluster: Any, namespace: str, operator: Any) -> None:
    from tests.cluster import test_operator_studies as ops

    doc = ops.study_doc("orphan", max_trials=2, parallel=2)
    doc["spec"]["algorithm"]["searcher"] = "transfer"
    doc["spec"]["transfer"] = {"fromStudies": ["never-ran"]}
    ops.apply(cluster, doc, namespace)
    cluster.wait_for(lambda: ops.study_status(cluster, "orphan", namespace).get("phase") == "Failed",
                     timeout=120, what="the study to fail")
    text = json.dumps(ops.study_status(cluster, "orphan", namespace))
    assert f"TuningStudy {namespace}/never-ran not found" in text
    assert not ops.get(cluster, "tuningtrials", namespace, "hwtune.io/study=orphan")


def test_operator_meta_trains_the_dyhpo_surrogate_on_a_finished_study(
        cluster: Any, namespace: str, operator: Any) -> None:
    """Searcher dyhpo with transfer.fromStudies through the embedded operator: the earlier
    TuningStudy's trials join the surrogate's data; every suggestion comes from the model."""
    pytest.importorskip("torch")
    pytest.importorskip("gpytorch")
    from tests.cluster import test_operator_studies as ops
    from tests.cluster.trial_driver import TrialDriver

    old = ops.study_doc("old-meta", max_trials=5, parallel=3, max_epoch=3)
    new = ops.study_doc("new-meta", scheduler="asha", max_trials=3, parallel=1, max_epoch=3)
    new["spec"]["algorithm"].update(searcher="dyhpo", settings={
        "fullFitSteps": 20, "refitSteps": 3, "freshCandidates": 8})
    new["spec"]["transfer"] = {"fromStudies": ["old-meta"]}
    driver = TrialDriver(cluster.kubeconfig, namespace).start()
    try:
        ops.apply(cluster, old, namespace)
        ops.wait_completed(cluster, "old-meta", namespace, driver)
        ops.apply(cluster, new, namespace)
        status = ops.wait_completed(cluster, "new-meta", namespace, driver)
    finally:
        driver.stop()
    assert not driver.errors, driver.errors
    assert status["trials"]["total"] == 3
    events = json.loads(cluster.kubectl(
        "-n", namespace, "get", "events", "-o", "json",
        "--field-selector", "involvedObject.name=new-meta").stdout)["items"]
    reasons = [e.get("reason") for e in events]
    assert "Launched" in reasons  # the study's Events are there ...
    assert "SurrogateFallback" not in reasons, [e.get("message") for e in events]  # ... no fallback

"""Loading an earlier study from the local control plane: a TuningStudy and TuningTrials with
status written through the status subresource, read back as the same records as a work
directory gives (tests/transfer/test_transfer_sources.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hwtune.api.records import Hardware, TrialPhase
from hwtune.transfer import TransferError
from tests.transfer.test_transfer_sources import SPEC, TRIALS, _curve, trial_objects

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds(kube: Any) -> Any:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 "crd/tuningstudies.hwtune.io", "crd/tuningtrials.hwtune.io")
    return kube


def test_load_a_finished_study_from_its_trial_objects(crds: Any, namespace: str) -> None:
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

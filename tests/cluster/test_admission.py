"""The operator's validating webhook on a real API server: ``kubectl apply`` of a TuningStudy
naming an unknown HardwarePool is refused with the field path, and the refusal follows the
pools in the cluster.

The operator runs embedded in a background thread (kopf's embedded mode) against the session's
cluster, with a webhook configuration of its own name; the module fixture stops it, checks no
thread is left, and deletes the configuration, so the other cluster tests never meet it.
"""

from __future__ import annotations

import copy
import json
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hwtune.api.crd import RESOURCES
from hwtune.controller import OperatorSettings
from hwtune.controller.admission import HANDLER_ID
from hwtune.controller.operator import EmbeddedOperator
from hwtune.testing.cluster import LocalCluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = secrets.token_hex(3)
# Unique per module run: never the name a real operator in an attached cluster manages.
CONFIGURATION = f"test-{SUFFIX}.admission.hwtune.io"
WEBHOOK = f"{HANDLER_ID}.{CONFIGURATION}"
SMALL, BIG, LATE, DOOMED = (f"adm-{SUFFIX}-{n}" for n in ("small", "big", "late", "doomed"))


def pool(name: str, gpus_per_node: int) -> dict[str, Any]:
    return {"apiVersion": "hwtune.io/v1alpha1", "kind": "HardwarePool",
            "metadata": {"name": name},
            "spec": {"gpuType": "nvidia-test", "gpuMemoryGiB": 16, "gpusPerNode": gpus_per_node,
                     "pricePerGPUHour": 1.0}}


def study(name: str, pools: list[str], gpu_counts: list[int] | None = None) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "study.yaml").read_text())
    doc["metadata"] = {"name": name}
    doc["spec"]["hardware"]["pools"] = pools
    doc["spec"]["hardware"]["gpuCounts"] = gpu_counts or [1]
    return doc


def apply(kube: LocalCluster, doc: dict[str, Any], namespace: str, *extra: str) -> Any:
    """``kubectl apply`` of one manifest; never raises (callers read returncode/stderr)."""
    return kube.kubectl("-n", namespace, "apply", *extra, "-f", "-", input=json.dumps(doc),
                        check=False)


def exists(kube: LocalCluster, kind: str, name: str, namespace: str | None = None) -> bool:
    ns = ["-n", namespace] if namespace else []
    return kube.kubectl(*ns, "get", kind, name, "-o", "name", check=False).returncode == 0


def delete_configurations(kube: LocalCluster, name: str = CONFIGURATION) -> None:
    # kopf manages (creates) a mutating configuration of the same name too, empty here.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kube.kubectl("delete", kind, name, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def crds(kube: LocalCluster) -> LocalCluster:
    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 *[f"crd/{r.__crd__.crd_name}" for r in RESOURCES])
    return kube


@pytest.fixture(scope="module")
def pools(crds: LocalCluster) -> Iterator[None]:
    crds.apply([pool(SMALL, 1), pool(BIG, 4)])
    try:
        yield
    finally:
        crds.kubectl("delete", "hardwarepools", SMALL, BIG, LATE, DOOMED, "--ignore-not-found",
                     "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(crds: LocalCluster, pools: None) -> Iterator[EmbeddedOperator]:
    """The operator, up, with its webhook registered and answering."""
    threads_before = set(threading.enumerate())
    settings = OperatorSettings(kubeconfig=crds.kubeconfig, webhook_host="127.0.0.1",
                                webhook_port=None, webhook_configuration=CONFIGURATION,
                                standalone=True, shutdown_timeout_s=15,
                                run_studies=False)  # admission only: no finalizer left behind
    embedded = EmbeddedOperator(settings)
    try:
        embedded.start(timeout=60)
        crds.wait_for(lambda: _webhooks(crds), timeout=30,
                      what=f"ValidatingWebhookConfiguration {CONFIGURATION} to have a webhook")
        # The configuration exists; wait until the API server actually calls the webhook.
        probe = study("admission-probe", [f"no-such-pool-{SUFFIX}"])
        crds.wait_for(
            lambda: f'admission webhook "{WEBHOOK}" denied' in apply(
                crds, probe, "default", "--dry-run=server").stderr,
            timeout=30, what="the admission webhook to answer")
        yield embedded
    finally:
        try:
            embedded.stop()
        finally:
            delete_configurations(crds)
        assert not embedded.running
        crds.wait_for(lambda: not (set(threading.enumerate()) - threads_before), timeout=10,
                      what="the operator's threads to end")
        assert not exists(crds, "validatingwebhookconfiguration", CONFIGURATION)


def _webhooks(kube: LocalCluster, name: str = CONFIGURATION) -> list[dict[str, Any]]:
    config = kube.get_json("validatingwebhookconfiguration", name)
    return config.get("webhooks") or []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# First in the module, before the embedded operator starts, so its webhook is the only one.
def test_operator_command_serves_the_webhook_and_stops_cleanly_on_sigterm(
        crds: LocalCluster, pools: None, namespace: str, tmp_path: Path) -> None:
    """``hwtune operator`` in its own process: JSON logs, and on SIGTERM it takes its webhook out
    of the configuration before exiting, so a stopped operator blocks no apply (failurePolicy
    Fail only bites while a crashed operator is down)."""
    name = f"cli-{SUFFIX}.admission.hwtune.io"
    log_path = tmp_path / "operator.log"
    command = [sys.executable, "-m", "hwtune.cli.main", "operator", "--kubeconfig",
               str(crds.kubeconfig), "--webhook-port", str(free_port()),
               "--webhook-configuration", name, "--standalone", "--log-format", "json"]
    probe = study("cli-probe", [f"no-such-pool-{SUFFIX}"])
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=crds.env(), cwd=ROOT)
    try:
        crds.wait_for(lambda: process.poll() is None and _webhooks(crds, name), timeout=90,
                      what=f"hwtune operator to register {name} (log: {log_path})")
        crds.wait_for(
            lambda: f'admission webhook "{HANDLER_ID}.{name}" denied' in apply(
                crds, probe, namespace, "--dry-run=server").stderr,
            timeout=30, what="the operator's webhook to answer")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        assert _webhooks(crds, name) == []  # taken out on the way down
        accepted = apply(crds, study("cli-after-stop", [SMALL]), namespace)
        assert accepted.returncode == 0, accepted.stderr
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        messages = [entry["message"] for entry in lines]
        assert any("Cleaning up the admission webhook" in m for m in messages), messages
        # The refused probe is a user's mistake, not an operator error.
        assert [e["severity"] for e in lines if "no-such-pool" in e["message"]][:1] == ["info"]
        assert not [e for e in lines if e["severity"] in ("error", "critical")], lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        delete_configurations(crds, name)


def test_webhook_is_scoped_to_tuningstudy_create_and_update(
        kube: LocalCluster, operator: EmbeddedOperator) -> None:
    [webhook] = _webhooks(kube)
    assert webhook["name"] == WEBHOOK
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["clientConfig"]["url"].startswith("https://127.0.0.1:")
    assert webhook["clientConfig"]["caBundle"]
    assert [(r["apiGroups"], r["apiVersions"], r["resources"], sorted(r["operations"]))
            for r in webhook["rules"]] == [
        (["hwtune.io"], ["v1alpha1"], ["tuningstudies"], ["CREATE", "UPDATE"])]


def test_unknown_pool_is_refused_naming_the_field_and_the_pool(
        kube: LocalCluster, operator: EmbeddedOperator, namespace: str) -> None:
    result = apply(kube, study("unknown-pool", [SMALL, "tpu9"]), namespace)
    assert result.returncode != 0
    assert f'admission webhook "{WEBHOOK}" denied the request' in result.stderr
    assert "spec.hardware.pools[1]: Not found: HardwarePool 'tpu9' does not exist" \
        in result.stderr
    assert SMALL in result.stderr and BIG in result.stderr  # the known pools are listed
    assert not exists(kube, "tuningstudy", "unknown-pool", namespace)


def test_study_with_known_pools_is_accepted(
        kube: LocalCluster, operator: EmbeddedOperator, namespace: str) -> None:
    result = apply(kube, study("known-pools", [SMALL, BIG], [1, 2, 4]), namespace)
    assert result.returncode == 0, result.stderr
    stored = kube.get_json("tuningstudy", "known-pools", namespace=namespace)
    assert stored["spec"]["hardware"]["pools"] == [SMALL, BIG]


def test_creating_the_missing_pool_makes_the_study_acceptable(
        kube: LocalCluster, operator: EmbeddedOperator, namespace: str) -> None:
    doc = study("late-pool", [BIG, LATE])
    refused = apply(kube, doc, namespace)
    assert refused.returncode != 0
    assert f"spec.hardware.pools[1]: Not found: HardwarePool '{LATE}'" in refused.stderr
    kube.apply(pool(LATE, 8))
    # At once, no retry loop: a refusal is confirmed against a live list, so the cache's
    # lag behind the pool watch cannot refuse a pool that exists.
    accepted = apply(kube, doc, namespace)
    assert accepted.returncode == 0, accepted.stderr


def test_gpu_counts_larger_than_every_listed_pools_node_are_refused(
        kube: LocalCluster, operator: EmbeddedOperator, namespace: str) -> None:
    result = apply(kube, study("too-many-gpus", [SMALL, BIG], [8, 16]), namespace)
    assert result.returncode != 0
    assert (f"spec.hardware.gpuCounts: Invalid value: no GPU count in [8, 16] fits on a node "
            f"of pools {SMALL}, {BIG}") in result.stderr
    # Counts above one pool's node are fine while another listed pool takes them.
    assert apply(kube, study("some-fit", [SMALL, BIG], [1, 4]), namespace).returncode == 0


def test_after_a_pool_is_deleted_spec_changes_are_checked_but_metadata_edits_pass(
        kube: LocalCluster, operator: EmbeddedOperator, namespace: str) -> None:
    kube.apply(pool(DOOMED, 2))
    doc = study("outlived-pool", [SMALL, DOOMED], [1, 2])
    assert apply(kube, doc, namespace).returncode == 0
    kube.kubectl("delete", "hardwarepool", DOOMED)
    # Labels, annotations and finalizers must stay editable (the operator removes finalizers).
    kube.kubectl("-n", namespace, "label", "tuningstudy", "outlived-pool", "team=vision")
    changed = copy.deepcopy(doc)
    changed["spec"]["budget"]["maxTrials"] = 100
    # An acceptance may lag the pool watch by a moment (documented): wait for the deletion.
    refusal = f"spec.hardware.pools[1]: Not found: HardwarePool '{DOOMED}'"
    kube.wait_for(lambda: refusal in apply(kube, changed, namespace, "--dry-run=server").stderr,
                  timeout=15, what="the webhook to see the pool deletion")
    result = apply(kube, changed, namespace)
    assert result.returncode != 0
    assert refusal in result.stderr
    assert kube.get_json("tuningstudy", "outlived-pool", namespace=namespace)[
        "spec"]["budget"]["maxTrials"] == 200

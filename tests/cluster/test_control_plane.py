"""The local control plane behaves like the clusters hwtune runs on.

Real kube-scheduler, Job controller and garbage collector; KWOK nodes from
hack/cluster/nodes.yaml; pod outcomes scripted by the annotations of hack/kwok/stages.yaml.
The Jobs here select `type: kwok` nodes: on a kind cluster (hack/kind/up.sh) the real workers
carry the pool labels too, but only KWOK nodes honour the simulation annotations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hwtune.testing.cluster import (
    SIM_DURATION,
    SIM_EXIT_CODE,
    SIM_OUTCOME,
    LocalCluster,
)
from hwtune.testing.nodes import (
    GPU_RESOURCE,
    GPU_TAINT,
    POOL_LABEL,
    NodePoolFileError,
    load_node_pools,
    quantity_value,
    render_nodes,
)

# Cluster tests carry the marker explicitly; the node-file tests at the end need no cluster.
cluster = pytest.mark.cluster

WAIT = 30  # seconds; every step below normally takes 1-3 s

# The pool layout agreed for the project (issue 2): pool -> (nodes, GPUs/node, product, type).
AGREED_LAYOUT = {
    "t4": (4, 1, "Tesla-T4", "g4dn.xlarge"),
    "a100": (4, 8, "NVIDIA-A100-SXM4-80GB", "p4de.24xlarge"),
    "h100": (2, 8, "NVIDIA-H100-80GB-HBM3", "p5.48xlarge"),
    "cpu": (2, 0, None, None),
}


def gpu_job(
    name: str,
    *,
    gpus: int = 0,
    pool: str | None = None,
    tolerate_gpu_taint: bool = True,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A one-pod Job that fails on its first failed pod (backoffLimit 0)."""
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "nodeSelector": {"type": "kwok"},
        "containers": [{"name": "trainer", "image": "registry.example.com/ml/trainer:1.4"}],
    }
    if gpus:
        pod_spec["containers"][0]["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    if pool:
        pod_spec["nodeSelector"][POOL_LABEL] = pool
    if tolerate_gpu_taint:
        pod_spec["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": annotations or {}}, "spec": pod_spec},
        },
    }


def job_condition(
    kube: LocalCluster, namespace: str, name: str, kind: str
) -> dict[str, Any] | None:
    """The Job's condition of type ``kind`` when it is True, else None."""
    job = kube.get_json("job", name, namespace=namespace)
    for condition in job.get("status", {}).get("conditions", []):
        if condition["type"] == kind and condition["status"] == "True":
            return condition
    return None


def job_pods(kube: LocalCluster, namespace: str, job: str) -> list[dict[str, Any]]:
    return kube.get_json("pods", namespace=namespace, selector=f"job-name={job}")["items"]


def only_pod(kube: LocalCluster, namespace: str, job: str) -> dict[str, Any] | None:
    pods = job_pods(kube, namespace, job)
    assert len(pods) <= 1, f"job {job} made {len(pods)} pods; expected one (backoffLimit 0)"
    return pods[0] if pods else None


def pod_phase(kube: LocalCluster, namespace: str, job: str) -> str | None:
    pod = only_pod(kube, namespace, job)
    return pod["status"].get("phase") if pod else None


@cluster
def test_cluster_nodes_match_the_node_pool_file(kube: LocalCluster) -> None:
    pools = {pool.name: pool for pool in load_node_pools()}
    nodes = kube.get_json("nodes", selector="type=kwok")["items"]
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by_pool.setdefault(node["metadata"]["labels"].get(POOL_LABEL, "<none>"), []).append(node)
    assert sorted(by_pool) == sorted(pools)

    for name, pool in pools.items():
        got = sorted(by_pool[name], key=lambda n: n["metadata"]["name"])
        assert [n["metadata"]["name"] for n in got] == sorted(pool.node_names)
        for node in got:
            meta, status = node["metadata"], node["status"]
            where = f"node {meta['name']}"
            assert meta["annotations"].get("kwok.x-k8s.io/node") == "fake", where
            for key, value in pool.node_labels(meta["name"]).items():
                assert meta["labels"].get(key) == value, f"{where}: label {key}"
            for resource, quantity in pool.capacity.items():
                # The API server canonicalises quantities ("2048Gi" comes back as "2Ti").
                for field in ("capacity", "allocatable"):
                    got_quantity = status[field].get(resource)
                    assert got_quantity is not None, f"{where}: no {field} {resource}"
                    assert quantity_value(got_quantity) == quantity_value(quantity), (
                        f"{where}: {field} {resource} is {got_quantity}, file says {quantity}"
                    )
            taints = node["spec"].get("taints", [])
            if pool.gpu:
                plain = [{k: t[k] for k in ("key", "value", "effect")} for t in taints]
                assert GPU_TAINT in plain, where
                assert meta["labels"]["nvidia.com/gpu.count"] == str(pool.gpu.count), where
            else:
                assert GPU_RESOURCE not in status["capacity"], where
                assert not any(t["key"] == GPU_RESOURCE for t in taints), where
            ready = [c for c in status["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", f"{where} is not Ready"


@cluster
def test_gpu_job_is_scheduled_onto_its_pool_and_completes(
    kube: LocalCluster, namespace: str
) -> None:
    kube.apply(gpu_job("train-a100", gpus=2, pool="a100"), namespace=namespace)

    complete = kube.wait_for(
        lambda: job_condition(kube, namespace, "train-a100", "Complete"),
        WAIT,
        "job train-a100 to be Complete",
    )
    assert complete["reason"] == "CompletionsReached"
    pod = only_pod(kube, namespace, "train-a100")
    assert pod is not None
    a100_nodes = next(p for p in load_node_pools() if p.name == "a100").node_names
    assert pod["spec"]["nodeName"] in a100_nodes
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled[0]["status"] == "True"
    job = kube.get_json("job", "train-a100", namespace=namespace)
    assert job["status"]["succeeded"] == 1


@cluster
def test_job_asking_more_gpus_than_any_node_stays_pending_with_scheduler_reason(
    kube: LocalCluster, namespace: str
) -> None:
    kube.apply(gpu_job("too-big", gpus=16), namespace=namespace)

    def unschedulable() -> dict[str, Any] | None:
        pod = only_pod(kube, namespace, "too-big")
        for condition in (pod or {}).get("status", {}).get("conditions", []):
            if condition["type"] == "PodScheduled" and condition["status"] == "False":
                return condition
        return None

    condition = kube.wait_for(unschedulable, WAIT, "the scheduler to reject pod of too-big")
    assert condition["reason"] == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in condition["message"]
    pod = only_pod(kube, namespace, "too-big")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    assert job_condition(kube, namespace, "too-big", "Complete") is None


@cluster
def test_gpu_nodes_repel_pods_that_do_not_tolerate_the_gpu_taint(
    kube: LocalCluster, namespace: str
) -> None:
    job = gpu_job("no-toleration", pool="t4", tolerate_gpu_taint=False)
    kube.apply(job, namespace=namespace)

    def rejection() -> str | None:
        pod = only_pod(kube, namespace, "no-toleration")
        for condition in (pod or {}).get("status", {}).get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return condition["message"]
        return None

    message = kube.wait_for(rejection, WAIT, "the scheduler to reject pod of no-toleration")
    # The t4 nodes match the selector but carry the GPU taint; nothing else matches.
    assert "untolerated taint" in message
    pod = only_pod(kube, namespace, "no-toleration")
    assert pod is not None and "nodeName" not in pod["spec"]


@cluster
def test_pod_annotated_to_fail_makes_its_job_failed(kube: LocalCluster, namespace: str) -> None:
    annotations = {SIM_OUTCOME: "fail", SIM_EXIT_CODE: "3", SIM_DURATION: "200ms"}
    kube.apply(gpu_job("doomed", gpus=1, pool="t4", annotations=annotations), namespace=namespace)

    failed = kube.wait_for(
        lambda: job_condition(kube, namespace, "doomed", "Failed"), WAIT, "job doomed to be Failed"
    )
    assert failed["reason"] == "BackoffLimitExceeded"
    pod = only_pod(kube, namespace, "doomed")
    assert pod is not None and pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


@cluster
def test_unknown_outcome_fails_the_pod_with_a_reason(kube: LocalCluster, namespace: str) -> None:
    kube.apply(gpu_job("typo", annotations={SIM_OUTCOME: "sucess"}), namespace=namespace)

    kube.wait_for(
        lambda: job_condition(kube, namespace, "typo", "Failed"), WAIT, "job typo to fail"
    )
    pod = only_pod(kube, namespace, "typo")
    assert pod is not None
    assert pod["status"]["reason"] == "InvalidSimOutcome"
    assert "sucess" in pod["status"]["message"]


@cluster
def test_held_pod_runs_until_its_annotation_is_flipped(
    kube: LocalCluster, namespace: str
) -> None:
    kube.apply(gpu_job("held", gpus=8, pool="h100", annotations={SIM_OUTCOME: "hold"}),
               namespace=namespace)
    kube.wait_for(
        lambda: pod_phase(kube, namespace, "held") == "Running", WAIT, "the held pod to run"
    )

    # Longer than the default 1 s run: a pod that is not held would have finished by now.
    time.sleep(1.5)
    assert pod_phase(kube, namespace, "held") == "Running"
    assert job_condition(kube, namespace, "held", "Complete") is None

    pod = only_pod(kube, namespace, "held")
    assert pod is not None
    patch = {"metadata": {"annotations": {SIM_OUTCOME: "succeed", SIM_DURATION: "100ms"}}}
    kube.kubectl("-n", namespace, "patch", "pod", pod["metadata"]["name"],
                 "--type=merge", "-p", json.dumps(patch))

    kube.wait_for(lambda: job_condition(kube, namespace, "held", "Complete"), WAIT,
                  "job held to be Complete after the flip")
    assert pod_phase(kube, namespace, "held") == "Succeeded"


@cluster
def test_deleting_a_job_garbage_collects_its_pods(kube: LocalCluster, namespace: str) -> None:
    kube.apply(gpu_job("owned", gpus=1, pool="t4", annotations={SIM_OUTCOME: "hold"}),
               namespace=namespace)
    kube.wait_for(
        lambda: pod_phase(kube, namespace, "owned") == "Running", WAIT, "the owned pod to run"
    )
    job_uid = kube.get_json("job", "owned", namespace=namespace)["metadata"]["uid"]
    pod = only_pod(kube, namespace, "owned")
    assert pod is not None
    owners = pod["metadata"]["ownerReferences"]
    assert [(o["kind"], o["uid"], o.get("controller")) for o in owners] == [("Job", job_uid, True)]

    # Background cascade: the Job goes at once, the garbage collector removes the pod after.
    kube.kubectl(
        "-n", namespace, "delete", "job", "owned", "--cascade=background", "--wait=false"
    )

    kube.wait_for(lambda: not kube.get_json("pods", namespace=namespace)["items"], WAIT,
                  "the garbage collector to delete the pods of job owned")


# --- the node pool file itself (no cluster needed) ------------------------------------------


def test_node_pool_file_has_the_agreed_layout() -> None:
    layout = {
        p.name: (
            p.nodes,
            p.gpus_per_node,
            p.gpu.product if p.gpu else None,
            p.instance_type if p.gpu else None,
        )
        for p in load_node_pools()
    }
    assert layout == AGREED_LAYOUT

def test_rendered_nodes_are_kwok_nodes_with_gpu_capacity_taint_and_labels() -> None:
    nodes = render_nodes(load_node_pools())["items"]
    assert len(nodes) == sum(count for count, *_ in AGREED_LAYOUT.values())
    a100 = next(n for n in nodes if n["metadata"]["name"] == "kwok-a100-0")
    assert a100["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert a100["status"]["capacity"][GPU_RESOURCE] == "8"
    assert a100["status"]["allocatable"] == a100["status"]["capacity"]
    assert a100["spec"]["taints"] == [GPU_TAINT]
    assert a100["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "p4de.24xlarge"
    cpu = next(n for n in nodes if n["metadata"]["labels"][POOL_LABEL] == "cpu")
    assert GPU_RESOURCE not in cpu["status"]["capacity"] and cpu["spec"]["taints"] == []


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("nodes: 0", r"pools\[0\]\.nodes: must be an integer >= 1"),
        ("name: T4", r"pools\[0\]\.name: must be a lowercase DNS label"),
        ("cpu: four", r"pools\[0\]\.cpu: must be a Kubernetes quantity"),
        ("gpu: {product: T, count: 1}", r"pools\[0\]\.gpu\.memoryMiB: required"),
        ("gpus: 1", r"pools\[0\]: unknown field\(s\) \['gpus'\]"),
    ],
)
def test_bad_node_pool_file_names_the_field_and_reason(
    tmp_path: Path, override: str, error: str
) -> None:
    pool = {"name": "t4", "nodes": 1, "instanceType": "g4dn.xlarge", "cpu": "4", "memory": "16Gi"}
    pool.update(yaml.safe_load("{" + override + "}"))
    file = tmp_path / "nodes.yaml"
    file.write_text(yaml.safe_dump({"pools": [pool]}))
    with pytest.raises(NodePoolFileError, match=error):
        load_node_pools(file)


def test_quantities_compare_by_value() -> None:
    assert quantity_value("2048Gi") == quantity_value("2Ti")
    assert quantity_value("500m") * 2 == quantity_value("1")
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity_value("lots")

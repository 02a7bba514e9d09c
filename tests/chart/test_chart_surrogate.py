"""The chart's surrogate Deployment, rendered by the real helm: pinned to a GPU node by default
(nvidia.com/gpu limit, the GPU taint's toleration, --device=cuda), a CPU pod when gpu.enabled is
false, its saved fits on a volume, the trials' checkpoint claim mounted read-only when named."""

from __future__ import annotations

from tests.chart.test_chart import render


def _surrogate(*values: str) -> tuple[dict, dict]:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render("surrogate.enabled=true", *values)}
    pod = docs[("Deployment", "t-surrogate")]["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_the_surrogate_is_pinned_to_a_gpu_node_by_default():
    pod, container = _surrogate("surrogate.nodeSelector.nvidia\\.com/gpu\\.product=NVIDIA-A100")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["memory"] == "16Gi"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100"}
    assert "--device=cuda" in container["args"]
    assert "--state-dir=/var/lib/hwtune-surrogate" in container["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}
    assert "checkpoints" not in volumes


def test_gpu_off_makes_a_cpu_pod_and_claims_are_mounted():
    pod, container = _surrogate("surrogate.gpu.enabled=false", "surrogate.state.existingClaim=fits",
                                "surrogate.checkpointsClaim=ckpts", "surrogate.gpu.count=2")
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert "tolerations" not in pod and "--device=cpu" in container["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": "fits"}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "ckpts", "readOnly": True}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["checkpoints"] == {"name": "checkpoints", "mountPath": "/checkpoints", "readOnly": True}


def test_two_gpus_when_asked():
    _, container = _surrogate("surrogate.gpu.count=2")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2

"""The Helm chart, checked by the real helm binary (built by hack/build-control-plane.sh): lint,
render, values schema, and an install into the real local control plane."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hwtune.testing.cluster import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hwtune"
KUBE_VERSION = "1.36.3"


def helm_binary() -> str:
    found = shutil.which("helm") or str(default_cache_dir() / "bin" / "helm")
    if not os.access(found, os.X_OK):
        raise RuntimeError(f"helm not found (looked on PATH and at {found}): run hack/build-control-plane.sh")
    return found


def helm(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(*set_values: str) -> list[dict]:
    args = ["template", "t", str(CHART), "--namespace", "hwtune-system", "--kube-version", KUBE_VERSION]
    for value in set_values:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_chart_lints_strictly():
    out = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in out.stdout


def test_chart_renders_a_locked_down_operator():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render()}
    deployment = docs[("Deployment", "t-operator")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "t"
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"].endswith(":0.1.0")  # appVersion when no tag is set
    # the admission webhook is reached through the operator's Service, on a writable /tmp
    assert "--webhook-service=hwtune-system/t-operator" in container["args"]
    service = docs[("Service", "t-operator")]
    assert {"name": "webhook", "port": 443, "targetPort": "webhook"} in service["spec"]["ports"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    role = docs[("ClusterRole", "t")]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    # hardware pools are only read: the operator never edits the catalog
    pools = next(r for r in role["rules"] if "hardwarepools" in r["resources"])
    assert sorted(pools["verbs"]) == ["get", "list", "watch"]
    # trial pods' logs are only read (the stdout/json/regex metrics collector)
    logs = next(r for r in role["rules"] if "pods/log" in r["resources"])
    assert logs["resources"] == ["pods/log"] and logs["verbs"] == ["get"]


def test_chart_runs_two_replicas_kept_apart_by_the_study_leases():
    """Two replicas by default: a rollout that starts the new pod first, at most one pod down
    in a drain, the pod's name as the Lease identity, no kopf peering (it would pause both),
    the webhook kept registered when one replica stops, and RBAC for the Leases."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render()}
    deployment = docs[("Deployment", "t-operator")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HWTUNE_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # the address a holder publishes in its Leases, where the standby forwards reports
    assert env["HWTUNE_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "--standalone" in container["args"] and "--webhook-persistent" in container["args"]
    assert "--lease-seconds=15" in container["args"]
    assert "--launch-rate=50" in container["args"] and "--launch-burst=10" in container["args"]
    assert not any(a.startswith("--peering-name") for a in container["args"])
    assert not any(kind == "ClusterKopfPeering" for kind, _ in docs)
    pdb = docs[("PodDisruptionBudget", "t-operator")]
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()  # it covers the operator pods
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"][
        "topologyKey"] == "kubernetes.io/hostname"
    role = docs[("ClusterRole", "t")]
    leases = next(r for r in role["rules"] if "leases" in r["resources"])
    assert leases["apiGroups"] == ["coordination.k8s.io"]
    assert {"get", "create", "update"} <= set(leases["verbs"])
    # One replica: no budget to keep (a PDB would block every drain), kopf's usual webhook
    # cleanup; kopf peering is allowed there, and refused with two replicas.
    single = {(d["kind"], d["metadata"]["name"]): d for d in render("operator.replicas=1")}
    assert ("PodDisruptionBudget", "t-operator") not in single
    args = single[("Deployment", "t-operator")]["spec"]["template"]["spec"]["containers"][0][
        "args"]
    assert "--webhook-persistent" not in args
    peered = {(d["kind"], d["metadata"]["name"]): d
              for d in render("operator.replicas=1", "operator.kopfPeering=true")}
    assert ("ClusterKopfPeering", "hwtune") in peered
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", "operator.kopfPeering=true", check=False)
    assert result.returncode != 0 and "operator.kopfPeering" in result.stderr


def test_values_schema_refuses_bad_values_with_the_field():
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", "operator.logFormat=xml", check=False)
    assert result.returncode != 0
    assert "/operator/logFormat" in result.stderr and "json" in result.stderr
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", "operator.webhook.failurePolicy=Maybe", check=False)
    assert result.returncode != 0 and "/operator/webhook/failurePolicy" in result.stderr
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", "operator.replicas=0", check=False)
    assert result.returncode != 0 and "/operator/replicas" in result.stderr


def test_chart_crds_are_the_generated_ones():
    generated = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    in_chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert generated and generated == in_chart
    for name in generated:
        assert (REPO / "crds" / name).read_text() == (CHART / "crds" / name).read_text()


@pytest.mark.cluster
def test_helm_installs_the_chart_into_the_real_cluster(kube, namespace):
    env = kube.env()
    release = f"hw-{namespace}"[:40]
    helm("install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "90s",
         env=env)  # the default: two replicas
    try:
        for crd in ("tuningstudies.hwtune.io", "tuningtrials.hwtune.io", "hardwarepools.hwtune.io"):
            got = kube.get_json("crd", crd)
            assert any(c["type"] == "Established" and c["status"] == "True"
                       for c in got["status"]["conditions"])
        deployment = kube.get_json("deployment", f"{release}-operator", namespace=namespace)
        assert deployment["status"].get("availableReplicas") == 2
        pods = kube.get_json("pods", namespace=namespace)["items"]
        names = {p["metadata"]["name"] for p in pods
                 if p["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"}
        assert len(names) == 2
        for pod in pods:  # each replica's Lease identity is its own pod's name
            if pod["metadata"]["name"] in names:
                pod_env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
                assert pod_env["HWTUNE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == \
                    "metadata.name"
        pdb = kube.get_json("poddisruptionbudget", f"{release}-operator", namespace=namespace)
        assert pdb["spec"]["maxUnavailable"] == 1
        # the operator's service account may read pools but not write them (least privilege)
        sa = f"system:serviceaccount:{namespace}:{release}"
        can = kube.kubectl("auth", "can-i", "list", "hardwarepools.hwtune.io", "--as", sa, check=False)
        assert can.stdout.strip() == "yes"
        cannot = kube.kubectl("auth", "can-i", "delete", "hardwarepools.hwtune.io", "--as", sa, check=False)
        assert cannot.stdout.strip() == "no"
        for verb in ("get", "create", "update"):  # the studies' writer Leases
            can = kube.kubectl("auth", "can-i", verb, "leases.coordination.k8s.io", "-n", namespace,
                               "--as", sa, check=False)
            assert can.stdout.strip() == "yes", (verb, can.stdout, can.stderr)
        # Secrets: it creates trials' token Secrets but cannot read any Secret (its own master
        # key reaches it through the pod's env, read by the kubelet)
        for verb, want in (("create", "yes"), ("get", "no"), ("list", "no"), ("watch", "no"),
                           ("delete", "no"), ("deletecollection", "no")):
            for ns in (namespace, "default"):
                can = kube.kubectl("auth", "can-i", verb, "secrets", "-n", ns, "--as", sa, check=False)
                assert can.stdout.strip() == want, (verb, ns, can.stdout, can.stderr)
        # pods/log: read (the stdout metrics collector), never anything more
        for verb, want in (("get", "yes"), ("create", "no"), ("delete", "no")):
            can = kube.kubectl("auth", "can-i", verb, "pods", "--subresource=log", "-n",
                               namespace, "--as", sa, check=False)
            assert can.stdout.strip() == want, (verb, can.stdout, can.stderr)
        key = kube.get_json("secret", f"{release}-operator-key", namespace=namespace)
        assert len(key["data"]["key"]) > 40
        status = helm("status", release, "--namespace", namespace, env=env)
        assert "STATUS: deployed" in status.stdout
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", env=env)
    gone = kube.kubectl("get", "deployment", f"{release}-operator", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

"""The chart's observability parts with the real helm: the generated PrometheusRule template and
dashboard JSON are fresh; rendered, the rules are exactly hwtune.observe.queries' and pass
promtool; the dashboard ConfigMap carries the sidecar label; the surrogate Deployment is pinned
to a GPU; bad values are refused; and an install with every flag on comes up in the local
cluster with the surrogate pod on a simulated GPU node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from hwtune.observe import chartgen
from hwtune.observe.promserver import prometheus_binary
from hwtune.observe.queries import ALERTS, PANELS, VARIABLES, alert_rules
from tests.chart.test_chart import CHART, KUBE_VERSION, helm, render

FIXTURES = Path(__file__).parent / "fixtures"
ALL_ON = ("surrogate.enabled=true", "serviceMonitor.enabled=true", "prometheusRule.enabled=true",
          "grafanaDashboard.enabled=true")


def by_kind(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_generated_chart_files_are_fresh(tmp_path):
    (tmp_path / "templates").mkdir()
    try:
        chartgen.write_chart_files(tmp_path)
    except ImportError as exc:
        pytest.fail(f"the dashboard needs the dev extra (pip install 'hwtune[dev]'): {exc}")
    for rel in (chartgen.RULE_TEMPLATE, chartgen.DASHBOARD_FILE):
        assert (CHART / rel).read_text() == (tmp_path / rel).read_text(), \
            f"charts/hwtune/{rel} is stale: run hack/gen-observe.sh"


def test_chart_lints_strictly_with_every_flag_on():
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    for value in ALL_ON:
        args += ["--set", value]
    assert "0 chart(s) failed" in helm(*args).stdout


def test_default_values_render_no_observability_objects():
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"PrometheusRule", "ServiceMonitor"}
    names = {d["metadata"]["name"] for d in render()}
    assert "t-surrogate" not in names and "t-dashboard" not in names


def test_rendered_rules_are_the_queries_and_pass_promtool(tmp_path):
    rule = by_kind(render("prometheusRule.enabled=true"))[("PrometheusRule", "t")]
    groups = rule["spec"]["groups"]
    assert groups[0]["rules"] == alert_rules()
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    out = subprocess.run([prometheus_binary("promtool"), "check", "rules", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout
    values = tmp_path / "values.yaml"  # a file: helm --set turns 0.75 into a string
    values.write_text(yaml.safe_dump({"prometheusRule": {
        "enabled": True, "thresholds": {"budgetFraction": 0.75}, "labels": {"release": "kps"}}}))
    out = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(values))
    tuned = by_kind([d for d in yaml.safe_load_all(out.stdout) if d])[("PrometheusRule", "t")]
    assert tuned["spec"]["groups"][0]["rules"] == alert_rules({"budget_fraction": 0.75})
    assert tuned["metadata"]["labels"]["release"] == "kps"


def test_dashboard_configmap_has_the_sidecar_label_and_every_panel():
    cm = by_kind(render("grafanaDashboard.enabled=true"))[("ConfigMap", "t-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(cm["data"]["hwtune.json"])
    assert board == json.loads((CHART / chartgen.DASHBOARD_FILE).read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert exprs == [p.expr for p in PANELS]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", *VARIABLES]
    xy = [p for p in board["panels"] if p["type"] == "xychart"]
    assert [(s["x"], s["y"]) for p in xy for s in p["options"]["series"]] == [
        ("cost", "runtime"), ("cost", "quality")]
    other = by_kind(render("grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring"))
    assert other[("ConfigMap", "t-dashboard")]["metadata"]["namespace"] == "monitoring"


def test_service_monitor_scrapes_the_operator_metrics_port():
    docs = by_kind(render("serviceMonitor.enabled=true", "serviceMonitor.interval=15s"))
    monitor = docs[("ServiceMonitor", "t-operator")]
    service = docs[("Service", "t-operator")]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics",
                                             "interval": "15s", "scrapeTimeout": "10s"}]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"][k] == v for k, v in selector.items())
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics"} in service["spec"]["ports"]
    container = docs[("Deployment", "t-operator")]["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=9090" in container["args"]
    assert {"name": "metrics", "containerPort": 9090} in container["ports"]


def test_surrogate_is_pinned_to_one_gpu_with_probes_and_a_locked_down_pod():
    docs = by_kind(render("surrogate.enabled=true",
                          "surrogate.nodeSelector.nvidia\\.com/gpu\\.product=Tesla-T4"))
    pod = docs[("Deployment", "t-surrogate")]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["image"] == "ghcr.io/hwtune/hwtune-surrogate:0.1.0"
    assert c["args"][:2] == ["surrogate", "serve"] and "--port=8470" in c["args"]
    service = docs[("Service", "t-surrogate")]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8470, "targetPort": "http"}]


@pytest.mark.parametrize("value, field", [
    ("surrogate.gpu.count=0", "/surrogate/gpu/count"),
    ("prometheusRule.thresholds.budgetFraction=2", "/prometheusRule/thresholds/budgetFraction"),
    ("serviceMonitor.interval=soon", "/serviceMonitor/interval"),
    ("grafanaDashboard.dashboards=1", "grafanaDashboard"),
])
def test_bad_observability_values_are_refused_with_the_field(value, field):
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION, "--set", value,
                  check=False)
    assert result.returncode != 0 and field in result.stderr, result.stderr


@pytest.mark.cluster
def test_install_with_every_flag_on_into_the_local_cluster(kube, namespace):
    kube.kubectl("apply", "-f", str(FIXTURES / "monitoring-crds.yaml"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
    env = kube.env()
    release = f"obs-{namespace[-6:]}"
    args = ["install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "120s"]
    for value in ALL_ON:
        args += ["--set", value]
    helm(*args, env=env)
    try:
        for name, replicas in ((f"{release}-operator", 2), (f"{release}-surrogate", 1)):
            deployment = kube.get_json("deployment", name, namespace=namespace)
            assert deployment["status"].get("availableReplicas") == replicas, name
        pods = kube.get_json("pods", namespace=namespace,
                             selector="app.kubernetes.io/component=surrogate")["items"]
        assert len(pods) == 1
        node = kube.get_json("node", pods[0]["spec"]["nodeName"])
        assert "nvidia.com/gpu.product" in node["metadata"]["labels"], node["metadata"]["labels"]
        assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 1
        # the monitoring objects add no rights: the operator still cannot touch other kinds
        sa = f"system:serviceaccount:{namespace}:{release}"
        for verb, what, want in (("create", "jobs.batch", "yes"),
                                 ("create", "deployments.apps", "no"),
                                 ("update", "nodes", "no"),
                                 ("create", "prometheusrules.monitoring.coreos.com", "no"),
                                 ("create", "servicemonitors.monitoring.coreos.com", "no")):
            can = kube.kubectl("auth", "can-i", verb, what, "-n", namespace, "--as", sa, check=False)
            assert can.stdout.strip() == want, (verb, what, can.stdout, can.stderr)
        kube.kubectl("-n", namespace, "get", "prometheusrule", release)
        kube.kubectl("-n", namespace, "get", "servicemonitor", f"{release}-operator")
        kube.kubectl("-n", namespace, "get", "configmap", f"{release}-dashboard")
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", env=env)

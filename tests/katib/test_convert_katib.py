"""``hwtune convert katib``: hand-written Experiments in the shapes of Katib's examples either
convert (and the study passes ``hwtune validate`` and the API server) or are refused with the
lost fields named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hwtune.api.katib import convert_experiment
from hwtune.cli.main import EXIT_LOSSY, app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = Path(__file__).with_name("experiments")
CONFIGMAP = EXPERIMENTS / "trial-templates-configmap.yaml"

# file -> (extra CLI args, lost Katib fields: empty means a lossless conversion)
CASES = {
    "random.yaml": ((), []),
    "tpe.yaml": ((), []),
    "medianstop.yaml": ((), ["spec.earlyStopping"]),
    "medianstop.yaml --max-resource": (("--max-resource", "20"), []),
    "hyperband.yaml": ((), []),
    "custom-format.yaml": (("--configmap", str(CONFIGMAP)), []),
    "custom-format.yaml without configmap": ((), ["spec.trialTemplate.configMap",
                                                  "spec.trialTemplate"]),
    "pytorchjob.yaml": ((), ["spec.parameters[0].feasibleSpace.distribution",
                             "spec.metricsCollectorSpec.collector.kind",
                             "spec.trialTemplate.trialSpec.kind"]),
    "pbt.yaml": ((), ["spec.algorithm.algorithmName"]),
}


def convert(tmp_path: Path, case: str) -> tuple[int, str, str, list[dict]]:
    args, _ = CASES[case]
    out = tmp_path / (case.split()[0].replace(".yaml", "") + ".study.yaml")
    result = runner.invoke(app, ["convert", "katib", str(EXPERIMENTS / case.split()[0]),
                                 "-o", str(out), *args])
    docs = list(yaml.safe_load_all(out.read_text())) if out.exists() else []
    return result.exit_code, result.stdout, result.stderr, docs


@pytest.mark.parametrize("case", CASES)
def test_convert_or_name_what_is_lost(tmp_path, case):
    code, _, stderr, docs = convert(tmp_path, case)
    lost = CASES[case][1]
    lost_lines = [line for line in stderr.splitlines() if " lost " in line]
    if not lost:
        assert code == 0, stderr
        assert not lost_lines
    else:
        assert code == EXIT_LOSSY, stderr
        for field in lost:
            assert any(f"lost {field}:" in line for line in lost_lines), (field, stderr)
    # Whatever is written is a valid study file.
    assert len(docs) == 1 and docs[0]["kind"] == "TuningStudy"
    if not lost or case.startswith(("medianstop", "pbt")):
        study = tmp_path / "check.yaml"
        study.write_text(yaml.safe_dump(docs[0]))
        result = runner.invoke(app, ["validate", str(study)])
        assert result.exit_code == 0, result.output


def test_fields_are_converted_as_documented():
    doc = yaml.safe_load((EXPERIMENTS / "tpe.yaml").read_text())
    study = convert_experiment(doc).study
    spec = study["spec"]
    assert spec["objectives"] == [{"metric": "loss", "goal": "minimize", "strategy": "latest"}]
    assert spec["algorithm"] == {"scheduler": "fifo", "searcher": "optuna-tpe", "seed": 10}
    assert spec["parameters"]["lr"] == {"type": "float", "min": 0.0001, "max": 0.1,
                                        "scale": "log"}
    assert spec["parameters"]["momentum"]["step"] == 0.1
    assert spec["parameters"]["batch-size"] == {"type": "int", "values": [32, 64, 128]}
    job = spec["trialTemplate"]["job"]
    assert job["backoffLimit"] == 1 and job["activeDeadlineSeconds"] == 3600
    assert job["template"]["metadata"] == {"annotations": {"sidecar.istio.io/inject": "false"}}
    args = job["template"]["spec"]["containers"][0]["args"]
    assert args == ["--lr", "$(HWTUNE_PARAM_LR)", "--momentum", "$(HWTUNE_PARAM_MOMENTUM)",
                    "--batch-size", "$(HWTUNE_PARAM_BATCH_SIZE)",
                    "--run-name", "$(HWTUNE_STUDY)-$(HWTUNE_TRIAL_ID)"]
    assert spec["metricsCollector"] == {"kind": "stdout"}
    # additionalMetricNames: read from the output and recorded, not optimised.
    random = convert_experiment(yaml.safe_load((EXPERIMENTS / "random.yaml").read_text()))
    assert random.study["spec"]["metricsCollector"] == {
        "kind": "stdout", "additionalMetrics": ["train-accuracy"]}
    hyper = convert_experiment(yaml.safe_load((EXPERIMENTS / "hyperband.yaml").read_text()))
    hspec = hyper.study["spec"]
    assert hspec["algorithm"]["scheduler"] == "hyperband" and "num-epochs" not in hspec["parameters"]
    assert hspec["fidelity"] == {"resource": "step", "min": 1, "max": 9, "reductionFactor": 3}
    assert "--num-epochs=$(HWTUNE_MAX_RESOURCE)" in \
        hspec["trialTemplate"]["job"]["template"]["spec"]["containers"][0]["command"]
    custom = convert_experiment(
        yaml.safe_load((EXPERIMENTS / "custom-format.yaml").read_text()),
        configmaps={("kubeflow", "trial-templates"): yaml.safe_load(CONFIGMAP.read_text())["data"]})
    collector = custom.study["spec"]["metricsCollector"]
    assert collector["kind"] == "regex"
    from hwtune.report.collector import LineCollector

    parsed = LineCollector("regex", objectives=["loss"], pattern=collector["pattern"])
    assert parsed.feed_line("epoch 3 loss: 0.25")[0].metrics == {"loss": 0.25}


def test_not_an_experiment_is_refused(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job"}))
    result = runner.invoke(app, ["convert", "katib", str(path)])
    assert result.exit_code == 2 and "not a Katib Experiment" in result.stderr


@pytest.fixture(scope="module")
def crds(kube):
    from hwtune.api.crd import RESOURCES

    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 *[f"crd/{r.__crd__.crd_name}" for r in RESOURCES])
    return kube


def test_converted_studies_are_accepted_by_the_api_server(tmp_path, crds, namespace):
    applied = 0
    for case, (_, lost) in CASES.items():
        if lost:
            continue
        code, _, _, docs = convert(tmp_path, case)
        doc = docs[0]
        doc["metadata"]["name"] = doc["metadata"]["name"] + f"-{applied}"
        result = crds.kubectl("-n", namespace, "apply", "--validate=strict", "-f", "-",
                              input=json.dumps(doc), check=False)
        assert result.returncode == 0, (case, result.stderr)
        applied += 1
    assert applied == 5
    names = json.loads(crds.kubectl("-n", namespace, "get", "tuningstudies", "-o",
                                    "json").stdout)["items"]
    assert len(names) == 5


def test_the_operator_builds_a_job_from_a_job_template_with_a_primary_container():
    from hwtune.api.records import Hardware
    from hwtune.backends.kubernetes.manifests import JobParams, job_manifest
    from hwtune.trainer.env import TrialEnv

    conv = convert_experiment(yaml.safe_load((EXPERIMENTS / "tpe.yaml").read_text()))
    template = conv.study["spec"]["trialTemplate"]
    template["job"]["template"]["spec"]["containers"].insert(
        0, {"name": "log-shipper", "image": "fluent-bit:3"})
    params = JobParams(namespace="ns", study="tpe-example", trial_id=4, trial_uid="uid",
                       launch=1, env=TrialEnv(trial_id="4", study="tpe-example",
                                              params={"lr": 0.01}),
                       hardware=Hardware("a100", 2), node_selector={}, tolerations=(),
                       gpu_pool=True, retry_limit=3)
    job = job_manifest(template, params)
    spec = job["spec"]
    assert spec["backoffLimit"] == 1 and spec["activeDeadlineSeconds"] == 3600
    pod = spec["template"]["spec"]
    shipper, trainer = pod["containers"]
    assert trainer["name"] == "training-container" and "env" not in shipper
    assert {"name": "HWTUNE_PARAM_LR", "value": "0.01"} in trainer["env"]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert spec["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


def _experiment_in(tmp_path: Path, namespace: str) -> Path:
    doc = yaml.safe_load((EXPERIMENTS / "custom-format.yaml").read_text())
    doc["spec"]["trialTemplate"]["configMap"]["configMapNamespace"] = namespace
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_trial_template_configmap_is_read_from_the_cluster(tmp_path, kube, namespace,
                                                                monkeypatch):
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    configmap["metadata"]["namespace"] = namespace
    kube.kubectl("apply", "-f", "-", input=json.dumps(configmap))
    experiment = _experiment_in(tmp_path, namespace)
    expected = convert_experiment(
        yaml.safe_load(experiment.read_text()),
        configmaps={(namespace, "trial-templates"): configmap["data"]}).study
    # --from-cluster with a kubeconfig; then automatically, from $KUBECONFIG.
    for args, env in ((["--from-cluster", "--kubeconfig", str(kube.kubeconfig)], None),
                      ([], str(kube.kubeconfig))):
        if env is None:
            monkeypatch.delenv("KUBECONFIG", raising=False)
        else:
            monkeypatch.setenv("KUBECONFIG", env)
        out = tmp_path / "study.yaml"
        result = runner.invoke(app, ["convert", "katib", str(experiment), "-o", str(out), *args])
        assert result.exit_code == 0, result.stderr
        assert yaml.safe_load(out.read_text()) == expected
    # Not there: the conversion is lossy and says where it looked.
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    result = runner.invoke(app, ["convert", "katib", str(_experiment_in(tmp_path, "nowhere"))])
    assert result.exit_code == EXIT_LOSSY
    assert "ConfigMap nowhere/trial-templates not found in the cluster" in result.stderr


def test_an_unreachable_cluster_is_a_clear_error(tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}]}))
    experiment = _experiment_in(tmp_path, "kubeflow")
    result = runner.invoke(app, ["convert", "katib", str(experiment), "--from-cluster",
                                 "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 2, result.stderr
    assert "cannot reach the cluster of" in result.stderr and "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
    # Without --from-cluster the same kubeconfig is tried, noted, and the loss reported.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = runner.invoke(app, ["convert", "katib", str(experiment)])
    assert result.exit_code == EXIT_LOSSY
    assert "note: cannot reach the cluster" in result.stderr
    assert "lost spec.trialTemplate.configMap" in result.stderr

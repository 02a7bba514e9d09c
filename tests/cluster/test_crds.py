"""The generated CRDs and admission policy on a real API server.

Installs crds/ (CRDs + the TuningStudy ValidatingAdmissionPolicy), round-trips a study, a trial
and pools (spec, status through the status subresource, printer columns), and checks that every
bad manifest of tests/api/invalid_manifests.py is refused by ``kubectl apply`` with stderr naming
the field and the reason: the same table the pydantic models are tested with.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hwtune.api.crd import (
    RESOURCES,
    HardwarePool,
    TuningStudy,
    TuningTrial,
    load_documents,
    parse_manifest,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def _load_case_table() -> Any:
    # The table lives with the unit tests (tests/api); both directories use it.
    path = ROOT / "tests" / "api" / "invalid_manifests.py"
    spec = importlib.util.spec_from_file_location("hwtune_invalid_manifests", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cases = _load_case_table()
POLICY_MARK = "ValidatingAdmissionPolicy 'tuningstudies.hwtune.io'"


def apply(kube: Any, doc: dict[str, Any], namespace: str | None = None, *extra: str) -> Any:
    """``kubectl apply --validate=strict`` of one manifest; never raises."""
    ns = ["-n", namespace] if namespace else []
    return kube.kubectl(*ns, "apply", "--validate=strict", *extra, "-f", "-",
                        input=json.dumps(doc), check=False)


def get_json(kube: Any, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    ns = ["-n", namespace] if namespace else []
    return json.loads(kube.kubectl(*ns, "get", kind, name, "-o", "json").stdout)


def table(kube: Any, *args: str) -> list[dict[str, str]]:
    """Rows of ``kubectl get`` as dicts keyed by column header."""
    lines = [l for l in kube.kubectl("get", *args).stdout.splitlines() if l.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return rows


def normalise_path(text: str) -> str:
    # The API server writes map keys as [key] in CEL errors and as .key in schema errors.
    return re.sub(r"\[([A-Za-z_][^\]]*)\]", r".\1", text)


def policy_probe() -> dict[str, Any]:
    doc = cases.example_study()
    doc["metadata"]["name"] = "policy-probe"
    del doc["spec"]["parameters"]["model"]["values"]
    return doc


@pytest.fixture(scope="module")
def crds(kube: Any) -> Any:
    """The CRDs and the admission policy installed, established and in effect."""
    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 *[f"crd/{r.__crd__.crd_name}" for r in RESOURCES])
    # The policy is compiled and picked up asynchronously: wait until it refuses a probe.
    kube.wait_for(
        lambda: POLICY_MARK in apply(kube, policy_probe(), "default", "--dry-run=server").stderr,
        timeout=60, what="the TuningStudy admission policy to take effect")
    return kube


@pytest.fixture(scope="module")
def cases_namespace(crds: Any) -> Iterator[str]:
    """One namespace for all refusal cases (nothing is ever created in it)."""
    name = f"crd-cases-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        crds.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                     check=False)


@pytest.mark.parametrize("case", cases.ALL_CASES, ids=lambda c: c.id)
def test_bad_manifest_is_refused_naming_field_and_reason(
        crds: Any, cases_namespace: str, case: Any) -> None:
    doc = case.manifest()
    if case.path != "metadata.name":
        doc["metadata"]["name"] = f"bad-{case.id}"[:48].rstrip("-")
    namespace = None if case.base == "pool" else cases_namespace
    result = apply(crds, doc, namespace)
    assert result.returncode != 0, f"{case.id} was accepted: {result.stdout}"
    stderr = result.stderr
    assert normalise_path(case.path) in normalise_path(stderr), \
        f"{case.id}: field {case.path} not named in: {stderr}"
    assert case.server in stderr, f"{case.id}: {case.server!r} not in: {stderr}"
    kind = {"study": "tuningstudy", "pool": "hardwarepool", "trial": "tuningtrial"}[case.base]
    ns = ["-n", namespace] if namespace else []
    gone = crds.kubectl(*ns, "get", kind, doc["metadata"]["name"], check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_policy_rules_are_refused_by_the_policy(crds: Any, cases_namespace: str) -> None:
    doc = policy_probe()
    result = apply(crds, doc, cases_namespace)
    assert result.returncode != 0
    assert POLICY_MARK in result.stderr
    assert "spec.parameters[model].values: Required value: a categorical parameter needs " \
           "values" in result.stderr


def test_unknown_field_refused_by_server_side_apply(crds: Any, namespace: str) -> None:
    doc = cases.example_study()
    doc["spec"]["budget"]["maxTrial"] = 3
    result = apply(crds, doc, namespace, "--server-side", "--field-manager=test")
    assert result.returncode != 0
    assert ".spec.budget.maxTrial: field not declared in schema" in result.stderr


def test_example_study_round_trips(crds: Any, namespace: str) -> None:
    doc = cases.example_study()
    result = apply(crds, doc, namespace, "--server-side", "--field-manager=test")
    assert result.returncode == 0, result.stderr
    got = get_json(crds, "tuningstudy", "resnet-cifar", namespace)
    assert got["spec"] == doc["spec"]
    assert parse_manifest(got).spec == parse_manifest(doc).spec
    assert got["metadata"]["generation"] == 1


def test_server_fills_the_same_defaults_as_the_model(crds: Any, namespace: str) -> None:
    doc = cases.example_study()
    doc["metadata"]["name"] = "minimal"
    spec = doc["spec"]
    spec["objectives"] = [{"metric": "val_error"}, {"metric": "cost"}]
    spec["fidelity"] = {"max": 9}
    spec["algorithm"] = {"scheduler": "asha"}
    for key in ("budget", "checkpoints", "hardware"):
        del spec[key]
    assert apply(crds, doc, namespace).returncode == 0
    got = get_json(crds, "tuningstudy", "minimal", namespace)
    assert got["spec"]["objectives"] == [{"metric": "val_error", "goal": "minimize"},
                                         {"metric": "cost", "goal": "minimize"}]
    assert got["spec"]["fidelity"] == {"max": 9, "min": 1, "reductionFactor": 3,
                                       "resource": "epoch"}
    assert got["spec"]["algorithm"] == {"scheduler": "asha", "searcher": "random"}
    assert parse_manifest(got).spec == parse_manifest(doc).spec


def test_study_status_subresource_and_columns(crds: Any, namespace: str) -> None:
    doc = cases.example_study()
    assert apply(crds, doc, namespace).returncode == 0
    status = cases.example_study_status()
    crds.kubectl("-n", namespace, "patch", "tuningstudy", "resnet-cifar", "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": status.to_dict()}))
    got = parse_manifest(get_json(crds, "tuningstudy", "resnet-cifar", namespace))
    assert isinstance(got, TuningStudy) and got.status == status

    row, = table(crds, "-n", namespace, "tuningstudies", "resnet-cifar")
    assert {k: row[k] for k in ("PHASE", "TRIALS", "COMPLETED", "RUNNING", "FRONT", "COST")} == \
        {"PHASE": "Running", "TRIALS": "12", "COMPLETED": "6", "RUNNING": "4", "FRONT": "1",
         "COST": "12.5"}
    wide, = table(crds, "-n", namespace, "ts", "resnet-cifar", "-o", "wide")
    assert (wide["GPU-HOURS"], wide["HYPERVOLUME"]) == ("3.25", "0.61")

    # Status written through the main resource is ignored: only the subresource sets it.
    doc["status"] = {"phase": "Failed"}
    assert apply(crds, doc, namespace).returncode == 0
    assert get_json(crds, "tuningstudy", "resnet-cifar", namespace)["status"]["phase"] == "Running"


def test_bad_update_is_refused_and_leaves_the_study_unchanged(crds: Any, namespace: str) -> None:
    assert apply(crds, cases.example_study(), namespace).returncode == 0
    before = get_json(crds, "tuningstudy", "resnet-cifar", namespace)["spec"]
    for patch, fragment in [
        ({"spec": {"parameters": {"lr": {"min": 0.5}}}},
         "spec.parameters[lr].min: Invalid value: min must be less than max"),
        ({"spec": {"parameters": {"model": {"values": None}}}},
         "spec.parameters[model].values: Required value: a categorical parameter needs values"),
        ({"spec": {"budget": {"maxParallelTrials": 500}}},
         "maxParallelTrials must not exceed maxTrials"),
    ]:
        result = crds.kubectl("-n", namespace, "patch", "tuningstudy", "resnet-cifar",
                              "--type=merge", "-p", json.dumps(patch), check=False)
        assert result.returncode != 0 and fragment in result.stderr, result.stderr
    assert get_json(crds, "tuningstudy", "resnet-cifar", namespace)["spec"] == before


def test_trial_round_trip_status_and_columns(crds: Any, namespace: str) -> None:
    assert apply(crds, cases.example_study(), namespace).returncode == 0
    study_uid = get_json(crds, "tuningstudy", "resnet-cifar", namespace)["metadata"]["uid"]
    doc = cases.example_trial()
    doc["metadata"]["ownerReferences"] = [{
        "apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy", "name": "resnet-cifar",
        "uid": study_uid, "controller": True, "blockOwnerDeletion": True}]
    result = apply(crds, doc, namespace, "--server-side", "--field-manager=test")
    assert result.returncode == 0, result.stderr
    got = get_json(crds, "tuningtrial", "resnet-cifar-7", namespace)
    assert got["spec"] == doc["spec"]
    assert type(got["spec"]["parameters"]["batch_size"]) is int
    assert type(got["spec"]["parameters"]["lr"]) is float

    status = {"phase": "Running", "resource": 3, "runtimeSeconds": 95.5, "costUSD": 0.22,
              "jobName": "resnet-cifar-7-0", "lastCheckpoint": "resnet-cifar/7/epoch-3",
              "learningCurve": [{"resource": r, "metrics": {"val_error": 0.5 / r,
                                                            "runtime": 30.0 * r}}
                                for r in (1, 2, 3)]}
    crds.kubectl("-n", namespace, "patch", "tuningtrial", "resnet-cifar-7", "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": status}))
    trial = parse_manifest(get_json(crds, "tuningtrial", "resnet-cifar-7", namespace))
    assert isinstance(trial, TuningTrial)
    assert trial.status.to_dict() == status
    row, = table(crds, "-n", namespace, "tt")
    assert {k: row[k] for k in ("NAME", "STUDY", "PHASE", "HARDWARE", "GPUS", "RESOURCE",
                                "COST")} == {
        "NAME": "resnet-cifar-7", "STUDY": "resnet-cifar", "PHASE": "Running",
        "HARDWARE": "a100", "GPUS": "2", "RESOURCE": "3", "COST": "0.22"}

    bad = crds.kubectl("-n", namespace, "patch", "tuningtrial", "resnet-cifar-7",
                       "--subresource=status", "--type=merge",
                       "-p", json.dumps({"status": {"phase": "Exploded"}}), check=False)
    assert bad.returncode != 0 and 'status.phase: Unsupported value: "Exploded"' in bad.stderr


def test_pools_round_trip_status_and_columns(crds: Any) -> None:
    docs = load_documents((ROOT / "examples" / "pools.yaml").read_text())
    text = (ROOT / "examples" / "pools.yaml").read_text()
    crds.kubectl("apply", "--server-side", "--field-manager=test", "--validate=strict", "-f", "-",
                 input=text)
    for doc in docs:
        got = get_json(crds, "hardwarepool", doc["metadata"]["name"])
        assert got["spec"] == doc["spec"]
        assert parse_manifest(got).spec == parse_manifest(doc).spec
    rows = {r["NAME"]: r for r in table(crds, "hwp", "t4", "a100", "h100")}
    assert {n: (r["GPU"], r["GPUS/NODE"], r["PRICE"]) for n, r in rows.items()} == {
        "t4": ("nvidia-tesla-t4", "1", "0.53"),
        "a100": ("nvidia-a100-80gb", "8", "4.1"),
        "h100": ("nvidia-h100-80gb", "8", "6.88")}

    # Status of a pool of its own (pools are cluster-scoped and shared by the session).
    pool = yaml.safe_load(yaml.safe_dump(docs[0]))
    pool["metadata"]["name"] = f"test-pool-{secrets.token_hex(3)}"
    assert apply(crds, pool).returncode == 0
    try:
        crds.kubectl("patch", "hardwarepool", pool["metadata"]["name"], "--subresource=status",
                     "--type=merge", "-p", json.dumps({"status": {"nodes": 4,
                                                                  "allocatableGPUs": 4}}))
        got = parse_manifest(get_json(crds, "hardwarepool", pool["metadata"]["name"]))
        assert isinstance(got, HardwarePool)
        assert (got.status.nodes, got.status.allocatable_gpus) == (4, 4)
        wide, = table(crds, "hwp", pool["metadata"]["name"], "-o", "wide")
        assert wide["NODES"] == "4" and wide["MEMORY"] == "16"
    finally:
        crds.kubectl("delete", "hardwarepool", pool["metadata"]["name"], "--ignore-not-found",
                     check=False)


def test_short_names_and_category(crds: Any, namespace: str) -> None:
    assert apply(crds, cases.example_study(), namespace).returncode == 0
    assert apply(crds, cases.example_trial(), namespace).returncode == 0
    crds.kubectl("apply", "-f", str(ROOT / "examples" / "pools.yaml"))
    # The category lists every hwtune kind: the namespace's studies and trials, and the pools.
    listed = set(crds.kubectl("-n", namespace, "get", "hwtune", "-o", "name").stdout.split())
    assert {"tuningstudy.hwtune.io/resnet-cifar", "tuningtrial.hwtune.io/resnet-cifar-7",
            "hardwarepool.hwtune.io/t4"} <= listed
    assert {n.split("/")[0] for n in listed} == {
        "tuningstudy.hwtune.io", "tuningtrial.hwtune.io", "hardwarepool.hwtune.io"}
    for short, name in [("ts", "tuningstudy.hwtune.io/resnet-cifar"),
                        ("tstudy", "tuningstudy.hwtune.io/resnet-cifar"),
                        ("tt", "tuningtrial.hwtune.io/resnet-cifar-7"),
                        ("ttrial", "tuningtrial.hwtune.io/resnet-cifar-7")]:
        assert crds.kubectl("-n", namespace, "get", short, "-o", "name").stdout.split() == [name]
    assert "hardwarepool.hwtune.io/t4" in crds.kubectl("get", "hwp", "-o", "name").stdout.split()


def post_yaml(kube: Any, path: str, text: str) -> tuple[int, str]:
    """POST ``text`` to the API server as application/yaml: the server reads the YAML itself
    (kubectl would convert it to JSON first and silently keep the later of two duplicate keys)."""
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    request = urllib.request.Request(
        cluster["server"] + path, data=text.encode(), method="POST",
        headers={"Content-Type": "application/yaml", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("case", cases.YAML_CASES, ids=lambda c: c.id)
def test_yaml_file_verdicts_agree_with_the_api_server(
        crds: Any, cases_namespace: str, case: Any) -> None:
    """The same files as tests/api/test_validation.py::test_yaml_file_verdicts, read by the API
    server itself (strict field validation, dry run): refused by both or accepted by both."""
    status, body = post_yaml(
        crds, f"/apis/hwtune.io/v1alpha1/namespaces/{cases_namespace}/tuningstudies"
              "?dryRun=All&fieldValidation=Strict", case.build())
    assert status < 500, f"{case.id}: {status} {body[:1000]}"
    assert (status >= 400) == case.refused, f"{case.id}: the API server said {status}: {body[:1000]}"

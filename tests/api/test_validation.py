"""The pydantic models refuse every bad manifest of the shared table with the API server's field
path, and accept the examples unchanged."""

from __future__ import annotations

import pytest
import yaml

from hwtune.api.crd import (
    HardwarePool,
    ManifestError,
    TuningStudy,
    TuningStudySpec,
    load_documents,
    parse_manifest,
    parse_spec,
    validation_errors,
)
from invalid_manifests import (
    ALL_CASES,
    EXAMPLES,
    YAML_CASES,
    Case,
    YamlCase,
    example_study,
    example_trial,
)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_bad_manifest_is_refused_naming_the_field(case: Case) -> None:
    errors = validation_errors(case.manifest())
    assert errors, f"{case.id}: the model accepted it"
    at_path = [e for e in errors if e.path == case.path]
    assert at_path, f"{case.id}: no error at {case.path}; got {[str(e) for e in errors]}"
    assert any(case.model_fragment in e.message for e in at_path), \
        f"{case.id}: {case.model_fragment!r} not in {[e.message for e in at_path]}"


def test_case_ids_are_unique_and_enough() -> None:
    ids = [c.id for c in ALL_CASES]
    assert len(ids) == len(set(ids))
    assert sum(c.base == "study" for c in ALL_CASES) >= 25


@pytest.mark.parametrize("name", ["study.yaml", "pools.yaml"])
def test_examples_round_trip_unchanged(name: str) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
    assert docs
    for doc in docs:
        model = parse_manifest(doc)
        assert model.to_dict() == doc
        assert type(model).model_validate(model.to_dict()) == model


def test_trial_round_trip_keeps_parameter_types() -> None:
    doc = example_trial()
    trial = parse_manifest(doc)
    assert trial.to_dict() == doc
    values = trial.spec.parameters
    assert type(values["lr"]) is float and type(values["batch_size"]) is int
    assert trial.spec.hardware.to_record().gpu_count == 2


def test_example_study_content() -> None:
    study = parse_manifest(example_study())
    assert isinstance(study, TuningStudy)
    assert [o.metric for o in study.spec.objectives] == ["val_error", "runtime", "cost"]
    assert study.spec.parameters["momentum"].condition.parameter == "optimizer"
    assert study.spec.parameters["momentum"].condition.in_ == ["sgd"]
    assert study.spec.trial_template.spec.containers[0].name == "trainer"
    # Pod fields hwtune does not model pass through untouched.
    assert study.to_dict()["spec"]["trialTemplate"]["spec"]["restartPolicy"] == "Never"


def test_defaults_fill_unset_fields() -> None:
    doc = example_study()
    doc["spec"]["objectives"] = [{"metric": "loss"}]
    doc["spec"]["algorithm"] = {}
    doc["spec"]["fidelity"] = {"max": 9}
    spec = parse_manifest(doc).spec
    assert spec.objectives[0].goal.value == "minimize"
    assert spec.objective_records()[0].loss(2.0) == 2.0
    assert (spec.algorithm.scheduler.value, spec.algorithm.searcher.value) == ("fifo", "random")
    assert (spec.fidelity.resource, spec.fidelity.min, spec.fidelity.reduction_factor) == \
        ("epoch", 1, 3)


def test_snake_case_keys_are_refused_like_the_server_does() -> None:
    doc = example_study()
    doc["spec"]["trial_template"] = doc["spec"].pop("trialTemplate")
    paths = {e.path for e in validation_errors(doc)}
    assert {"spec.trial_template", "spec.trialTemplate"} <= paths


def test_numbers_in_strings_are_not_coerced() -> None:
    doc = example_study()
    doc["spec"]["budget"]["maxTrials"] = "200"
    assert [e.path for e in validation_errors(doc)] == ["spec.budget.maxTrials"]


def test_condition_cycle_is_refused_offline() -> None:
    doc = example_study()
    params = doc["spec"]["parameters"]
    params["a"] = {"type": "categorical", "values": ["x", "y"],
                   "condition": {"parameter": "b", "in": ["x"]}}
    params["b"] = {"type": "categorical", "values": ["x", "y"],
                   "condition": {"parameter": "a", "in": ["x"]}}
    errors = validation_errors(doc)
    assert [(e.path, e.message) for e in errors] == [
        ("spec.parameters", "conditions form a cycle: a -> b -> a")]


def test_categorical_values_may_mix_scalars() -> None:
    doc = example_study()
    doc["spec"]["parameters"]["use_bn"] = {"type": "categorical", "values": [True, False],
                                           "default": False}
    doc["spec"]["parameters"]["dropout"] = {"type": "float", "values": [0.0, 0.1, 0.5],
                                            "default": 0.1}
    assert validation_errors(doc) == []
    doc["spec"]["parameters"]["use_bn"]["values"] = [True, [1]]
    assert [e.path for e in validation_errors(doc)] == ["spec.parameters[use_bn].values[1]"]


def test_wrong_kind_and_api_version() -> None:
    doc = example_study()
    with pytest.raises(ManifestError) as info:
        parse_manifest({**doc, "apiVersion": "hwtune.io/v1"}, source="study.yaml")
    assert info.value.errors[0].path == "apiVersion"
    assert str(info.value).startswith("study.yaml: apiVersion: must be 'hwtune.io/v1alpha1'")
    with pytest.raises(ManifestError) as info:
        parse_manifest({**doc, "kind": "Experiment"})
    assert info.value.errors[0].path == "kind"
    assert "HardwarePool, TuningStudy, TuningTrial" in info.value.errors[0].message
    with pytest.raises(ManifestError):
        parse_manifest(["not", "a", "mapping"])


def test_bare_spec_errors_are_prefixed() -> None:
    spec = example_study()["spec"]
    assert isinstance(parse_spec(TuningStudySpec, spec), TuningStudySpec)
    spec["fidelity"]["max"] = 1
    with pytest.raises(ManifestError) as info:
        parse_spec(TuningStudySpec, spec)
    assert [str(e) for e in info.value.errors] == ["spec.fidelity.min: min must be less than max"]


def test_every_error_is_reported_not_just_the_first() -> None:
    doc = example_study()
    doc["spec"]["budget"]["maxTrials"] = 0
    doc["spec"]["parameters"]["lr"]["min"] = 1.0
    doc["spec"]["hardware"]["gpuCounts"] = [0]
    paths = {e.path for e in validation_errors(doc)}
    assert paths == {"spec.budget.maxTrials", "spec.parameters[lr].min",
                     "spec.hardware.gpuCounts[0]"}


def test_load_documents_reads_numbers_like_kubectl() -> None:
    text = "a: 1e-4\nb: 2.5E+3\nc: 12\nd: sgd\n---\n---\ne: .5\n"
    assert load_documents(text) == [{"a": 1e-4, "b": 2500.0, "c": 12, "d": "sgd"}, {"e": 0.5}]
    doc = load_documents((EXAMPLES / "study.yaml").read_text().replace("1.0e-4", "1e-4"))[0]
    assert parse_manifest(doc).spec.parameters["lr"].min == 1e-4


def test_pool_price_per_gpu_hour_from_node_price() -> None:
    doc = load_documents((EXAMPLES / "pools.yaml").read_text())[1]
    pool = parse_manifest(doc)
    assert isinstance(pool, HardwarePool) and pool.spec.gpu_hour_price == pytest.approx(4.10)
    del doc["spec"]["pricePerGPUHour"]
    doc["spec"]["pricePerNodeHour"] = 32.8
    assert parse_manifest(doc).spec.gpu_hour_price == pytest.approx(4.10)


def test_trial_parameter_names_are_checked_offline() -> None:
    # Untyped map values hide the map from CRD rules, so only the models check these keys.
    doc = example_trial()
    doc["spec"]["parameters"]["batch size"] = 64
    assert [str(e) for e in validation_errors(doc)] == [
        "spec.parameters: parameter name batch size must match ^[A-Za-z_][A-Za-z0-9_-]*$"]


@pytest.mark.parametrize("case", YAML_CASES, ids=lambda c: c.id)
def test_yaml_file_verdicts(case: YamlCase) -> None:
    """The reader's verdict on each file; tests/cluster/test_crds.py gets the same from kubectl."""
    try:
        docs = load_documents(case.build(), "study.yaml")
        errors = [e for doc in docs for e in validation_errors(doc)]
        source = "study.yaml"
    except ManifestError as exc:
        errors, source = exc.errors, exc.source
    assert bool(errors) == case.refused, [str(e) for e in errors]
    if case.refused:
        assert source == "study.yaml"
        assert any(e.path.startswith(case.path) and case.model in e.message for e in errors), \
            [str(e) for e in errors]

"""The generated CRDs are structural, carry every rule of the models, and print useful columns."""

from __future__ import annotations

import re
import typing
from typing import Any, Iterator

import pytest
import yaml
from pydantic import BaseModel

from hwtune.api import crdgen
from hwtune.api._base import CrdModel, Enforcement, _unwrap
from hwtune.api.crd import (
    RESOURCES,
    HardwarePool,
    TuningStudy,
    TuningStudySpec,
    TuningTrial,
)


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


def _schema(resource: type[CrdModel]) -> dict[str, Any]:
    return crdgen.crd_for(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_schema_is_structural(resource: type[CrdModel]) -> None:
    for path, node in _nodes(_schema(resource)):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "not", "$defs", "title",
                    "uniqueItems", "propertyNames", "const"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") \
            or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties") is not False, path
        if node.get("x-kubernetes-list-type") == "set":
            assert node["items"].get("type") in ("string", "integer", "number"), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def _validations(schema: dict[str, Any]) -> set[str]:
    return {v["rule"] for _, node in _nodes(schema) for v in node.get("x-kubernetes-validations", [])}


def _models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """The model and every model nested in its fields."""
    yield model
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            tp = _unwrap(stack.pop())
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                yield from _models(tp)
            else:
                stack.extend(typing.get_args(tp) if tp is not None else ())


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_every_schema_rule_of_the_models_is_in_the_crd(resource: type[CrdModel]) -> None:
    want = {r.cel for m in _models(resource) for r in m.__dict__.get("__rules__", ())
            if r.enforced_by is Enforcement.SCHEMA}
    assert _validations(_schema(resource)) == want
    if resource is not TuningTrial:
        assert want


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_rules_read_only_fields_visible_to_cel(resource: type[CrdModel]) -> None:
    # CRD rules cannot see untyped (x-kubernetes-preserve-unknown-fields, no type) fields, nor
    # maps and lists of them: the API server refuses to compile such rules.
    def visible(node: dict[str, Any]) -> bool:
        if "type" not in node:
            return bool(node.get("x-kubernetes-int-or-string"))
        inner = node.get("items") or node.get("additionalProperties")
        return visible(inner) if isinstance(inner, dict) else True

    for path, node in _nodes(_schema(resource)):
        for rule in node.get("x-kubernetes-validations", []):
            text = rule["rule"] + rule.get("messageExpression", "")
            for field in set(re.findall(r"\bself\.(\w+)", text)):
                assert field in node.get("properties", {}), f"{path}: {field} not declared"
                assert visible(node["properties"][field]), f"{path}: {field} is untyped"


def test_rules_sit_on_the_right_node_with_field_paths() -> None:
    params = _schema(TuningStudy)["properties"]["spec"]["properties"]["parameters"]
    rules = {v["message"]: v for v in params["additionalProperties"]["x-kubernetes-validations"]}
    assert rules["min must be less than max"]["fieldPath"] == ".min"
    assert rules["log scale needs min > 0"]["reason"] == "FieldValueInvalid"
    assert params["maxProperties"] == 64 and params["minProperties"] == 1


def test_policy_carries_every_policy_rule_and_quantifies_over_parameters() -> None:
    policy, binding = crdgen.admission_policy(TuningStudy)
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [{"apiGroups": ["hwtune.io"], "apiVersions": ["v1alpha1"],
                      "operations": ["CREATE", "UPDATE"], "resources": ["tuningstudies"]}]
    wanted = [r for m in _models(TuningStudySpec) for r in m.__dict__.get("__rules__", ())
              if r.enforced_by is Enforcement.POLICY]
    validations = policy["spec"]["validations"]
    assert len(validations) == len(wanted) >= 5
    for v in validations:
        assert "self" not in re.findall(r"\b\w+\b", v["expression"])
    on_params = [v for v in validations if "parameters[k0]" in v["expression"]]
    assert on_params and all(v["expression"].startswith(
        "!(has(object.spec.parameters)) || object.spec.parameters.all(k0, ") for v in on_params)
    assert all('"spec.parameters[" + object.spec.parameters.filter(k0, ' in v["messageExpression"]
               for v in on_params)


def test_resource_identity_columns_and_subresources() -> None:
    crds = {r.__name__: crdgen.crd_for(r) for r in RESOURCES}
    names = {k: c["spec"]["names"] for k, c in crds.items()}
    assert names["TuningStudy"]["shortNames"] == ["ts", "tstudy"]
    assert names["TuningTrial"]["shortNames"] == ["tt", "ttrial"]
    assert names["HardwarePool"]["shortNames"] == ["hwp"]
    assert all(n["categories"] == ["hwtune"] for n in names.values())
    assert crds["HardwarePool"]["spec"]["scope"] == "Cluster"
    assert crds["TuningStudy"]["spec"]["scope"] == "Namespaced"
    for resource in RESOURCES:
        version = crds[resource.__name__]["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert version["served"] and version["storage"] and version["name"] == "v1alpha1"
        columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
        assert columns[-1] == "Age"
    assert [c["name"] for c in crds["TuningStudy"]["spec"]["versions"][0]
            ["additionalPrinterColumns"] if not c.get("priority")] == \
        ["Phase", "Trials", "Completed", "Running", "Front", "Cost", "Age"]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_printer_columns_point_at_declared_fields_of_the_right_type(
        resource: type[CrdModel]) -> None:
    schema = _schema(resource)
    for column in crdgen.crd_for(resource)["spec"]["versions"][0]["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = schema
        for step in column["jsonPath"].strip(".").split("."):
            node = node["properties"][step]
        assert node["type"] == column["type"], column


def test_study_name_length_is_limited_in_metadata() -> None:
    assert _schema(TuningStudy)["properties"]["metadata"] == {
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 48}}}
    assert _schema(HardwarePool)["properties"]["metadata"] == {"type": "object"}


def test_free_form_and_untyped_fields() -> None:
    spec = _schema(TuningStudy)["properties"]["spec"]["properties"]
    settings = spec["algorithm"]["properties"]["settings"]
    assert settings == {**settings, "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    container = spec["trialTemplate"]["properties"]["spec"]["properties"]["containers"]["items"]
    assert container["x-kubernetes-preserve-unknown-fields"] is True
    assert container["required"] == ["name", "image"]
    values = spec["parameters"]["additionalProperties"]["properties"]["values"]
    assert values["items"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert values["maxItems"] == 128 and values["minItems"] == 1
    trial_params = _schema(TuningTrial)["properties"]["spec"]["properties"]["parameters"]
    assert trial_params["additionalProperties"] == {"x-kubernetes-preserve-unknown-fields": True}


def test_defaults_enums_and_bounds() -> None:
    spec = _schema(TuningStudy)["properties"]["spec"]["properties"]
    goal = spec["objectives"]["items"]["properties"]["goal"]
    assert goal["enum"] == ["minimize", "maximize"] and goal["default"] == "minimize"
    assert spec["algorithm"]["properties"]["scheduler"]["default"] == "fifo"
    eff = spec["hardware"]["properties"]["scalingEfficiency"]
    assert (eff["minimum"], eff["exclusiveMinimum"], eff["maximum"]) == (0, True, 1)
    assert spec["hardware"]["properties"]["gpuCounts"]["x-kubernetes-list-type"] == "set"
    assert "budget" not in _schema(TuningStudy)["properties"]["spec"]["required"]
    assert _schema(TuningStudy)["properties"]["spec"]["required"] == \
        ["objectives", "parameters", "trialTemplate"]
    assert spec["budget"]["properties"]["maxCostUSD"]["minimum"] == 0
    assert "description" in spec["budget"]["properties"]["maxCostUSD"]


def test_output_is_deterministic_and_parses() -> None:
    first, second = crdgen.render_all(), crdgen.render_all()
    assert first == second
    assert set(first) == {"hwtune.io_tuningstudies.yaml", "hwtune.io_tuningtrials.yaml",
                          "hwtune.io_hardwarepools.yaml",
                          "hwtune.io_tuningstudies_admissionpolicy.yaml"}
    for text in first.values():
        assert text.startswith(crdgen.HEADER)
        assert all(isinstance(d, dict) for d in yaml.safe_load_all(text))


def test_unions_and_unknown_keywords_fail_generation() -> None:
    class Union(CrdModel):
        value: int | str

    class Unique(CrdModel):
        items: set[int]

    with pytest.raises(crdgen.SchemaError, match="union of several types"):
        crdgen.structural_schema(Union)
    with pytest.raises(crdgen.SchemaError, match="uniqueItems"):
        crdgen.structural_schema(Unique)


def test_write_all_removes_stale_generated_files(tmp_path) -> None:
    (tmp_path / "hwtune.io_oldthings.yaml").write_text("stale")
    (tmp_path / "README.md").write_text("kept")
    crdgen.main(["--out", str(tmp_path)])
    assert not (tmp_path / "hwtune.io_oldthings.yaml").exists()
    assert (tmp_path / "README.md").exists()
    assert len(list(tmp_path.glob("hwtune.io_*.yaml"))) == 4

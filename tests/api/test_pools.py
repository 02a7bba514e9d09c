"""validate_study_against_pools: what admission cannot see (other objects) is checked here."""

from __future__ import annotations

import pytest

from hwtune.api.crd import HardwarePoolSpec, ManifestError, load_documents, parse_manifest
from hwtune.api.pools import validate_study_against_pools
from invalid_manifests import EXAMPLES, example_study


@pytest.fixture
def catalog() -> dict[str, HardwarePoolSpec]:
    docs = load_documents((EXAMPLES / "pools.yaml").read_text())
    return {d["metadata"]["name"]: parse_manifest(d).spec for d in docs}


def test_example_study_fits_example_pools(catalog) -> None:
    assert validate_study_against_pools(example_study()["spec"], catalog) == []


def test_unknown_pool_is_named_with_its_index(catalog) -> None:
    spec = example_study()["spec"]
    spec["hardware"]["pools"] = ["t4", "v100", "h100", "tpu"]
    errors = validate_study_against_pools(spec, catalog)
    assert [e.path for e in errors] == ["spec.hardware.pools[1]", "spec.hardware.pools[3]"]
    assert errors[0].message == ("Not found: HardwarePool 'v100' does not exist "
                                 "(known pools: a100, h100, t4)")


def test_unknown_override_pool(catalog) -> None:
    spec = example_study()["spec"]
    spec["hardware"]["pools"] = []
    spec["hardware"]["overrides"] = {"v100": {"pricePerGPUHour": 1.0}}
    errors = validate_study_against_pools(spec, catalog)
    assert [e.path for e in errors] == ["spec.hardware.overrides[v100]"]


def test_gpu_counts_that_fit_no_node(catalog) -> None:
    spec = example_study()["spec"]
    spec["hardware"]["pools"] = ["t4"]
    spec["hardware"]["gpuCounts"] = [2, 4]
    errors = validate_study_against_pools(spec, catalog)
    assert [(e.path, e.message) for e in errors] == [(
        "spec.hardware.gpuCounts",
        "Invalid value: no GPU count in [2, 4] fits on a node of pools t4")]
    # An override of gpusPerNode for this study makes them fit.
    spec["hardware"]["overrides"] = {"t4": {"gpusPerNode": 4}}
    assert validate_study_against_pools(spec, catalog) == []


def test_omitted_pools_mean_every_pool_and_need_one(catalog) -> None:
    spec = example_study()["spec"]
    del spec["hardware"]["pools"]
    assert validate_study_against_pools(spec, catalog) == []
    errors = validate_study_against_pools(spec, {})
    assert [(e.path, e.message) for e in errors] == [
        ("spec.hardware.pools", "Not found: no HardwarePool exists in the cluster")]


def test_no_hardware_section_needs_no_pool() -> None:
    spec = example_study()["spec"]
    del spec["hardware"]
    assert validate_study_against_pools(spec, {}) == []


def test_invalid_study_reports_its_own_errors(catalog) -> None:
    spec = example_study()["spec"]
    spec["hardware"]["gpuCounts"] = [0]
    assert [e.path for e in validate_study_against_pools(spec, catalog)] == \
        ["spec.hardware.gpuCounts[0]"]


def test_invalid_pool_is_the_callers_error() -> None:
    with pytest.raises(ManifestError, match=r"pools\[bad\]\.gpusPerNode"):
        validate_study_against_pools(example_study()["spec"], {
            "bad": {"gpuType": "x", "gpuMemoryGiB": 16, "gpusPerNode": 0,
                    "pricePerGPUHour": 1.0}})

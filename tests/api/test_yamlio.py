"""Reading manifest YAML as kubectl and the API server do (hwtune.api.yamlio)."""

from __future__ import annotations

import pytest

from hwtune.api._base import ManifestError
from hwtune.api.yamlio import MAX_BYTES, load_manifests


def refusal(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifests(text, "f.yaml")
    assert info.value.source.startswith("f.yaml")
    return info.value


def test_yaml_1_2_numbers_and_timestamps() -> None:
    (doc,) = load_manifests("a: 1e-4\nb: 1.0e-4\nc: 2026-01-01\nd: '1e-4'\ne: .inf\n")
    assert doc == {"a": 1e-4, "b": 1e-4, "c": "2026-01-01", "d": "1e-4", "e": float("inf")}


def test_duplicate_keys_name_the_field_in_api_server_style() -> None:
    error = refusal("spec:\n  parameters:\n    lr: {min: 1, max: 2, min: 3}\n")
    assert error.path == "spec.parameters[lr].min" and "duplicate key 'min'" in error.reason
    error = refusal("spec:\n  objectives:\n  - {metric: a}\n  - {metric: b, goal: x, goal: y}\n")
    assert error.path == "spec.objectives[1].goal"


def test_merge_keys_may_be_overridden() -> None:
    (doc,) = load_manifests("base: &b {min: 1, max: 2}\nlr:\n  <<: *b\n  min: 0.5\n")
    assert doc["lr"] == {"min": 0.5, "max": 2}


def test_aliases_that_stay_small_are_fine_and_bombs_are_refused() -> None:
    (doc,) = load_manifests("a: &x [1, 2]\nb: *x\n")
    assert doc == {"a": [1, 2], "b": [1, 2]}
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 7)]
    assert "aliases expand the document" in refusal("\n".join(lines) + "\n").reason


def test_nesting_is_bounded_without_a_traceback() -> None:
    assert "nested more than 100 levels" in refusal("a: " + "[" * 1000 + "]" * 1000).reason
    deep = "".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "v: 1\n"
    assert "nested more than 100 levels" in refusal(deep).reason
    (ok,) = load_manifests("a: " + "[" * 50 + "]" * 50)
    assert isinstance(ok["a"], list)


def test_size_limit_and_syntax_errors() -> None:
    assert "3 MiB" in refusal("a: " + "x" * MAX_BYTES).reason
    error = refusal("a: [1, 2\n")
    assert "not valid YAML" in error.reason and "line" in error.reason


def test_documents_are_named_when_there_are_several() -> None:
    error = refusal("a: 1\n---\nb: {c: 1, c: 2}\n")
    assert error.source == "f.yaml, document 2" and error.path == "b.c"
    assert load_manifests("---\na: 1\n---\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]

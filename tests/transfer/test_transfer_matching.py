"""Matching an old search space to a new one (HT-AA's adjustments)."""

from __future__ import annotations

import numpy as np
import pytest

from hwtune.api.records import Hardware
from hwtune.space import SearchSpace
from hwtune.space.domains import CategoricalDomain, FloatDomain, IntDomain, OrdinalDomain
from hwtune.transfer import HARDWARE, match_spaces


def space(**params) -> SearchSpace:
    return SearchSpace.from_spec(params)


def f(lo, hi, **kw):
    return {"type": "float", "min": lo, "max": hi, **kw}


def test_ranges_that_overlap_shrink_grow_and_vanish() -> None:
    old = space(a=f(0, 1), b=f(0, 1), c=f(0, 1), d=f(0, 1), e={"type": "int", "min": 1, "max": 8})
    new = space(a=f(0, 1), b=f(0.2, 0.5), c=f(-1, 2), d=f(0.5, 3), e={"type": "int", "min": 8, "max": 16},
                x=f(0, 1))
    m = match_spaces(old, new)
    assert m.summary()["shared"] == {"a": "same", "b": "shrunk", "c": "grown", "d": "shifted"}
    d = m.shared["d"].overlap
    assert isinstance(d, FloatDomain) and (d.low, d.high) == (0.5, 1.0)
    assert isinstance(m.shared["c"].overlap, FloatDomain) and m.shared["c"].overlap.low == 0
    # e: the int ranges share only 8, which is no range: the old values say nothing.
    assert m.vanished == ("e",) and "e" in m.new_names and "e" in m.removed
    assert m.new_names == ("e", "x") and m.removed == ("e",)
    # Projection keeps values in the overlap, drops (or clips) the rest.
    shared, _ = m.project({"a": 0.3, "b": 0.9, "c": 0.1, "d": 0.7, "e": 4})
    assert shared == {"a": 0.3, "c": 0.1, "d": 0.7}
    clipped, _ = m.project({"a": 0.3, "b": 0.9, "c": 0.1, "d": 0.2, "e": 4}, clip=True)
    assert clipped == {"a": 0.3, "b": 0.5, "c": 0.1, "d": 0.5}


def test_log_and_int_ranges_keep_their_kind() -> None:
    old = space(lr=f(1e-4, 1e-1, scale="log"), n={"type": "int", "min": 1, "max": 10})
    new = space(lr=f(1e-3, 1.0, scale="log"), n={"type": "int", "min": 5, "max": 20})
    m = match_spaces(old, new)
    lr, n = m.shared["lr"].overlap, m.shared["n"].overlap
    assert isinstance(lr, FloatDomain) and lr.log and (lr.low, lr.high) == (1e-3, 1e-1)
    assert isinstance(n, IntDomain) and (n.low, n.high) == (5, 10)


def test_categorical_choices_added_removed_changed_and_replaced() -> None:
    old = space(opt={"type": "categorical", "values": ["sgd", "adam"]},
                act={"type": "categorical", "values": ["relu", "tanh", "gelu"]},
                norm={"type": "categorical", "values": ["bn", "ln"]},
                arch={"type": "categorical", "values": ["mlp"]},
                bs={"type": "int", "values": [16, 32, 64]})
    new = space(opt={"type": "categorical", "values": ["sgd", "adam", "adamw"]},
                act={"type": "categorical", "values": ["relu", "gelu"]},
                norm={"type": "categorical", "values": ["ln", "none"]},
                arch={"type": "categorical", "values": ["cnn", "resnet"]},
                bs={"type": "int", "min": 24, "max": 128})
    m = match_spaces(old, new)
    assert m.summary()["shared"] == {"opt": "choices-added", "act": "choices-removed",
                                     "norm": "choices-changed", "bs": "shifted"}
    assert isinstance(m.shared["act"].overlap, CategoricalDomain)
    assert m.shared["act"].overlap.values == ("relu", "gelu")
    assert m.shared["norm"].overlap.values == ("ln",)
    # An ordinal old parameter against a new range: the old choices inside it.
    bs = m.shared["bs"].overlap
    assert isinstance(bs, OrdinalDomain) and bs.values == (32, 64)
    assert m.vanished == ("arch",)  # architecture changed: all choices replaced
    assert m.project({"opt": "sgd", "act": "tanh", "norm": "bn", "arch": "mlp", "bs": 16})[0] == {"opt": "sgd"}


def test_type_change_is_new_and_removed() -> None:
    m = match_spaces(space(k=f(0, 1)), space(k={"type": "categorical", "values": ["a", "b"]}))
    assert m.shared == {} and m.new_names == ("k",) and m.removed == ("k",)


def test_added_and_removed_parameters() -> None:
    old = space(a=f(0, 1), gone=f(0, 1))
    new = space(a=f(0, 1), added={"type": "int", "min": 1, "max": 3, "default": 2})
    m = match_spaces(old, new)
    assert list(m.shared) == ["a"] and m.new_names == ("added",) and m.removed == ("gone",)
    rng = np.random.default_rng(0)
    shared, _ = m.project({"a": 0.25, "gone": 0.9})
    assert m.complete(shared, rng, fill="default") == {"a": 0.25, "added": 2}
    drawn = m.complete(shared, rng)
    assert drawn["a"] == 0.25 and 1 <= drawn["added"] <= 3


def test_conditions_changed_and_completion_follows_the_new_conditions() -> None:
    old = space(opt={"type": "categorical", "values": ["sgd", "adam"]},
                momentum=f(0, 1, condition={"parameter": "opt", "in": ["sgd"]}),
                beta=f(0.8, 0.99))
    new = space(opt={"type": "categorical", "values": ["sgd", "adam"]},
                momentum=f(0, 1, condition={"parameter": "opt", "in": ["sgd"]}),
                beta=f(0.8, 0.99, condition={"parameter": "opt", "in": ["adam"]}))
    m = match_spaces(old, new)
    assert m.condition_changed == ("beta",)
    rng = np.random.default_rng(1)
    # An sgd trial of the old study: its beta is inactive now and is dropped.
    shared, _ = m.project({"opt": "sgd", "momentum": 0.9, "beta": 0.9})
    assert m.complete(shared, rng) == {"opt": "sgd", "momentum": 0.9}
    # An adam trial: momentum was inactive there (absent), beta is active now and kept.
    shared, _ = m.project({"opt": "adam", "beta": 0.95})
    assert shared == {"opt": "adam", "beta": 0.95}
    assert m.complete(shared, rng) == {"opt": "adam", "beta": 0.95}


def test_hardware_is_a_hyperparameter() -> None:
    s = space(a=f(0, 1))
    t4, a100, h100 = Hardware("t4"), Hardware("a100"), Hardware("h100")
    m = match_spaces(s, s, old_hardware=(t4, a100), new_hardware=(t4, a100, h100))
    assert m.summary()["shared"] == {"a": "same", HARDWARE: "choices-added"}
    assert m.shared_hardware == (t4, a100)
    assert m.project({"a": 0.5}, a100) == ({"a": 0.5}, a100)
    m = match_spaces(s, s, old_hardware=(t4, a100), new_hardware=(a100,))
    assert m.shared[HARDWARE].change == "choices-removed"
    assert m.project({"a": 0.5}, t4) == ({"a": 0.5}, None)  # the pool was retired
    assert match_spaces(s, s, new_hardware=(t4,)).new_names == (HARDWARE,)
    assert match_spaces(s, s, old_hardware=(t4,)).removed == (HARDWARE,)
    assert match_spaces(s, s, old_hardware=(h100,), new_hardware=(t4,)).vanished == (HARDWARE,)


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_projected_values_validate_in_the_new_space(value) -> None:
    old = space(a=f(0, 1), b={"type": "int", "min": 0, "max": 10})
    new = space(a=f(0.2, 0.6), b={"type": "int", "min": 2, "max": 6})
    m = match_spaces(old, new)
    clipped, _ = m.project({"a": value, "b": int(value * 10)}, clip=True)
    assert new.validate(m.complete(clipped, np.random.default_rng(0))) == m.complete(
        clipped, np.random.default_rng(0))


def test_renamed_parameters_are_shared_under_their_new_name() -> None:
    old = space(learning_rate=f(0.001, 0.1), opt={"type": "categorical", "values": ["sgd", "adam"]},
                mom=f(0, 1, condition={"parameter": "opt", "in": ["sgd"]}))
    new = space(lr=f(0.01, 0.2), opt={"type": "categorical", "values": ["sgd", "adam"]},
                mom=f(0, 1, condition={"parameter": "opt", "in": ["sgd"]}))
    m = match_spaces(old, new, renames={"learning_rate": "lr"})
    assert m.summary()["shared"] == {"lr": "shifted", "opt": "same", "mom": "same"}
    assert m.new_names == () and m.removed == () and m.condition_changed == ()
    assert m.project({"learning_rate": 0.05, "opt": "sgd", "mom": 0.9})[0] == {
        "lr": 0.05, "opt": "sgd", "mom": 0.9}
    with pytest.raises(ValueError, match="'nope' is not a parameter of the earlier study"):
        match_spaces(old, new, renames={"nope": "lr"})

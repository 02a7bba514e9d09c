"""Search space: parsing with field-path errors, sampling, conditions, encoding, grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtune.space import (
    CategoricalDomain,
    FloatDomain,
    IntDomain,
    OrdinalDomain,
    SearchSpace,
    SpecError,
    config_key,
)
from hwtune.space.errors import ManifestError

SPEC = {
    "lr": {"type": "float", "min": 1.0e-4, "max": 1.0e-1, "scale": "log"},
    "layers": {"type": "int", "min": 1, "max": 4},
    "batch_size": {"type": "int", "values": [512, 64, 128, 256]},
    "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
    "momentum": {"type": "float", "min": 0.0, "max": 0.99,
                 "condition": {"parameter": "optimizer", "in": ["sgd"]}},
}


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.from_spec(SPEC)


def test_parses_every_kind(space):
    assert space.names == ("lr", "layers", "batch_size", "optimizer", "momentum")
    assert isinstance(space["lr"], FloatDomain) and space["lr"].log
    assert isinstance(space["layers"], IntDomain) and not space["layers"].log
    assert isinstance(space["batch_size"], OrdinalDomain)
    assert space["batch_size"].values == (64, 128, 256, 512)  # ordinals are kept sorted
    assert isinstance(space["optimizer"], CategoricalDomain)
    # 1 (lr) + 1 (layers) + 1 (batch size) + 2 (one-hot optimizer) + 1 (momentum)
    assert space.dim == 6
    assert SearchSpace.from_spec(space.to_spec()) == space


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        # Field rules come from the CRD's ParameterSpec: the API server's words and paths.
        ({"lr": {"type": "float", "min": 0.1, "max": 0.01}}, "spec.parameters[lr].min",
         "min must be less than max"),
        ({"lr": {"type": "float", "min": 0.0, "max": 1.0, "scale": "log"}},
         "spec.parameters[lr].min", "log scale needs min > 0"),
        ({"lr": {"type": "float", "min": 0.1, "max": 1.0, "scale": "ln"}},
         "spec.parameters[lr].scale", "'linear' or 'log'"),
        ({"lr": {"type": "float", "max": 1.0}}, "spec.parameters[lr].max", "set together"),
        ({"lr": {"type": "double", "min": 0, "max": 1}}, "spec.parameters[lr].type",
         "'float', 'int' or 'categorical'"),
        ({"lr": {"type": "float", "min": 0.1, "max": math.nan}}, "spec.parameters[lr].max",
         "finite number"),
        ({"n": {"type": "int", "min": 1.5, "max": 4}}, "spec.parameters[n].min", "integer"),
        ({"n": {"type": "int", "values": [1, 2.5]}}, "spec.parameters[n].values", "integers"),
        ({"n": {"type": "int", "values": [1, 1]}}, "spec.parameters[n].values", "unique"),
        ({"n": {"type": "int", "values": [1, 2], "min": 1}}, "spec.parameters[n].max",
         "set together"),
        ({"c": {"type": "categorical", "values": []}}, "spec.parameters[c].values",
         "at least 1 item"),
        ({"c": {"type": "categorical"}}, "spec.parameters[c].values", "needs values"),
        ({"c": {"type": "categorical", "values": ["a"], "x": 0}}, "spec.parameters[c].x",
         "unknown field"),
        ({"c": {"type": "categorical", "values": ["a", "b"], "default": "z"}},
         "spec.parameters[c].default", "one of values"),
        ({"1bad": {"type": "int", "min": 0, "max": 1}}, "spec.parameters[1bad]", "must match"),
        # What only the whole space can see.
        ({"m": {"type": "float", "min": 0, "max": 1, "condition": {"parameter": "opt", "in": ["sgd"]}}},
         "spec.parameters[m].condition.parameter", "unknown parameter"),
        ({"opt": {"type": "categorical", "values": ["sgd"]},
          "m": {"type": "float", "min": 0, "max": 1, "condition": {"parameter": "opt", "in": ["rmsprop"]}}},
         "spec.parameters[m].condition.in[0]", "one of"),
        ({"a": {"type": "int", "values": [1, 2], "condition": {"parameter": "b", "in": [1]}},
          "b": {"type": "int", "values": [1, 2], "condition": {"parameter": "a", "in": [1]}}},
         "spec.parameters[a].condition", "cycle"),
        ({}, "spec.parameters", "at least one"),
    ],
)
def test_bad_specs_name_the_field(spec, path, words):
    with pytest.raises(ManifestError) as info:
        SearchSpace.from_spec(spec)
    assert info.value.path == path, info.value
    assert words in info.value.reason, info.value


def test_sampling_respects_conditions(space):
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(400)]
    for c in configs:
        assert space.validate(c) == c
        assert ("momentum" in c) == (c["optimizer"] == "sgd")
        assert 1e-4 <= c["lr"] <= 1e-1 and isinstance(c["layers"], int)
        assert c["batch_size"] in (64, 128, 256, 512)
    assert {c["optimizer"] for c in configs} == {"sgd", "adam"}
    assert {c["layers"] for c in configs} == {1, 2, 3, 4}


def test_log_scale_samples_are_log_uniform():
    d = FloatDomain("lr", 1e-4, 1e-0, log=True)
    rng = np.random.default_rng(1)
    x = np.array([d.sample(rng) for _ in range(4000)])
    # Each decade should get about a quarter of the draws; linear sampling would put 90% in the top one.
    decades = np.histogram(np.log10(x), bins=[-4, -3, -2, -1, 0])[0] / len(x)
    assert np.allclose(decades, 0.25, atol=0.03)


def test_int_log_scale_favours_small_values():
    d = IntDomain("width", 1, 1000, log=True)
    rng = np.random.default_rng(2)
    x = np.array([d.sample(rng) for _ in range(4000)])
    assert x.min() >= 1 and x.max() <= 1000
    assert 0.28 < np.mean(x < 10) < 0.39  # log(10)/log(1001) = 0.333


def test_validate_names_the_offending_parameter(space):
    good = {"lr": 0.01, "layers": 2, "batch_size": 64, "optimizer": "adam"}
    assert space.validate(good) == good
    cases = [
        ({**good, "lr": 0.5}, "config.lr", "must be in"),
        ({**good, "layers": 2.5}, "config.layers", "integer"),
        ({**good, "batch_size": 100}, "config.batch_size", "one of"),
        ({**good, "momentum": 0.9}, "config.momentum", "inactive"),
        ({**good, "optimizer": "sgd"}, "config.momentum", "missing"),
        ({**good, "dropout": 0.1}, "config.dropout", "not a parameter"),
    ]
    for config, path, words in cases:
        with pytest.raises(SpecError) as info:
            space.validate(config)
        assert info.value.path == path and words in info.value.reason, info.value


def test_validate_canonicalises_numbers(space):
    c = space.validate({"lr": 0.01, "layers": 2.0, "batch_size": 128.0, "optimizer": "adam"})
    assert type(c["layers"]) is int and type(c["batch_size"]) is int


def test_nested_conditions():
    space = SearchSpace.from_spec({
        "opt": {"type": "categorical", "values": ["sgd", "adam"]},
        "nesterov": {"type": "categorical", "values": [True, False],
                     "condition": {"parameter": "opt", "in": ["sgd"]}},
        "dampening": {"type": "float", "min": 0.0, "max": 0.5,
                      "condition": {"parameter": "nesterov", "in": [False]}},
    })
    rng = np.random.default_rng(3)
    for _ in range(200):
        c = space.sample(rng)
        if c["opt"] == "adam":
            assert c == {"opt": "adam"}
        elif c["nesterov"]:
            assert "dampening" not in c
        else:
            assert 0.0 <= c["dampening"] <= 0.5
    # adam | sgd+nesterov | sgd+no-nesterov x 3 dampening points
    assert space.grid_size(3) == 1 + 1 + 3
    assert len({config_key(c) for c in space.grid(3)}) == 5


def test_categorical_keeps_true_and_one_apart():
    d = CategoricalDomain("c", [True, 1, "1"])
    assert d.width == 3
    out = np.zeros(3)
    d.encode(1, out)
    assert out.tolist() == [0.0, 1.0, 0.0]
    assert d.decode(np.array([0.0, 0.0, 0.9])) == "1"


def test_encode_masks_inactive_columns(space):
    c = {"lr": 1e-4, "layers": 4, "batch_size": 512, "optimizer": "adam"}
    x, mask = space.encode(c), space.active_mask(c)
    assert x.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert mask.tolist() == [True, True, True, True, True, False]
    c2 = {"lr": 1e-2, "layers": 1, "batch_size": 64, "optimizer": "sgd", "momentum": 0.495}
    assert np.allclose(space.encode(c2), [2 / 3, 0.0, 0.0, 1.0, 0.0, 0.5])
    xs, masks = space.encode_many([c, c2])
    assert xs.shape == masks.shape == (2, 6) and masks[1].all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_encode_decode_roundtrip(seed):
    space = SearchSpace.from_spec(SPEC)
    c = space.sample(np.random.default_rng(seed))
    back = space.decode(space.encode(c))
    assert back.keys() == c.keys()
    for name, value in c.items():
        if isinstance(value, float):
            assert math.isclose(back[name], value, rel_tol=1e-9, abs_tol=1e-12)
        else:
            assert back[name] == value


@settings(max_examples=60, deadline=None)
@given(vector=st.lists(st.floats(-0.5, 1.5), min_size=6, max_size=6))
def test_any_vector_decodes_to_a_valid_config(vector):
    space = SearchSpace.from_spec(SPEC)
    c = space.decode(np.array(vector))
    assert space.validate(c) == c


@settings(max_examples=80, deadline=None)
@given(
    low=st.floats(1e-6, 1e3),
    ratio=st.floats(1.001, 1e6),
    log=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_float_samples_stay_in_bounds(low, ratio, log, seed):
    d = FloatDomain("x", low, low * ratio, log=log)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        v = d.sample(rng)
        assert d.low <= v <= d.high
        assert d.validate(v, "x") == v


@settings(max_examples=80, deadline=None)
@given(low=st.integers(-50, 50), span=st.integers(1, 500), log=st.booleans(), seed=st.integers(0, 2**16))
def test_int_samples_stay_in_bounds(low, span, log, seed):
    if log and low < 1:
        low = 1
    d = IntDomain("n", low, low + span, log=log)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        v = d.sample(rng)
        assert isinstance(v, int) and d.low <= v <= d.high


def test_grid_size_is_hand_checked(space):
    # lr 3 points x layers 3 (of 4) x batch sizes 4 x (adam + sgd x momentum 3 points)
    assert space.grid_size(3) == 3 * 3 * 4 * (1 + 3)
    grid = list(space.grid(3))
    assert len(grid) == space.grid_size(3)
    assert len({config_key(c) for c in grid}) == len(grid)
    assert all(space.validate(c) == c for c in grid)
    lrs = sorted({c["lr"] for c in grid})
    assert np.allclose(lrs, [1e-4, math.sqrt(1e-4 * 1e-1), 1e-1])  # log grid: geometric middle
    assert sorted({c["layers"] for c in grid}) == [1, 2, 4]  # round(2.5) == 2


def test_finite_space_size_and_full_grid():
    space = SearchSpace.from_spec({
        "a": {"type": "int", "min": 1, "max": 3},
        "b": {"type": "categorical", "values": ["x", "y"]},
        "c": {"type": "int", "values": [8, 16], "condition": {"parameter": "b", "in": ["y"]}},
    })
    assert space.size == 3 * (1 + 2)
    assert space.grid_size(3) == 3 * (1 + 2)  # finite domains ignore the point count
    assert space.grid_size(2) == 2 * (1 + 2)  # ... except int ranges wider than the points
    assert SearchSpace.from_spec(SPEC).size is None


def test_default_config_uses_defaults_then_midpoints():
    space = SearchSpace.from_spec({
        "lr": {"type": "float", "min": 1e-4, "max": 1e-2, "scale": "log", "default": 5e-3},
        "n": {"type": "int", "values": [1, 2, 4]},
    })
    assert space.default_config() == {"lr": 5e-3, "n": 2}

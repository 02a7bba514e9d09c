"""Random and grid searchers: joint (config, hardware) proposals, seeding, dedupe, exhaustion."""

from __future__ import annotations

import pytest

from hwtune.api.records import Hardware, TrialRecord
from hwtune.optimize.hardware import HardwareSpace
from hwtune.optimize.searchers import (
    GridSearcher,
    RandomSearcher,
    make_searcher,
    register_searcher,
    searcher_names,
)
from hwtune.space import SearchSpace, SpecError, config_key

SPACE = SearchSpace.from_spec({
    "lr": {"type": "float", "min": 1e-3, "max": 1e-1, "scale": "log"},
    "opt": {"type": "categorical", "values": ["sgd", "adam"]},
})
SMALL = SearchSpace.from_spec({"n": {"type": "int", "min": 1, "max": 3}})
HW = HardwareSpace([Hardware("t4", 1), Hardware("a100", 2)])


def drain(searcher, limit=1000):
    out = []
    for _ in range(limit):
        proposal = searcher.suggest()
        if proposal is None:
            return out
        out.append(proposal)
    raise AssertionError("the searcher never ran out")


def test_random_is_seeded_and_joint():
    s1, s2, s3 = RandomSearcher(SPACE, HW, 1), RandomSearcher(SPACE, HW, 1), RandomSearcher(SPACE, HW, 2)
    first = [s1.suggest() for _ in range(30)]
    assert first == [s2.suggest() for _ in range(30)]
    assert first != [s3.suggest() for _ in range(30)]
    assert {hw for _, hw in first} == set(HW)
    assert all(SPACE.validate(c) == c for c, _ in first)
    # No hardware dimension: hardware is None.
    assert RandomSearcher(SPACE, None, 0).suggest()[1] is None


def test_random_dedupes_and_exhausts_a_finite_space():
    searcher = RandomSearcher(SMALL, HW, seed=0)
    pairs = drain(searcher)
    assert len(pairs) == 3 * 2
    assert len({(config_key(c), hw) for c, hw in pairs}) == 6


def test_random_skips_what_trials_already_used():
    searcher = RandomSearcher(SMALL, None, seed=0)
    searcher.on_trial_add(TrialRecord(0, {"n": 2}))
    assert sorted(c["n"] for c, _ in drain(searcher)) == [1, 3]


def test_random_over_candidates():
    candidates = [{"lr": 0.01, "opt": "sgd"}, {"lr": 0.02, "opt": "adam"}, {"lr": 0.01, "opt": "sgd"}]
    searcher = RandomSearcher(SPACE, HW, seed=3, candidates=candidates)
    pairs = drain(searcher)
    assert len(pairs) == 2 * 2  # the duplicate candidate counts once
    assert {config_key(c) for c, _ in pairs} == {config_key(candidates[0]), config_key(candidates[1])}
    with pytest.raises(SpecError) as info:
        RandomSearcher(SPACE, HW, candidates=[{"lr": 5.0, "opt": "sgd"}])
    assert info.value.path == "candidates[0].lr"


def test_grid_walks_every_pair_once_then_stops():
    searcher = GridSearcher(SMALL, HW, points_per_dim=5)
    pairs = drain(searcher)
    assert pairs == [({"n": n}, hw) for n in (1, 2, 3) for hw in HW]
    assert searcher.size() == 6 and searcher.suggest() is None
    grid = GridSearcher(SPACE, None, points_per_dim=3)
    assert len(drain(grid)) == 3 * 2 == grid.size()


def test_grid_shuffle_is_a_seeded_permutation_and_skips_used_pairs():
    plain = drain(GridSearcher(SMALL, HW))
    shuffled = drain(GridSearcher(SMALL, HW, seed=4, shuffle=True))
    assert sorted(map(repr, shuffled)) == sorted(map(repr, plain)) and shuffled != plain
    assert shuffled == drain(GridSearcher(SMALL, HW, seed=4, shuffle=True))
    searcher = GridSearcher(SMALL, HW)
    searcher.on_trial_add(TrialRecord(0, {"n": 1}, Hardware("t4", 1)))
    assert ({"n": 1}, Hardware("t4", 1)) not in drain(searcher)


def test_make_searcher_by_name_and_settings():
    assert {"random", "grid"} <= set(searcher_names())
    grid = make_searcher("grid", SPACE, HW, seed=0, settings={"gridPoints": 2, "tieBreak": "crowding"})
    assert isinstance(grid, GridSearcher) and grid.size() == 2 * 2 * 2
    rnd = make_searcher("random", SPACE, list(HW), seed=0, candidates=[{"lr": 0.01, "opt": "sgd"}])
    assert isinstance(rnd, RandomSearcher) and len(drain(rnd)) == 2
    with pytest.raises(ValueError, match="unknown searcher 'bohb'.*random, grid, tpe, transfer"):
        make_searcher("bohb", SPACE)


def test_register_searcher(monkeypatch):
    import hwtune.optimize.searchers as searchers

    from hwtune.api import algorithms

    monkeypatch.setattr(searchers, "_REGISTRY", dict(searchers._REGISTRY))  # undone after the test
    monkeypatch.setattr(algorithms, "SEARCHERS", algorithms.SEARCHERS + (
        algorithms.Algorithm("test-only", "hwtune.optimize.searchers", "test only"),))
    calls = []

    def factory(space, hardware, seed, settings, **kwargs):
        calls.append((seed, settings, kwargs))
        return RandomSearcher(space, hardware, seed)

    register_searcher("test-only", factory)
    searcher = make_searcher("test-only", SPACE, HW, seed=9, settings={"a": 1}, extra=2)
    assert isinstance(searcher, RandomSearcher) and calls == [(9, {"a": 1}, {"extra": 2})]

"""TPE and HT-AA's transfer baselines: their first suggestions, under any scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from hwtune.api.records import Hardware, Objective, Observation, TrialPhase, TrialRecord
from hwtune.engine import Study, StudyConfig
from hwtune.optimize.searchers import make_searcher
from hwtune.optimize.searchers.tpe import TPESearcher
from hwtune.space import SearchSpace
from hwtune.transfer import BestFirstSearcher, PastStudy, PastTrial, TransferError, make_transfer_searcher
from hwtune.transfer.importance import main_effects

ERR = Objective("val_error")
OLD_PARAMS = {"a": {"type": "float", "min": 0.0, "max": 1.0},
              "b": {"type": "float", "min": 0.0, "max": 1.0}}
NEW_PARAMS = {**OLD_PARAMS, "c": {"type": "int", "min": 1, "max": 9}}


def old_study(n=40, seed=0, loss=lambda c: (c["a"] - 0.2) ** 2, params=OLD_PARAMS, name="old",
              hardware=()) -> PastStudy:
    rng = np.random.default_rng(seed)
    space = SearchSpace.from_spec(params)
    trials = []
    for i in range(n):
        config = space.sample(rng)
        hw = hardware[i % len(hardware)] if hardware else None
        trials.append(PastTrial(i, config, hw, TrialPhase.COMPLETED,
                                ((1, {"val_error": float(loss(config))}),)))
    return PastStudy(name, "test", params, (ERR,), tuple(hardware), 1, tuple(trials))


def feed(searcher, n, loss, start=0):
    """Ask ``n`` suggestions, reporting ``loss`` for each; returns the configs."""
    out = []
    for tid in range(start, start + n):
        config, hw = searcher.suggest()
        rec = TrialRecord(tid, config, hw)
        searcher.on_trial_add(rec)
        searcher.on_trial_result(rec, Observation(tid, 1, {"val_error": float(loss(config))}))
        searcher.on_trial_complete(rec)
        out.append((config, hw))
    return out


def new_space(params=NEW_PARAMS):
    return SearchSpace.from_spec(params)


def transfer(method, studies, *, space=None, hardware=None, settings=None, candidates=None, seed=0):
    return make_transfer_searcher(space or new_space(), hardware, seed, settings or {},
                                  objectives=(ERR,), transfer_studies=studies,
                                  transfer_method=method, candidates=candidates)


def test_tpe_concentrates_on_the_good_region_after_its_random_start() -> None:
    loss = lambda c: (c["a"] - 0.8) ** 2 + 0.1 * (c["b"] - 0.5) ** 2
    dist_tpe, dist_rand = [], []
    for seed in range(3):
        tpe = TPESearcher(SearchSpace.from_spec(OLD_PARAMS), seed=seed, objective=ERR, n_startup=8)
        late = feed(tpe, 30, loss)[-10:]
        dist_tpe.append(np.mean([abs(c["a"] - 0.8) for c, _ in late]))
        rnd = make_searcher("random", SearchSpace.from_spec(OLD_PARAMS), seed=seed)
        dist_rand.append(np.mean([abs(c["a"] - 0.8) for c, _ in feed(rnd, 30, loss)[-10:]]))
    assert np.mean(dist_tpe) < 0.5 * np.mean(dist_rand)


def test_tpe_is_deterministic_and_searches_hardware_and_candidates() -> None:
    hw = [Hardware("t4"), Hardware("a100")]
    loss = lambda c: c["a"]
    cands = [{"a": x, "b": 0.5} for x in np.linspace(0, 1, 21)]
    runs = []
    for _ in range(2):
        s = TPESearcher(SearchSpace.from_spec(OLD_PARAMS), hw, seed=3, objective=ERR,
                        n_startup=5, candidates=cands)
        runs.append(feed(s, 20, loss))
    assert runs[0] == runs[1]
    assert {h for _, h in runs[0]} == set(hw)
    pairs = [(c["a"], h) for c, h in runs[0]]
    assert len(set(pairs)) == len(pairs) and all(c in cands for c, _ in runs[0])


def test_best_first_starts_with_the_best_old_config_then_searches() -> None:
    old = old_study()
    best = old.best(ERR)
    s = transfer("best-first", [old], settings={"transferTopK": 2})
    assert isinstance(s, BestFirstSearcher)
    first = feed(s, 3, lambda c: 0.0)
    assert {k: first[0][0][k] for k in ("a", "b")} == {"a": best.config["a"], "b": best.config["b"]}
    second = old.ranked(ERR)[1][0]
    assert first[1][0]["a"] == second.config["a"]
    assert 1 <= first[0][0]["c"] <= 9  # the new parameter filled in
    assert first[2][0]["a"] not in (best.config["a"], second.config["a"])


def test_only_new_fixes_shared_parameters_to_the_best_old_values() -> None:
    old = old_study()
    best = old.best(ERR)
    s = transfer("only-new", [old])
    got = feed(s, 9, lambda c: abs(c["c"] - 5))
    assert all(c["a"] == best.config["a"] and c["b"] == best.config["b"] for c, _ in got)
    assert sorted(c["c"] for c, _ in got) == list(range(1, 10))  # the new one is searched
    config, _ = s.suggest()  # all tried: the pinned ones are searched too
    assert (config["a"], config["b"]) != (best.config["a"], best.config["b"])


def test_only_new_without_new_parameters_starts_from_the_best_then_searches_all() -> None:
    old = old_study()
    s = transfer("only-new", [old], space=SearchSpace.from_spec(OLD_PARAMS))
    got = feed(s, 4, lambda c: 0.0)
    assert got[0][0] == dict(old.best(ERR).config)
    assert len({c["a"] for c, _ in got}) == 4


def test_drop_unimportant_fixes_only_what_did_not_matter() -> None:
    old = old_study(n=60, loss=lambda c: (c["a"] - 0.2) ** 2)  # b does nothing
    ranks = [r for r in range(60)]
    points = [(t.config, None) for t, _ in old.ranked(ERR)]
    imp = main_effects(points, ranks, ["a", "b"], numeric={"a": True, "b": True})
    assert imp["a"] > 0.5 and imp["b"] < 0.1
    best = old.best(ERR)
    s = transfer("drop-unimportant", [old])
    got = feed(s, 10, lambda c: 0.0)
    assert all(c["b"] == best.config["b"] for c, _ in got)
    assert len({c["a"] for c, _ in got}) >= 8 and len({c["c"] for c, _ in got}) > 1


def test_transfer_tpe_draws_shared_values_from_the_old_model_until_new_data_suffices() -> None:
    old = old_study(n=40, loss=lambda c: (c["a"] - 0.2) ** 2)
    s = transfer("transfer-tpe", [old], settings={"tpeStartup": 8})
    first = feed(s, 8, lambda c: 0.0)
    assert np.mean([abs(c["a"] - 0.2) for c, _ in first]) < 0.12  # random: about 0.34
    assert len({c["c"] for c, _ in first}) > 1  # new parameter: random
    plain = TPESearcher(new_space(), seed=0, objective=ERR, n_startup=8)
    assert np.mean([abs(c["a"] - 0.2) for c, _ in feed(plain, 8, lambda c: 0.0)]) > 0.15


def test_best_first_tpe_combines_both() -> None:
    old = old_study(n=40)
    s = transfer("best-first-tpe", [old])
    got = feed(s, 6, lambda c: 0.0)
    assert got[0][0]["a"] == old.best(ERR).config["a"]
    assert np.mean([abs(c["a"] - 0.2) for c, _ in got[1:]]) < 0.15


def test_hardware_transfers_like_a_parameter() -> None:
    t4, a100 = Hardware("t4"), Hardware("a100")
    old = old_study(n=40, hardware=(t4, a100),
                    loss=lambda c: (c["a"] - 0.2) ** 2)
    # Only a100 trials are good in the old study.
    trials = tuple(PastTrial(t.trial_id, t.config, t.hardware, t.phase,
                             ((1, {"val_error": t.final["val_error"] + (0 if t.hardware == a100 else 1)}),))
                   for t in old.trials)
    old = old.subset(trials)
    s = transfer("transfer-tpe", [old], hardware=[t4, a100], settings={"tpeStartup": 10})
    got = feed(s, 10, lambda c: 0.0)
    assert sum(h == a100 for _, h in got) >= 8
    s = transfer("only-new", [old], hardware=[t4, a100])
    assert {h for _, h in feed(s, 5, lambda c: 0.0)} == {a100}


def test_changed_ranges_and_several_studies() -> None:
    old1 = old_study(n=20, seed=1, name="old1")
    old2 = old_study(n=20, seed=2, name="old2", params={
        "a": {"type": "float", "min": 0.0, "max": 0.5}, "gone": {"type": "int", "min": 1, "max": 2}},
        loss=lambda c: (c["a"] - 0.2) ** 2)
    space = SearchSpace.from_spec({"a": {"type": "float", "min": 0.1, "max": 0.9},
                                   "b": {"type": "float", "min": 0.0, "max": 1.0}})
    s = transfer("best-first-tpe", [old1, old2], space=space)
    got = feed(s, 6, lambda c: 0.0)
    for c, _ in got:
        space.validate(c)  # always inside the new ranges
    assert got[0][0]["a"] == pytest.approx(max(0.1, min(0.9, old1.best(ERR).config["a"])))


def test_candidates_mode_proposes_only_candidates() -> None:
    old = old_study(n=30)
    cands = [SearchSpace.from_spec(NEW_PARAMS).sample(np.random.default_rng(i)) for i in range(50)]
    for method in ("only-new", "drop-unimportant", "best-first", "transfer-tpe", "best-first-tpe"):
        s = transfer(method, [old], candidates=cands)
        got = feed(s, 12, lambda c: c["a"])
        assert all(c in cands for c, _ in got), method
        assert len({tuple(sorted(c.items())) for c, _ in got}) == 12, method


def test_errors_are_clear() -> None:
    with pytest.raises(TransferError, match="were not loaded"):
        transfer("best-first", [])
    with pytest.raises(TransferError, match="unknown transfer method 'nope'"):
        transfer("nope", [old_study()])
    with pytest.raises(TransferError, match="never reported metric 'val_error'"):
        make_transfer_searcher(new_space(), None, 0, {}, objectives=(Objective("val_error"),),
                               transfer_studies=[PastStudy("e", "test", OLD_PARAMS, trials=(
                                   PastTrial(0, {"a": 0.1, "b": 0.1}, curve=((1, {"loss": 1.0}),)),))],
                               transfer_method="best-first")


@pytest.mark.parametrize("scheduler", ["fifo", "asha", "mo-asha", "hyperband"])
@pytest.mark.parametrize("method", ["only-new", "drop-unimportant", "best-first", "transfer-tpe",
                                    "best-first-tpe"])
def test_every_baseline_runs_under_every_scheduler(scheduler, method) -> None:
    spec = {"objectives": [{"metric": "val_error"}, {"metric": "runtime"}],
            "parameters": NEW_PARAMS, "fidelity": {"min": 1, "max": 9},
            "algorithm": {"scheduler": scheduler, "searcher": "transfer", "seed": 1},
            "transfer": {"fromStudies": ["old"], "method": method}}
    config = StudyConfig.from_spec(spec).with_transfer_studies([old_study()])
    study = Study(config)
    started = []
    for _ in range(10):
        start = study.start_next()
        if start is None:
            break
        trial = start.trial
        started.append(dict(trial.config))
        study.trial_running(trial.trial_id)
        loss = (trial.config["a"] - 0.2) ** 2 + 0.01 * trial.config["c"]
        for r in range(trial.last_resource + 1, 10):
            decision = study.report(trial.trial_id, r, {"val_error": loss + 1.0 / r},
                                    runtime_seconds=float(r))
            if decision.halts or not study.trial(trial.trial_id).phase.is_active():
                break
        if study.trial(trial.trial_id).phase.is_active():
            study.complete_trial(trial.trial_id, runtime_seconds=9.0)
    assert len(started) >= 6
    if method.startswith("best-first"):
        assert started[0]["a"] == old_study().best(ERR).config["a"]
    # The same calls rebuild the same study (the searcher is a deterministic function of them).
    rebuilt = Study.rebuild(config, [e.to_dict() for e in study.events])
    assert [t.config for t in rebuilt.trials] == [t.config for t in study.trials]


def test_vectorised_candidate_scores_equal_one_by_one_scores() -> None:
    params = {**NEW_PARAMS, "opt": {"type": "categorical", "values": ["sgd", "adam"]},
              "mom": {"type": "float", "min": 0.0, "max": 1.0,
                      "condition": {"parameter": "opt", "in": ["sgd"]}}}
    space = SearchSpace.from_spec(params)
    hw = [Hardware("t4"), Hardware("a100")]
    s = TPESearcher(space, hw, seed=0, objective=ERR, n_startup=5)
    feed(s, 12, lambda c: c["a"] + (0.5 if c.get("opt") == "sgd" else 0))
    model = s._model()
    rng = np.random.default_rng(0)
    pool = [(space.sample(rng), hw[i % 2]) for i in range(30)]
    one_by_one = [s._score(model, c, h) for c, h in pool]
    assert np.allclose(s._score_many(model, pool), one_by_one)


def test_best_first_follows_a_renamed_parameter() -> None:
    old = old_study()
    renamed = SearchSpace.from_spec({"alpha": OLD_PARAMS["a"], "b": OLD_PARAMS["b"]})
    s = make_transfer_searcher(renamed, None, 0, {}, objectives=(ERR,), transfer_studies=[old],
                               transfer_method="best-first", transfer_renames={"a": "alpha"})
    first = s.suggest()[0]
    assert first == {"alpha": old.best(ERR).config["a"], "b": old.best(ERR).config["b"]}

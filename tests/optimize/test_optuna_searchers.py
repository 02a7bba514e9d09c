"""Optuna's samplers as searchers: each runs a simulated study under an hwtune scheduler (ASHA
or MO-ASHA stop the trials), with hardware as a dimension, and a study rebuilt from its log
suggests exactly what the uninterrupted one suggests next."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from engine_helpers import BASE_SPEC, small_table  # noqa: E402

from hwtune.api.records import TrialPhase  # noqa: E402
from hwtune.backends.simulated import SimulatedBackend  # noqa: E402
from hwtune.engine import Study, StudyConfig, Tuner  # noqa: E402

pytest.importorskip("optuna")

SINGLE = ["optuna-tpe", "optuna-multivariate-tpe", "optuna-cmaes", "optuna-sobol",
          "optuna-nsga2", "optuna-gp"]
MULTI = ["optuna-tpe", "optuna-multivariate-tpe", "optuna-sobol", "optuna-nsga2"]


def make_config(searcher: str, scheduler: str, objectives: list[dict]) -> StudyConfig:
    spec = copy.deepcopy(BASE_SPEC)
    spec["objectives"] = objectives
    spec["algorithm"] = {"scheduler": scheduler, "searcher": searcher, "seed": 7,
                         "settings": {"optunaStartupTrials": 4}}
    spec["budget"] = {"maxTrials": 14, "maxParallelTrials": 3}
    return StudyConfig.from_spec(spec)


def run_study(c: StudyConfig):
    backend = SimulatedBackend(small_table(c), c.hardware_model, n_workers=3)
    study = Study(c, clock=backend.clock)
    result = Tuner(study, backend).run()
    return study, result


def check_rebuild(c: StudyConfig, study: Study) -> None:
    again = Study.rebuild(c, [e.to_dict() for e in study.events], strict=True)
    assert again.replay_mismatches == []
    # The next suggestions of the rebuilt study equal the original's (same sampler state).
    for _ in range(3):
        a, b = study.start_next(), again.start_next()
        assert (a is None) == (b is None)
        if a is None:
            break
        assert (a.trial.config, a.trial.hardware) == (b.trial.config, b.trial.hardware)


@pytest.mark.parametrize("searcher", SINGLE)
def test_single_objective_under_asha(searcher):
    if searcher == "optuna-gp":
        pytest.importorskip("torch")
    c = make_config(searcher, "asha", [{"metric": "val_error"}])
    study, result = run_study(c)
    assert len(result.trials) == 14
    assert any(t.phase is TrialPhase.STOPPED for t in result.trials)  # ASHA stopped some
    hardware = {t.hardware for t in result.trials}
    assert len(hardware) > 1 and None not in hardware
    check_rebuild(c, study)


@pytest.mark.parametrize("searcher", MULTI)
def test_several_objectives_under_mo_asha(searcher):
    c = make_config(searcher, "mo-asha", [{"metric": "val_error"}, {"metric": "cost"}])
    study, result = run_study(c)
    assert len(result.trials) == 14 and result.front
    check_rebuild(c, study)


def test_tpe_learns_something():
    # After the startup trials, TPE proposes the good region (lr near 3, adam) more often
    # than chance: a weak check that values are told and used.
    c = make_config("optuna-tpe", "fifo", [{"metric": "val_error"}])
    spec = c.spec.to_dict()
    spec["budget"] = {"maxTrials": 40, "maxParallelTrials": 1}
    spec.pop("fidelity")
    spec["algorithm"]["scheduler"] = "fifo"
    c = StudyConfig.from_spec(spec)
    study, _ = run_study(c)
    late = [t.config for t in study.trials[20:]]
    good = sum(1 for cfg in late if cfg["opt"] == "adam" and abs(cfg["lr"] - 3) <= 1)
    assert good / len(late) > 0.3  # chance: 1/2 * 3/6 = 0.25


def test_cmaes_refuses_several_objectives():
    from hwtune.space.errors import SpecError

    c = make_config("optuna-cmaes", "mo-asha", [{"metric": "val_error"}, {"metric": "cost"}])
    with pytest.raises(SpecError, match="optuna-cmaes optimises one objective"):
        c.check_algorithm()


def test_the_light_paths_do_not_import_optuna():
    import subprocess

    code = ("import sys, hwtune.engine, hwtune.optimize.searchers, hwtune.api.crd; "
            "print('optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_candidates_restrict_proposals_to_a_table_and_exhaust():
    from hwtune.api.records import Goal, Hardware, Objective
    from hwtune.optimize.searchers import make_searcher
    from hwtune.space import FloatDomain, SearchSpace

    space = SearchSpace([FloatDomain("lr", 1e-4, 1e-1, log=True)])
    candidates = [{"lr": 1e-3}, {"lr": 1e-2}, {"lr": 5e-2}]
    hardware = [Hardware("t4", 1), Hardware("a100", 1)]
    searcher = make_searcher("optuna-tpe", space, hardware, seed=3, candidates=candidates,
                             objectives=[Objective("val_error", Goal.MINIMIZE)])
    seen = set()
    for _ in range(6):
        config, hw = searcher.suggest()
        assert config in candidates
        seen.add((config["lr"], hw))
    assert len(seen) == 6 and searcher.suggest() is None

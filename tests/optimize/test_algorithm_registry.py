"""The one list of algorithm names (hwtune.api.algorithms): the CRD enum, validation and the
factories agree, and every listed name builds."""

from __future__ import annotations

import pytest

from hwtune.api import algorithms
from hwtune.api.crd import ManifestError, SchedulerName, SearcherName, TuningStudySpec, parse_spec
from hwtune.api.crdgen import crd_for
from hwtune.api.crd import TuningStudy
from hwtune.api.records import Goal, Hardware, Objective
from hwtune.optimize import schedulers, searchers
from hwtune.optimize.schedulers import Scheduler, make_scheduler, register_scheduler
from hwtune.optimize.searchers import Searcher, make_searcher
from hwtune.space import FloatDomain, SearchSpace

SPACE = SearchSpace([FloatDomain("lr", 1e-4, 1e-1, log=True)])
HW = [Hardware("t4", 1), Hardware("a100", 2)]
OBJECTIVES = [Objective("val_error", Goal.MINIMIZE), Objective("cost")]


def _earlier_study():
    from hwtune.api.records import TrialPhase
    from hwtune.transfer import PastStudy, PastTrial

    return PastStudy("old", "test", SPACE.to_spec(), tuple(OBJECTIVES), tuple(HW), 1, tuple(
        PastTrial(i, {"lr": 10 ** (-1 - i / 2)}, HW[i % 2], TrialPhase.COMPLETED,
                  ((1, {"val_error": 0.1 * i, "cost": 1.0 + i}),)) for i in range(5)))


@pytest.mark.parametrize("name", algorithms.searcher_names())
def test_every_listed_searcher_builds(name: str) -> None:
    # A transfer searcher builds from loaded earlier studies (what the backends attach).
    needs = ({"objectives": OBJECTIVES, "transfer_studies": [_earlier_study()]}
             if algorithms.searcher(name).needs_transfer else {})
    searcher = make_searcher(name, SPACE, HW, seed=1, **needs)
    assert isinstance(searcher, Searcher)
    assert searcher.suggest() is not None


@pytest.mark.parametrize("name", algorithms.scheduler_names())
def test_every_listed_scheduler_builds_and_suggests(name: str) -> None:
    scheduler = make_scheduler(name, searcher=make_searcher("random", SPACE, HW, seed=1),
                               objectives=OBJECTIVES, resource_min=1, resource_max=9,
                               reduction_factor=3, seed=2)
    assert isinstance(scheduler, Scheduler)
    assert scheduler.suggest() is not None


def _crd_enum(field: str) -> list[str]:
    schema = crd_for(TuningStudy)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["algorithm"]["properties"][field]["enum"]


def test_crd_enums_and_models_come_from_the_list() -> None:
    assert _crd_enum("searcher") == list(algorithms.searcher_names())
    assert _crd_enum("scheduler") == list(algorithms.scheduler_names())
    assert [m.value for m in SearcherName] == list(algorithms.searcher_names())
    assert [m.value for m in SchedulerName] == list(algorithms.scheduler_names())
    assert SchedulerName("mo-asha").needs_fidelity and not SchedulerName("fifo").needs_fidelity


def test_unlisted_name_is_refused_naming_what_exists() -> None:
    with pytest.raises(ValueError, match=r"unknown searcher 'fms' \(one of: random, grid, tpe, transfer\)"):
        make_searcher("fms", SPACE)
    with pytest.raises(ValueError, match="unknown scheduler 'dyhpo'.*fifo, random, asha"):
        make_scheduler("dyhpo", searcher=make_searcher("random", SPACE), objectives=OBJECTIVES,
                       resource_max=9)
    spec = {"objectives": [{"metric": "loss"}], "parameters": {"x": {"type": "float", "min": 0.0,
            "max": 1.0}}, "algorithm": {"searcher": "fms"},
            "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}
    with pytest.raises(ManifestError) as info:
        parse_spec(TuningStudySpec, spec)
    (error,) = info.value.errors
    assert error.path == "spec.algorithm.searcher"
    assert "'random', 'grid', 'tpe' or 'transfer'" in error.message


def test_adding_a_name_is_one_entry_plus_a_registered_factory(monkeypatch) -> None:
    entry = algorithms.Algorithm("tiny-fifo", "hwtune.optimize.schedulers", "test only")
    monkeypatch.setattr(algorithms, "SCHEDULERS", algorithms.SCHEDULERS + (entry,))
    monkeypatch.setattr(schedulers, "_REGISTRY", dict(schedulers._REGISTRY))
    with pytest.raises(ValueError, match="registered no factory"):
        make_scheduler("tiny-fifo", searcher=make_searcher("random", SPACE),
                       objectives=OBJECTIVES, resource_max=3)
    built = []

    def factory(**arguments):
        built.append(sorted(arguments))
        return schedulers.FIFOScheduler(arguments["searcher"], arguments["objectives"],
                                        resource_max=arguments["resource_max"])

    register_scheduler("tiny-fifo", factory)
    scheduler = make_scheduler("tiny-fifo", searcher=make_searcher("random", SPACE),
                               objectives=OBJECTIVES, resource_max=3)
    assert isinstance(scheduler, schedulers.FIFOScheduler)
    assert built == [["objectives", "reduction_factor", "resource_max", "resource_min",
                      "searcher", "seed", "settings"]]


def test_a_provider_that_fails_to_import_is_named(monkeypatch) -> None:
    entry = algorithms.Algorithm("ghost", "hwtune.no_such_module", "test only")
    monkeypatch.setattr(algorithms, "SEARCHERS", algorithms.SEARCHERS + (entry,))
    monkeypatch.setattr(searchers, "_REGISTRY", dict(searchers._REGISTRY))
    with pytest.raises(ValueError, match="needs hwtune.no_such_module, which failed to import"):
        make_searcher("ghost", SPACE)

"""Meta-training the surrogate on earlier studies (transfer.fromStudies with searcher dyhpo):
it ranks a related task's configs better than the same surrogate without them, a study that
cannot be mapped is refused naming the field, and a rebuilt study asks the model nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from hwtune.api.records import Objective, TrialPhase
from hwtune.backends.simulated import SimulatedBackend, synthetic_table
from hwtune.engine import Study, StudyConfig, Tuner
from hwtune.engine.events import EventKind
from hwtune.transfer import PastStudy, PastTrial, TransferError

FAST = {"fullFitSteps": 150, "refitSteps": 10, "freshCandidates": 16}
PARAMS = {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
          "width": {"type": "int", "min": 8, "max": 128}}
EPOCHS = 5


def _final(config, task: float) -> float:
    """Two related tasks: the same bowl over (log lr, width); the second is tilted a little."""
    u = (math.log10(config["lr"]) + 4) / 3
    w = (config["width"] - 8) / 120
    return 0.1 + 0.6 * (u - 0.6) ** 2 + 0.3 * (w - 0.3) ** 2 + task * 0.1 * u


def _curve(config, task: float) -> list[float]:
    final = _final(config, task)
    return [final + (0.8 - final) * math.exp(-e) for e in range(1, EPOCHS + 1)]


def _configs(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"lr": float(10 ** rng.uniform(-4, -1)), "width": int(rng.integers(8, 129))}
            for _ in range(n)]


def _earlier(configs, task: float = 1.0, params=PARAMS, name="old", metric="val_error") -> PastStudy:
    trials = tuple(
        PastTrial(i, c, None, TrialPhase.COMPLETED,
                  tuple((e + 1, {metric: v}) for e, v in enumerate(_curve(c, task))))
        for i, c in enumerate(configs))
    return PastStudy(name, "test", params, (Objective(metric),), (), EPOCHS, trials)


def _spec(settings=None, transfer=True, mapping=None) -> dict:
    spec = {"objectives": [{"metric": "val_error"}], "parameters": PARAMS,
            "fidelity": {"resource": "epoch", "min": 1, "max": EPOCHS},
            "algorithm": {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 3,
                          "settings": {**FAST, **(settings or {})}},
            "budget": {"maxTrials": 12, "maxParallelTrials": 1}}
    if transfer:
        spec["transfer"] = {"fromStudies": ["old"], **({"mapping": mapping} if mapping else {})}
    return spec


def _study(spec, studies, candidates):
    config = StudyConfig.from_spec(spec)
    if studies:
        config = config.with_transfer_studies(studies)
    ctx = config.search_context()
    scheduler = config.make_scheduler(config.make_searcher(context=ctx, candidates=candidates),
                                      context=ctx)
    return Study(config, scheduler), scheduler


def _observe(study, configs, levels: int) -> None:
    for c in configs:
        tid = study.create_trial(c, max_resource=levels).trial.trial_id
        study.trial_running(tid)
        for r, v in enumerate(_curve(c, 0.0)[:levels], start=1):
            study.report(tid, r, {"val_error": v}, runtime_seconds=1.0)


def _predict(spec, studies, candidates, variant=None):
    study, scheduler = _study(spec, studies, candidates)
    if variant is not None:
        scheduler.core.variant = variant  # the benchmark's plain-GP surrogate
    _observe(study, candidates[:3], levels=2)  # the target study has seen little
    pred = scheduler.core.predict_final([(c, None) for c in candidates])
    return pred, np.asarray(scheduler.core.last_answer["std"])


def test_earlier_studies_of_a_related_task_improve_the_ranking_and_the_likelihood():
    candidates = _configs(40, seed=0)
    earlier = _earlier(_configs(60, seed=1), task=0.5)  # other configs, a related (tilted) task
    true = np.array([_final(c, 0.0) for c in candidates])
    assert kendalltau([_final(c, 0.5) for c in candidates], true).statistic > 0.8

    def tau(pred):
        return float(kendalltau(pred, true).statistic)

    def logp(pred, std):  # predictive log density of the true finals (+ a small noise floor)
        sd = np.sqrt(std ** 2 + 1e-4)
        return float(np.mean(-0.5 * ((true - pred) / sd) ** 2 - np.log(sd)))

    # Six seeds, judged together: one seed's tau moves by ~0.1 with the numerics of a new
    # numpy or linear_operator release (CI failed on a single seed at 0.444 against 0.45).
    taus: dict[str, list[float]] = {"none": [], "joint": [], "gp": []}
    densities: list[tuple[float, float]] = []  # (pretrained, no transfer)
    for seed in range(1, 7):
        def spec(settings, transfer=True):
            out = _spec({"fullFitSteps": 300, **settings}, transfer=transfer)
            out["algorithm"]["seed"] = seed
            return out

        none = _predict(spec({}, transfer=False), [], candidates)
        taus["none"].append(tau(none[0]))
        taus["joint"].append(tau(_predict(spec({}), [earlier], candidates)[0]))
        taus["gp"].append(tau(_predict(spec({}), [earlier], candidates, variant="gp")[0]))
        pre = _predict(spec({"transferMode": "pretrain"}), [earlier], candidates)
        densities.append((logp(*pre), logp(*none)))
    joint, plain = np.array(taus["joint"]), np.array(taus["none"])
    # Joint: the untried configs are ranked from the earlier task as well as from the study's
    # own few points; better than from those alone on every seed, and far better on the whole.
    assert (joint > plain).all(), taus
    assert np.median(joint) > 0.45 and np.mean(joint - plain) > 0.25, taus
    assert min(taus["gp"]) > 0.75, taus  # the ARD GP learns the task distance well
    # Pretrained: a better predictive density than no transfer on most seeds and in the median.
    # (The joint model is overconfident: its spread comes from the dense earlier points;
    # docs/transfer.md.)
    assert sum(p > n for p, n in densities) >= 4, densities
    assert np.median([p for p, _ in densities]) > np.median([n for _, n in densities]), densities


def test_a_joint_model_ranks_from_the_first_suggestion_without_random_trials():
    candidates = _configs(30, seed=4)
    earlier = _earlier(candidates, task=0.5)
    study, scheduler = _study(_spec(), [earlier], candidates)
    assert scheduler.core.initial_trials == 0
    first = scheduler.suggest()
    assert first is not None and not first.is_resume
    best_earlier = min(candidates, key=lambda c: _final(c, 0.5))
    # The first config is among the earlier study's best few (random would be 1 in 30).
    rank = sorted(candidates, key=lambda c: _final(c, 0.5)).index(dict(first.config))
    assert rank < 5, (rank, first.config, best_earlier)


def test_an_earlier_study_with_other_parameters_is_refused_naming_the_field():
    other = {"momentum": {"type": "float", "min": 0.0, "max": 0.99},
             "depth": {"type": "int", "min": 1, "max": 8}}
    earlier = PastStudy("old", "workdir:/tmp/old", other, (Objective("val_error"),), (), EPOCHS,
                        (PastTrial(0, {"momentum": 0.9, "depth": 2}, None, TrialPhase.COMPLETED,
                                   ((1, {"val_error": 0.5}),)),))
    with pytest.raises(TransferError) as err:
        _study(_spec(), [earlier], None)
    text = str(err.value)
    assert "transfer.fromStudies[0] ('old', workdir:/tmp/old)" in text
    assert "shares no parameter with spec.parameters" in text and "spec.transfer.mapping" in text
    # Another metric: refused naming it.
    with pytest.raises(TransferError, match="never reported metric 'val_error'"):
        _study(_spec(), [_earlier(_configs(4, 0), metric="loss")], None)
    # A bad transferMode is a settings error.
    with pytest.raises(ValueError, match="algorithm.settings.transferMode"):
        _study(_spec({"transferMode": "both"}), [_earlier(_configs(4, 0))], None)


def test_a_renamed_parameter_is_mapped_through_transfer_mapping():
    old_params = {"learning_rate": PARAMS["lr"], "width": PARAMS["width"]}
    configs = _configs(10, seed=5)
    renamed = [{"learning_rate": c["lr"], "width": c["width"]} for c in configs]
    earlier = _earlier(configs, params=old_params)
    earlier = PastStudy(earlier.name, earlier.source, old_params, earlier.objectives, (), EPOCHS,
                        tuple(PastTrial(t.trial_id, r, None, t.phase, t.curve)
                              for t, r in zip(earlier.trials, renamed)))
    study, scheduler = _study(_spec(mapping={"learning_rate": "lr"}), [earlier], configs)
    points = scheduler.core.source()
    # Every earlier trial: its final value from no curve, each level from the one before, and
    # the final value from each earlier level (under the 128-point cap, so all of them).
    assert len(points) == len(configs) * (1 + EPOCHS + EPOCHS - 1)
    assert sum(not p.curve and p.level == EPOCHS for p in points) == len(configs)
    x = scheduler.core.encode(configs[0], None)
    assert len(x) == len(points[0].x) + 1 and x[-1] == 0.0  # the task indicator
    lr_encoded = {round(float(p.x[0]), 9) for p in points}
    assert round(float(x[0]), 9) in lr_encoded  # the old learning_rate values landed on lr


def test_a_rebuilt_transfer_study_asks_the_model_nothing_for_its_past():
    spec = _spec({"fullFitSteps": 40, "refitSteps": 5})
    config = StudyConfig.from_spec(spec)
    table = synthetic_table(config.space, 20, EPOCHS, seed=1)
    earlier = _earlier(table.configs(), task=0.5)
    config = config.with_transfer_studies([earlier])

    def fresh():
        ctx = config.search_context()
        return config.make_scheduler(config.make_searcher(context=ctx, candidates=table.configs()),
                                     context=ctx)

    backend = SimulatedBackend(table, config.hardware_model, n_workers=1, seed=0)
    study = Study(config, fresh(), clock=backend.clock)
    Tuner(study, backend).run()
    assert len(study.trials) == 12
    assert sum(e.kind is EventKind.RESUMED for e in study.events) > 5
    scheduler = fresh()
    calls = {"choose": 0, "source": 0}
    original_choose, original_source = scheduler.core.choose, scheduler.core.source

    def choose(**kw):
        calls["choose"] += 1
        return original_choose(**kw)

    def source():
        calls["source"] += 1
        return original_source()

    scheduler.core.choose, scheduler.core.source = choose, source
    events = [e.to_dict() for e in study.events]
    rebuilt = Study.rebuild(config, events, scheduler=scheduler, strict=True)
    assert calls == {"choose": 0, "source": 0}  # no refit, not even the earlier points' encoding
    assert [e.to_dict() for e in rebuilt.events] == events
    # A prefix rebuilt mid-study decides what the original decided next.
    suggested = [e for e in study.events
                 if e.kind in (EventKind.CREATED, EventKind.RESUMED) and e.suggested]
    cut = suggested[len(suggested) // 2]
    prefix = Study.rebuild(config, events[: cut.seq], scheduler=fresh(), strict=True)
    start = prefix.start_next()
    assert start is not None and start.trial.trial_id == cut.trial_id
    assert start.resumed == (cut.kind is EventKind.RESUMED)

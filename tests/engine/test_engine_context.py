"""The search context handed to searcher/scheduler factories, the pause/resume hooks, notes, and
the rebuild that reuses recorded suggestions instead of asking a model-based scheduler again."""

from __future__ import annotations

from hwtune.api.records import Decision, TrialRecord
from hwtune.engine import Study, StudyConfig
from hwtune.optimize.context import SearchContext
import pytest

from hwtune.optimize import schedulers, searchers
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.searchers.base import Searcher

from tests.engine.engine_helpers import ManualClock, config


class FreezeThaw(Scheduler):
    """Pauses every trial after each report; resumes the paused trial with the lowest value,
    else asks its searcher. Records how often suggest() runs (a model fit, in real life)."""

    reuses_recorded_suggestions = True

    def __init__(self, searcher: Searcher, context: SearchContext) -> None:
        self.objectives = context.objectives
        self.searcher = searcher
        self.context = context
        self.suggest_calls = 0
        self.replayed: list[TrialSuggestion] = []
        self.paused: list[int] = []
        self.resumed: list[int] = []
        self.count = 0  # suggestions so far: live and replayed alike

    def suggest(self):
        self.suggest_calls += 1
        self.count += 1
        view = self.context.study
        paused = view.paused()
        if paused and self.count % 2 == 0:
            best = min(paused, key=lambda t: view.learning_curve(t)[-1][1])
            return TrialSuggestion.resume(best.trial_id, best.last_resource + 1)
        proposal = self.searcher.suggest()
        if proposal is None:
            return None
        return TrialSuggestion.new(proposal[0], proposal[1], max_resource=1)

    def suggest_resume(self):
        return None

    def replay_suggestion(self, suggestion):
        self.count += 1
        self.replayed.append(suggestion)
        if not suggestion.is_resume:
            self.searcher.on_trial_add(TrialRecord(-1, suggestion.config, suggestion.hardware))

    def on_trial_result(self, trial, observation):
        return Decision.PAUSE

    def on_trial_pause(self, trial):
        self.paused.append(trial.trial_id)

    def on_trial_resume(self, trial):
        self.resumed.append(trial.trial_id)


class ContextSearcher(Searcher):
    """Proposes configs in order; keeps the context it was built with."""

    def __init__(self, space, context):
        self.context = context
        self.configs = list(space.grid(10))
        self.used: set[tuple] = set()

    def suggest(self):
        for c in self.configs:
            key = tuple(sorted(c.items()))
            if key not in self.used:
                self.used.add(key)
                self.context.note("picked by the test searcher")
                return c, self.context.hardware[0]
        return None

    def on_trial_add(self, trial):
        self.used.add(tuple(sorted(trial.config.items())))


@pytest.fixture(autouse=True)
def test_factories(monkeypatch):
    """The study names fifo/random; the factories behind those names are the test's here."""
    monkeypatch.setitem(searchers._REGISTRY, "random",
                        lambda space, hw, seed, settings, *, context=None, **_:
                        ContextSearcher(space, context))
    monkeypatch.setitem(schedulers._REGISTRY, "fifo",
                        lambda *, searcher, context, **_: FreezeThaw(searcher, context))


def _config() -> StudyConfig:
    return config(checkpoints={"uri": "s3://bucket/ckpt/"})


def _drive(study: Study, steps: int) -> None:
    for _ in range(steps):
        start = study.start_next()
        assert start is not None
        tid = start.trial.trial_id
        study.trial_running(tid)
        resource = start.trial.last_resource + 1
        value = 1.0 / (1 + tid) + 0.1 * resource
        assert study.report(tid, resource, {"val_error": value}, runtime_seconds=10.0 * resource) \
            is Decision.PAUSE


def test_factories_get_one_context_with_a_live_view_of_the_study():
    study = Study(_config(), clock=ManualClock())
    ctx = study.scheduler.context
    assert ctx is study.context
    assert study.scheduler.searcher.context is ctx
    assert [o.metric for o in ctx.objectives] == ["val_error", "runtime", "cost"]
    assert (ctx.fidelity.min, ctx.fidelity.max, ctx.fidelity.reduction_factor) == (1, 9, 3)
    assert ctx.hardware_model is study.config.hardware_model
    assert ctx.seed == 3
    _drive(study, 3)
    # new 0, resume 0, new 1
    assert [t.trial_id for t in ctx.study.trials()] == [0, 1]
    assert [t.trial_id for t in ctx.study.paused()] == [0, 1]
    assert ctx.study.learning_curve(0) == [(1, 1.1), (2, 1.2)]
    assert ctx.study.checkpoint_uri(0) == "s3://bucket/ckpt/0"


def test_pause_and_resume_hooks_and_notes_reach_the_log():
    study = Study(_config(), clock=ManualClock())
    _drive(study, 4)
    sched = study.scheduler
    # new 0, resume 0, new 1, resume 1 (the lower curve)
    assert sched.paused == [0, 0, 1, 1]
    assert sched.resumed == [0, 1]
    created = [e for e in study.events if e.kind.value == "created"]
    assert all(e.extra.get("notes") == ["picked by the test searcher"] for e in created)


def test_rebuild_reuses_recorded_suggestions_and_decides_the_same():
    cfg = _config()
    study = Study(cfg, clock=ManualClock())
    _drive(study, 6)
    assert study.scheduler.suggest_calls == 6
    rebuilt = Study.rebuild(cfg, [e.to_dict() for e in study.events], strict=True)
    assert rebuilt.scheduler.suggest_calls == 0  # the model was never asked again
    assert [s.is_resume for s in rebuilt.scheduler.replayed] == \
        [e.kind.value == "resumed" for e in study.events if e.kind.value in ("created", "resumed")]
    assert [(t.trial_id, t.phase, [o.resource for o in t.observations]) for t in rebuilt.trials] == \
        [(t.trial_id, t.phase, [o.resource for o in t.observations]) for t in study.trials]
    assert [e.to_dict() for e in rebuilt.events] == [e.to_dict() for e in study.events]
    # The next decision is the same on both.
    a, b = study.start_next(), rebuilt.start_next()
    assert (a.trial.trial_id, a.resumed, dict(a.trial.config)) == \
        (b.trial.trial_id, b.resumed, dict(b.trial.config))


def test_schedulers_that_do_not_opt_in_are_asked_again_on_rebuild(monkeypatch):
    monkeypatch.undo()  # the real factories
    cfg = config(algorithm={"scheduler": "asha-promotion", "seed": 1})
    study = Study(cfg, clock=ManualClock())
    for _ in range(5):
        start = study.start_next()
        study.report(start.trial.trial_id, start.trial.last_resource + 1, {"val_error": 0.5})
    rebuilt = Study.rebuild(cfg, study.events, strict=True)
    assert [t.phase for t in rebuilt.trials] == [t.phase for t in study.trials]


def test_default_view_without_checkpoint_store_has_no_uri(monkeypatch):
    monkeypatch.undo()
    study = Study(config(), clock=ManualClock())
    start = study.start_next()
    study.report(start.trial.trial_id, 1, {"val_error": 0.3})
    assert study.context.study.checkpoint_uri(0) is None
    assert study.context.study.learning_curve(0, "val_error") == [(1, 0.3)]

"""Fast rebuild (issue 14): the log's suggestions are applied, not searched for again, and the
rebuilt study still decides exactly like the uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import ManualClock, config, small_table
from test_engine_budget_rebuild import drive, state

from hwtune.engine import Study


def rung_state(study: Study) -> list[tuple]:
    return [(r.level, list(r.trial_ids), np.asarray(r.losses).tolist(), sorted(r.promoted),
             None if r.fronts is None else r.fronts.tolist())
            for r in study.scheduler.rungs()]


@pytest.mark.parametrize("kind", ["asha-promotion", "mo-asha-promotion", "mo-asha"])
def test_rebuild_applies_logged_suggestions_and_continues_identically(kind, monkeypatch):
    c = config(algorithm={"scheduler": kind, "seed": 3}, budget={"maxTrials": 400})
    table = small_table(c)
    original = Study(c, c.make_scheduler(), clock=ManualClock())
    drive(original, 1200, seed=5, table=table, parallel=6)
    resumes = sum(1 for e in original.events if e.kind.value == "resumed")
    if kind.endswith("promotion"):
        assert resumes > 10

    fresh = c.make_scheduler()
    asked = []
    monkeypatch.setattr(fresh, "suggest", lambda: asked.append(1))  # the log must be enough
    rebuilt = Study.rebuild(c, original.events, scheduler=fresh, clock=ManualClock(), strict=True)
    monkeypatch.undo()
    assert asked == []
    assert rebuilt.replay_mismatches == []
    assert state(rebuilt) == state(original)
    assert rung_state(rebuilt) == rung_state(original)
    assert drive(rebuilt, 600, seed=9, table=table, parallel=6) == \
        drive(original, 600, seed=9, table=table, parallel=6)


def test_a_log_the_scheduler_cannot_apply_falls_back_to_asking():
    """A resume the scheduler would not have made (here: of a trial it never paused at that
    rung) is not applied blindly: the study asks and reports the mismatch."""
    c = config(algorithm={"scheduler": "mo-asha-promotion", "seed": 3}, budget={"maxTrials": 40})
    scheduler = c.make_scheduler()
    assert scheduler.replay_resume(12345, 3) is False

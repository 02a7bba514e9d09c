"""FMS on the local backend (what ``hwtune tune`` runs): real trainer processes, freeze-thaw
pauses and resumes, and the surrogate reads the trials' real checkpoints from the workdir."""

from __future__ import annotations

import pytest

from hwtune.api.records import TrialPhase
from hwtune.backends.local import LocalStudyRun
from hwtune.engine.events import EventKind

from tests.backends.local_support import digits_spec


@pytest.mark.slow
def test_fms_study_on_the_local_backend_reads_real_checkpoints(tmp_path):
    spec = digits_spec(scheduler="dyhpo", max_trials=3, parallel=1, max_epochs=3)
    spec["algorithm"] = {"scheduler": "dyhpo", "searcher": "fms", "seed": 1,
                         "settings": {"fullFitSteps": 20, "refitSteps": 3, "freshCandidates": 6,
                                      "initialTrials": 2}}
    seen: list[dict] = []
    run = LocalStudyRun("digits", spec, workdir=tmp_path / "w")
    original = run.study.scheduler.core.ask

    def ask(*args, **kwargs):
        answer = original(*args, **kwargs)
        if answer is not None:
            seen.append(answer)
        return answer

    run.study.scheduler.core.ask = ask
    result = run.run()
    assert all(t.phase is TrialPhase.COMPLETED for t in result.trials), \
        [(t.trial_id, t.phase, t.reason) for t in result.trials]
    assert any(e.kind is EventKind.RESUMED for e in run.study.events)
    assert seen, "the model was never asked"
    # The latest checkpoint of every paused candidate is read; only overwritten levels of
    # older points are missing (the local backend keeps one checkpoint per trial).
    graphs = run.study.scheduler.core.predictor.store._graphs
    assert any(g is not None for g in graphs.values()), graphs
    assert not [n for e in run.study.events for n in (e.extra or {}).get("notes", [])]

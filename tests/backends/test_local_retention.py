"""The local backend keeps per-level checkpoints for FMS within a retention limit: a paused and
resumed trial's earlier levels stay readable by level, older copies are deleted, the trial still
resumes from its latest checkpoint."""

from __future__ import annotations

import socket

from hwtune.api.records import TrialPhase
from hwtune.backends.local import LocalStudyRun
from hwtune.backends.local.retention import keep_level, level_location
from hwtune.trainer.checkpoint import CheckpointStore
from tests.backends.local_support import toy_spec


def test_keep_level_links_the_level_and_drops_older_copies(tmp_path):
    root = str(tmp_path / "ckpt")
    store = CheckpointStore(f"{root}/7")
    for level in (1, 2, 3, 4):
        store.save({"w": [level]}, level)
        assert keep_level(store.location, level, keep=2)
    levels = sorted(p.name for p in (tmp_path / "ckpt" / "7" / "levels").iterdir())
    assert levels == ["3", "4"]  # the last two levels, bounded
    assert CheckpointStore(level_location(root, 7, 3)).load().state == {"w": [3]}
    assert CheckpointStore(level_location(root, 7, 4)).load().resource == 4
    assert level_location(root, 7, 1) == f"{root}/7"  # dropped: the trial's location
    assert store.load().resource == 4  # the latest is untouched
    # A level that was not checkpointed is not kept; object stores keep only the latest.
    assert not keep_level(store.location, 5, keep=2)
    assert not keep_level("s3://bucket/x/7", 1, keep=2)
    assert not keep_level(store.location, 4, keep=0)


def test_a_paused_and_resumed_fms_trial_keeps_its_levels(tmp_path):
    with socket.socket() as s:  # the service is down: suggestions fall back, pauses still happen
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    spec = toy_spec(scheduler="dyhpo", max_trials=2, parallel=1, max_epochs=3)
    spec["algorithm"] = {"scheduler": "dyhpo", "searcher": "fms", "seed": 3,
                         "settings": {"surrogateUrl": url, "surrogateTimeoutSeconds": 2}}
    run = LocalStudyRun("keep", spec, workdir=tmp_path / "w")
    result = run.run()
    assert all(t.phase is TrialPhase.COMPLETED for t in result.trials)
    events = run.events.read()
    assert any(e["kind"] == "resumed" for e in events)  # freeze-thaw paused and resumed them
    root = run.backend.checkpoint_root
    for trial in result.trials:
        for level in (1, 2, 3):
            where = run.study.view.checkpoint_uri(trial, level)
            assert where == level_location(root, trial.trial_id, level) != f"{root}/{trial.trial_id}"
            assert CheckpointStore(where).load().resource == level

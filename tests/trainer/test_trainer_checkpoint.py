"""Checkpoints on a directory, file:// and memory:// URIs: round trips, atomic replacement."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from hwtune.trainer.checkpoint import CHECKPOINT_FILE, META_FILE, CheckpointStore


@pytest.fixture(params=["dir", "file-uri", "memory"])
def location(request, tmp_path):
    if request.param == "dir":
        return str(tmp_path / "trial-1")
    if request.param == "file-uri":
        return f"file://{tmp_path}/trial-1"
    return f"memory://hwtune-test-{uuid.uuid4().hex}/trial-1"


def test_empty_store_has_no_checkpoint(location):
    store = CheckpointStore(location)
    assert store.load() is None and store.meta() is None


def test_save_then_load_returns_the_latest(location):
    store = CheckpointStore(location)
    store.save({"weights": [1.0, 2.0], "step": 10}, resource=1)
    store.save({"weights": [3.0, 4.0], "step": 20}, resource=2)
    checkpoint = CheckpointStore(location).load()
    assert checkpoint.resource == 2
    assert checkpoint.state == {"weights": [3.0, 4.0], "step": 20}
    meta = store.meta()
    # torch.save only once the process uses torch (other tests in this session may import it).
    expected_format = "torch" if "torch" in sys.modules else "pickle"
    assert meta["resource"] == 2 and meta["format"] == expected_format and meta["bytes"] > 0


def test_directory_store_leaves_no_temporary_files(tmp_path):
    store = CheckpointStore(str(tmp_path / "c"))
    for level in range(1, 4):
        store.save({"level": level}, level)
    assert sorted(os.listdir(tmp_path / "c")) == [CHECKPOINT_FILE, META_FILE]


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(str(tmp_path / "c"))
    store.save({"level": 1}, 1)

    def crash(*args, **kwargs):
        raise SystemExit(75)  # as if SIGTERM's exit hit between write and rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(SystemExit):
        store.save({"level": 2}, 2)
    monkeypatch.undo()
    assert store.load().state == {"level": 1}
    assert sorted(os.listdir(tmp_path / "c")) == [CHECKPOINT_FILE, META_FILE]


@pytest.mark.parametrize("state, resource", [([1, 2], 1), ({"a": 1}, 0), ({"a": 1}, True)])
def test_bad_arguments_are_refused(tmp_path, state, resource):
    with pytest.raises((TypeError, ValueError)):
        CheckpointStore(str(tmp_path)).save(state, resource)


def test_torch_state_is_saved_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    assert "torch" in sys.modules
    model = torch.nn.Linear(3, 2)
    store = CheckpointStore(str(tmp_path / "t"))
    store.save({"model": model.state_dict()}, 4)
    assert store.meta()["format"] == "torch"
    loaded = store.load()
    assert loaded.resource == 4
    assert torch.equal(loaded.state["model"]["weight"], model.weight.detach())


def test_foreign_file_is_not_taken_for_a_checkpoint(tmp_path):
    import pickle

    (tmp_path / CHECKPOINT_FILE).write_bytes(pickle.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="not an hwtune checkpoint"):
        CheckpointStore(str(tmp_path)).load()

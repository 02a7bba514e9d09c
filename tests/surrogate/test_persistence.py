"""Saved model state: a restarted store (service or operator) reloads the full fit instead of
fitting again and answers exactly as the old one; the disk stays bounded; a damaged file is only
a lost cache. Device selection: GPU when torch sees one, CPU otherwise (no GPU on the test
machine: the CUDA branch is checked with the availability given, never by running on one)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from hwtune.surrogate.service import SurrogateServer
from hwtune.surrogate.store import KEEP_FITS, ModelStore, _refit_rows, select_device


def _block(n: int, rng: np.random.Generator) -> dict:
    x = rng.uniform(size=(n, 2))
    curve = np.zeros((n, 3))
    mask = np.zeros((n, 3))
    return {"x": x.tolist(), "budget": rng.uniform(0.3, 1.0, size=n).tolist(),
            "curve": curve.tolist(), "mask": mask.tolist(), "checkpoint": [None] * n}


def _request(n: int, t: int, study: str = "s1") -> dict:
    rng = np.random.default_rng(n)
    train = _block(n, rng)
    y = rng.normal(size=n).tolist()
    full = {k: v[:t] for k, v in train.items()}
    return {"version": 1, "study": study, "variant": "dyhpo", "seed": 0, "dx": 2, "curveLength": 3,
            "settings": {"fullFitSteps": 20, "refitSteps": 3},
            "train": train, "y": y, "fullFit": {"points": full, "y": y[:t]},
            "test": _block(4, np.random.default_rng(99))}


def test_a_restarted_store_reloads_the_fit_and_answers_the_same(tmp_path):
    first = ModelStore(device="cpu", state_dir=tmp_path)
    answer = first.handle(_request(12, 8))
    assert "loaded" not in answer["fit"]["fullFit"]  # fitted now
    assert first.persisted() == ["s1"]
    again = ModelStore(device="cpu", state_dir=tmp_path)  # a new process
    reloaded = again.handle(_request(12, 8))
    assert reloaded["fit"]["fullFit"]["loaded"] is True
    assert reloaded["mean"] == pytest.approx(answer["mean"], abs=1e-6)
    assert reloaded["std"] == pytest.approx(answer["std"], abs=1e-6)
    # Without a state directory the new store fits again (and still answers the same: the fit
    # is a function of the request).
    fresh = ModelStore(device="cpu").handle(_request(12, 8))
    assert "loaded" not in fresh["fit"]["fullFit"]
    assert fresh["mean"] == pytest.approx(answer["mean"], abs=1e-4)


def test_only_the_latest_fits_stay_on_disk_and_forget_removes_them(tmp_path):
    store = ModelStore(device="cpu", state_dir=tmp_path)
    for t in (2, 4, 8, 16):
        store.handle(_request(t, t))
    store.handle(_request(5, 2, study="other"))
    kept = sorted(p.name.split("-")[1] for p in tmp_path.rglob("full-*.pt") if "s1-" in str(p))
    assert KEEP_FITS == 2 and kept == ["000008", "000016"]  # the full-fit set only grows
    assert len(list(tmp_path.rglob("full-*.pt"))) == 3
    assert store.forget("s1") == 1
    assert store.persisted() == ["other"]


def test_a_damaged_saved_fit_is_fitted_again(tmp_path):
    ModelStore(device="cpu", state_dir=tmp_path).handle(_request(12, 8))
    (saved,) = tmp_path.rglob("full-*.pt")
    saved.write_bytes(b"not a torch file")
    answer = ModelStore(device="cpu", state_dir=tmp_path).handle(_request(12, 8))
    assert "loaded" not in answer["fit"]["fullFit"] and len(answer["mean"]) == 4


def test_the_refit_uses_a_bounded_seeded_sample_past_refit_points():
    assert list(_refit_rows(10, 16, 0)) == list(range(10))
    rows = _refit_rows(600, 256, 0)
    assert len(rows) == 256 and len(set(rows)) == 256 and list(rows) == sorted(rows)
    assert set(range(600 - 128, 600)) <= set(rows)  # the latest half always in
    assert list(rows) == list(_refit_rows(600, 256, 0))  # a function of the request
    store = ModelStore(device="cpu")
    req = _request(40, 32)
    req["settings"]["refitPoints"] = 16
    answer = store.handle(req)
    assert answer["fit"]["refit"]["points"] == 16 and answer["fit"]["points"] == 40


def test_device_selection():
    assert select_device(None, cuda_available=True) == "cuda"
    assert select_device(None, cuda_available=False) == "cpu"
    assert select_device("cpu", cuda_available=True) == "cpu"
    assert select_device("cuda:1", cuda_available=True) == "cuda:1"
    with pytest.raises(ValueError, match="torch sees no GPU"):
        select_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="must be cpu, cuda or cuda:N"):
        select_device("tpu", cuda_available=True)


def test_the_service_reports_its_device_and_state(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    store = ModelStore(state_dir=tmp_path)  # no device given: picked from what torch sees
    assert store.device == "cpu"
    store.handle(_request(12, 8))
    with SurrogateServer(store) as srv:
        with urllib.request.urlopen(f"{srv.url}/healthz", timeout=10) as resp:
            health = json.loads(resp.read())
    assert health["device"] == "cpu" and health["cudaAvailable"] is False
    assert health["stateDir"] == str(tmp_path) and health["persistedStudies"] == 1

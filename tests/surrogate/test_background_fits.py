"""Background full fits (``ModelStore(background_fits=True)``, the service's default): a request
whose full fit is missing is answered from a stand-in (the study's previous or saved full fit,
else a quick fit) while the full fit runs in a fit thread; the finished fit replaces the
stand-in and answers exactly as a fit in the request would; one fit per study at a time; a
crash mid-fit leaves the saved state usable; a rebuilt study asks the model nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request

import numpy as np
import pytest
import torch

from hwtune.surrogate.service import SurrogateServer
from hwtune.surrogate.store import ModelStore


def _block(n: int, rng: np.random.Generator) -> dict:
    x = rng.uniform(size=(n, 2))
    return {"x": x.tolist(), "budget": rng.uniform(0.3, 1.0, size=n).tolist(),
            "curve": np.zeros((n, 3)).tolist(), "mask": np.zeros((n, 3)).tolist(),
            "checkpoint": [None] * n}


def _request(n: int, t: int, study: str = "s1", steps: int = 40) -> dict:
    rng = np.random.default_rng(n)
    train = _block(n, rng)
    y = (np.sin(3 * np.asarray(train["x"])[:, 0]) + 0.1 * rng.normal(size=n)).tolist()
    full = {k: v[:t] for k, v in train.items()}
    return {"version": 1, "study": study, "variant": "dyhpo", "seed": 0, "dx": 2, "curveLength": 3,
            "settings": {"fullFitSteps": steps, "refitSteps": 3, "quickFitSteps": 5},
            "train": train, "y": y, "fullFit": {"points": full, "y": y[:t]},
            "test": _block(4, np.random.default_rng(99))}


class _Gate:
    """Holds every background full fit at its start until ``open()`` (the fit itself is the
    store's real one): lets a test send requests while a fit is surely running."""

    def __init__(self, store: ModelStore) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        real = store._full_fit

        def gated(net, req, graphs, index):
            if threading.current_thread().name.startswith("hwtune-surrogate-fit"):
                self.started.set()
                assert self.release.wait(60)
            return real(net, req, graphs, index)

        store._full_fit = gated

    def open(self) -> None:
        self.release.set()


def test_the_background_fit_replaces_the_quick_answer_and_matches_a_fit_in_the_request(tmp_path):
    store = ModelStore(device="cpu", state_dir=tmp_path, background_fits=True)
    gate = _Gate(store)
    req = _request(40, 32)
    first = store.handle(req)
    assert first["fit"]["fullFit"]["background"] == "started"
    assert first["fit"]["fullFit"]["answeredFrom"] == "quick"
    assert len(first["mean"]) == 4 and all(np.isfinite(first["mean"]))
    assert gate.started.wait(30)
    # A second request while the fit runs: answered from the same stand-in, no second fit.
    second = store.handle(req)
    assert second["fit"]["fullFit"]["background"] == "running"
    assert store.background_started == 1 and store.background_running() == 1
    assert not list(tmp_path.rglob("full-*.pt"))  # nothing saved before the fit is done
    gate.open()
    assert store.wait_background(60)
    assert store.background_done == 1
    third = store.handle(req)
    assert "fullFit" not in third["fit"]  # the full fit, in memory now
    assert len(list(tmp_path.rglob("full-*.pt"))) == 1
    # The same full fit as a store that fits in the request: the same answer.
    sync = ModelStore(device="cpu").handle(req)
    assert "mllEnd" in sync["fit"]["fullFit"]
    assert third["mean"] == pytest.approx(sync["mean"], abs=1e-5)
    assert third["std"] == pytest.approx(sync["std"], abs=1e-5)
    assert third["mean"] != pytest.approx(first["mean"], abs=1e-5)  # the quick fit was another


def test_a_grown_full_fit_set_waits_for_the_running_fit_then_starts_from_the_previous_one():
    store = ModelStore(device="cpu", background_fits=True)
    gate = _Gate(store)
    store.handle(_request(12, 8))
    assert gate.started.wait(30)
    bigger = store.handle(_request(20, 16))  # the set doubled while the 8-point fit runs
    assert bigger["fit"]["fullFit"]["background"] == "waiting"
    assert store.background_started == 1
    gate.open()
    assert store.wait_background(60)
    again = store.handle(_request(20, 16))
    assert again["fit"]["fullFit"]["background"] == "started"
    assert again["fit"]["fullFit"]["answeredFrom"] == "previous"
    assert again["fit"]["fullFit"]["answeredFromPoints"] == 8
    assert store.wait_background(60) and store.background_started == 2


def test_a_restarted_store_answers_from_the_saved_smaller_fit(tmp_path):
    ModelStore(device="cpu", state_dir=tmp_path).handle(_request(12, 8))  # saves the 8-point fit
    store = ModelStore(device="cpu", state_dir=tmp_path, background_fits=True)
    same = store.handle(_request(12, 8))
    assert same["fit"]["fullFit"]["loaded"] is True and store.background_started == 0
    # A restarted store whose first request has a grown set: the saved smaller fit answers.
    store = ModelStore(device="cpu", state_dir=tmp_path, background_fits=True)
    grown = store.handle(_request(20, 16))
    assert grown["fit"]["fullFit"]["answeredFrom"] == "saved"
    assert grown["fit"]["fullFit"]["answeredFromPoints"] == 8
    assert store.wait_background(60)
    assert store.handle(_request(20, 16))["fit"].get("fullFit") is None  # now the full fit


def test_forgetting_a_study_during_its_fit_saves_nothing(tmp_path):
    store = ModelStore(device="cpu", state_dir=tmp_path, background_fits=True)
    gate = _Gate(store)
    store.handle(_request(12, 8))
    assert gate.started.wait(30)
    assert store.forget("s1") == 1
    gate.open()
    assert store.wait_background(60)
    assert not list(tmp_path.rglob("full-*.pt")) and store.persisted() == []


_CRASHING = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{tests!r}]
    from test_background_fits import _request
    from hwtune.surrogate.store import ModelStore
    store = ModelStore(device="cpu", state_dir={state!r}, background_fits=True)
    store.handle(_request(12, 8))
    assert store.wait_background(120)
    store.handle(_request(300, 256, steps=100000))  # seconds of fitting on 256 points
    print("fitting", store.background_running(), flush=True)
    time.sleep(120)
""")


def test_a_kill_during_a_background_fit_leaves_the_saved_state_valid(tmp_path):
    state = tmp_path / "state"
    code = _CRASHING.format(tests=os.path.dirname(__file__), state=str(state))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.split() == ["fitting", "1"], line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    saved = sorted(state.rglob("full-*.pt"))
    assert [p.name.split("-")[1] for p in saved] == ["000008"]  # the 256-point fit never landed
    for path in saved:
        record = torch.load(path, weights_only=True)
        assert len(record["digest"]) == 40 and "net" in record["state"]
    # A save cut short leaves a temporary file at most: the next store removes it.
    (saved[0].parent / ".tmp-cut.pt").write_bytes(b"half a fi")
    store = ModelStore(device="cpu", state_dir=state, background_fits=True)
    assert not list(state.rglob(".tmp-*"))
    assert store.persisted() == ["s1"]
    assert store.handle(_request(12, 8))["fit"]["fullFit"]["loaded"] is True
    grown = store.handle(_request(300, 256, steps=30))
    assert grown["fit"]["fullFit"]["answeredFrom"] == "previous"  # the 8-point fit just loaded
    assert grown["fit"]["fullFit"]["answeredFromPoints"] == 8
    assert store.wait_background(120)
    assert len(list(state.rglob("full-*.pt"))) == 2


def test_the_service_answers_from_the_stand_in_and_reports_background_fits(tmp_path):
    store = ModelStore(device="cpu", state_dir=tmp_path, background_fits=True)
    with SurrogateServer(store) as srv:
        body = json.dumps(_request(40, 32)).encode()
        http = urllib.request.Request(f"{srv.url}/v1/predict", data=body, method="POST",
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(http, timeout=60) as resp:
            answer = json.loads(resp.read())
        assert answer["fit"]["fullFit"]["background"] == "started"
        assert store.wait_background(60)
        with urllib.request.urlopen(f"{srv.url}/healthz", timeout=10) as resp:
            health = json.loads(resp.read())
        assert health["backgroundFits"] is True and health["backgroundFitsRunning"] == 0
        assert health["persistedStudies"] == 1
        with urllib.request.urlopen(f"{srv.url}/metrics", timeout=10) as resp:
            scrape = resp.read().decode()
        # The stand-in is no full fit; the background fit is counted when it ends.
        assert 'hwtune_surrogate_fit_seconds_count{kind="background"} 1.0' in scrape
        assert 'kind="full"' not in scrape
        bad = urllib.request.Request(f"{srv.url}/v1/predict", data=b'{"version": 2}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 400 and "version" in json.loads(err.value.read())["error"]


def test_a_study_with_background_fits_rebuilds_without_asking_the_model():
    from hwtune.backends.simulated import SimulatedBackend, synthetic_table
    from hwtune.engine import Study, StudyConfig, Tuner

    spec = {"objectives": [{"metric": "val_error"}],
            "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                           "width": {"type": "int", "min": 8, "max": 128}},
            "fidelity": {"resource": "epoch", "min": 1, "max": 5},
            "algorithm": {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 4,
                          "settings": {"fullFitSteps": 40, "refitSteps": 5, "freshCandidates": 16,
                                       "initialTrials": 2, "surrogateBackgroundFits": True}},
            "budget": {"maxTrials": 6, "maxParallelTrials": 2}}
    config = StudyConfig.from_spec(spec)
    table = synthetic_table(config.space, 30, 5, seed=1)

    def fresh():
        ctx = config.search_context()
        return config.make_scheduler(config.make_searcher(context=ctx, candidates=table.configs()),
                                     context=ctx)

    scheduler = fresh()
    backend = SimulatedBackend(table, config.hardware_model, n_workers=2, seed=0)
    study = Study(config, scheduler, clock=backend.clock)
    Tuner(study, backend).run()
    store = scheduler.core.predictor.store
    assert store.background_fits and store.background_started >= 1
    assert scheduler.core.fallbacks == 0
    store.wait_background(60)

    class Refuses:
        def predict(self, request):
            raise AssertionError("the model was asked about the past")

    rebuilt_scheduler = fresh()
    rebuilt_scheduler.core._predictor = Refuses()
    rebuilt = Study.rebuild(config, [e.to_dict() for e in study.events], scheduler=rebuilt_scheduler,
                            strict=True)
    assert [e.to_dict() for e in rebuilt.events] == [e.to_dict() for e in study.events]

"""The surrogate service: versioned HTTP + JSON, clear 4xx answers, per-study models, and the
engine's client with a timeout and a visible fallback when the service is down or slow."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest
import torch
from aiohttp import web

from hwtune.api.records import TrialPhase
from hwtune.backends.simulated import SimulatedBackend, synthetic_table
from hwtune.engine import Study, StudyConfig, Tuner
from hwtune.surrogate.service import SurrogateServer
from hwtune.surrogate.store import ModelStore

FAST = {"fullFitSteps": 30, "refitSteps": 5, "freshCandidates": 12, "initialTrials": 2}


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _request(**changes):
    point = {"x": [[0.1, 0.2]], "budget": [0.5], "curve": [[0.3, 0.0]], "mask": [[1.0, 0.0]],
             "checkpoint": [None]}
    two = {k: v * 2 for k, v in point.items()}
    two["x"] = [[0.1, 0.2], [0.7, 0.9]]
    body = {"version": 1, "study": "s1", "variant": "dyhpo", "seed": 0, "dx": 2, "curveLength": 2,
            "settings": {"fullFitSteps": 10, "refitSteps": 2},
            "train": two, "y": [0.5, 0.2], "fullFit": {"points": two, "y": [0.5, 0.2]}, "test": point}
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def server():
    with SurrogateServer(ModelStore(device="cpu"), max_body=200_000) as srv:
        yield srv


def test_predict_answers_and_keeps_a_model_per_study(server):
    status, answer = _post(f"{server.url}/v1/predict", json.dumps(_request()).encode())
    assert status == 200, answer
    assert answer["version"] == 1 and len(answer["mean"]) == 1 and answer["std"][0] > 0
    assert answer["fit"]["points"] == 2
    _post(f"{server.url}/v1/predict", json.dumps(_request(study="s2")).encode())
    with urllib.request.urlopen(f"{server.url}/v1/studies", timeout=10) as resp:
        assert {"s1", "s2"} <= set(json.loads(resp.read())["studies"])
    req = urllib.request.Request(f"{server.url}/v1/studies/s2", method="DELETE")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["forgotten"] == 1
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as resp:
        health = json.loads(resp.read())
    assert health["status"] == "ok" and health["protocolVersion"] == 1 and health["device"] == "cpu"
    assert health["cudaAvailable"] is torch.cuda.is_available() and health["stateDir"] is None


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps(_request(version=2)).encode(), 400, "version: this service speaks version 1"),
    (json.dumps(_request(variant="nope")).encode(), 400, "variant: must be one of"),
    (json.dumps(_request(dx=0)).encode(), 400, "dx: must be an integer >= 1"),
    (json.dumps(_request(y=[1.0])).encode(), 400, "y: expected a list of 2 numbers"),
    (json.dumps(_request(settings={"refitSteps": -1})).encode(), 400, "settings.refitSteps"),
    (json.dumps(_request(settings={"bogus": 1})).encode(), 400, "settings.bogus: unknown"),
    (json.dumps(_request(test={"x": [[0.1]], "budget": [0.5], "curve": [[0, 0]], "mask": [[0, 0]]})).encode(),
     400, r"test.x: expected 2 columns"),
    (json.dumps(_request(test={"x": [[0.1, 0.2]], "budget": [0.5], "curve": [[0, 0]], "mask": [[0, 0]],
                               "checkpoint": [["/x", -1]]})).encode(), 400, r"test.checkpoint\[0\]"),
    (json.dumps(_request(train={"x": [[float("nan"), 0]], "budget": [1], "curve": [[0, 0]],
                                "mask": [[0, 0]]}, y=[1.0])).replace("NaN", "1e999").encode(),
     400, "train.x: values must be finite"),
    (b"x" * 300_000, 413, "body exceeds"),
])
def test_bad_requests_get_clear_4xx_answers(server, body, status, message):
    got, answer = _post(f"{server.url}/v1/predict", body)
    assert got == status, answer
    import re
    assert re.search(message, answer["error"]), answer


def test_wrong_content_type_and_method(server):
    got, answer = _post(f"{server.url}/v1/predict", b"{}", content_type="text/plain")
    assert got == 415 and "application/json" in answer["error"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/v1/predict", timeout=10)
    assert info.value.code == 405


def _spec(url: str, timeout: float = 5.0) -> dict:
    return {
        "objectives": [{"metric": "val_error"}],
        "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                       "width": {"type": "int", "min": 8, "max": 128}},
        "fidelity": {"resource": "epoch", "min": 1, "max": 4},
        "algorithm": {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 2,
                      "settings": {**FAST, "surrogateUrl": url, "surrogateTimeoutSeconds": timeout}},
        "budget": {"maxTrials": 6, "maxParallelTrials": 2},
    }


def _run(config: StudyConfig):
    table = synthetic_table(config.space, 20, 4, seed=3)
    backend = SimulatedBackend(table, config.hardware_model, n_workers=2, seed=0)
    ctx = config.search_context()
    sched = config.make_scheduler(config.make_searcher(context=ctx, candidates=table.configs()), context=ctx)
    study = Study(config, sched, clock=backend.clock, name="svc-study")
    return study, Tuner(study, backend).run()


def _notes(study: Study) -> list[str]:
    return [n for e in study.events for n in (e.extra or {}).get("notes", [])]


def test_a_study_uses_the_service(server):
    study, result = _run(StudyConfig.from_spec(_spec(server.url)))
    assert all(t.phase is TrialPhase.COMPLETED for t in result.trials)
    assert study.scheduler.core.fallbacks == 0
    assert study.scheduler.core.last_answer["device"] == "cpu"
    assert "svc-study" in server.store.studies()
    assert _notes(study) == []


def test_with_the_service_stopped_the_study_finishes_on_the_fallback():
    srv = SurrogateServer(ModelStore(device="cpu")).start()
    url = srv.url
    srv.stop()  # nothing listens there any more
    study, result = _run(StudyConfig.from_spec(_spec(url)))
    assert len(result.trials) == 6
    assert all(t.phase is TrialPhase.COMPLETED for t in result.trials)
    assert study.scheduler.core.fallbacks > 0
    notes = _notes(study)
    assert notes and "unreachable" in notes[0] and "fell back to random search" in notes[0]


def test_a_slow_service_times_out_into_the_fallback():
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({})

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/predict", slow)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        study, result = _run(StudyConfig.from_spec(_spec(f"http://127.0.0.1:{port}", timeout=0.3)))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert all(t.phase is TrialPhase.COMPLETED for t in result.trials)
    notes = _notes(study)
    assert any("timeout 0.3s" in n for n in notes), notes


def _scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def _sample(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_metrics_move_with_predict_requests_and_pass_promtool(tmp_path):
    import shutil
    import subprocess

    with SurrogateServer(ModelStore(device="cpu")) as srv:
        before = _scrape(srv.url)
        assert _sample(before, "hwtune_surrogate_models") == 0
        for study in ("m1", "m2"):
            status, _ = _post(f"{srv.url}/v1/predict", json.dumps(_request(study=study)).encode())
            assert status == 200
        status, _ = _post(f"{srv.url}/v1/predict", b"{not json")
        assert status == 400
        text = _scrape(srv.url)
    assert _sample(text, "hwtune_surrogate_http_requests_total", endpoint="/v1/predict", code="200") == 2
    assert _sample(text, "hwtune_surrogate_http_requests_total", endpoint="/v1/predict", code="400") == 1
    assert _sample(text, "hwtune_surrogate_predict_seconds_count") == 2
    assert _sample(text, "hwtune_surrogate_predict_seconds_sum") > 0
    assert _sample(text, "hwtune_surrogate_fit_seconds_count", kind="full") == 2
    assert _sample(text, "hwtune_surrogate_fit_seconds_count", kind="refit") == 2
    assert _sample(text, "hwtune_surrogate_models") == 2
    assert "hwtune_surrogate_gpu_memory_bytes{device=\"cpu\"} 0.0" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    scrape = tmp_path / "scrape.txt"
    scrape.write_text(text)
    done = subprocess.run([promtool, "check", "metrics"], stdin=scrape.open(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _run_watched(url: str, timeout: float = 5.0):
    from hwtune.observe import StudyMetrics

    config = StudyConfig.from_spec(_spec(url, timeout))
    table = synthetic_table(config.space, 20, 4, seed=3)
    backend = SimulatedBackend(table, config.hardware_model, n_workers=2, seed=0)
    ctx = config.search_context()
    sched = config.make_scheduler(config.make_searcher(context=ctx, candidates=table.configs()), context=ctx)
    study = Study(config, sched, clock=backend.clock, name="watched")
    metrics = StudyMetrics()
    metrics.watch(study, "ml", "watched", lock=backend.lock)
    Tuner(study, backend).run()
    text = metrics.exposition().decode()
    return study, text


def test_the_engine_times_its_surrogate_calls_into_the_operator_histogram(server):
    before = _sample(_scrape(server.url), "hwtune_surrogate_predict_seconds_count")
    study, text = _run_watched(server.url)
    served = _sample(_scrape(server.url), "hwtune_surrogate_predict_seconds_count") - before
    calls = _sample(text, "hwtune_surrogate_request_seconds_count", namespace="ml", study="watched")
    assert served > 0 and calls == served  # every call the service answered was timed
    assert _sample(text, "hwtune_surrogate_request_seconds_sum", study="watched") > 0
    assert _sample(text, "hwtune_surrogate_errors_total", study="watched") == 0
    assert _sample(text, "hwtune_surrogate_fallbacks_total", study="watched") == 0


def test_a_down_service_counts_each_error_and_fallback_exactly():
    srv = SurrogateServer(ModelStore(device="cpu")).start()
    url = srv.url
    srv.stop()
    study, text = _run_watched(url)
    core = study.scheduler.core
    errors = _sample(text, "hwtune_surrogate_errors_total", study="watched")
    assert core.fallbacks > 0
    assert _sample(text, "hwtune_surrogate_fallbacks_total", study="watched") == core.fallbacks
    assert errors >= 1
    assert _sample(text, "hwtune_surrogate_request_seconds_count", study="watched") == errors

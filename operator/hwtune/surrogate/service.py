"""``hwtune surrogate serve``: the surrogate model behind HTTP + JSON (docs/surrogate-protocol.md).

Endpoints (version 1):

- ``POST /v1/predict``: one study's points in, posterior mean and std of the candidates out
  (``hwtune.surrogate.store``). 400 for a malformed request (the body names the field), 413 for
  a body over ``--max-body-mib``, 415 for a non-JSON content type.
- ``GET /v1/studies``: the studies with a model in memory; ``DELETE /v1/studies/{study}`` drops
  them (a finished study).
- ``GET /healthz``: ``{"status": "ok", "protocolVersion": 1, "device": "cuda"|"cpu",
  "cudaAvailable": bool, "stateDir": path or null, "persistedStudies": n}``.
- ``GET /metrics``: the service's Prometheus metrics (``hwtune.surrogate.metrics``,
  docs/metrics.md).

Models are fitted in a thread pool (torch releases the GIL), one lock per study, so studies do not
wait for each other. GPU when torch sees one, CPU otherwise (``--device`` overrides;
``hwtune.surrogate.store.select_device``). With ``--state-dir`` every full fit is saved there and
a restarted service reloads it on the first request of that study (``hwtune.surrogate.store``).
A request whose full fit is neither in memory nor saved is answered from a quick stand-in while
the full fit runs in a background thread (``--fit-threads``, one per study at a time;
``--no-background-fits`` fits it in the request instead).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from hwtune.report.threaded import ThreadedServer
from hwtune.surrogate.metrics import ServiceMetrics
from hwtune.surrogate.points import PROTOCOL_VERSION, RequestError
from hwtune.surrogate.store import ModelStore

__all__ = ["SurrogateServer", "create_app"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "protocolVersion": PROTOCOL_VERSION}, status=status)


def create_app(store: ModelStore, *, workers: int = 2, max_body: int = DEFAULT_MAX_BODY
               ) -> web.Application:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hwtune-surrogate")
    metrics = ServiceMetrics(store.device, lambda: len(store.studies()))
    store.on_background_fit = lambda seconds: metrics.fit_seconds.labels("background").observe(seconds)

    @web.middleware
    async def count(request: web.Request, handler):
        # The route's template, not the path: one series per endpoint however many studies.
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.labels(endpoint, str(exc.status)).inc()
            raise
        metrics.requests.labels(endpoint, str(response.status)).inc()
        return response

    def handle_timed(body):
        started = time.perf_counter()
        answer = store.handle(body)
        metrics.predict_seconds.observe(time.perf_counter() - started)
        info = answer.get("fit") or {}
        for kind, key in (("full", "fullFit"), ("refit", "refit")):
            part = info.get(key) or {}
            seconds = part.get("seconds")
            # A fit reloaded from disk is no fit; a background fit's stand-in is timed by the
            # refit, the background fit itself when it ends (kind "background").
            if seconds is not None and not part.get("loaded") and "background" not in part:
                metrics.fit_seconds.labels(kind).observe(seconds)
        return answer

    async def predict(request: web.Request) -> web.Response:
        if request.content_type not in ("application/json", ""):
            return _error(415, f"content type must be application/json, got {request.content_type}")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body exceeds {max_body} bytes")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(pool, handle_timed, body)
        except RequestError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # a model failure is the service's fault: say so, never a bare 500
            log.exception("surrogate: predict failed")
            return _error(503, f"the model failed on this request: {type(exc).__name__}: {exc}")
        return web.json_response(answer)

    async def studies(_: web.Request) -> web.Response:
        return web.json_response({"studies": store.studies()})

    async def forget(request: web.Request) -> web.Response:
        return web.json_response({"forgotten": store.forget(request.match_info["study"])})

    async def healthz(_: web.Request) -> web.Response:
        import torch  # already loaded by the store

        return web.json_response({
            "status": "ok", "protocolVersion": PROTOCOL_VERSION, "device": store.device,
            "cudaAvailable": bool(torch.cuda.is_available()),
            "stateDir": None if store.state_dir is None else str(store.state_dir),
            "persistedStudies": len(store.persisted()),
            "backgroundFits": store.background_fits, "backgroundFitsRunning": store.background_running()})

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=metrics.scrape(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def close_pool(_: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=max_body, middlewares=[count])
    app.router.add_post("/v1/predict", predict)
    app.router.add_get("/v1/studies", studies)
    app.router.add_delete("/v1/studies/{study}", forget)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    app.on_cleanup.append(close_pool)
    return app


class SurrogateServer(ThreadedServer):
    """Serves ``create_app(store)`` from a daemon thread (tests, benchmarks); ``url`` once
    started. ``hwtune surrogate serve`` runs the same app in the foreground."""

    what = "surrogate server"

    def __init__(self, store: ModelStore | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 workers: int = 2, max_body: int = DEFAULT_MAX_BODY) -> None:
        super().__init__(host=host, port=port)
        self.store = store or ModelStore()
        self.workers, self.max_body = workers, max_body

    def _make_runner(self) -> web.AppRunner:
        return web.AppRunner(create_app(self.store, workers=self.workers, max_body=self.max_body),
                             access_log=None)


def serve_forever(host: str, port: int, device: str | None, threads: int, workers: int,
                  max_body: int, state_dir: str | None = None, background_fits: bool = True,
                  fit_threads: int = 1) -> None:
    store = ModelStore(device=device, threads=threads, state_dir=state_dir,
                       background_fits=background_fits, fit_threads=fit_threads)
    log.info("surrogate service on %s:%d (device %s, state %s, %d studies saved, full fits %s)",
             host, port, store.device, store.state_dir or "in memory only", len(store.persisted()),
             f"in the background ({fit_threads} thread(s))" if background_fits else "in the request")
    web.run_app(create_app(store, workers=workers, max_body=max_body), host=host, port=port,
                print=None, access_log=None)

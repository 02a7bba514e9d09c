"""The report endpoint: an aiohttp application that authenticates a trainer's report, checks it
and asks a ``ReportSink`` (the engine behind a backend) for the decision.

The sink is called synchronously from the request handler, so its answer is the engine's
answer for exactly that report; it must be quick (the engine decides in microseconds) and
thread-safe when the server runs in its own thread (``ReportServer``), as with the local
backend. The operator mounts ``create_app(sink)`` in its own event loop instead.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import secrets
import threading
from typing import Protocol

from aiohttp import web

from hwtune.report.protocol import (
    MAX_BODY_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    ReportPayload,
    ReportReply,
    parse_report,
)

__all__ = ["ReplyMemo", "ReportServer", "ReportSink", "create_app", "new_token", "tokens_match"]

log = logging.getLogger(__name__)


def new_token() -> str:
    """A per-trial bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def tokens_match(presented: str, expected: str) -> bool:
    # Constant-time, so response timing does not leak how much of a guess was right.
    return hmac.compare_digest(presented.encode(), expected.encode())


class ReportSink(Protocol):
    """What the endpoint needs from whoever runs the trials."""

    def expected_token(self, trial: str) -> str | None:
        """The bearer token of ``trial``, or None when no such trial exists (404)."""

    def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        """Record the report and decide. Raise ``TrialFinishedError`` (409) for a finished trial,
        ``ReportRejectedError`` (422) for an impossible report (resource going backwards).
        May return an awaitable of the reply instead (the operator answers only once the
        decision is stored; see docs/operator-design.md)."""


class ReplyMemo:
    """The last answered report of each trial, so that a retried report (the trainer never got
    the answer: a reset connection, a restarted endpoint) gets the same decision instead of a
    409 or a "resource going backwards" error. Sinks call ``replay`` before the engine and
    ``remember`` after it. Thread-safe."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, dict[str, float], ReportReply]] = {}
        self._lock = threading.Lock()

    def replay(self, trial: str, payload: ReportPayload) -> ReportReply | None:
        with self._lock:
            last = self._last.get(trial)
        if last is not None and last[0] == payload.resource and last[1] == dict(payload.metrics):
            return last[2]
        return None

    def remember(self, trial: str, payload: ReportPayload, reply: ReportReply) -> None:
        with self._lock:
            self._last[trial] = (payload.resource, dict(payload.metrics), reply)

    def forget(self, trial: str) -> None:
        with self._lock:
            self._last.pop(trial, None)


def _error(status: int, message: str, *, field: str = "", headers: dict | None = None
           ) -> web.Response:
    body = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def create_app(sink: ReportSink, *, route_prefix: str = "") -> web.Application:
    """The endpoint as an aiohttp application: POST /v1/trials/{trial}/reports, GET /healthz.

    ``route_prefix`` (e.g. ``/studies/{namespace}/{study}``) puts the report route under a
    prefix with its own variables, for one endpoint serving many studies: the sink then sees
    the trial as all of the route's variables joined by ``/`` (``ns/study/3``); a trainer's
    ``HWTUNE_REPORT_URL`` carries the prefix, so its URL ends the same way."""

    async def post_report(request: web.Request) -> web.Response:
        trial = "/".join(request.match_info.values()) if route_prefix \
            else request.match_info["trial"]
        token = _bearer_token(request)
        if token is None:
            return _error(401, "missing bearer token (Authorization: Bearer <token>)",
                          headers={"WWW-Authenticate": 'Bearer realm="hwtune"'})
        try:
            expected = sink.expected_token(trial)
        except ProtocolError as exc:  # e.g. 503 while the study is loading: trainers retry
            return web.json_response(exc.to_json(), status=exc.status)
        if expected is None:
            return _error(404, f"unknown trial {trial!r}")
        if not tokens_match(token, expected):
            return _error(401, "wrong token for this trial",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body exceeds {MAX_BODY_BYTES} bytes")
        try:
            payload = parse_report(raw)
            reply = sink.submit_report(trial, payload)
            if inspect.isawaitable(reply):
                reply = await reply
        except ProtocolError as exc:
            return web.json_response(exc.to_json(), status=exc.status)
        return web.json_response(reply.to_json())

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "protocolVersion": PROTOCOL_VERSION})

    # aiohttp stops reading a body at this size (HTTPRequestEntityTooLarge, answered 413).
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(route_prefix.rstrip("/") + "/v1/trials/{trial}/reports", post_report)
    app.router.add_get("/healthz", healthz)
    return app


class ReportServer:
    """Serves ``create_app(sink)`` from a daemon thread with its own event loop, bound to
    ``host`` on a free port (port 0). Use as a context manager or call start()/stop()."""

    def __init__(self, sink: ReportSink, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sink = sink
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("the report server is not started")
        return f"http://{self._host}:{self._bound_port}"

    def start(self) -> "ReportServer":
        if self._thread is not None:
            raise RuntimeError("the report server is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # surfaced to start() below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=serve, name="hwtune-report-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise RuntimeError(f"report server failed to start on {self._host}:{self._port}"
                               ) from failure[0]
        log.debug("report endpoint listening on %s", self.url)
        return self

    async def _open(self) -> None:
        self._runner = web.AppRunner(create_app(self._sink), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._bound_port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._bound_port = None

    def __enter__(self) -> "ReportServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

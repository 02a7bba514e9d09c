"""The report endpoint: an aiohttp application that authenticates a trainer's report, checks it
and asks a ``ReportSink`` (the engine behind a backend) for the decision.

The sink is called synchronously from the request handler, so its answer is the engine's
answer for exactly that report; it must be quick (the engine decides in microseconds) and
thread-safe when the server runs in its own thread (``ReportServer``), as with the local
backend. The operator serves ``create_app(sink)`` (or ``add_report_routes(its_app, sink)``)
from its own event loop with ``web.AppRunner(app, **runner_options())``.

Hostile input is a 4xx, never a 500: trial ids are parsed strictly (``00``, ``+0``, ``٠`` are
not trial 0), an unknown trial is answered exactly like a wrong token (401), malformed
Authorization bytes are a 401, and idle or half-open connections are closed
(``IDLE_TIMEOUT_SECONDS``; a stalled body gets 408 after ``BODY_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import re
import secrets
import threading
from collections.abc import Awaitable
from typing import Protocol

import aiohttp
import aiohttp.http_exceptions
from aiohttp import web

from hwtune.report.protocol import (
    MAX_BODY_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    ReportPayload,
    ReportReply,
    parse_report,
    parse_trial_id,
)
from hwtune.report.threaded import ThreadedServer

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "ReplyMemo",
    "ReportForward",
    "ReportServer",
    "ReportSink",
    "add_report_routes",
    "create_app",
    "new_token",
    "runner_options",
    "tokens_match",
]

log = logging.getLogger(__name__)

# A connection without a complete request for this long is closed (idle keep-alive, or stalled
# in its headers); the SDK reconnects silently.
IDLE_TIMEOUT_SECONDS = 60.0
# A request whose body does not arrive in full within this is answered 408 and closed.
BODY_TIMEOUT_SECONDS = 30.0


def new_token() -> str:
    """A per-trial bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def tokens_match(presented: str, expected: str) -> bool:
    # Constant-time, so response timing does not leak how much of a guess was right.
    # surrogateescape: header bytes that were not UTF-8 compare unequal instead of raising.
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


class ReportSink(Protocol):
    """What the endpoint needs from whoever runs the trials."""

    def expected_token(self, trial: str) -> str | None:
        """The bearer token of ``trial`` (always a canonical decimal id, see
        ``parse_trial_id``), or None when no such trial exists (answered like a wrong token)."""

    def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        """Record the report and decide. Raise ``TrialFinishedError`` (409) for a finished trial,
        ``ReportRejectedError`` (422) for an impossible report (resource going backwards),
        ``EndpointUnavailableError`` (503, retried) when the report cannot be recorded now.
        May return an awaitable of the reply instead (the operator answers only once the
        decision is stored; see docs/operator-design.md)."""


class ReportForward(Protocol):
    """Sends a report this replica cannot take to the one that acts for its study (``scope``:
    the route prefix's values, e.g. (namespace, study)); None when there is none."""

    def __call__(self, request: web.Request, scope: tuple[str, ...],
                 body: bytes) -> Awaitable[web.Response | None]: ...


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


def _refusal(exc: ProtocolError) -> web.Response:
    # A 503 closes the connection: behind a Service (kube-proxy picks a pod per connection) the
    # retry then reaches another replica, e.g. the one that acts for the study.
    headers = {"Connection": "close"} if exc.status == 503 else None
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


# RFC 6750's b64token. aiohttp hands header bytes that are not UTF-8 over as surrogates; a
# token with anything outside this set is malformed, never a server error.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_NOT_A_TOKEN = new_token()  # compared against when the trial is unknown: same work, same answer


def _bearer_token(request: web.Request) -> tuple[str | None, str]:
    """(token, problem): the bearer token, or None and why there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip(" \t")
    if scheme.lower() != "bearer" or not token:
        return None, "missing bearer token (Authorization: Bearer <token>)"
    if _B64TOKEN.fullmatch(token) is None:
        return None, "malformed bearer token (Authorization: Bearer <token>)"
    return token, ""


def add_report_routes(app: web.Application, sink: ReportSink, *,
                      body_timeout: float = BODY_TIMEOUT_SECONDS, route_prefix: str = "",
                      forward: ReportForward | None = None) -> None:
    """Add POST /v1/trials/{trial}/reports and GET /healthz to ``app``: how another aiohttp
    application (the operator's) serves the protocol. Give its runner ``runner_options()``.

    ``route_prefix`` (e.g. ``/studies/{namespace}/{study}``) puts the report route under a
    prefix with variables of its own, for one endpoint serving many studies: the sink then sees
    the trial as the prefix's values and the trial id joined by ``/`` (``ns/study/3``). A
    trainer's ``HWTUNE_REPORT_URL`` carries the prefix, so its URL ends as always.

    ``forward`` (e.g. ``hwtune.report.forward.HolderForwarder.forward``): where the sink says
    503 (this replica does not act for the study), the report goes to the replica that does
    and its answer is returned instead; None from it keeps the 503."""

    async def read_body(request: web.Request) -> tuple[bytes | None, web.Response | None]:
        try:
            # A client that sends headers and then stalls (or vanished) must not hold the
            # handler for ever.
            async with asyncio.timeout(body_timeout):
                return await request.read(), None
        except web.HTTPRequestEntityTooLarge:
            return None, _error(413, f"body exceeds {MAX_BODY_BYTES} bytes")
        except asyncio.TimeoutError:
            return None, _error(408, f"body not received within {body_timeout:g} s",
                                headers={"Connection": "close"})
        except (ConnectionError, aiohttp.ClientPayloadError,
                aiohttp.http_exceptions.HttpProcessingError) as exc:
            return None, _error(400, f"malformed body: {exc}")

    async def unavailable(request: web.Request, scope: tuple[str, ...], exc: ProtocolError,
                          raw: bytes | None = None) -> web.Response:
        if forward is None or exc.status != 503 or not scope:
            return _refusal(exc)
        if raw is None:
            raw, refused = await read_body(request)
            if refused is not None:
                return refused
        forwarded = await forward(request, scope, raw)
        return _refusal(exc) if forwarded is None else forwarded

    async def post_report(request: web.Request) -> web.Response:
        try:
            trial = str(parse_trial_id(request.match_info["trial"]))
        except ProtocolError as exc:
            return web.json_response(exc.to_json(), status=exc.status)
        scope: tuple[str, ...] = ()
        if route_prefix:
            scope = tuple(v for k, v in request.match_info.items() if k != "trial")
            trial = "/".join([*scope, trial])
        token, problem = _bearer_token(request)
        if token is None:
            return _error(401, problem, headers={"WWW-Authenticate": 'Bearer realm="hwtune"'})
        try:
            expected = sink.expected_token(trial)
        except ProtocolError as exc:  # 503: loading, or another replica acts for the study
            return await unavailable(request, scope, exc)
        # An unknown trial is answered exactly like a wrong token, after the same comparison:
        # a caller without a token learns nothing about which trial ids exist.
        if not tokens_match(token, _NOT_A_TOKEN if expected is None else expected) \
                or expected is None:
            return _error(401, "wrong token for this trial",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        raw, refused = await read_body(request)
        if refused is not None:
            return refused
        assert raw is not None
        try:
            payload = parse_report(raw)
            reply = sink.submit_report(trial, payload)
            if inspect.isawaitable(reply):
                reply = await reply
        except ProtocolError as exc:  # 503: this replica stopped acting for the study
            return await unavailable(request, scope, exc, raw)
        return web.json_response(reply.to_json())

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "protocolVersion": PROTOCOL_VERSION})

    app.router.add_post(route_prefix.rstrip("/") + "/v1/trials/{trial}/reports", post_report)
    app.router.add_get("/healthz", healthz)


def create_app(sink: ReportSink, *, body_timeout: float = BODY_TIMEOUT_SECONDS,
               route_prefix: str = "", forward: ReportForward | None = None
               ) -> web.Application:
    """The endpoint as an aiohttp application: POST /v1/trials/{trial}/reports, GET /healthz.
    Serve it with ``web.AppRunner(app, **runner_options())`` (idle connections time out)."""
    # aiohttp stops reading a body at this size (HTTPRequestEntityTooLarge, answered 413).
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    add_report_routes(app, sink, body_timeout=body_timeout, route_prefix=route_prefix,
                      forward=forward)
    return app


class _QuietMalformedHttp(logging.Filter):
    """A client's malformed HTTP is the client's problem: one warning line, not an error with a
    traceback per request (a hostile client could fill the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
            record.msg = "refused a malformed HTTP request (%s): %s"
            record.args = (record.args[0] if record.args else "?",
                           str(exc.message).splitlines()[0] if exc.message else type(exc).__name__)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_http_log = logging.getLogger("hwtune.report.http")
_http_log.addFilter(_QuietMalformedHttp())


def runner_options(idle_timeout: float = IDLE_TIMEOUT_SECONDS) -> dict[str, object]:
    """``web.AppRunner`` keyword arguments for the endpoint. aiohttp's keep-alive timer runs from
    the moment a connection opens until a complete request arrives, so it closes idle
    connections and half-open ones that stall in (or vanished before) their headers alike; its
    default is an hour. After an answer given before the body was read (401, 408) aiohttp reads
    and drops the rest of it for ``lingering_time`` at most (default 10 s), then closes."""
    return {"keepalive_timeout": idle_timeout, "lingering_time": 1.0, "access_log": None,
            "logger": _http_log}


class ReportServer(ThreadedServer):
    """Serves ``create_app(sink)`` from a daemon thread with its own event loop, bound to
    ``host`` on a free port (port 0). Use as a context manager or call start()/stop()."""

    what = "report server"

    def __init__(self, sink: ReportSink, *, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 body_timeout: float = BODY_TIMEOUT_SECONDS) -> None:
        super().__init__(host=host, port=port)
        self._sink = sink
        self._idle_timeout = idle_timeout
        self._body_timeout = body_timeout

    def _make_runner(self) -> web.AppRunner:
        return web.AppRunner(create_app(self._sink, body_timeout=self._body_timeout),
                             **runner_options(self._idle_timeout))

    def start(self) -> "ReportServer":
        super().start()
        log.debug("report endpoint listening on %s", self.url)
        return self

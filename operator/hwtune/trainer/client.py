"""HTTP client of the report protocol (standard library only: it runs inside training images).

One persistent connection per trial; a report that cannot reach the endpoint (connection
refused or reset, timeout, 502/503/504 while the operator restarts) is retried with capped,
jittered exponential backoff until ``retry_seconds`` have passed. A retried report is safe: the
endpoint answers a repeat of the last resource level with the decision it already gave.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import time
from typing import Callable, Mapping
from urllib.parse import urlsplit

from hwtune.api.records import Decision
from hwtune.report.protocol import ReportReply, encode_report, reports_path

__all__ = ["ReportClient", "ReportError"]

log = logging.getLogger("hwtune.trainer")

# 408: the endpoint timed out waiting for our body (a stalled network); the rest: restarting.
_RETRY_STATUSES = frozenset({408, 502, 503, 504})
_TRANSIENT_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, OSError)
# What a kept-alive connection that the endpoint closed while idle fails with.
_STALE_ERRORS = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class ReportError(RuntimeError):
    """The endpoint refused a report (bad token, malformed payload, unknown trial) or stayed
    unreachable past the retry window. ``status`` is the HTTP status (0: never answered)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ReportClient:
    def __init__(self, base_url: str, trial: str, token: str | None, *,
                 retry_seconds: float = 120.0, timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"report URL {base_url!r}: must be http(s)://host[:port][/prefix]")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + reports_path(trial)
        self._token = token
        self._retry_seconds = retry_seconds
        self._timeout = timeout
        self._sleep = sleep
        self._monotonic = monotonic
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post_once(self, body: bytes) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        conn = self._connection()
        conn.request("POST", self._path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def report(self, resource: int, metrics: Mapping[str, float]) -> ReportReply:
        body = encode_report(resource, metrics)
        deadline = self._monotonic() + self._retry_seconds
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            reused = self._conn is not None
            try:
                status, raw = self._post_once(body)
            except _TRANSIENT_ERRORS as exc:
                self.close()  # the connection may be half-open; start afresh
                if reused and isinstance(exc, _STALE_ERRORS):
                    # The endpoint closes idle connections (epochs can be long): reconnect at
                    # once, quietly. A report it did receive is answered again, not recorded twice.
                    attempt -= 1
                    continue
                problem = f"{type(exc).__name__}: {exc}"
                status, raw = 0, b""
            else:
                if status not in _RETRY_STATUSES:
                    return self._reply(status, raw)
                problem = f"HTTP {status}"
                # A new connection for the retry: behind a Service it may reach another
                # replica (kube-proxy balances connections, not requests).
                self.close()
            if self._monotonic() + delay > deadline:
                raise ReportError(f"report endpoint unreachable after {attempt} attempts "
                                  f"({problem})", status)
            log.warning("report of resource %d failed (%s); retrying in %.1fs",
                        resource, problem, delay)
            # Jitter keeps many trainers from retrying in lockstep after an operator restart.
            self._sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _reply(status: int, raw: bytes) -> ReportReply:
        try:
            body = json.loads(raw.decode() or "null")
        except ValueError:
            body = None
        if status == 200:
            try:
                return ReportReply.from_json(body)
            except ValueError as exc:
                raise ReportError(f"malformed reply from the report endpoint: {exc}", status)
        message = body.get("error") if isinstance(body, dict) else raw[:200].decode(errors="replace")
        if status == 409:
            # The study already finished this trial (budget spent, stopped by a user): the only
            # sensible thing for the trainer is to stop.
            log.warning("the study refused the report: %s; stopping", message)
            return ReportReply(Decision.STOP, reason=str(message))
        raise ReportError(f"report refused with HTTP {status}: {message}", status)

"""Forwarding a report to the replica that acts for its study.

Several endpoint replicas may serve one URL (the operator's Service balances connections, not
requests), and only one of them acts for a given study. A report that reaches another one is
not refused: ``HolderForwarder`` sends it, body and Authorization unchanged, to the address the
acting replica published (``locate``), once, and hands that replica's answer back unchanged
(200, 401, 409, ... and its 503). The acting replica checks the token and decides, exactly as
for a report sent to it directly; this one only carries bytes.

A forwarded request carries ``FORWARDED_HEADER``, and a request with that header is never
forwarded again: at most one hop, whatever the replicas believe about each other. When the
holder is unknown, unreachable or slow, the caller answers its own 503 (the trainer retries on
a new connection), and the address is forgotten, so the next report looks it up afresh.

Knows nothing of Kubernetes: ``locate`` and ``forget`` come from whoever knows the holders
(the operator: ``hwtune.backends.kubernetes.lease.LeaseHolders``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

__all__ = ["FORWARDED_HEADER", "HolderForwarder"]

log = logging.getLogger(__name__)

# Set on a forwarded request (its value: the forwarding replica); such a request is answered
# where it lands, never forwarded again.
FORWARDED_HEADER = "X-Hwtune-Forwarded"
_PASSED_REQUEST = ("Authorization", "Content-Type", "Accept")
_PASSED_REPLY = ("Content-Type", "WWW-Authenticate", "Retry-After")


class HolderForwarder:
    """``await forward(request, scope, body)``: the holder's answer, or None when there is none
    (no holder known, this replica is it, it could not be reached in time)."""

    def __init__(self, locate: Callable[[tuple[str, ...]], Awaitable[str | None]],
                 forget: Callable[[tuple[str, ...]], None], *, via: str = "",
                 connect_timeout: float = 1.0, timeout: float = 15.0,
                 on_outcome: Callable[[str], None] | None = None) -> None:
        self._locate = locate
        self._forget = forget
        self._via = via or "replica"
        # Connecting is quick or the holder is gone; its answer may wait for a log write,
        # which takes seconds on a loaded API server, so the whole exchange gets longer.
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0  # answers passed back (any status)
        self.failed = 0  # holder known but not reached in time
        # Told "answered" or "failed" per forwarded report (the operator counts them in
        # hwtune_report_forwards_total); never raises into the request.
        self._on_outcome = on_outcome

    def _outcome(self, outcome: str) -> None:
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception:  # noqa: BLE001 - a metrics hook never fails a report
                log.debug("forward outcome hook failed", exc_info=True)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Kept-alive connections to the holder: a forwarded report costs one local hop.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=256),
                auto_decompress=False)
        return self._session

    async def forward(self, request: web.Request, scope: tuple[str, ...],
                      body: bytes) -> web.Response | None:
        if request.headers.get(FORWARDED_HEADER) is not None:
            return None  # one hop at most
        try:
            address = await self._locate(scope)
        except Exception as exc:  # noqa: BLE001 - unknown holder: the caller's 503 stands
            log.debug("no holder for %s: %s", "/".join(scope), exc)
            return None
        if not address:
            return None
        headers = {k: request.headers[k] for k in _PASSED_REQUEST if k in request.headers}
        headers[FORWARDED_HEADER] = self._via
        url = f"http://{address}{request.rel_url}"
        try:
            async with self._client().post(url, data=body, headers=headers,
                                           allow_redirects=False) as reply:
                raw = await reply.read()
                passed = {k: reply.headers[k] for k in _PASSED_REPLY if k in reply.headers}
                status = reply.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.failed += 1
            self._outcome("failed")
            self._forget(scope)
            log.info("forwarding a report of %s to %s failed (%s); answering 503",
                     "/".join(scope), address, type(exc).__name__)
            return None
        self.forwarded += 1
        self._outcome("answered")
        if status == 503:
            # The address no longer acts for the study (or is loading it): look it up afresh,
            # and close, so the trainer's retry may land on the replica that does.
            self._forget(scope)
            passed["Connection"] = "close"
        return web.Response(status=status, body=raw, headers=passed)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""When a replica is ready: ``GET /readyz`` on the report port.

A replica that answers reports before kopf has started its study daemons answers 503 to every
trainer (the protocol's "retry"), so a Service that routes to it mid rolling update makes
trainers wait. Ready therefore means: every TuningStudy that existed (and was not being deleted)
when this replica last listed them has had a daemon start here, holding its Lease or standing by
for it. Once ready, a replica stays ready: readiness is about starting, and a study created
later gets its daemon within a moment anyway.

While not ready, the studies are listed again at most every ``relist_seconds`` (on a probe, not
in the background), so a study deleted meanwhile by another replica does not hold this one back.
With kopf peering a paused replica runs no daemons at all; there (and in an operator that runs
no studies) the replica is ready as soon as it serves.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["StudyReadiness", "namespace_matcher"]

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, study)
MISSING_SHOWN = 20  # studies named in a not-ready answer


def namespace_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """What kopf serves for ``--namespace`` patterns: globs, ``!`` excludes; no positive
    pattern (only excludes, or none at all) means every namespace not excluded."""
    patterns = tuple(patterns)
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]

    def matches(namespace: str) -> bool:
        if any(fnmatch.fnmatchcase(namespace, p) for p in exclude):
            return False
        return not include or any(fnmatch.fnmatchcase(namespace, p) for p in include)

    return matches


class StudyReadiness:
    """``check()`` -> (ready, answer). ``lister``: the studies that exist now, or None for a
    replica that is ready as soon as it serves."""

    def __init__(self, lister: Callable[[], Awaitable[set[Key]]] | None, *,
                 relist_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._lister = lister
        self._relist = relist_seconds
        self._clock = clock
        self.started: set[Key] = set()
        self.ready = lister is None
        self._expected: set[Key] | None = None  # None: not listed yet
        self._listed_at = -math.inf
        self._error: str | None = None
        self._lock = asyncio.Lock()

    def daemon_started(self, key: Key) -> None:
        self.started.add(key)

    async def check(self) -> tuple[bool, dict[str, Any]]:
        if not self.ready:
            async with self._lock:  # one listing for concurrent probes
                if not self.ready and self._due():
                    await self._list()
                if self._expected is not None and not self._expected - self.started:
                    self.ready = True
                    log.info("ready: every study (%d) has a daemon on this replica",
                             len(self._expected))
        if self.ready:
            return True, {"status": "ready"}
        answer: dict[str, Any] = {"status": "starting"}
        if self._expected is None:
            answer["reason"] = (f"listing TuningStudies failed: {self._error}" if self._error
                                else "TuningStudies not listed yet")
        else:
            missing = sorted(self._expected - self.started)
            answer["reason"] = f"{len(missing)} of {len(self._expected)} studies have no daemon yet"
            answer["waitingFor"] = [f"{ns}/{name}" for ns, name in missing[:MISSING_SHOWN]]
        return False, answer

    def _due(self) -> bool:
        if self._expected is None:
            return self._clock() - self._listed_at >= min(self._relist, 1.0)
        return bool(self._expected - self.started) \
            and self._clock() - self._listed_at >= self._relist

    async def _list(self) -> None:
        assert self._lister is not None
        self._listed_at = self._clock()
        try:
            self._expected = set(await self._lister())
            self._error = None
        except Exception as exc:  # noqa: BLE001 - the API server may be away: not ready, say why
            self._error = str(exc) or type(exc).__name__
            log.warning("readiness: listing TuningStudies failed: %s", self._error)

"""The study's event log in the cluster: append-only, chunked ConfigMaps, written before answers.

``<study>-log-<chunk>`` holds ``data["e<seq:09d>"] = <event as compact JSON>``. The key is the
engine's sequence number, so writing a batch again after a timeout changes nothing, and a chunk
is closed at ``CHUNK_BYTES`` (or ``CHUNK_EVENTS``), far below etcd's object limit whatever the
study size. ``StudyLog.append`` (the study's event listener, any thread) queues an event;
``run()`` (one task per study) writes everything queued in one patch per chunk (group commit);
``durable(seq)`` returns once every event up to ``seq`` is stored. See docs/operator-design.md.

Chunks are small (each patch makes the API server and etcd rewrite the whole object: at 64 KiB
that was ~100 times the bytes logged) and written in ``LANES`` lanes: lane ``i`` writes the
chunks whose index is ``i`` modulo ``LANES``. A write starts while another is in flight when new
events wait, and carries every event not yet durable (those of the write in flight too), so
whichever write ends first makes everything up to its last event durable: the stored log never
has a gap, and one slow API call does not hold every answer behind it. The reader merges the
chunks by sequence number (an event stored twice is the same event).

A write that has not returned after ``HEDGE_AFTER_S`` while answers wait on it is *hedged*: a
second write on a free lane carries the same events (and any newer), and whichever returns first
makes them durable. The API server's write latency has a long tail under load (p50 7 ms, p99
over 200 ms while a rung wave's launches and stops flood it) and a slow request is rarely slow
because of the ConfigMap it writes, so the second copy usually returns long before the first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

from hwtune.backends.kubernetes.aio import wait_event
from hwtune.backends.kubernetes.hotstats import STATS
from hwtune.engine.events import StudyEvent

__all__ = ["CHUNK_BYTES", "CHUNK_EVENTS", "LANES", "LogCorrupted", "LogDeferred", "LogFenced",
           "LogStore", "StudyLog", "parse_chunks"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024
CHUNK_EVENTS = 500
LANES = 4  # part of the stored format: a new writer stamps the last chunk of each lane
KEY_PREFIX = "e"


class LogCorrupted(RuntimeError):
    """The stored log has a gap or an unreadable entry: the study cannot be rebuilt."""


class LogFenced(RuntimeError):
    """This writer no longer holds the study's Lease, or another writer changed the log under
    it: it must stop acting for the study (a new runner reloads the log)."""


class LogDeferred(RuntimeError):
    """The store did not attempt the write and may take it shortly (its Lease is overdue for
    renewal): retried every ``DEFERRED_RETRY_S``, quietly, without backing off, so the answers
    waiting on it go out as soon as writing is allowed again."""


DEFERRED_RETRY_S = 0.25
HEDGE_AFTER_S = 0.05  # a few times the unloaded write (~7-15 ms); None: never hedge


class LogStore(Protocol):
    """Where chunks live (the Kubernetes API in the operator, a dict in unit tests)."""

    async def read_chunks(self) -> list[tuple[int, Mapping[str, str]]]: ...

    async def write_chunk(self, index: int, entries: Mapping[str, str], *, new: bool) -> None:
        """Add ``entries`` to chunk ``index`` (creating it when ``new``; an existing one is
        patched instead). Idempotent."""


def event_key(seq: int) -> str:
    return f"{KEY_PREFIX}{seq:09d}"


def encode_event(event: StudyEvent) -> str:
    return json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class LoadedLog:
    events: list[dict[str, Any]]  # in seq order, 0..n-1
    chunk: int  # index of the last chunk (-1: none yet)
    chunk_bytes: int
    chunk_events: int
    sizes: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # chunk: bytes, entries

    def open_chunks(self, lanes: int = LANES) -> list[int]:
        """The last chunk of each lane: where a writer of this log may still write (a writer
        taking the log over stamps them, so an older writer's next write conflicts)."""
        last: dict[int, int] = {}
        for index in self.sizes:
            last[index % lanes] = max(index, last.get(index % lanes, -1))
        return sorted(last.values())


def parse_chunks(chunks: Iterable[tuple[int, Mapping[str, str]]]) -> LoadedLog:
    """Merge stored chunks into one ordered list; refuse a log with a gap."""
    by_seq: dict[int, dict[str, Any]] = {}
    last, last_bytes, last_count = -1, 0, 0
    sizes: dict[int, tuple[int, int]] = {}
    for index, data in sorted(chunks, key=lambda c: c[0]):
        size = 0
        for key, raw in (data or {}).items():
            if not key.startswith(KEY_PREFIX):
                continue
            try:
                seq = int(key[len(KEY_PREFIX):])
                event = json.loads(raw)
            except ValueError as exc:
                raise LogCorrupted(f"log chunk {index}: entry {key!r} is unreadable: {exc}") from None
            if event.get("seq") != seq:
                raise LogCorrupted(f"log chunk {index}: entry {key!r} holds event {event.get('seq')}")
            by_seq[seq] = event
            size += len(raw)
        last, last_bytes, last_count = index, size, len(data or {})
        sizes[index] = (size, len(data or {}))
    missing = [s for s in range(len(by_seq)) if s not in by_seq]
    if missing:
        raise LogCorrupted(f"the study log has a gap at event {missing[0]} "
                           f"({len(by_seq)} events stored)")
    return LoadedLog([by_seq[s] for s in range(len(by_seq))], last, last_bytes, last_count, sizes)


class _Lane:
    """One lane's open chunk and whether a write of it is in flight."""

    __slots__ = ("number", "chunk", "bytes", "events", "busy", "end", "retry_at", "delay")

    def __init__(self, number: int, chunk: int, size: int, events: int) -> None:
        self.number, self.chunk, self.bytes, self.events = number, chunk, size, events
        self.busy = False
        self.end = -1  # last seq of the write in flight
        self.retry_at = 0.0  # after a failed write: not before this (loop time)
        self.delay = 0.2


class StudyLog:
    """The write-ahead log of one study. ``attach(loop)`` before ``append`` is called from
    other threads; ``run()`` is the writer task."""

    def __init__(self, store: LogStore, loaded: LoadedLog | None = None, *,
                 chunk_bytes: int = CHUNK_BYTES, chunk_events: int = CHUNK_EVENTS,
                 lanes: int = LANES, hedge_after: float | None = HEDGE_AFTER_S) -> None:
        loaded = loaded or LoadedLog([], -1, 0, 0)
        self.store = store
        self.chunk_bytes_limit = chunk_bytes
        self.chunk_events_limit = chunk_events
        self.hedge_after = hedge_after
        sizes = dict(loaded.sizes) or ({loaded.chunk: (loaded.chunk_bytes, loaded.chunk_events)}
                                       if loaded.chunk >= 0 else {})
        self._lanes: list[_Lane] = []
        lanes = max(1, lanes)
        for number in range(lanes):
            mine = [i for i in sizes if i % lanes == number]
            last = max(mine, default=-1)
            size, events = sizes.get(last, (0, 0))
            self._lanes.append(_Lane(number, last, size, events))
        self._top = max(sizes, default=-1)  # the highest chunk index in use
        self._durable = len(loaded.events) - 1  # highest seq stored
        self._covered = self._durable  # highest seq stored or in a write in flight
        self._pending: list[tuple[int, str]] = []  # every event not yet durable, in seq order
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writing: set[asyncio.Task[None]] = set()
        self.writes = 0  # patches done (for tests and metrics)
        self.deferred = 0  # writes the store deferred (LogDeferred)
        self.most_in_flight = 0
        self.hedges = 0  # writes started again on another lane because the first was slow
        self._last_start = 0.0  # loop time the latest write started
        self.failure: str | None = None  # last write error, while it persists
        self._stopped: str | None = None  # why run() ended: nothing more becomes durable

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake = asyncio.Event()

    @property
    def durable_seq(self) -> int:
        return self._durable

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._pending[-1][0] if self._pending else self._durable

    # -- producer side (any thread, usually under the engine lock) ------------------------------
    def append(self, event: StudyEvent) -> None:
        with self._lock:
            self._pending.append((event.seq, encode_event(event)))
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: the operator is stopping
                pass

    # -- consumer side (the event loop) ------------------------------------------------------
    async def durable(self, seq: int) -> None:
        """Return once every event up to ``seq`` is stored; ``LogFenced`` if the writer stopped
        first (fenced, or the runner ends): the answer waiting on it must not be given."""
        if seq <= self._durable:
            return
        if self._stopped is not None:
            raise LogFenced(self._stopped)
        assert self._loop is not None, "attach() the log to the event loop first"
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((seq, future))
        if self._wake is not None:
            self._wake.set()
        await future

    def _batch(self, lane: _Lane, *, hedge: int | None = None
               ) -> tuple[int, bool, dict[str, str]] | None:
        """The next write of ``lane``: (chunk, new chunk?, entries), every event not yet durable
        that fits in the chunk; None when it would add nothing to the writes in flight. A
        ``hedge`` repeats what they carry, up to the event of that number (what answers wait
        for: the copy stays small)."""
        with self._lock:
            if not self._pending or (hedge is None and self._pending[-1][0] <= self._covered):
                return None
            new = (lane.chunk < 0 or lane.bytes >= self.chunk_bytes_limit
                   or lane.events >= self.chunk_events_limit)
            room_bytes = self.chunk_bytes_limit if new else self.chunk_bytes_limit - lane.bytes
            room_events = self.chunk_events_limit if new else \
                self.chunk_events_limit - lane.events
            entries: dict[str, str] = {}
            size = last = 0
            for seq, raw in self._pending:
                if entries and (size + len(raw) > room_bytes or len(entries) >= room_events
                                or (hedge is not None and seq > hedge)):
                    break
                entries[event_key(seq)] = raw
                size += len(raw)
                last = seq
            if last <= self._covered and hedge is None:
                return None  # the chunk has room only for events already being written
            if new:
                lanes = len(self._lanes)
                index = self._top + 1 + (lane.number - self._top - 1) % lanes
            else:
                index = lane.chunk
            return index, new, entries

    async def run(self) -> None:
        """Write queued events forever (cancel to stop); failures are retried with backoff."""
        assert self._wake is not None, "attach() the log to the event loop first"
        try:
            await self._write_forever()
        except BaseException as exc:
            # Waiting answers fail (their handlers say 503, the trainer retries elsewhere)
            # instead of hanging until the client's timeout.
            self._stopped = f"the study log's writer stopped: {exc!r}"
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(LogFenced(self._stopped))
            self._waiters = []
            raise
        finally:
            for task in self._writing:
                task.cancel()
            if self._writing:
                await asyncio.gather(*self._writing, return_exceptions=True)

    async def _write_forever(self) -> None:
        assert self._wake is not None and self._loop is not None
        while True:
            self._wake.clear()
            for task in [t for t in self._writing if t.done()]:
                self._writing.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]  # fenced: stop writing
            now = self._loop.time()
            wait: float | None = None
            for lane in self._lanes:
                if lane.busy:
                    continue
                if lane.retry_at > now:
                    wait = min(wait or 1e9, lane.retry_at - now)
                    continue
                batch = self._batch(lane)
                if batch is not None:
                    self._start(lane, batch, now)
            hedge_at = self._hedge_due()
            if hedge_at is not None and hedge_at <= now:
                lane = next((o for o in self._lanes if not o.busy and o.retry_at <= now), None)
                awaited = max(seq for seq, _ in self._waiters)
                batch = self._batch(lane, hedge=awaited) if lane is not None else None
                if lane is not None and batch is not None:
                    self.hedges += 1
                    STATS.count("log.hedges")
                    self._start(lane, batch, now)
                hedge_at = self._hedge_due()
            if hedge_at is not None and hedge_at > now:
                wait = min(wait or 1e9, hedge_at - now)
            await wait_event(self._wake, wait)

    def _hedge_due(self) -> float | None:
        """When to write again what the writes in flight carry: ``hedge_after`` after the
        latest write started, if an answer still waits then (None: nothing to hedge)."""
        if self.hedge_after is None or not self._waiters \
                or not any(lane.busy for lane in self._lanes):
            return None
        return self._last_start + self.hedge_after

    def _start(self, lane: _Lane, batch: tuple[int, bool, dict[str, str]], now: float) -> None:
        assert self._loop is not None
        lane.busy = True
        lane.end = int(max(batch[2])[len(KEY_PREFIX):])
        with self._lock:
            self._covered = max(self._covered, lane.end)
        self._last_start = now
        task = self._loop.create_task(self._write(lane, *batch))
        task.add_done_callback(lambda _: self._wake.set() if self._wake else None)
        self._writing.add(task)
        self.most_in_flight = max(self.most_in_flight, len(self._writing))

    async def _write(self, lane: _Lane, index: int, new: bool, entries: dict[str, str]) -> None:
        began = time.perf_counter()
        try:
            await self.store.write_chunk(index, entries, new=new)
        except (asyncio.CancelledError, LogFenced):
            raise
        except Exception as exc:  # noqa: BLE001 - retried; the answer waits meanwhile
            assert self._loop is not None
            if isinstance(exc, LogDeferred):
                self.deferred += 1
                log.debug("study log write deferred: %s", exc)
                lane.retry_at = self._loop.time() + DEFERRED_RETRY_S
            else:
                self.failure = f"writing the study log failed: {exc}"
                log.warning("%s; retrying in %.1fs", self.failure, lane.delay)
                lane.retry_at = self._loop.time() + lane.delay
                lane.delay = min(lane.delay * 2, 5.0)
            with self._lock:  # what it carried is not stored: another write must carry it
                lane.end = -1
                self._covered = max([self._durable] + [o.end for o in self._lanes if o.busy
                                                       and o is not lane])
            return
        finally:
            lane.busy = False
            lane.end = -1
        lane.delay = 0.2
        self.failure = None
        self.writes += 1
        size = sum(len(v) for v in entries.values())
        last = int(max(entries)[len(KEY_PREFIX):])
        STATS.time("log.write", time.perf_counter() - began)
        STATS.count("log.entries", len(entries))
        STATS.count("log.bytes_written", size)
        STATS.count("log.chunk_bytes_rewritten", (0 if new else lane.bytes) + size)
        with self._lock:
            if new:
                lane.chunk, lane.bytes, lane.events = index, 0, 0
                self._top = max(self._top, index)
            lane.bytes += size
            lane.events += len(entries)
            if last > self._durable:
                del self._pending[:last - self._durable]
                self._durable = last
        self._release()

    def _release(self) -> None:
        keep = []
        for seq, future in self._waiters:
            if seq <= self._durable:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((seq, future))
        self._waiters = keep

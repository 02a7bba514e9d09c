"""The study's event log in the cluster: append-only, chunked ConfigMaps, written before answers.

``<study>-log-<chunk>`` holds ``data["e<seq:09d>"] = <event as compact JSON>``. The key is the
engine's sequence number, so writing a batch again after a timeout changes nothing, and a chunk
is closed at ``CHUNK_BYTES`` (or ``CHUNK_EVENTS``), far below etcd's object limit whatever the
study size. ``StudyLog.append`` (the study's event listener, any thread) queues an event;
``run()`` (one task per study) writes everything queued in one patch per chunk (group commit);
``durable(seq)`` returns once every event up to ``seq`` is stored. See docs/operator-design.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

from hwtune.engine.events import StudyEvent

__all__ = ["CHUNK_BYTES", "CHUNK_EVENTS", "LogCorrupted", "LogFenced", "LogStore", "StudyLog",
           "parse_chunks"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
CHUNK_EVENTS = 500
KEY_PREFIX = "e"


class LogCorrupted(RuntimeError):
    """The stored log has a gap or an unreadable entry: the study cannot be rebuilt."""


class LogFenced(RuntimeError):
    """This writer no longer holds the study's Lease, or another writer changed the log under
    it: it must stop acting for the study (a new runner reloads the log)."""


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


def parse_chunks(chunks: Iterable[tuple[int, Mapping[str, str]]]) -> LoadedLog:
    """Merge stored chunks into one ordered list; refuse a log with a gap."""
    by_seq: dict[int, dict[str, Any]] = {}
    last, last_bytes, last_count = -1, 0, 0
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
    missing = [s for s in range(len(by_seq)) if s not in by_seq]
    if missing:
        raise LogCorrupted(f"the study log has a gap at event {missing[0]} "
                           f"({len(by_seq)} events stored)")
    return LoadedLog([by_seq[s] for s in range(len(by_seq))], last, last_bytes, last_count)


class StudyLog:
    """The write-ahead log of one study. ``attach(loop)`` before ``append`` is called from
    other threads; ``run()`` is the writer task."""

    def __init__(self, store: LogStore, loaded: LoadedLog | None = None, *,
                 chunk_bytes: int = CHUNK_BYTES, chunk_events: int = CHUNK_EVENTS) -> None:
        loaded = loaded or LoadedLog([], -1, 0, 0)
        self.store = store
        self.chunk_bytes_limit = chunk_bytes
        self.chunk_events_limit = chunk_events
        self._chunk = loaded.chunk
        self._chunk_bytes = loaded.chunk_bytes
        self._chunk_events = loaded.chunk_events
        self._durable = len(loaded.events) - 1  # highest seq stored
        self._pending: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.writes = 0  # patches done (for tests and metrics)
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

    def _batch(self) -> tuple[int, bool, dict[str, str]] | None:
        """The next write: (chunk, new chunk?, entries), taking what fits in the chunk."""
        with self._lock:
            if not self._pending:
                return None
            new = False
            if (self._chunk < 0 or self._chunk_bytes >= self.chunk_bytes_limit
                    or self._chunk_events >= self.chunk_events_limit):
                new = True
            room_bytes = self.chunk_bytes_limit if new else self.chunk_bytes_limit - self._chunk_bytes
            room_events = self.chunk_events_limit if new else \
                self.chunk_events_limit - self._chunk_events
            entries: dict[str, str] = {}
            size = 0
            for seq, raw in self._pending:
                if entries and (size + len(raw) > room_bytes or len(entries) >= room_events):
                    break
                entries[event_key(seq)] = raw
                size += len(raw)
            return (self._chunk + 1 if new else self._chunk), new, entries

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

    async def _write_forever(self) -> None:
        assert self._wake is not None
        delay = 0.2
        while True:
            batch = self._batch()
            if batch is None:
                self._wake.clear()
                if self._batch() is None:
                    await self._wake.wait()
                continue
            index, new, entries = batch
            try:
                await self.store.write_chunk(index, entries, new=new)
            except (asyncio.CancelledError, LogFenced):
                raise
            except Exception as exc:  # noqa: BLE001 - retried; the answer waits meanwhile
                self.failure = f"writing the study log failed: {exc}"
                log.warning("%s; retrying in %.1fs", self.failure, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self.failure = None
            self.writes += 1
            size = sum(len(v) for v in entries.values())
            with self._lock:
                if new:
                    self._chunk, self._chunk_bytes, self._chunk_events = index, 0, 0
                self._chunk_bytes += size
                self._chunk_events += len(entries)
                del self._pending[:len(entries)]
                self._durable = int(max(entries)[len(KEY_PREFIX):])
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

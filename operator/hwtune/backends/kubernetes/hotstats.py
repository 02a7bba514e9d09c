"""Where a report's time goes in the operator, measured in the running process.

One process-wide ``HotStats`` (``STATS``): named timings (seconds) and counters, for the run
(a uniform sample of at most ``KEEP`` timings per name, so an operator that runs for weeks
keeps a few MB) and per window. ``log_forever``
logs one line per window (what happened in it) and one for the run so far, which
benchmarks/operator_scale.py reads from the operator's log:

- ``report.total``: a report handled by the runner, lock to answer; split into
  ``report.decide`` (the engine's lock and decision) and ``report.durable`` (waiting for its
  log write);
- ``log.write``: one study-log write (API round trip), ``log.entries``/``log.bytes`` per write
  (counters);
- ``api.<verb>.<kind>``: each API server call (in its thread) and ``queue.<pool>``: the wait for a
  thread of that pool;
- ``loop.lag``: how late a 50 ms timer fires on the event loop (queueing behind other work on
  the loop, and the GIL).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time

__all__ = ["STATS", "HotStats"]

log = logging.getLogger(__name__)

KEEP = 50_000  # timings kept per name for the run's percentiles (a uniform sample beyond)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))]


class HotStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: dict[str, list[float]] = {}
        self._seen: dict[str, int] = {}  # timings recorded per name (the sample's population)
        self._random = random.Random(0)
        self._window: dict[str, list[float]] = {}
        self._counts: dict[str, int] = {}
        self._window_counts: dict[str, int] = {}
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def time(self, name: str, seconds: float) -> None:
        with self._lock:
            kept = self._run.setdefault(name, [])
            seen = self._seen[name] = self._seen.get(name, 0) + 1
            if len(kept) < KEEP:
                kept.append(seconds)
            else:  # reservoir sampling: every timing equally likely to be kept
                slot = self._random.randrange(seen)
                if slot < KEEP:
                    kept[slot] = seconds
            window = self._window.setdefault(name, [])
            if len(window) < KEEP:
                window.append(seconds)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n
            self._window_counts[name] = self._window_counts.get(name, 0) + n

    def reset(self) -> None:
        with self._lock:
            self._run.clear()
            self._seen.clear()
            self._window.clear()
            self._counts.clear()
            self._window_counts.clear()
            self.started = time.monotonic()

    def summary(self, *, window: bool = False) -> dict[str, dict[str, float]]:
        """{name: {n, p50, p95, p99, max (ms)}} and {counter: {n}}."""
        with self._lock:
            timings = self._window if window else self._run
            counts = self._window_counts if window else self._counts
            out: dict[str, dict[str, float]] = {}
            for name, values in timings.items():
                if not values:
                    continue
                ordered = sorted(values)
                out[name] = {"n": len(ordered) if window else self._seen.get(name, len(ordered)), "p50": 1000 * _pct(ordered, 50),
                             "p95": 1000 * _pct(ordered, 95), "p99": 1000 * _pct(ordered, 99),
                             "max": 1000 * ordered[-1]}
            for name, n in counts.items():
                out[name] = {"n": n}
            if window:
                self._window = {}
                self._window_counts = {}
        return out

    @staticmethod
    def format(summary: dict[str, dict[str, float]]) -> str:
        def one(name: str, s: dict[str, float]) -> str:
            if len(s) == 1:
                return f"{name} n={int(s['n'])}"
            return (f"{name} n={int(s['n'])} p50={s['p50']:.1f} p95={s['p95']:.1f} "
                    f"p99={s['p99']:.1f} max={s['max']:.1f}")
        return "; ".join(one(k, summary[k]) for k in sorted(summary))

    def ensure_logging(self, interval: float = 10.0) -> None:
        """Start ``log_forever`` on the running loop once (one per process)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._task = loop.create_task(self.log_forever(interval), name="hwtune-hotstats")

    async def log_forever(self, interval: float) -> None:
        tick, last = 0.05, time.monotonic()
        next_log = last + interval
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            self.time("loop.lag", max(0.0, now - last - tick))
            last = now
            if now >= next_log:
                next_log = now + interval
                log.info("hot path (last %.0fs): %s", interval,
                         self.format(self.summary(window=True)))
                log.info("hot path (run, %.0fs): %s", now - self.started,
                         self.format(self.summary()))



STATS = HotStats()

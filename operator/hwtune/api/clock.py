"""The one clock abstraction: where the engine, the backends and the operator read the time.

``Clock.now()`` returns seconds as a float. Two kinds exist:

- ``WallClock``: seconds since the Unix epoch. Its readings mean the same thing in another
  process, so a study rebuilt after a restart (``hwtune tune --resume``, an operator that was
  rescheduled) keeps counting its deadline and its trials' segments on the same scale. It never
  goes backwards within a process (a wall-clock step back is held at the last reading).
- ``SimulatedClock``: a clock that moves only when the simulator tells it to
  (``advance_to``), so thousands of simulated trials run in seconds and replays are exact.

Durations measured inside one process (how long a local trial process ran) may use
``time.monotonic`` directly; anything stored or compared across processes uses a ``Clock``.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SimulatedClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Injected time source."""

    def now(self) -> float:
        """Seconds; only differences and order matter to the engine."""
        ...


class WallClock:
    """Wall time (``time.time()``), comparable across process restarts; never goes back."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        reading = time.time()
        with self._lock:
            if reading < self._last:  # NTP stepped the clock back: hold, never go back
                return self._last
            self._last = reading
            return reading


class SimulatedClock:
    """A clock that only moves when told."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance_to(self, time: float) -> None:  # noqa: A002 - the simulated time
        if time < self._now:
            raise ValueError(f"the simulated clock cannot go back from {self._now} to {time}")
        self._now = float(time)

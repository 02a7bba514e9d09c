"""Keep Python's full garbage collections short in a long-running study.

A study keeps every trial record, observation and event for its whole life, so the heap grows
with the trials, and a full (generation 2) collection walks all of it: at 20,000 trials that is
a ~100-140 ms pause inside whichever report triggers it (benchmarks/scale.py). These objects are
never garbage while the study lives, so every ``FREEZE_EVERY`` events the young generations are
collected (cheap) and everything alive is moved to the permanent generation (``gc.freeze``);
full collections then walk only what was created since. The price: a reference cycle that
became garbage after surviving into the old generation is not reclaimed; the engine creates
few such cycles (records and events are plain data).
"""

from __future__ import annotations

import gc

__all__ = ["FREEZE_EVERY", "GcPacer"]

FREEZE_EVERY = 2000


class GcPacer:
    """Call ``tick()`` once per event; it freezes the heap every ``every`` ticks."""

    def __init__(self, every: int = FREEZE_EVERY) -> None:
        self.every = every
        self._count = 0

    def tick(self) -> None:
        self._count += 1
        if self._count >= self.every:
            self._count = 0
            if gc.isenabled():
                gc.collect(1)
                gc.freeze()

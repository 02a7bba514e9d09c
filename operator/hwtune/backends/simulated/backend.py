"""The simulated backend: trials replay a benchmark table on a simulated clock.

Each launched trial has one pending event at a time, "epoch e finished", due after that epoch's
reference runtime divided by the hardware model's speedup for the trial's hardware. Events sit in
a heap ordered by (time, counter), so two runs with the same seeds replay identically. ``wait``
pops the next event, moves the clock to it, and delivers the epoch's metrics as a report with the
trial's total simulated runtime; a CONTINUE schedules the next epoch. Pausing or stopping bumps
the trial's generation, which turns its pending event stale. A resumed trial continues from the
epoch after its last report (its checkpoint), never from 1.

Memory: when the table gives ``memory_gib`` and it does not fit the trial's hardware
(``HardwareModel.fits``), the trial fails as out of memory ``startup_seconds`` after launch.

Workers: ``n_workers`` is the backend's capacity; the tuner never runs more trials at once.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

from hwtune.api.records import BUILTIN_METRICS, Decision, Hardware
from hwtune.api.clock import SimulatedClock
from hwtune.backends.base import Backend, BackendTrial
from hwtune.backends.simulated.table import MEMORY_KEY, RUNTIME_KEY, TableProtocol
from hwtune.optimize.hardware import HardwareModel

__all__ = ["SimulatedBackend", "SimulatedClock", "seed_slot"]


def seed_slot(seed: int, trial_id: int, n_seeds: int) -> int:
    """Which of a table's ``n_seeds`` recorded seeds a trial replays: a hash of (backend seed,
    trial id), so it does not depend on the order trials launch in. Shared with the simulated
    trainer of KWOK pods (hwtune.testing.simtrainer), so a study replays the same curves there."""
    x = (trial_id * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9 + 1) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return x % n_seeds


@dataclass
class _SimRun:
    config: Any
    hardware: Hardware | None
    table_seed: int
    runtime: float = 0.0  # simulated seconds run in total, over all launches
    generation: int = 0  # bumped on pause/stop; events of older generations are stale
    segment_start: float = 0.0  # when the in-flight epoch (or startup) began
    in_flight: bool = False


_EPOCH, _OOM = 0, 1


class SimulatedBackend(Backend):
    """Replay ``table`` for the study's trials with ``hardware_model`` timing and pricing them.

    ``seed`` picks which recorded seed each trial replays (per trial, reproducibly);
    ``metrics`` limits which table metrics are reported (default: all but the runtime and
    memory fields and the built-in names); ``startup_seconds`` is added to every launch (image
    pull, data loading), ``resume_seconds`` to every resumed launch (loading the checkpoint)."""

    poll_seconds = None  # the tuner waits for the next event, however far in simulated time

    def __init__(
        self,
        table: TableProtocol,
        hardware_model: HardwareModel,
        *,
        n_workers: int = 4,
        seed: int = 0,
        clock: SimulatedClock | None = None,
        metrics: Sequence[str] | None = None,
        startup_seconds: float = 0.0,
        resume_seconds: float = 0.0,
    ) -> None:
        super().__init__()
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        if startup_seconds < 0 or resume_seconds < 0:
            raise ValueError("startup_seconds and resume_seconds must be >= 0")
        self.table = table
        self.hardware_model = hardware_model
        self.capacity = n_workers
        self.seed = seed
        self.clock = clock if clock is not None else SimulatedClock()
        self.metrics = None if metrics is None else tuple(metrics)
        self.startup_seconds = float(startup_seconds)
        self.resume_seconds = float(resume_seconds)
        self._seeds = tuple(table.seeds)
        if not self._seeds:
            raise ValueError("the table lists no seeds")
        self._runs: dict[int, _SimRun] = {}
        self._heap: list[tuple[float, int, int, int, int, float, Any]] = []
        self._counter = itertools.count()
        self.events_processed = 0

    def bind(self, sink) -> None:
        """Also checks that the table reaches the study's maximum resource."""
        table_max = getattr(self.table, "max_resource", None)
        config = getattr(sink, "config", None)
        study_max = getattr(config, "max_resource", None)
        if table_max is not None and study_max is not None and study_max > table_max:
            raise ValueError(f"fidelity.max is {study_max} but the table only has {table_max} "
                             f"epochs; use at most {table_max}")
        super().bind(sink)

    # -- hooks ------------------------------------------------------------------------------------
    def _launch(self, trial: BackendTrial, resume: bool) -> bool:
        run = self._runs.get(trial.trial_id)
        if run is None:
            run = _SimRun(trial.config, trial.hardware, self._seeds[self._seed_slot(trial.trial_id)])
            self._runs[trial.trial_id] = run
        now = self.clock.now()
        run.segment_start = now
        run.in_flight = True
        delay = self.startup_seconds + (self.resume_seconds if resume else 0.0)
        first = self.table.lookup(run.config, trial.start_resource, run.table_seed)
        memory = first.get(MEMORY_KEY)
        if memory is not None and not self.hardware_model.fits(run.hardware, memory):
            per_gpu = self.hardware_model.memory_per_gpu(memory, run.hardware)
            available = self.hardware_model.pool(run.hardware).gpu_memory_gib
            reason = (f"out of memory: needs {per_gpu:.3g} GiB per GPU, "
                      f"{run.hardware} has {available:.3g} GiB")
            self._push(now + delay, _OOM, trial.trial_id, run.generation, 0, delay, reason)
            return True
        self._schedule_epoch(trial.trial_id, run, trial.start_resource, first, now + delay, delay)
        return True

    def _seed_slot(self, trial_id: int) -> int:
        return seed_slot(self.seed, trial_id, len(self._seeds))

    def _schedule_epoch(self, trial_id: int, run: _SimRun, epoch: int, values: Any,
                        start: float, extra: float) -> None:
        duration = self.hardware_model.runtime(values[RUNTIME_KEY], run.hardware)
        self._push(start + duration, _EPOCH, trial_id, run.generation, epoch, duration + extra, values)

    def _push(self, time: float, kind: int, trial_id: int, generation: int, epoch: int,
              duration: float, payload: Any) -> None:
        heapq.heappush(self._heap, (time, next(self._counter), kind, trial_id, generation,
                                    epoch, duration, payload))

    def _halt(self, trial: BackendTrial) -> float:
        """Invalidate the in-flight event and count the partial epoch as used time."""
        run = self._runs[trial.trial_id]
        run.generation += 1
        if run.in_flight:
            run.runtime += max(0.0, self.clock.now() - run.segment_start)
            run.in_flight = False
        return run.runtime

    def running_runtimes(self) -> dict[int, float]:
        now = self.clock.now()
        runs = ((tid, self._runs[tid]) for tid in self._active if tid in self._runs)
        return {tid: run.runtime + max(0.0, now - run.segment_start)
                for tid, run in runs if run.in_flight}

    def _stop(self, trial: BackendTrial) -> float | None:
        return self._halt(trial)

    def _pause(self, trial: BackendTrial) -> float | None:
        return self._halt(trial)

    def _wait(self, timeout: float | None) -> bool:
        heap = self._heap
        while heap:
            time, _, kind, trial_id, generation, epoch, duration, payload = heap[0]
            run = self._runs[trial_id]
            if generation != run.generation:
                heapq.heappop(heap)  # stale: the trial was paused or stopped meanwhile
                continue
            if timeout is not None and time > self.clock.now() + timeout:
                break
            heapq.heappop(heap)
            self.clock.advance_to(time)
            self.events_processed += 1
            run.runtime += duration
            run.in_flight = False
            if kind == _OOM:
                self._deliver_exit(trial_id, ok=False, reason=payload, runtime_seconds=run.runtime)
                return True
            decision = self._deliver_report(trial_id, epoch, self._metrics_of(payload), run.runtime)
            if decision is Decision.CONTINUE and self.trial_state(trial_id).active:
                values = self.table.lookup(run.config, epoch + 1, run.table_seed)
                run.segment_start = time
                run.in_flight = True
                self._schedule_epoch(trial_id, run, epoch + 1, values, time, 0.0)
            return True
        if timeout is not None:
            self.clock.advance_to(self.clock.now() + timeout)
        return False

    def _metrics_of(self, values: Any) -> dict[str, float]:
        if self.metrics is not None:
            return {k: values[k] for k in self.metrics}
        return {k: v for k, v in values.items()
                if k != RUNTIME_KEY and k != MEMORY_KEY and k not in BUILTIN_METRICS}

"""A token bucket that paces the operator's launches (TuningTrial, Secret, Job per trial).

MO-ASHA's rung waves stop hundreds of trials within seconds and free their slots at once; every
freed slot is a launch, each launch three creates by the operator and a pod, a binding and
status updates by the Job controller, the scheduler and the kubelets. Unpaced, a wave floods
the API server, and every answer waiting for its study-log write waits behind it. Like
client-go's QPS limit, the bucket spreads a wave over a few seconds: ``rate`` launches per
second, ``burst`` at once after a quiet spell. One bucket per operator (all studies share the
API server).
"""

from __future__ import annotations

import asyncio
import time

from hwtune.backends.kubernetes.hotstats import STATS

__all__ = ["TokenBucket"]


class TokenBucket:
    """``await take()`` returns when a launch may start. Not thread-safe: one event loop.
    ``rate`` <= 0 means unpaced."""

    def __init__(self, rate: float, burst: int = 10) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"rate must be >= 0 and burst >= 1, got {rate}, {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def take(self) -> float:
        """Wait for a token; returns the seconds waited. A caller reserves its token before
        it sleeps (the balance goes negative), so waiters leave in the order they came."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        STATS.time("launch.paced", wait)
        await asyncio.sleep(wait)
        return wait

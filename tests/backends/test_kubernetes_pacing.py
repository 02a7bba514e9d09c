"""The operator's launch pacer (hwtune.backends.kubernetes.pacing.TokenBucket)."""

from __future__ import annotations

import asyncio
import time

import pytest

from hwtune.backends.kubernetes.pacing import TokenBucket
from hwtune.controller.settings import OperatorSettings, SettingsError


def test_bucket_spreads_a_wave_at_its_rate_after_the_burst() -> None:
    async def wave() -> tuple[list[int], list[float]]:
        bucket = TokenBucket(rate=100.0, burst=5)
        order: list[int] = []
        stamps: list[float] = []
        began = time.monotonic()

        async def launch(i: int) -> None:
            await bucket.take()
            order.append(i)
            stamps.append(time.monotonic() - began)

        await asyncio.gather(*(launch(i) for i in range(25)))
        return order, stamps

    order, stamps = asyncio.run(wave())
    assert order == list(range(25))  # first come, first launched
    assert max(stamps[:5]) < 0.05  # the burst goes at once
    # the other 20 at 100/s: the last one ~0.2 s after the start, not before
    assert 0.18 <= stamps[-1] < 0.6


def test_bucket_refills_while_idle_and_never_beyond_its_burst() -> None:
    async def scenario() -> tuple[float, float]:
        bucket = TokenBucket(rate=50.0, burst=2)
        for _ in range(2):
            assert await bucket.take() == 0.0
        waited = await bucket.take()  # empty: one token's time
        await asyncio.sleep(0.2)  # 10 tokens' time, but the bucket holds 2
        free = [await bucket.take() for _ in range(2)]
        third = await bucket.take()
        return waited, sum(free) + 10 * third

    waited, later = asyncio.run(scenario())
    assert 0.01 < waited < 0.1
    assert later > 0.05  # the third after the idle spell waited: the burst capped the refill


def test_rate_zero_is_unpaced() -> None:
    async def many() -> float:
        bucket = TokenBucket(rate=0.0)
        began = time.monotonic()
        for _ in range(1000):
            assert await bucket.take() == 0.0
        return time.monotonic() - began

    assert asyncio.run(many()) < 0.5


def test_bad_pacing_settings_name_the_field() -> None:
    with pytest.raises(SettingsError, match="launch_rate: must be 0..10000"):
        OperatorSettings(launch_rate=-1)
    with pytest.raises(SettingsError, match="launch_burst: must be 1..10000"):
        OperatorSettings(launch_burst=0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(5.0, burst=0)

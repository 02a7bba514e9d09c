"""asyncio helpers the backend's loops share."""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; True when it was set. Not
    asyncio.wait_for: on 3.11 that returns the wake-up and drops a cancel landing in the same
    step, so a loop stopped by cancelling it runs on."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)

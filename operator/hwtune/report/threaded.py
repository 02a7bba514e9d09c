"""An aiohttp application served from a daemon thread with its own event loop.

The report endpoint of the local backend (``hwtune.report.server.ReportServer``) and the
surrogate service in tests and benchmarks (``hwtune.surrogate.service.SurrogateServer``) both
need the same life cycle: start the loop in a thread, bind (port 0: a free port), hand the
bound URL back to the caller only once the socket listens, surface a bind failure to the caller
of ``start()`` instead of losing it in the thread, and on ``stop()`` clean the runner up inside
its own loop. Subclasses say only how to build their ``web.AppRunner``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TypeVar

from aiohttp import web

__all__ = ["ThreadedServer"]

Self = TypeVar("Self", bound="ThreadedServer")


class ThreadedServer:
    """Subclasses implement ``_make_runner()``; ``what`` names the server in errors."""

    what = "server"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.bound_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def _make_runner(self) -> web.AppRunner:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def url(self) -> str:
        if self.bound_port is None:
            raise RuntimeError(f"the {self.what} is not started")
        return f"http://{self.host}:{self.bound_port}"

    def start(self: Self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"the {self.what} is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # surfaced to start() below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                assert self._runner is not None
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"hwtune-{self.what.replace(' ', '-')}",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise RuntimeError(f"{self.what} failed to start on {self.host}:{self.port}") from failure[0]
        return self

    async def _open(self) -> None:
        self._runner = self._make_runner()
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.bound_port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self.bound_port = None

    def __enter__(self: Self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

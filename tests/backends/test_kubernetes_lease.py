"""The study Lease without a cluster: a renewal that comes too late makes the Lease overdue
(nothing acts) rather than lost; a later renewal resumes if nobody took it, and is LeaseLost if
somebody did. The real API path is in tests/cluster/test_operator_replicas.py."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest

from hwtune.backends.kubernetes import lease as lease_mod
from hwtune.backends.kubernetes.api import ApiError, StudyLogStore
from hwtune.backends.kubernetes.lease import LeaseLost, LeaseOverdue, StudyLease
from hwtune.backends.kubernetes.log import LogFenced


class FakeLeases:
    """coordination.k8s.io Leases with compare-and-swap on resourceVersion; ``down`` makes every
    call fail as an unreachable (or hopelessly slow) API server would."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise TimeoutError("read timed out")

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> dict[str, Any]:
        self._check()
        if name not in self.leases:
            raise ApiError(404, "not found")
        return copy.deepcopy(self.leases[name])

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any],
                                **_: Any) -> dict[str, Any]:
        self._check()
        name = body["metadata"]["name"]
        if name in self.leases:
            raise ApiError(409, "exists")
        return self._store(name, body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any],
                                 **_: Any) -> dict[str, Any]:
        self._check()
        if name not in self.leases:
            raise ApiError(404, "not found")
        if body["metadata"].get("resourceVersion") != \
                self.leases[name]["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified")
        return self._store(name, body)

    def _store(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[name] = stored
        return copy.deepcopy(stored)


class FakeApi:
    client = None
    core = None  # a fenced log write is refused before any request

    async def _call(self, fn: Any, *args: Any, **_: Any) -> Any:
        return fn(*args)

    @staticmethod
    def _plain(obj: Any) -> Any:
        return obj


@pytest.fixture()
def leases(monkeypatch: pytest.MonkeyPatch) -> FakeLeases:
    fake = FakeLeases()
    monkeypatch.setattr(lease_mod, "_coordination", lambda api: fake)
    return fake


def new_lease(identity: str) -> StudyLease:
    return StudyLease(FakeApi(), "ns", "s", "uid-1", identity=identity, duration_s=1.0,
                      renew_s=0.1)


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_a_late_renewal_resumes_when_nobody_took_the_lease(leases: FakeLeases) -> None:
    async def main() -> None:
        lease = new_lease("a")
        assert await lease.try_acquire()
        keeper = asyncio.create_task(lease.keep())
        await asyncio.sleep(0.3)
        assert lease.held() and not lease.overdue()
        leases.down = True  # the API server stops answering for longer than the duration
        await wait_until(lease.overdue, 2, "the Lease to go overdue")
        assert not lease.held()
        store = StudyLogStore(FakeApi(), "ns", "s", "uid-1")  # type: ignore[arg-type]
        store.fence = lease
        with pytest.raises(LeaseOverdue):  # deferred (the log writer retries), not fenced
            await store.write_chunk(0, {"e000000000": "{}"}, new=True)
        await asyncio.sleep(0.5)
        assert not keeper.done(), "an overdue Lease is not a lost one"
        leases.down = False
        await wait_until(lease.held, 2, "the Lease to be renewed again")
        assert lease.overdue_count == 1 and lease.overdue_since is None
        assert leases.leases["s-writer"]["spec"]["holderIdentity"] == "a"
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)

    asyncio.run(main())


def test_an_overdue_lease_taken_by_a_standby_is_lost(leases: FakeLeases) -> None:
    async def main() -> None:
        a, b = new_lease("a"), new_lease("b")
        assert await a.try_acquire()
        assert not await b.try_acquire()  # a live holder
        keeper = asyncio.create_task(a.keep())
        original = leases.replace_namespaced_lease

        def a_cannot_renew(name: str, namespace: str, body: dict[str, Any], **kw: Any) -> Any:
            if body["spec"]["holderIdentity"] == "a":
                raise TimeoutError("read timed out")
            return original(name, namespace, body, **kw)

        leases.replace_namespaced_lease = a_cannot_renew  # type: ignore[method-assign]
        await wait_until(a.overdue, 2, "a's Lease to go overdue")
        await asyncio.sleep(1.1)  # expired for a standby too
        assert await b.try_acquire()
        leases.replace_namespaced_lease = original  # type: ignore[method-assign]
        done, _ = await asyncio.wait({keeper}, timeout=2)
        assert keeper in done
        with pytest.raises(LeaseLost):
            keeper.result()
        assert not a.held() and not a.overdue()
        store = StudyLogStore(FakeApi(), "ns", "s", "uid-1")  # type: ignore[arg-type]
        store.fence = a
        with pytest.raises(LogFenced):
            await store.write_chunk(0, {"e000000000": "{}"}, new=True)

    asyncio.run(main())


def test_a_renewal_that_landed_after_its_timeout_is_still_ours(leases: FakeLeases) -> None:
    """The Lease moved to a version this replica never saw, by its own renewal (its answer
    timed out): same holder, same instance, so it renews on instead of giving the study up."""
    async def main() -> None:
        lease = new_lease("a")
        assert await lease.try_acquire()
        current = leases.leases["s-writer"]
        leases.replace_namespaced_lease("s-writer", "ns", copy.deepcopy(current))  # lands; lost answer
        await lease.renew()
        assert lease.held()
        assert lease._version == leases.leases["s-writer"]["metadata"]["resourceVersion"]

    asyncio.run(main())

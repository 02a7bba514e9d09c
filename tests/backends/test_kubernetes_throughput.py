"""The mechanisms that keep the operator fast under many trials, with their guarantees: group
commit of the study log (few writes, no answer before its record is stored) and study-log writes
that never queue behind other API calls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Mapping

import pytest

from hwtune.backends.kubernetes.api import ApiError, KubeApi
from hwtune.backends.kubernetes.log import StudyLog, event_key, parse_chunks
from hwtune.engine import Study, StudyConfig
from hwtune.engine.config import pool_catalog
from tests.backends.kube_fakes import POOLS, study_spec


class SlowStore:
    """A log store whose writes take a while (an API round trip), recording what was durable
    at each moment."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.chunks: dict[int, dict[str, str]] = {}
        self.writes = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def read_chunks(self) -> list[tuple[int, Mapping[str, str]]]:
        return list(self.chunks.items())

    async def write_chunk(self, index: int, entries: Mapping[str, str], *, new: bool) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            self.chunks.setdefault(index, {}).update(entries)
            self.writes += 1
        finally:
            self.in_flight -= 1

    def stored(self, seq: int) -> bool:
        return any(event_key(seq) in c for c in self.chunks.values())


def test_concurrent_reports_share_log_writes_and_wait_for_their_record() -> None:
    store = SlowStore(delay=0.05)
    study = Study(StudyConfig.from_spec(study_spec(maxTrials=100, maxParallelTrials=100),
                                      catalog=pool_catalog(POOLS)))
    lock = threading.Lock()
    answered: list[tuple[int, bool]] = []  # (seq, was it stored when answered?)

    async def main() -> None:
        log = StudyLog(store)
        log.attach(asyncio.get_running_loop())
        writer = asyncio.create_task(log.run())
        study.add_listener(log.append)

        async def report(i: int) -> None:
            # Like StudyRunner.submit_report: the engine under the lock, then wait, then answer.
            with lock:
                study.start_next()
                seq = log.last_seq
            await log.durable(seq)
            answered.append((seq, store.stored(seq)))

        n = 40
        await asyncio.gather(*(report(i) for i in range(n)))
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        assert len(answered) == n

    asyncio.run(main())
    assert all(stored for _, stored in answered), "an answer came before its record was stored"
    # 40 reports while writes take 50 ms: batched into a handful of writes, one at a time.
    assert store.writes <= 5, store.writes
    assert store.most_in_flight == 1
    events = parse_chunks(store.chunks.items()).events
    assert len(events) >= 40 and [e["seq"] for e in events] == list(range(len(events)))


def test_log_writes_do_not_queue_behind_a_busy_api_pool() -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = KubeApi(client.ApiClient(client.Configuration()), workers=2, log_workers=1)
    gate = threading.Event()

    def blocked(**_: Any) -> str:
        gate.wait(10)
        return "done"

    def fast(**_: Any) -> str:
        return "stored"

    async def main() -> None:
        busy = [asyncio.ensure_future(api._call(blocked)) for _ in range(4)]  # > workers
        await asyncio.sleep(0.05)
        try:
            # The general pool is full; a log write still goes through at once.
            got = await asyncio.wait_for(api._call(fast, _pool=api._log_pool), timeout=2)
            assert got == "stored"
            assert not any(b.done() for b in busy)
        finally:
            gate.set()
        assert await asyncio.gather(*busy) == ["done"] * 4

    try:
        asyncio.run(main())
    finally:
        api.close()

    def refused(*_: Any, **__: Any) -> Any:
        raise ApiException(status=409, reason="AlreadyExists")

    class Raw:  # what the client returns with _preload_content=False
        data = b'{"kind": "Job", "metadata": {"name": "j"}}'
        released = False

        def release_conn(self) -> None:
            Raw.released = True

    def raw(*_: Any, _preload_content: bool = True, **__: Any) -> Any:
        assert _preload_content is False
        return Raw()

    api = KubeApi(client.ApiClient(client.Configuration()))
    try:
        with pytest.raises(ApiError) as info:
            asyncio.run(api._call_plain(refused))
        assert info.value.status == 409
        assert asyncio.run(api._call_plain(raw)) == {"kind": "Job", "metadata": {"name": "j"}}
        assert Raw.released
    finally:
        api.close()


def test_a_trial_that_fails_at_once_costs_what_its_pods_ran_not_the_retry_backoff() -> None:
    from hwtune.api.clock import SimulatedClock
    from hwtune.api.records import TrialPhase
    from hwtune.backends.kubernetes import KubernetesBackend
    from hwtune.engine.tuner import Tuner

    clock = SimulatedClock(1000.0)
    study = Study(StudyConfig.from_spec(study_spec(maxTrials=1, maxParallelTrials=1),
                                        catalog=pool_catalog(POOLS)), clock=clock)
    backend = KubernetesBackend(last_seq=lambda: 0)
    Tuner(study, backend, poll_seconds=1.0).step()
    tid = 0
    launch = backend.trial_state(tid).launches
    meta = {"labels": {"hwtune.io/trial": str(tid)},
            "annotations": {"hwtune.io/launch": str(launch)}}

    def iso(t: float) -> str:
        import datetime as dt
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def pod(uid: str, phase: str, start: float, end: float | None) -> dict[str, Any]:
        state = {"running": {"startedAt": iso(start)}} if end is None else \
            {"terminated": {"exitCode": 1, "startedAt": iso(start), "finishedAt": iso(end)}}
        return {"kind": "Pod", "metadata": {**meta, "uid": uid},
                "status": {"phase": phase, "containerStatuses": [{"name": "t", "state": state}]}}

    # Out of memory three times, 2 s each, with the Job's back-off (10 s, 20 s) between them.
    assert backend.pod_changed(pod("a", "Running", 1000, None))
    assert backend.trial_state(tid).phase is TrialPhase.RUNNING
    backend.pod_changed(pod("a", "Failed", 1000, 1002))
    backend.pod_changed(pod("b", "Failed", 1012, 1014))
    backend.pod_changed(pod("c", "Failed", 1034, 1036))
    clock.advance_to(1040.0)
    job = {"kind": "Job", "metadata": meta,
           "status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True",
                                                    "reason": "BackoffLimitExceeded"}]}}
    assert backend.job_changed(job)
    assert study.trial(tid).phase is TrialPhase.FAILED
    assert study.runtime_of(tid) == pytest.approx(6.0)  # not the 40 s the Job existed
    assert study.cost_of(tid) < study.config.hardware_model.cost(40.0, study.trial(tid).hardware)

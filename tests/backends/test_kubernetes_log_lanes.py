"""The study log's lanes: a write may start while another is in flight, each carries every event
not yet durable, so the first to finish makes everything up to its last event durable; the
stored log never has a gap, and a new writer resumes each lane's chunk."""

from __future__ import annotations

import asyncio
import random
from typing import Mapping

import pytest

from hwtune.backends.kubernetes.log import (
    LANES,
    StudyLog,
    event_key,
    parse_chunks,
)
from hwtune.engine import Study, StudyConfig
from hwtune.engine.config import pool_catalog
from tests.backends.kube_fakes import POOLS, study_spec


def new_study() -> Study:
    return Study(StudyConfig.from_spec(study_spec(maxTrials=400, maxParallelTrials=400),
                                       catalog=pool_catalog(POOLS)))


class ScriptedStore:
    """Writes take ``delays[n]`` seconds (the n-th write; ``default`` after), optionally fail."""

    def __init__(self, delays: list[float] | None = None, default: float = 0.01,
                 fail: set[int] | None = None) -> None:
        self.delays = list(delays or [])
        self.default = default
        self.fail = fail or set()
        self.chunks: dict[int, dict[str, str]] = {}
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.writes: list[tuple[int, bool, list[str]]] = []

    async def read_chunks(self) -> list[tuple[int, Mapping[str, str]]]:
        return [(i, dict(d)) for i, d in self.chunks.items()]

    async def write_chunk(self, index: int, entries: Mapping[str, str], *, new: bool) -> None:
        n = self.calls
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays[n] if n < len(self.delays) else self.default)
            if n in self.fail:
                raise RuntimeError(f"write {n}: the API server said 500")
            if new:
                assert index not in self.chunks, f"chunk {index} created twice"
            else:
                assert index in self.chunks, f"chunk {index} patched before it was created"
            self.chunks.setdefault(index, {}).update(entries)
            self.writes.append((index, new, sorted(entries)))
        finally:
            self.in_flight -= 1

    def stored(self) -> set[int]:
        return {int(k[1:]) for c in self.chunks.values() for k in c}


def start_writer(log: StudyLog, study) -> asyncio.Task:
    """Attach ``log`` to the running loop, log ``study``'s events, start its writer."""
    log.attach(asyncio.get_running_loop())
    study.add_listener(log.append)
    return asyncio.create_task(log.run())


def test_a_slow_write_does_not_hold_the_answers_behind_it() -> None:
    """Write 0 takes 2 s; an event logged meanwhile is written by the other lane, together with
    write 0's events, and both answers go out at once."""
    store = ScriptedStore(delays=[2.0])
    study = new_study()

    async def main() -> float:
        log = StudyLog(store)
        writer = start_writer(log, study)
        study.start_next()
        first = log.last_seq
        await asyncio.sleep(0.05)  # write 0 is in flight
        study.start_next()
        second = log.last_seq
        began = asyncio.get_running_loop().time()
        await asyncio.wait_for(asyncio.gather(log.durable(first), log.durable(second)), 1.0)
        took = asyncio.get_running_loop().time() - began
        assert store.stored() >= set(range(second + 1))
        await log.durable(log.last_seq)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        return took

    took = asyncio.run(main())
    assert took < 0.5, took
    assert store.most_in_flight == 2
    # The second write (lane 1, its own chunk) carried the first one's events as well; the
    # slow one was still in flight when the writer stopped.
    index, new, keys = store.writes[0]
    assert index % LANES == 1 and new and keys[0] == event_key(0)
    events = parse_chunks(store.chunks.items()).events
    assert [e["seq"] for e in events] == list(range(len(events)))


@pytest.mark.parametrize("hedge_after", [0.05, None])
def test_a_slow_write_with_an_answer_waiting_is_hedged_on_another_lane(hedge_after) -> None:
    """Write 0 takes 1 s and nothing else is logged: after ``hedge_after`` the same events go
    out again on another lane, and the answer leaves when that copy is stored. Without
    hedging it waits the whole second."""
    store = ScriptedStore(delays=[1.0])
    study = new_study()

    async def main() -> float:
        log = StudyLog(store, hedge_after=hedge_after)
        writer = start_writer(log, study)
        study.start_next()
        began = asyncio.get_running_loop().time()
        await asyncio.wait_for(log.durable(log.last_seq), 2.0)
        took = asyncio.get_running_loop().time() - began
        hedges = log.hedges
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        return took, hedges

    took, hedges = asyncio.run(main())
    if hedge_after is None:
        assert took >= 0.9 and hedges == 0
        return
    assert took < 0.5 and hedges == 1, (took, hedges)
    index, new, keys = store.writes[0]  # the copy, on its own lane, landed first
    assert index % LANES == 1 and new and keys == [event_key(0)]


def test_no_hedge_while_no_answer_waits() -> None:
    """Slow writes alone are not hedged: nothing waits on them (extra writes cost the API
    server), so the events are written once."""
    store = ScriptedStore(default=0.2)
    study = new_study()

    async def main() -> int:
        log = StudyLog(store)
        writer = start_writer(log, study)
        for _ in range(3):
            study.start_next()
        await asyncio.sleep(0.6)
        assert log.durable_seq == log.last_seq
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        return log.hedges

    assert asyncio.run(main()) == 0
    stored = [k for _, _, keys in store.writes for k in keys]
    assert len(stored) == len(set(stored))


def test_never_a_gap_and_every_answered_event_stored_whatever_fails_or_is_cut() -> None:
    """Random write times and failures, the writer cancelled (the operator killed) at random
    moments: every event some answer waited for is stored, and the stored log always
    rebuilds (no gap). A new writer then resumes from what is stored."""
    rng = random.Random(7)
    for round_ in range(12):
        store = ScriptedStore(delays=[rng.choice([0.001, 0.005, 0.03, 0.1]) for _ in range(400)],
                              fail={i for i in range(400) if rng.random() < 0.15})
        study = new_study()
        answered: list[int] = []

        async def main() -> None:
            log = StudyLog(store, chunk_bytes=1024, chunk_events=12)
            writer = start_writer(log, study)

            async def report() -> None:
                study.start_next()
                seq = log.last_seq
                await log.durable(seq)
                answered.append(seq)
                # What was answered is stored, now and at every later moment.
                assert store.stored() >= set(range(seq + 1))

            tasks = []
            for _ in range(rng.randint(20, 80)):
                tasks.append(asyncio.ensure_future(report()))
                await asyncio.sleep(rng.choice([0, 0.001, 0.01]))
            await asyncio.sleep(rng.uniform(0, 0.3))
            writer.cancel()  # kill -9: whatever is in flight lands or not
            await asyncio.gather(writer, return_exceptions=True)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())
        loaded = parse_chunks(store.chunks.items())  # raises on a gap
        assert answered == [] or len(loaded.events) > max(answered), round_
        assert all(sum(len(v) for v in c.values()) <= 1024 + 600 for c in store.chunks.values())

        # A new writer resumes each lane's last chunk and writes on without a gap.
        resumed = Study.rebuild(study.config, loaded.events)
        store.fail, store.delays, store.calls = set(), [], 0

        async def again() -> None:
            log = StudyLog(store, loaded, chunk_bytes=1024, chunk_events=12)
            writer = start_writer(log, resumed)
            for _ in range(10):
                resumed.start_next()
            await asyncio.wait_for(log.durable(log.last_seq), 5)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

        asyncio.run(again())
        final = parse_chunks(store.chunks.items()).events
        assert [e["seq"] for e in final] == list(range(len(final)))
        assert len(final) == len(loaded.events) + 10
        Study.rebuild(study.config, final, strict=True)


def test_open_chunks_are_the_last_of_each_lane_and_new_chunks_keep_their_lane() -> None:
    study = new_study()
    store = ScriptedStore(default=0.001)

    async def main() -> None:
        log = StudyLog(store, chunk_bytes=600, chunk_events=4)
        writer = start_writer(log, study)
        for _ in range(30):
            study.start_next()
            await asyncio.sleep(0)
        await log.durable(log.last_seq)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    asyncio.run(main())
    loaded = parse_chunks(store.chunks.items())
    opened = loaded.open_chunks()
    for lane in range(LANES):
        mine = [i for i in store.chunks if i % LANES == lane]
        if mine:
            assert max(mine) in opened
    assert len(opened) <= LANES
    # Every entry is written under its own sequence number.
    for chunk in store.chunks.values():
        for key, raw in chunk.items():
            assert raw.startswith("{") and key == event_key(int(key[1:]))


@pytest.mark.parametrize("chunk_bytes", [512, 4096, 16 * 1024, 64 * 1024])
def test_any_chunk_size_rebuilds_exactly(chunk_bytes: int) -> None:
    study = new_study()
    store = ScriptedStore(default=0.0)

    async def main() -> None:
        log = StudyLog(store, chunk_bytes=chunk_bytes)
        writer = start_writer(log, study)
        for i in range(200):
            study.start_next()
            if i % 7 == 0:
                await asyncio.sleep(0)
        await log.durable(log.last_seq)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    asyncio.run(main())
    events = parse_chunks(store.chunks.items()).events
    assert len(events) >= 200
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert all(sum(len(v) for v in c.values()) <= chunk_bytes + 600
               for c in store.chunks.values())
    rebuilt = Study.rebuild(study.config, events, strict=True)
    assert len(rebuilt.trials) == len(study.trials)


def test_a_log_of_the_older_format_loads_and_a_new_writer_continues_it() -> None:
    """An operator upgraded mid-study finds chunks written one after another (one lane):
    it rebuilds from them and appends over its lanes without a gap or a rewrite."""
    study = new_study()
    store = ScriptedStore(default=0.0)

    async def write(log: StudyLog, trials: int) -> None:
        log.attach(asyncio.get_running_loop())
        writer = asyncio.create_task(log.run())
        for _ in range(trials):
            study.start_next()
        await log.durable(log.last_seq)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    current: list[StudyLog] = []
    study.add_listener(lambda event: current[-1].append(event))
    old = StudyLog(store, chunk_bytes=4096, lanes=1)  # small, so there are several chunks
    current.append(old)
    asyncio.run(write(old, 150))
    old_chunks = {i: dict(d) for i, d in store.chunks.items()}
    assert len(old_chunks) >= 3
    loaded = parse_chunks(store.chunks.items())
    assert [e["seq"] for e in loaded.events] == list(range(len(loaded.events)))

    new = StudyLog(store, loaded)
    current.append(new)
    asyncio.run(write(new, 240))
    events = parse_chunks(store.chunks.items()).events
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert len(events) > len(loaded.events)
    assert len(store.chunks) > len(old_chunks)
    for index, data in old_chunks.items():  # nothing the old operator stored was changed
        assert {k: store.chunks[index][k] for k in data} == data
    rebuilt = Study.rebuild(study.config, events, strict=True)
    assert len(rebuilt.trials) == len(study.trials)


class _Fence:
    def __init__(self, writer: str) -> None:
        self.writer = writer

    def held(self) -> bool:
        return True  # a zombie believes it still holds the Lease

    def overdue(self) -> bool:
        return False


class _ConfigMaps:
    """ConfigMaps with resourceVersions and conditional patches, as the API server does them."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.version = 0

    def _bump(self, cm: dict) -> dict:
        self.version += 1
        cm["metadata"]["resourceVersion"] = str(self.version)
        return cm

    def create_namespaced_config_map(self, namespace, body, **_):
        from hwtune.backends.kubernetes.api import ApiError

        name = body["metadata"]["name"]
        if name in self.objects:
            raise ApiError(409, "AlreadyExists")
        self.objects[name] = self._bump({"metadata": dict(body["metadata"]),
                                         "data": dict(body.get("data") or {})})
        return self.objects[name]

    def patch_namespaced_config_map(self, name, namespace, body, **_):
        from hwtune.backends.kubernetes.api import ApiError

        cm = self.objects[name]
        meta = body.get("metadata") or {}
        if "resourceVersion" in meta and meta["resourceVersion"] != cm["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict")
        cm["metadata"].setdefault("annotations", {}).update(meta.get("annotations") or {})
        cm["data"].update(body.get("data") or {})
        return self._bump(cm)

    def read_namespaced_config_map(self, name, namespace, **_):
        return self.objects[name]


class _Api:
    def __init__(self, core: _ConfigMaps) -> None:
        self.core = core
        self._log_pool = None

    async def _call_plain(self, fn, *args, _pool=None, **kwargs):
        return json_copy(fn(*args, **kwargs))

    async def _call(self, fn, *args, _pool=None, **kwargs):
        return json_copy(fn(*args, **kwargs))

    def _plain(self, obj):
        return obj


def json_copy(obj):
    import json

    return json.loads(json.dumps(obj))


def test_a_writer_that_lost_the_study_cannot_open_a_new_chunk_of_its_lane() -> None:
    """The new writer stamps the last chunk of every lane; the old one, opening the next chunk
    of a lane (its previous one full), must stamp that previous chunk first and finds it
    changed: ``LogFenced``, and no chunk the new writer never saw."""
    from hwtune.backends.kubernetes.api import StudyLogStore
    from hwtune.backends.kubernetes.log import LogFenced

    core = _ConfigMaps()
    old = StudyLogStore(_Api(core), "ns", "st", "uid")
    old.fence = _Fence("op-0#1")

    async def main() -> None:
        await old.write_chunk(0, {event_key(0): '{"seq":0}'}, new=True)
        await old.write_chunk(LANES, {event_key(1): '{"seq":1}'}, new=True)  # lane 0 again
        # The new writer reads the log and stamps each lane's last chunk.
        new = StudyLogStore(_Api(core), "ns", "st", "uid")
        new.fence = _Fence("op-0#2")
        for name, cm in core.objects.items():
            new._versions[int(name.rsplit("-", 1)[1])] = cm["metadata"]["resourceVersion"]
        await new.stamp(LANES)
        with pytest.raises(LogFenced):
            await old.write_chunk(2 * LANES, {event_key(2): '{"seq":2}'}, new=True)
        assert f"st-log-{2 * LANES}" not in core.objects
        # The new writer itself opens that chunk without a conflict.
        await new.write_chunk(2 * LANES, {event_key(2): '{"seq":2}'}, new=True)
        assert core.objects[f"st-log-{2 * LANES}"]["metadata"]["annotations"] == {
            "hwtune.io/log-writer": "op-0#2"}

    asyncio.run(main())


def test_a_stop_that_arrives_with_a_wake_up_still_stops_the_writer() -> None:
    """The writer waits with a deadline while a failed lane backs off. Cancelling it in the very
    step a wake-up lands must stop it (asyncio.wait_for on Python 3.11 returned the wake-up and
    dropped the cancel: the writer ran on and the runner's shutdown hung)."""
    store = ScriptedStore(default=0.001, fail={0})
    study = new_study()

    async def main() -> None:
        log = StudyLog(store)
        writer = start_writer(log, study)
        study.start_next()
        await asyncio.wait_for(log.durable(log.last_seq), 2)  # write 0 failed, its lane waits
        await asyncio.sleep(0.02)
        assert any(lane.retry_at > asyncio.get_running_loop().time() for lane in log._lanes)
        assert log._wake is not None
        log._wake.set()
        writer.cancel()
        done, _ = await asyncio.wait({writer}, timeout=2)
        assert writer in done, "the cancelled writer kept running"
        assert writer.cancelled()

    asyncio.run(main())


def test_deferred_writes_are_retried_quietly_and_promptly(caplog: pytest.LogCaptureFixture) -> None:
    """A store that defers (the Lease overdue) for a while: no warning per retry, no growing
    back-off, and the waiting answer goes out within a retry period of the store accepting."""
    from hwtune.backends.kubernetes.log import DEFERRED_RETRY_S, LogDeferred

    class DeferringStore(ScriptedStore):
        open_at = 0.0

        async def write_chunk(self, index: int, entries: Mapping[str, str], *,
                              new: bool) -> None:
            if asyncio.get_running_loop().time() < self.open_at:
                raise LogDeferred("the Lease is overdue")
            await super().write_chunk(index, entries, new=new)

    store = DeferringStore(default=0.001)
    study = new_study()

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        store.open_at = loop.time() + 2.0
        log = StudyLog(store)
        writer = start_writer(log, study)
        study.start_next()
        await asyncio.wait_for(log.durable(log.last_seq), 5)
        late = loop.time() - store.open_at
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        return late, log.deferred

    with caplog.at_level("WARNING", logger="hwtune.backends.kubernetes.log"):
        late, deferred = asyncio.run(main())
    assert 0 <= late < DEFERRED_RETRY_S + 0.2, late
    assert deferred >= 4
    assert not [r for r in caplog.records if r.levelname == "WARNING"]

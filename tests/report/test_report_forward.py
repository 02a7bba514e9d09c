"""A standby replica's report endpoint forwards to the replica that acts for the study (real
HTTP on 127.0.0.1: two endpoints, each with its own sink and forwarder), and the Lease look-up
behind it (``LeaseHolders``) against a fake API."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import socket
import time

import pytest
from aiohttp import web

from hwtune.api.records import Decision
from hwtune.backends.kubernetes.lease import (
    ADDRESS_ANNOTATION,
    INSTANCE_ANNOTATION,
    LeaseHolders,
    StudyLease,
    report_address,
)
from hwtune.observe import StudyMetrics
from hwtune.report.forward import FORWARDED_HEADER, HolderForwarder
from hwtune.report.protocol import ProtocolError
from hwtune.report.server import create_app, runner_options
from hwtune.report.threaded import ThreadedServer
from hwtune.trainer.client import ReportClient
from tests.report.test_report_server import FakeSink

PREFIX = "/studies/{namespace}/{study}"
PATH = "/studies/ns/s1/v1/trials/{}/reports"


class NotHere(ProtocolError):
    status = 503


class Scoped(FakeSink):
    """A replica's view of study ns/s1: it acts for it (the FakeSink decides) or stands by
    (503, as the operator's router answers for a study whose Lease another replica holds)."""

    def __init__(self, acts: bool) -> None:
        super().__init__()
        self.acts = acts
        self.seen_headers: list[dict[str, str]] = []

    def expected_token(self, trial: str) -> str | None:
        if not self.acts:
            raise NotHere("study ns/s1 is not running here (yet); retry")
        return self.tokens.get(trial.rsplit("/", 1)[1])

    def submit_report(self, trial, payload):
        return super().submit_report(trial.rsplit("/", 1)[1], payload)


class Replica(ThreadedServer):
    """One operator replica's report endpoint: the sink, and a forwarder that believes the
    holder of ns/s1 is at ``holder`` (a callable: tests change it)."""

    what = "replica"

    def __init__(self, sink: Scoped, holder=lambda: None) -> None:
        super().__init__()
        self.sink = sink
        self.holder = holder
        self.located = 0
        self.forgotten = 0
        self.forwarder: HolderForwarder | None = None
        self.metrics = StudyMetrics()

    async def _locate(self, scope):
        assert scope == ("ns", "s1")
        self.located += 1
        return self.holder()

    def _forget(self, scope):
        self.forgotten += 1

    def _count(self, outcome):  # the operator's hook: hwtune_report_forwards_total
        self.metrics.forwards.labels(outcome).inc()

    def forwards(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value("hwtune_report_forwards_total",
                                                      {"outcome": outcome}) or 0.0

    def _make_runner(self) -> web.AppRunner:
        self.forwarder = HolderForwarder(self._locate, self._forget, via="replica-test",
                                         connect_timeout=0.5, timeout=3.0,
                                         on_outcome=self._count)
        app = create_app(self.sink, route_prefix=PREFIX, forward=self.forwarder.forward)

        @web.middleware
        async def record(request, handler):  # what the holder received
            self.sink.seen_headers.append(dict(request.headers))
            return await handler(request)

        app.middlewares.append(record)
        app.on_cleanup.append(lambda _: self.forwarder.close())
        return web.AppRunner(app, **runner_options())

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.bound_port}"


def post(replica: Replica, token: str | None, resource: int = 1, headers=None, trial: int = 0):
    conn = http.client.HTTPConnection("127.0.0.1", replica.bound_port, timeout=10)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    body = json.dumps({"protocolVersion": 1, "resource": resource,
                       "metrics": {"val_error": 0.5}}).encode()
    conn.request("POST", PATH.format(trial), body=body, headers=sent)
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    result = response.status, payload, dict(response.headers)
    conn.close()
    return result


@pytest.fixture()
def pair():
    holder = Replica(Scoped(acts=True)).start()
    standby = Replica(Scoped(acts=False), holder=lambda: holder.address).start()
    standby.sink.tokens = holder.sink.tokens  # (unused by a standby: it never checks them)
    try:
        yield holder, standby
    finally:
        standby.stop()
        holder.stop()


def test_the_standby_forwards_and_the_holder_decides(pair):
    holder, standby = pair
    status, body, _ = post(standby, holder.sink.tokens["0"])
    assert status == 200 and body["decision"] == Decision.CONTINUE.value
    assert [(t, p.resource) for t, p in holder.sink.received] == [("0", 1)]
    assert standby.sink.received == []
    forwarded = holder.sink.seen_headers[-1]
    assert forwarded[FORWARDED_HEADER] == "replica-test"
    assert forwarded["Authorization"] == f"Bearer {holder.sink.tokens['0']}"
    # the SDK's client through the standby: a whole trial, no retry needed
    client = ReportClient(f"http://127.0.0.1:{standby.bound_port}/studies/ns/s1", "1",
                          holder.sink.tokens["1"], retry_seconds=0.5)
    replies = [client.report(r, {"val_error": 0.4}).decision for r in (1, 2, 3)]
    client.close()
    assert replies == [Decision.CONTINUE, Decision.CONTINUE, Decision.STOP]
    assert standby.forwarder.forwarded == 4 and standby.forwarder.failed == 0
    assert standby.forwards("answered") == 4 and standby.forwards("failed") == 0
    assert holder.forwards("answered") == 0  # the holder answered, it forwarded nothing


def test_the_holders_refusals_pass_through_unchanged(pair):
    holder, standby = pair
    tokens = holder.sink.tokens
    status, body, headers = post(standby, "not-the-token")
    assert status == 401 and body["error"] == "wrong token for this trial"
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert post(standby, tokens["1"])[0] == 401  # another trial's token: the holder says no
    assert holder.sink.received == []
    # a missing token is refused where it lands: nothing to forward
    status, body, _ = post(standby, None)
    assert status == 401 and "missing bearer token" in body["error"]
    # 409 (finished trial) and 422 (resource going backwards) are the holder's
    assert post(standby, tokens["0"], resource=3)[1]["decision"] == Decision.STOP.value
    status, body, _ = post(standby, tokens["0"], resource=4)
    assert status == 409
    assert post(standby, tokens["2"], resource=2, trial=2)[0] == 200
    status, body, _ = post(standby, tokens["2"], resource=1, trial=2)
    assert status == 422 and body["field"] == "resource"


def test_holder_down_or_unknown_is_a_503_that_closes_and_forgets():
    standby = Replica(Scoped(acts=False)).start()
    try:
        status, body, headers = post(standby, "t")  # no holder known
        assert status == 503 and headers.get("Connection") == "close"
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{free.getsockname()[1]}"
        standby.holder = lambda: dead  # a holder that no longer listens
        started = time.monotonic()
        status, _, headers = post(standby, "t")
        assert status == 503 and headers.get("Connection") == "close"
        assert time.monotonic() - started < 2.0
        assert standby.forwarder.failed == 1 and standby.forgotten == 1
        assert standby.forwards("failed") == 1 and standby.forwards("answered") == 0
    finally:
        standby.stop()


def test_no_forwarding_loop_between_two_standbys():
    """Each believes the other holds the study (stale caches): one hop, then a 503."""
    a = Replica(Scoped(acts=False)).start()
    b = Replica(Scoped(acts=False), holder=lambda: a.address).start()
    a.holder = lambda: b.address
    try:
        status, _, headers = post(a, "t")
        assert status == 503 and headers.get("Connection") == "close"
        assert a.located == 1 and b.located == 0  # b never forwarded it back
        assert a.forgotten == 1  # b's 503: a looks the holder up afresh next time
        # a request already marked as forwarded is answered where it lands
        status, _, _ = post(b, "t", headers={FORWARDED_HEADER: "someone"})
        assert status == 503 and b.located == 0
    finally:
        a.stop()
        b.stop()


def test_a_holder_that_stopped_acting_answers_503_through_the_standby(pair):
    holder, standby = pair
    holder.sink.acts = False  # it lost the Lease meanwhile
    status, _, headers = post(standby, holder.sink.tokens["0"])
    assert status == 503 and headers.get("Connection") == "close"
    assert standby.forgotten == 1 and holder.located == 0
    holder.sink.acts = True
    assert post(standby, holder.sink.tokens["0"])[0] == 200


# -- LeaseHolders: the holder's address from its Lease ---------------------------------------
def _micro(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeLeaseApi:
    client = None

    def __init__(self) -> None:
        self.leases: dict[str, dict] = {}
        self.reads = 0

    async def _call(self, fn, name, namespace, **_):
        from hwtune.backends.kubernetes.api import ApiError

        assert fn.__name__ == "read_namespaced_lease" and namespace == "ns"
        self.reads += 1
        await asyncio.sleep(0.01)
        if name not in self.leases:
            raise ApiError(404, "not found")
        return self.leases[name]

    def _plain(self, obj):
        return obj

    def hold(self, study: str, holder: str | None, address: str | None, *,
             renewed: float | None = None) -> None:
        annotations = {INSTANCE_ANNOTATION: "abc"}
        if address:
            annotations[ADDRESS_ANNOTATION] = address
        self.leases[f"{study}-writer"] = {
            "metadata": {"name": f"{study}-writer", "annotations": annotations,
                         "resourceVersion": "1"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 10,
                     "renewTime": _micro(time.time() if renewed is None else renewed)}}


def test_lease_holders_read_once_and_cache_until_forgotten():
    api = FakeLeaseApi()
    api.hold("s1", "op-1", "10.0.0.2:8080")

    async def main():
        holders = LeaseHolders(api, own="10.0.0.1:8080")
        # many concurrent reports of one study share one read
        got = await asyncio.gather(*(holders.locate(("ns", "s1")) for _ in range(20)))
        assert set(got) == {"10.0.0.2:8080"} and api.reads == 1
        assert await holders.locate(("ns", "s1")) == "10.0.0.2:8080" and api.reads == 1
        holders.forget(("ns", "s1"))
        api.hold("s1", "op-0", "10.0.0.1:8080")  # this replica took over: never to itself
        assert await holders.locate(("ns", "s1")) is None and api.reads == 2

    asyncio.run(main())


def test_lease_holders_no_live_holder_is_a_short_lived_miss():
    api = FakeLeaseApi()
    api.hold("expired", "op-1", "10.0.0.2:8080", renewed=time.time() - 60)
    api.hold("released", None, "10.0.0.2:8080")
    api.hold("old", "op-1", None)  # a holder from before forwarding: no address

    async def main():
        holders = LeaseHolders(api, own="10.0.0.1:8080", miss_s=0.2)
        for study in ("expired", "released", "old", "missing"):
            assert await holders.locate(("ns", study)) is None
        reads = api.reads
        assert await holders.locate(("ns", "missing")) is None and api.reads == reads
        await asyncio.sleep(0.25)
        api.hold("missing", "op-1", "10.0.0.3:8080")
        assert await holders.locate(("ns", "missing")) == "10.0.0.3:8080"

    asyncio.run(main())


def test_the_lease_body_publishes_the_holders_address(monkeypatch):
    lease = StudyLease(FakeLeaseApi(), "ns", "s1", "uid-1", identity="op-0")
    assert ADDRESS_ANNOTATION not in lease._body(acquired=0, transitions=0)["metadata"][
        "annotations"]
    lease.address = "10.0.0.1:8080"
    assert lease._body(acquired=0, transitions=0)["metadata"]["annotations"][
        ADDRESS_ANNOTATION] == "10.0.0.1:8080"
    monkeypatch.delenv("HWTUNE_POD_IP", raising=False)
    assert report_address("0.0.0.0", 8080) == "127.0.0.1:8080"
    assert report_address("127.0.0.2", 9) == "127.0.0.2:9"
    monkeypatch.setenv("HWTUNE_POD_IP", "10.1.2.3")
    assert report_address("0.0.0.0", 8080) == "10.1.2.3:8080"
    monkeypatch.setenv("HWTUNE_POD_IP", "fd00::5")
    assert report_address("::", 8080) == "[fd00::5]:8080"

"""The report endpoint over real HTTP on 127.0.0.1: authentication, validation, status codes,
and the SDK's client against it (retries, 409 -> STOP, replayed retries)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from hwtune.api.records import Decision
from hwtune.report.protocol import (
    ReportPayload,
    ReportRejectedError,
    ReportReply,
    TrialFinishedError,
)
from hwtune.report.server import ReplyMemo, ReportServer, new_token, tokens_match
from hwtune.trainer.client import ReportClient, ReportError
from tests.sockets import splice


class FakeSink:
    """Decides like a tiny scheduler: continue until resource 3, then stop (trial finished)."""

    def __init__(self) -> None:
        self.tokens = {"0": new_token(), "1": new_token(), "2": new_token()}
        self.last: dict[str, int] = {}
        self.finished: set[str] = set()
        self.received: list[tuple[str, ReportPayload]] = []
        self.memo = ReplyMemo()

    def expected_token(self, trial: str) -> str | None:
        return self.tokens.get(trial)

    def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        replay = self.memo.replay(trial, payload)
        if replay is not None:
            return replay
        if trial in self.finished:
            raise TrialFinishedError(f"trial {trial} is Stopped")
        if payload.resource <= self.last.get(trial, 0):
            raise ReportRejectedError(f"resource {payload.resource} does not advance past "
                                      f"{self.last[trial]}", field="resource")
        self.received.append((trial, payload))
        self.last[trial] = payload.resource
        reply = ReportReply(Decision.CONTINUE, "below the first rung")
        if payload.resource >= 3:
            self.finished.add(trial)
            reply = ReportReply(Decision.STOP, "reached the maximum")
        self.memo.remember(trial, payload, reply)
        return reply


@pytest.fixture()
def served():
    sink = FakeSink()
    with ReportServer(sink) as server:
        yield sink, server


def post(server, path, body, token=None, raw_auth=None):
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if raw_auth is not None:
        headers["Authorization"] = raw_auth
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers=headers)
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    conn.close()
    return response.status, payload


GOOD = {"protocolVersion": 1, "resource": 1, "metrics": {"val_error": 0.5}}


def raw_request(server, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes (anything a hostile client could) and read until the server closes."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_binds_loopback_on_a_free_port(served):
    _, server = served
    assert server.url.startswith("http://127.0.0.1:")
    assert int(server.url.rsplit(":", 1)[1]) > 0


def test_healthz(served):
    _, server = served
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {"status": "ok", "protocolVersion": 1}


def test_good_report_gets_the_sinks_decision(served):
    sink, server = served
    status, body = post(server, "/v1/trials/1/reports", GOOD, token=sink.tokens["1"])
    assert status == 200
    assert body == {"decision": "continue", "reason": "below the first rung"}
    assert sink.received[0][1].metrics == {"val_error": 0.5}


@pytest.mark.parametrize("auth", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "token"])
def test_missing_or_malformed_authorization_is_401(served, auth):
    sink, server = served
    status, body = post(server, "/v1/trials/1/reports", GOOD, raw_auth=auth)
    assert status == 401
    assert "missing bearer token" in body["error"]
    assert sink.received == []


def test_wrong_token_is_401_and_records_nothing(served):
    sink, server = served
    status, body = post(server, "/v1/trials/1/reports", GOOD, token=sink.tokens["2"])
    assert status == 401 and "wrong token" in body["error"]
    status, _ = post(server, "/v1/trials/1/reports", GOOD, token=sink.tokens["1"] + "x")
    assert status == 401
    assert sink.received == []


def test_unknown_trial_is_answered_exactly_like_a_wrong_token(served):
    # 404 for an unknown id would tell a caller without a token which trials exist.
    sink, server = served
    unknown = raw_request(server, b"POST /v1/trials/99/reports HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Bearer " + sink.tokens["1"].encode() + b"\r\n"
                          b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    wrong = raw_request(server, b"POST /v1/trials/1/reports HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: Bearer " + sink.tokens["2"].encode() + b"\r\n"
                        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")

    def comparable(response: bytes) -> tuple[bytes, list[bytes], bytes]:
        head, _, body = response.partition(b"\r\n\r\n")
        status, *headers = head.split(b"\r\n")
        return status, sorted(h for h in headers if not h.lower().startswith(b"date:")), body

    assert comparable(unknown) == comparable(wrong)
    assert unknown.startswith(b"HTTP/1.1 401 ")
    assert sink.received == []


@pytest.mark.parametrize(
    "payload, status, field",
    [
        (b"{broken", 400, None),
        ({"protocolVersion": 1, "resource": 1, "metrics": {"val_error": "bad"}}, 422,
         "metrics.val_error"),
        (b'{"protocolVersion": 1, "resource": 1, "metrics": {"val_error": NaN}}', 422, "metrics"),
        ({"protocolVersion": 1, "resource": 0, "metrics": {"val_error": 1}}, 422, "resource"),
        ({"protocolVersion": 9, "resource": 1, "metrics": {"val_error": 1}}, 422,
         "protocolVersion"),
    ],
)
def test_malformed_payloads_are_refused_with_the_field(served, payload, status, field):
    sink, server = served
    got_status, body = post(server, "/v1/trials/1/reports", payload, token=sink.tokens["1"])
    assert got_status == status
    assert body.get("field") == field
    assert body["error"]
    assert sink.received == []


def test_resource_going_backwards_is_422(served):
    sink, server = served
    token = sink.tokens["1"]
    post(server, "/v1/trials/1/reports", {**GOOD, "resource": 2}, token=token)
    status, body = post(server, "/v1/trials/1/reports", {**GOOD, "resource": 1}, token=token)
    assert status == 422 and body["field"] == "resource"


def test_report_for_finished_trial_is_409(served):
    sink, server = served
    token = sink.tokens["1"]
    status, body = post(server, "/v1/trials/1/reports", {**GOOD, "resource": 3}, token=token)
    assert (status, body["decision"]) == (200, "stop")
    status, body = post(server, "/v1/trials/1/reports", {**GOOD, "resource": 4}, token=token)
    assert status == 409 and "Stopped" in body["error"]


def test_body_over_the_limit_is_413(served):
    sink, server = served
    status, _ = post(server, "/v1/trials/1/reports", b"{" + b" " * 70_000 + b"}",
                     token=sink.tokens["1"])
    assert status == 413


def test_client_reports_and_replays_a_retried_report(served):
    sink, server = served
    client = ReportClient(server.url, "1", sink.tokens["1"])
    assert client.report(1, {"val_error": 0.4}).decision is Decision.CONTINUE
    assert client.report(3, {"val_error": 0.3}).decision is Decision.STOP
    # The same report again (as after a lost answer) gets the same decision, recorded once.
    assert client.report(3, {"val_error": 0.3}).decision is Decision.STOP
    assert [p.resource for _, p in sink.received] == [1, 3]
    # A new report for the finished trial: 409, which the SDK turns into STOP.
    reply = client.report(4, {"val_error": 0.2})
    assert reply.decision is Decision.STOP and "Stopped" in reply.reason
    client.close()


def test_client_raises_on_refusals_with_status(served):
    sink, server = served
    with pytest.raises(ReportError) as info:
        ReportClient(server.url, "1", "nope").report(1, {"val_error": 0.4})
    assert info.value.status == 401
    with pytest.raises(ReportError) as info:
        ReportClient(server.url, "77", sink.tokens["1"]).report(1, {"val_error": 0.4})
    assert info.value.status == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_retries_until_the_endpoint_comes_up():
    sink = FakeSink()
    port = _free_port()
    sleeps: list[float] = []
    server = ReportServer(sink, port=port)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            server.start()  # the endpoint comes back while the trainer is retrying

    client = ReportClient(f"http://127.0.0.1:{port}", "1", sink.tokens["1"], sleep=sleep)
    try:
        reply = client.report(1, {"val_error": 0.4})
    finally:
        client.close()
        server.stop()
    assert reply.decision is Decision.CONTINUE
    assert len(sleeps) == 3
    assert sleeps[1] > sleeps[0] * 0.9 or sleeps[1] >= 0.1  # backoff grows (with jitter)


def test_client_gives_up_after_the_retry_window():
    port = _free_port()
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    client = ReportClient(f"http://127.0.0.1:{port}", "1", "t", retry_seconds=3.0, sleep=sleep,
                          monotonic=lambda: clock[0])
    with pytest.raises(ReportError, match="unreachable after"):
        client.report(1, {"val_error": 0.4})
    assert clock[0] <= 3.0


def test_tokens_are_random_and_compared_exactly():
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40
    assert tokens_match(a, a) and not tokens_match(a, b) and not tokens_match(a, a[:-1])


def test_concurrent_reports_from_many_trials():
    sink = FakeSink()
    sink.tokens = {str(i): new_token() for i in range(8)}
    lock = threading.Lock()
    inner = sink.submit_report

    def locked(trial, payload):
        with lock:
            return inner(trial, payload)

    sink.submit_report = locked
    with ReportServer(sink) as server:
        def run(trial: str) -> None:
            client = ReportClient(server.url, trial, sink.tokens[trial])
            for level in (1, 2, 3):
                client.report(level, {"val_error": 1.0 / level})
            client.close()

        threads = [threading.Thread(target=run, args=(str(i),)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert len(sink.received) == 24
    assert sink.finished == {str(i) for i in range(8)}


def test_median_report_round_trip_is_a_few_milliseconds(served):
    sink, server = served
    sink.tokens["5"] = new_token()
    original = sink.submit_report
    sink.submit_report = lambda trial, payload: ReportReply(Decision.CONTINUE)
    client = ReportClient(server.url, "5", sink.tokens["5"])
    timings = []
    for level in range(1, 201):
        start = time.perf_counter()
        client.report(level, {"val_error": 0.1})
        timings.append(time.perf_counter() - start)
    client.close()
    sink.submit_report = original
    timings.sort()
    median_ms = timings[len(timings) // 2] * 1000
    print(f"median report round trip: {median_ms:.2f} ms")
    assert median_ms < 50  # generous: the machine is shared; typically ~1 ms


class _Standby(FakeSink):
    """A replica that does not hold the study: every report is 503 (retry, maybe elsewhere)."""

    def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        from hwtune.report.protocol import EndpointUnavailableError

        raise EndpointUnavailableError("this replica does not act for the study; retry")


def test_a_503_closes_the_connection_so_the_retry_can_reach_another_replica():
    """Behind a Service, kube-proxy picks a pod per connection and a kept-alive connection
    stays on its pod. A 503 closes the connection (and the SDK drops it before retrying), so the
    retry connects afresh and can reach the replica that acts: without that, a trainer whose
    connection landed on a standby would be refused until its retry window ran out."""
    standby_sink, active_sink = _Standby(), FakeSink()
    standby_sink.tokens = active_sink.tokens  # one study key: both replicas check the token
    with ReportServer(standby_sink) as standby, ReportServer(active_sink) as active:
        status, _ = post(standby, "/v1/trials/1/reports", GOOD, active_sink.tokens["1"])
        assert status == 503
        host, port = standby.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("POST", "/v1/trials/1/reports", body=json.dumps(GOOD).encode(),
                     headers={"Authorization": f"Bearer {active_sink.tokens['1']}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 503 and response.getheader("Connection") == "close"
        conn.close()
        # A one-Service stand-in: each new connection goes to the next pod in turn.
        pods = [int(s.url.rsplit(":", 1)[1]) for s in (standby, active)]
        listener = socket.create_server(("127.0.0.1", 0))
        connections: list[int] = []

        def proxy() -> None:
            while True:
                try:
                    client_sock, _ = listener.accept()
                except OSError:
                    return
                target = pods[len(connections) % 2]
                connections.append(target)
                upstream = socket.create_connection(("127.0.0.1", target))
                for a, b in ((client_sock, upstream), (upstream, client_sock)):
                    threading.Thread(target=splice, args=(a, b), daemon=True).start()

        threading.Thread(target=proxy, daemon=True).start()
        clock = [0.0]

        def sleep(seconds: float) -> None:
            clock[0] += seconds

        client = ReportClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "1",
                              active_sink.tokens["1"], retry_seconds=10.0, sleep=sleep,
                              monotonic=lambda: clock[0])
        try:
            reply = client.report(1, {"val_error": 0.4})
        finally:
            client.close()
            listener.close()
    assert reply.decision is Decision.CONTINUE
    assert connections[:2] == pods  # the retry came on a new connection, to the other pod

"""The report endpoint against a hostile or broken client: every malformed input is a 4xx (never
a 500), trial ids are parsed strictly, and idle, half-open and stalled connections are closed."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from hwtune.report.protocol import ProtocolError, parse_report, parse_trial_id
from hwtune.report.server import ReportServer
from hwtune.trainer.client import ReportClient
from tests.report.test_report_server import GOOD, FakeSink, post, raw_request


@pytest.fixture()
def served():
    sink = FakeSink()
    with ReportServer(sink, idle_timeout=0.5, body_timeout=0.5) as server:
        yield sink, server


def status_of(response: bytes) -> int:
    assert response.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), response[:80]
    return int(response.split(b" ", 2)[1])


def request_bytes(path: bytes, body: bytes, auth: bytes) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + (b"Authorization: " + auth + b"\r\n" if auth is not None else b"")
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


# -- payloads -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw, status, field",
    [
        # An integer JSON allows and a double does not hold: was an OverflowError (500).
        (b'{"protocolVersion": 1, "resource": 1, "metrics": {"val_error": 1' + b"0" * 400 + b"}}",
         422, "metrics.val_error"),
        (b'{"protocolVersion": 1, "resource": 1' + b"0" * 400
         + b', "metrics": {"val_error": 1}}', 422, "resource"),
        (b'{"protocolVersion": 1, "resource": 1e300, "metrics": {"val_error": 1}}', 422,
         "resource"),
        # More digits than Python converts, and nesting deeper than its recursion limit.
        (b'{"protocolVersion": 1, "resource": 1, "metrics": {"x": 1' + b"0" * 5000 + b"}}",
         400, ""),
        (b"[" * 60_000, 400, ""),
        (b"{\"a\":" * 12_000, 400, ""),
    ],
)
def test_pathological_numbers_and_nesting_are_refused(raw, status, field):
    with pytest.raises(ProtocolError) as info:
        parse_report(raw)
    assert (info.value.status, info.value.field) == (status, field)


@pytest.mark.parametrize("text", ["00", "+0", "-0", " 0", "0 ", "0\n", "\u0660", "\uff10", "1_0",
                                  "0x1", "1e2", "", "1" * 19, "abc"])
def test_trial_ids_are_parsed_strictly(text):
    with pytest.raises(ProtocolError) as info:
        parse_trial_id(text)
    assert (info.value.status, info.value.field) == (400, "trial")


def test_canonical_trial_ids_parse():
    assert [parse_trial_id(t) for t in ("0", "7", "1234567890")] == [0, 7, 1234567890]


# -- over HTTP ------------------------------------------------------------------------------------

@pytest.mark.parametrize("segment", [b"00", b"+0", b"%2B0", b"%D9%A0", b"%EF%BC%90", b"0%20",
                                     b"%FF", b"-1", b"1_0"])
def test_non_canonical_trial_ids_never_reach_trial_0(served, segment):
    sink, server = served
    response = raw_request(server, request_bytes(b"/v1/trials/" + segment + b"/reports",
                                                 json.dumps(GOOD).encode(),
                                                 b"Bearer " + sink.tokens["0"].encode()))
    assert status_of(response) == 400
    assert json.loads(response.partition(b"\r\n\r\n")[2])["field"] == "trial"
    assert sink.received == []
    # The canonical id with the same token is accepted.
    status, _ = post(server, "/v1/trials/0/reports", GOOD, token=sink.tokens["0"])
    assert status == 200


@pytest.mark.parametrize("auth", [
    b"Bearer \xff\xfe\xfd",  # not UTF-8: was a UnicodeEncodeError (500)
    b"Bearer caf\xc3\xa9",  # UTF-8, but not a token character
    b"Bearer \xed\xa0\x80",  # an encoded surrogate
    b"\xff\xff \xff",
    b"Bearer a b",
    b"Bearer \"quoted\"",
])
def test_malformed_authorization_bytes_are_401(served, auth):
    sink, server = served
    response = raw_request(server, request_bytes(b"/v1/trials/1/reports",
                                                 json.dumps(GOOD).encode(), auth))
    assert status_of(response) == 401
    assert sink.received == []


def test_no_hostile_request_gets_a_500(served, caplog):
    sink, server = served
    token = b"Bearer " + sink.tokens["1"].encode()
    bodies = [b"", b"\x00" * 100, b"\xff" * 100, b"null", b"1e999999", b'"x"', b"{}",
              b'{"protocolVersion": 1e999, "resource": 1, "metrics": {"a": 1}}',
              b'{"protocolVersion": 1, "resource": -1e999, "metrics": {"a": 1}}',
              b'{"protocolVersion": 1, "resource": 1, "metrics": {"a": -1' + b"0" * 1000 + b"}}",
              b'{"protocolVersion": 1, "resource": 1, "metrics": {"\\ud800": 1}}',
              b'{"protocolVersion": 1, "resource": 1, "metrics": {"a": [1]}}',
              b"[" * 65_000]
    statuses = []
    for body in bodies:
        statuses.append(status_of(raw_request(server, request_bytes(b"/v1/trials/1/reports",
                                                                    body, token))))
    for raw in (
        b"POST /v1/trials/1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: " + token
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",  # bad chunk
        b"POST /v1/trials/1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/trials/" + b"9" * 9000 + b"/reports HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ):
        statuses.append(status_of(raw_request(server, raw)))
    assert all(400 <= s < 500 for s in statuses), statuses
    assert sink.received == []
    # Malformed HTTP is logged as one warning line, never as an error with a traceback.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "refused a malformed HTTP request" in caplog.text


# -- connections ----------------------------------------------------------------------------------

def _closed_within(conn: socket.socket, seconds: float) -> bytes:
    conn.settimeout(seconds)
    data = b""
    while True:
        chunk = conn.recv(65536)  # socket.timeout fails the test: the server kept it open
        if not chunk:
            return data
        data += chunk


def test_idle_connection_is_closed(served):
    _, server = served
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        assert _closed_within(conn, 5.0) == b""


def test_half_open_request_stalled_in_its_headers_is_closed(served):
    _, server = served
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"POST /v1/trials/1/reports HTTP/1.1\r\nHost: x\r\nAuthoriz")
        assert _closed_within(conn, 5.0) == b""


def test_stalled_body_gets_408_and_is_closed(served):
    sink, server = served
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"POST /v1/trials/1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + sink.tokens["1"].encode() + b"\r\nContent-Length: 100\r\n\r\n{\"pro")
        response = _closed_within(conn, 5.0)
    assert status_of(response) == 408
    assert sink.received == []


def test_client_reconnects_quietly_after_the_idle_close(served, caplog):
    sink, server = served
    client = ReportClient(server.url, "1", sink.tokens["1"])
    with caplog.at_level(logging.WARNING, logger="hwtune.trainer"):
        client.report(1, {"val_error": 0.4})
        time.sleep(1.0)  # longer than the idle timeout: the server has closed the connection
        client.report(2, {"val_error": 0.3})
    client.close()
    assert [p.resource for _, p in sink.received] == [1, 2]
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]

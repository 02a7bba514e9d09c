"""Parsing and checking of report bodies (protocol v1), independent of any server."""

from __future__ import annotations

import json

import pytest

from hwtune.api.records import Decision
from hwtune.report.protocol import (
    MAX_METRICS,
    PROTOCOL_VERSION,
    ProtocolError,
    ReportReply,
    encode_report,
    parse_report,
    reports_path,
)


def body(**fields) -> bytes:
    data = {"protocolVersion": PROTOCOL_VERSION, "resource": 2, "metrics": {"val_error": 0.25}}
    data.update(fields)
    return json.dumps(data).encode()


def test_valid_report_parses_with_float_metrics():
    payload = parse_report(body(resource=3, metrics={"val_error": 1, "loss": 0.5}))
    assert payload.resource == 3
    assert payload.metrics == {"val_error": 1.0, "loss": 0.5}
    assert all(isinstance(v, float) for v in payload.metrics.values())


def test_encode_then_parse_round_trips():
    payload = parse_report(encode_report(7, {"acc": 0.9, "train/loss": 0.1}))
    assert payload.resource == 7 and payload.metrics == {"acc": 0.9, "train/loss": 0.1}


@pytest.mark.parametrize(
    "raw, status, field",
    [
        (b"{not json", 400, ""),
        (b"[1, 2]", 400, ""),
        (b"\xff\xfe", 400, ""),
        (b'{"protocolVersion": 1, "resource": 1, "metrics": {"x": NaN}}', 422, "metrics"),
        (b'{"protocolVersion": 1, "resource": 1, "metrics": {"x": Infinity}}', 422, "metrics"),
        (body(protocolVersion=2), 422, "protocolVersion"),
        (body(protocolVersion="1"), 422, "protocolVersion"),
        (json.dumps({"resource": 1, "metrics": {"x": 1}}).encode(), 422, "protocolVersion"),
        (json.dumps({"protocolVersion": 1, "metrics": {"x": 1}}).encode(), 422, "resource"),
        (json.dumps({"protocolVersion": 1, "resource": 1}).encode(), 422, "metrics"),
        (body(resource=0), 422, "resource"),
        (body(resource=-3), 422, "resource"),
        (body(resource=1.5), 422, "resource"),
        (body(resource="2"), 422, "resource"),
        (body(resource=True), 422, "resource"),
        (body(metrics=[1, 2]), 422, "metrics"),
        (body(metrics={}), 422, "metrics"),
        (body(metrics={"val_error": "low"}), 422, "metrics.val_error"),
        (body(metrics={"val_error": None}), 422, "metrics.val_error"),
        (body(metrics={"val_error": True}), 422, "metrics.val_error"),
        (b'{"protocolVersion": 1, "resource": 1, "metrics": {"x": 1e400}}', 422, "metrics.x"),
        (body(metrics={"9lives": 1.0}), 422, "metrics.9lives"),
        (body(metrics={"runtime": 3.0}), 422, "metrics.runtime"),
        (body(metrics={"cost": 3.0}), 422, "metrics.cost"),
        (body(metrix={"x": 1}), 422, "metrix"),
    ],
)
def test_malformed_reports_name_the_field(raw, status, field):
    with pytest.raises(ProtocolError) as info:
        parse_report(raw)
    assert info.value.status == status
    assert info.value.field == field
    if field:
        assert str(info.value).startswith(f"{field}: ")


def test_too_many_metrics_refused():
    metrics = {f"m{i}": float(i) for i in range(MAX_METRICS + 1)}
    with pytest.raises(ProtocolError, match="at most"):
        parse_report(body(metrics=metrics))


def test_oversized_body_refused_with_413():
    with pytest.raises(ProtocolError) as info:
        parse_report(b" " * (64 * 1024 + 1))
    assert info.value.status == 413


def test_encode_refuses_nan_before_sending():
    with pytest.raises(ProtocolError, match="finite"):
        encode_report(1, {"x": float("nan")})


def test_reply_round_trip_and_unknown_decision():
    reply = ReportReply(Decision.PAUSE, "rung 3")
    assert ReportReply.from_json(reply.to_json()) == reply
    with pytest.raises(ValueError, match="unknown decision"):
        ReportReply.from_json({"decision": "explode"})


def test_reports_path_quotes_trial_names():
    assert reports_path("7") == "/v1/trials/7/reports"
    assert reports_path("ns/study-1") == "/v1/trials/ns%2Fstudy-1/reports"

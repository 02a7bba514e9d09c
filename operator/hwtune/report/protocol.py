"""Report protocol v1: the wire format between a trainer and the endpoint that decides for it.

A trainer POSTs one JSON object per reached resource level to
``/v1/trials/{trial}/reports`` with ``Authorization: Bearer <per-trial token>``::

    {"protocolVersion": 1, "resource": 3, "metrics": {"val_error": 0.12, "train_loss": 0.4}}

and gets back ``{"decision": "continue" | "pause" | "stop", "reason": "..."}``. The full
description, with every status code, is docs/report-protocol.md.

This module is the one place that parses and checks a payload. It imports only the standard
library and ``hwtune.api.records`` so the trainer SDK can share it inside training images.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from hwtune.api.records import BUILTIN_METRICS, METRIC_NAME_MAX_LENGTH, Decision
from hwtune.api.records import METRIC_NAME_PATTERN as _METRIC_NAME_RULE

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_METRICS",
    "MAX_RESOURCE_LEVEL",
    "METRIC_NAME_PATTERN",
    "PROTOCOL_VERSION",
    "EndpointUnavailableError",
    "ProtocolError",
    "ReportPayload",
    "ReportReply",
    "ReportRejectedError",
    "TrialFinishedError",
    "UnknownTrialError",
    "check_metrics",
    "check_resource",
    "encode_report",
    "parse_report",
    "parse_trial_id",
    "reports_path",
]

PROTOCOL_VERSION = 1
# A report is a handful of numbers; anything near this size is a bug in the trainer.
MAX_BODY_BYTES = 64 * 1024
MAX_METRICS = 256
# The CRD schema's rule (hwtune.api.records), so every objective a study names can be reported.
METRIC_NAME_PATTERN = re.compile(_METRIC_NAME_RULE)
# Levels stay exactly representable as JSON numbers (doubles) everywhere they are stored.
MAX_RESOURCE_LEVEL = 2**53
# A trial id in a URL: the canonical decimal form only. int() would also take "00", "+0", " 0"
# or "٠" (Arabic-Indic zero) and route them all to trial 0.
_TRIAL_ID = re.compile(r"0|[1-9][0-9]{0,17}")
_KNOWN_FIELDS = frozenset({"protocolVersion", "resource", "metrics"})


def parse_trial_id(text: str) -> int:
    """The trial id of a report URL; ProtocolError (400, field ``trial``) unless ``text`` is a
    non-negative decimal integer written canonically (ASCII digits, no sign, no leading zero)."""
    if not isinstance(text, str) or _TRIAL_ID.fullmatch(text) is None:
        raise ProtocolError("must be a trial id: a decimal integer of ASCII digits without sign, "
                            "spaces or leading zeros", field="trial", status=400)
    return int(text)


def reports_path(trial: str) -> str:
    """The URL path a trainer posts to (without any prefix of the endpoint's base URL)."""
    from urllib.parse import quote

    return f"/v1/trials/{quote(str(trial), safe='')}/reports"


class ProtocolError(ValueError):
    """A report the endpoint refuses. ``status`` is the HTTP status it answers with and
    ``field`` the payload field at fault (empty when the body as a whole is wrong)."""

    status = 422

    def __init__(self, message: str, *, field: str = "", status: int | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self)}
        if self.field:
            body["field"] = self.field
        return body


class UnknownTrialError(ProtocolError):
    """No such trial. The endpoint answers it like a wrong token (401), so that a caller without
    a token cannot learn which trial ids exist; sinks may still raise it after authentication."""

    status = 404


class EndpointUnavailableError(ProtocolError):
    """The endpoint cannot record a report now (its disk is full, its study is shutting down):
    503, which clients retry."""

    status = 503


class TrialFinishedError(ProtocolError):
    """The trial is Completed, Stopped or Failed: it must not report any more."""

    status = 409


class ReportRejectedError(ProtocolError):
    """Well-formed, but impossible for this trial (e.g. the resource level went backwards)."""

    status = 422


@dataclass(frozen=True)
class ReportPayload:
    resource: int
    metrics: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "resource": self.resource,
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class ReportReply:
    decision: Decision
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision.value, "reason": self.reason}

    @classmethod
    def from_json(cls, body: Any) -> "ReportReply":
        if not isinstance(body, dict) or "decision" not in body:
            raise ValueError(f"reply is not a decision object: {body!r}")
        try:
            decision = Decision(body["decision"])
        except ValueError:
            raise ValueError(f"reply has an unknown decision {body['decision']!r}") from None
        return cls(decision=decision, reason=str(body.get("reason", "")))


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN/Infinity by default; they are not JSON and never a valid metric.
    raise ProtocolError(f"{name} is not a number JSON allows", field="metrics")


def _is_number(value: Any) -> bool:
    # bool is an int subclass: `true` is not a metric value.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_metrics(metrics: Any) -> dict[str, float]:
    """Validate a metrics mapping; returns it with float values. Shared by the SDK (to fail
    early, in the trainer, with the same message) and the endpoint."""
    if not isinstance(metrics, dict):
        raise ProtocolError("must be an object of metric name to number", field="metrics")
    if not metrics:
        raise ProtocolError("must hold at least one metric", field="metrics")
    if len(metrics) > MAX_METRICS:
        raise ProtocolError(f"holds {len(metrics)} metrics; at most {MAX_METRICS} are allowed",
                            field="metrics")
    checked: dict[str, float] = {}
    for name, value in metrics.items():
        field = f"metrics.{name}"
        if (not isinstance(name, str) or not METRIC_NAME_PATTERN.fullmatch(name)
                or len(name) > METRIC_NAME_MAX_LENGTH):
            raise ProtocolError(
                "metric names start with a letter or '_' and hold letters, digits, '_', '.', "
                "'-' or '/' (at most 128 characters)", field=field)
        if name in BUILTIN_METRICS:
            raise ProtocolError(
                f"{name!r} is measured by hwtune itself; report your own under another name",
                field=field)
        if not _is_number(value):
            raise ProtocolError(f"must be a number, got {type(value).__name__} {value!r}",
                                field=field)
        try:
            as_float = float(value)
        except OverflowError:  # an integer such as 10**400: JSON allows it, a double does not
            raise ProtocolError("is out of the range of a 64-bit float", field=field) from None
        if not math.isfinite(as_float):
            raise ProtocolError(f"must be finite, got {value!r}", field=field)
        checked[name] = as_float
    return checked


def check_resource(resource: Any) -> int:
    if not _is_number(resource) or (isinstance(resource, float) and not resource.is_integer()):
        raise ProtocolError(f"must be an integer >= 1, got {resource!r}", field="resource")
    if resource < 1:
        raise ProtocolError(f"must be >= 1, got {resource!r}", field="resource")
    if resource > MAX_RESOURCE_LEVEL:
        raise ProtocolError(f"must be at most 2**53 ({MAX_RESOURCE_LEVEL})", field="resource")
    return int(resource)


def parse_report(body: bytes | str) -> ReportPayload:
    """Parse and check one report body; raises ProtocolError (400 for a body that is not a JSON
    object, 422 for a well-formed object with a wrong field)."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY_BYTES:
            raise ProtocolError(f"body is {len(body)} bytes; at most {MAX_BODY_BYTES} allowed",
                                status=413)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("body is not UTF-8", status=400) from None
    else:
        text = body
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ProtocolError:
        raise
    except ValueError as exc:  # also an integer of more than sys.get_int_max_str_digits()
        raise ProtocolError(f"body is not valid JSON: {exc}", status=400) from None
    except RecursionError:  # "[[[[..." 64 KiB deep
        raise ProtocolError("body is nested too deeply", status=400) from None
    if not isinstance(data, dict):
        raise ProtocolError(f"body must be a JSON object, got {type(data).__name__}", status=400)
    unknown = sorted(set(data) - _KNOWN_FIELDS)
    if unknown:
        raise ProtocolError(f"unknown field (protocol v{PROTOCOL_VERSION} has "
                            f"{', '.join(sorted(_KNOWN_FIELDS))})", field=unknown[0])
    if "protocolVersion" not in data:
        raise ProtocolError("is required", field="protocolVersion")
    version = data["protocolVersion"]
    if not _is_number(version) or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported version {version!r}; this endpoint speaks "
                            f"{PROTOCOL_VERSION}", field="protocolVersion")
    for required in ("resource", "metrics"):
        if required not in data:
            raise ProtocolError("is required", field=required)
    return ReportPayload(resource=check_resource(data["resource"]),
                         metrics=check_metrics(data["metrics"]))


def encode_report(resource: int, metrics: Mapping[str, float]) -> bytes:
    """The body the SDK sends, checked with the endpoint's own rules so that a bad report fails
    in the trainer, with the same message, instead of on the server."""
    payload = ReportPayload(resource=check_resource(resource), metrics=check_metrics(metrics))
    return json.dumps(payload.to_json(), allow_nan=False, separators=(",", ":")).encode()

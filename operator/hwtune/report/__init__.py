"""The report protocol (``hwtune.report.protocol``, standard library only) and the aiohttp
endpoint that serves it (``hwtune.report.server``; imported explicitly, as it needs aiohttp)."""

from hwtune.report.protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    ReportPayload,
    ReportRejectedError,
    ReportReply,
    TrialFinishedError,
    UnknownTrialError,
    parse_report,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ProtocolError",
    "ReportPayload",
    "ReportRejectedError",
    "ReportReply",
    "TrialFinishedError",
    "UnknownTrialError",
    "parse_report",
]

"""What the engine says about a report, in the report protocol's terms: one mapping for every
backend that serves the endpoint (local, kubernetes), so the same refusal gets the same status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hwtune.engine.errors import InvalidReportError, TrialStateError
from hwtune.engine.errors import UnknownTrialError as EngineUnknownTrial
from hwtune.report.protocol import ReportRejectedError, TrialFinishedError, UnknownTrialError


@contextmanager
def engine_refusals_as_protocol_errors() -> Iterator[None]:
    """Unknown trial -> 401 (answered like a wrong token), a finished trial -> 409, an invalid
    report -> 422. Backend-specific errors are left to the caller."""
    try:
        yield
    except EngineUnknownTrial as exc:
        raise UnknownTrialError(str(exc)) from None
    except TrialStateError as exc:
        raise TrialFinishedError(str(exc)) from None
    except InvalidReportError as exc:
        raise ReportRejectedError(str(exc)) from None

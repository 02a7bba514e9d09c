"""Errors the engine raises at its edge. Report endpoints map them to HTTP answers:
``UnknownTrialError`` -> 404, ``TrialStateError`` -> 409, ``InvalidReportError`` -> 400/422."""

from __future__ import annotations

__all__ = ["InvalidReportError", "StudyError", "TrialStateError", "UnknownTrialError"]


class StudyError(Exception):
    """Base of every engine error."""


class UnknownTrialError(StudyError, KeyError):
    def __init__(self, trial_id: int) -> None:
        self.trial_id = trial_id
        super().__init__(f"trial {trial_id} does not exist in this study")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class TrialStateError(StudyError):
    """The request does not fit the trial's phase (a report for a finished or paused trial,
    resuming a trial that is not paused, ...)."""


class InvalidReportError(StudyError, ValueError):
    """A report is malformed: resource going backwards, NaN, missing objective metric, ..."""

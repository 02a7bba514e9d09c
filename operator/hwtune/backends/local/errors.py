"""Errors of the local backend that the CLI turns into a message (exit code 2), never a
traceback."""

from __future__ import annotations

__all__ = ["WorkdirError"]


class WorkdirError(RuntimeError):
    """The work directory does not fit the request (a study is already there, none to resume,
    the study file changed, another tuner works in it, its event log is damaged)."""

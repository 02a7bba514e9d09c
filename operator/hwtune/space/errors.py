"""The one error type for a bad study spec: it names the field path and the reason.

``SpecError("parameters.lr.min", "must be < max (0.1)")`` prints as
``parameters.lr.min: must be < max (0.1)``. The CLI, the operator's admission messages and the
tests read ``path`` and ``reason`` separately.
"""

from __future__ import annotations

__all__ = ["SpecError", "join_path"]


class SpecError(ValueError):
    """A study (or pool) spec field is invalid. ``path`` is dotted (``budget.maxTrials``,
    ``parameters.lr.scale``, ``objectives[1].goal``)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


def join_path(prefix: str, key: str | int) -> str:
    """``join_path("objectives", 1) == "objectives[1]"``; ``join_path("budget", "maxTrials")``
    is ``"budget.maxTrials"``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key

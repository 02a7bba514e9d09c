"""The one error type for bad input, re-exported where the space raises it.

``SpecError("spec.parameters[lr].min", "must be > 0 for scale: log")`` is a
``hwtune.api.ManifestError`` with one (field path, reason); paths use the API server's notation
(``spec.parameters[lr].min``, ``spec.objectives[1].goal``).
"""

from __future__ import annotations

from hwtune.api._base import ManifestError, SpecError, join_key, join_path

__all__ = ["ManifestError", "SpecError", "join_key", "join_path"]

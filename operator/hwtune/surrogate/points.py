"""Turning a study's trials into the surrogate's points, and the request the model answers.

numpy only (no torch): the engine builds requests here whether the model runs in process or in
the surrogate service. One point is a trial at a budget (resource level) r:

- ``x``: the encoded hyperparameters (``SearchSpace.encode``) and hardware (one-hot);
- ``budget``: r / max resource;
- ``curve``: the trial's target values at levels 1..r-1 (standardised like the targets), padded
  to the maximum with a ``mask``;
- ``checkpoint``: ``[location, level]`` of the weights the trial starts level r from (its
  checkpoint at level r-1; level 0 = its starting weights, e.g. a pretrained model), or None.
  The reader checks that the checkpoint it finds there is of that level.

Targets are losses (smaller is better). With several objectives, each suggestion scalarises them
with random weights (augmented Chebyshev, as ParEGO does): every objective is min-max normalised
over the data, ``s = max_k w_k z_k + 0.05 * sum_k w_k z_k`` with w drawn from a flat Dirichlet
per suggestion, so successive suggestions aim at different parts of the front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import TrialRecord
from hwtune.optimize.context import SearchContext

__all__ = ["PROTOCOL_VERSION", "PointBlock", "RequestError", "Scalariser", "block_from_json",
           "encode_trial"]

PROTOCOL_VERSION = 1


class RequestError(ValueError):
    """A surrogate request is malformed; the message names the field (the service answers 400)."""


@dataclass
class PointBlock:
    """Points as plain arrays (and checkpoint locations)."""

    x: np.ndarray
    budget: np.ndarray
    curve: np.ndarray
    mask: np.ndarray
    checkpoint: list[tuple[str, int] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def empty(cls, dx: int, length: int) -> "PointBlock":
        return cls(np.zeros((0, dx)), np.zeros(0), np.zeros((0, length)), np.zeros((0, length)), [])

    @classmethod
    def stack(cls, rows: Sequence[tuple[np.ndarray, float, np.ndarray, np.ndarray,
                                        tuple[str, int] | None]],
              dx: int, length: int) -> "PointBlock":
        if not rows:
            return cls.empty(dx, length)
        return cls(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=float),
                   np.stack([r[2] for r in rows]), np.stack([r[3] for r in rows]),
                   [r[4] for r in rows])

    def take(self, idx: Sequence[int]) -> "PointBlock":
        idx = list(idx)
        return PointBlock(self.x[idx], self.budget[idx], self.curve[idx], self.mask[idx],
                          [self.checkpoint[i] for i in idx])

    def to_json(self) -> dict[str, Any]:
        return {"x": self.x.tolist(), "budget": self.budget.tolist(), "curve": self.curve.tolist(),
                "mask": self.mask.tolist(),
                "checkpoint": [None if c is None else [c[0], int(c[1])] for c in self.checkpoint]}


def _matrix(data: Mapping[str, Any], key: str, path: str, rows: int | None, cols: int | None
            ) -> np.ndarray:
    if key not in data:
        raise RequestError(f"{path}.{key}: is required")
    try:
        arr = np.asarray(data[key], dtype=float)
    except (TypeError, ValueError):
        raise RequestError(f"{path}.{key}: must be numbers") from None
    if rows is not None and arr.size == 0 and rows == 0:
        return arr.reshape(0, cols or 0) if cols is not None else arr.reshape(0)
    want = 1 if cols is None else 2
    if arr.ndim != want:
        raise RequestError(f"{path}.{key}: must be a {'list' if want == 1 else 'list of lists'} "
                           f"of numbers, got {arr.ndim} dimensions")
    if rows is not None and arr.shape[0] != rows:
        raise RequestError(f"{path}.{key}: expected {rows} rows, got {arr.shape[0]}")
    if cols is not None and arr.shape[1] != cols:
        raise RequestError(f"{path}.{key}: expected {cols} columns, got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise RequestError(f"{path}.{key}: values must be finite")
    return arr


def block_from_json(data: Any, path: str, dx: int, length: int) -> PointBlock:
    if not isinstance(data, Mapping):
        raise RequestError(f"{path}: must be an object")
    budget = _matrix(data, "budget", path, None, None)
    n = int(budget.shape[0])
    x = _matrix(data, "x", path, n, dx)
    curve = _matrix(data, "curve", path, n, length)
    mask = _matrix(data, "mask", path, n, length)
    ckpt = data.get("checkpoint", [None] * n)
    if not isinstance(ckpt, list) or len(ckpt) != n:
        raise RequestError(f"{path}.checkpoint: must be a list of {n} entries")
    out: list[tuple[str, int] | None] = []
    for i, c in enumerate(ckpt):
        if c is None:
            out.append(None)
        elif isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and c[0] \
                and isinstance(c[1], int) and not isinstance(c[1], bool) and c[1] >= 0:
            out.append((c[0], c[1]))
        else:
            raise RequestError(f"{path}.checkpoint[{i}]: must be null or [location, level >= 0], "
                               f"got {c!r}")
    return PointBlock(x, budget, curve, mask, out)


def encode_trial(context: SearchContext, config: Mapping[str, Any], hardware: Any) -> np.ndarray:
    parts = [context.space.encode(config)]
    if len(context.hardware):
        parts.append(context.hardware.encode(hardware))
    return np.concatenate(parts)


class Scalariser:
    """Turns observations into one loss per point (see the module docstring)."""

    def __init__(self, context: SearchContext, weights: np.ndarray | None = None) -> None:
        self.objectives = context.objectives
        k = len(self.objectives)
        self.weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float)
        self.lo = np.zeros(k)
        self.span = np.ones(k)

    def fit(self, losses: np.ndarray) -> "Scalariser":
        if len(losses):
            self.lo = losses.min(axis=0)
            self.span = np.maximum(losses.max(axis=0) - self.lo, 1e-12)
        return self

    def __call__(self, losses: np.ndarray) -> np.ndarray:
        if losses.shape[1] == 1:
            return losses[:, 0].copy()
        z = (losses - self.lo) / self.span * self.weights
        return z.max(axis=1) + 0.05 * z.sum(axis=1)


def observation_losses(context: SearchContext, trial: TrialRecord) -> dict[int, np.ndarray]:
    """resource -> the objectives' losses at that level (levels missing a metric are skipped)."""
    out: dict[int, np.ndarray] = {}
    for obs in trial.observations:
        try:
            out[obs.resource] = np.array(context.losses(obs.metrics), dtype=float)
        except KeyError:
            continue
    return out

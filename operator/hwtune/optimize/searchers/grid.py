"""Grid search: every (config, hardware) pair of the grid once, then None."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, TrialRecord
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.random import as_hardware_space, check_candidates
from hwtune.space import SearchSpace, config_key

__all__ = ["GridSearcher"]


class GridSearcher(Searcher):
    """Walks the grid of ``space.grid(points_per_dim)`` (or the ``candidates`` list) crossed
    with the hardware choices, config-major. ``shuffle=True`` visits the pairs in a random order
    drawn from ``seed`` (useful when the budget covers only part of the grid). Pairs a trial
    already used (``on_trial_add``) are skipped."""

    def __init__(
        self,
        space: SearchSpace,
        hardware: Sequence[Hardware] | None = None,
        seed: int | None = 0,
        *,
        points_per_dim: int = 5,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        shuffle: bool = False,
    ) -> None:
        if points_per_dim < 1:
            raise ValueError(f"points_per_dim must be >= 1, got {points_per_dim}")
        self.space = space
        self.hardware = as_hardware_space(hardware)
        self.candidates = check_candidates(space, candidates)
        self.points_per_dim = points_per_dim
        self._seen: set[tuple] = set()
        self._pairs = self._enumerate()
        if shuffle:
            pairs = list(self._pairs)
            order = np.random.default_rng(seed).permutation(len(pairs))
            self._pairs = iter([pairs[i] for i in order])

    def _enumerate(self) -> Iterator[tuple[dict[str, Any], Hardware | None]]:
        configs = self.candidates if self.candidates is not None else self.space.grid(self.points_per_dim)
        hardware: list[Hardware | None] = list(self.hardware) or [None]
        for config in configs:
            for hw in hardware:
                yield dict(config), hw

    def size(self) -> int:
        """Number of pairs in the full grid."""
        n = len(self.candidates) if self.candidates is not None else self.space.grid_size(self.points_per_dim)
        return n * max(1, len(self.hardware))

    def suggest(self) -> tuple[dict[str, Any], Hardware | None] | None:
        for config, hw in self._pairs:
            key = (config_key(config), hw)
            if key not in self._seen:
                self._seen.add(key)
                return config, hw
        return None

    def on_trial_add(self, trial: TrialRecord) -> None:
        self._seen.add((config_key(trial.config), trial.hardware))

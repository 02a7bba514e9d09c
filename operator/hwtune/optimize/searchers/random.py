"""Random search over (config, hardware): both drawn from one seeded generator."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, TrialRecord
from hwtune.optimize.hardware import HardwareSpace
from hwtune.optimize.searchers.base import Searcher
from hwtune.space import SearchSpace, config_key

__all__ = ["RandomSearcher", "as_hardware_space", "check_candidates"]

log = logging.getLogger(__name__)


def as_hardware_space(hardware: Sequence[Hardware] | None) -> HardwareSpace:
    if isinstance(hardware, HardwareSpace):
        return hardware
    return HardwareSpace(hardware or ())


def check_candidates(space: SearchSpace, candidates: Sequence[Mapping[str, Any]] | None
                     ) -> list[dict[str, Any]] | None:
    """Validate a finite candidate list (e.g. the configs of a benchmark table) and drop
    duplicates, keeping the first."""
    if candidates is None:
        return None
    out: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for i, c in enumerate(candidates):
        clean = space.validate(c, path=f"candidates[{i}]")
        key = config_key(clean)
        if key not in seen:
            seen.add(key)
            out.append(clean)
    if not out:
        raise ValueError("candidates must hold at least one config")
    return out


class RandomSearcher(Searcher):
    """Draws a config (from the space, or uniformly from ``candidates``) and a hardware choice
    with ``np.random.default_rng(seed)``, never proposing a (config, hardware) pair twice, nor
    one a trial already used (``on_trial_add``). Returns None once a finite space is exhausted.

    Deterministic: the same seed and the same sequence of calls give the same suggestions."""

    def __init__(
        self,
        space: SearchSpace,
        hardware: Sequence[Hardware] | None = None,
        seed: int | None = 0,
        *,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        max_retries: int = 100,
    ) -> None:
        if max_retries < 1:
            raise ValueError(f"max_retries must be >= 1, got {max_retries}")
        self.space = space
        self.hardware = as_hardware_space(hardware)
        self.candidates = check_candidates(space, candidates)
        self.seed = seed
        self.max_retries = max_retries
        self._rng = np.random.default_rng(seed)
        self._seen: set[tuple] = set()
        n_configs = len(self.candidates) if self.candidates is not None else self.space.size
        self._total = None if n_configs is None else n_configs * max(1, len(self.hardware))

    def _key(self, config: Mapping[str, Any], hardware: Hardware | None) -> tuple:
        return (config_key(config), hardware)

    def _draw(self) -> tuple[dict[str, Any], Hardware | None]:
        if self.candidates is not None:
            config = dict(self.candidates[int(self._rng.integers(len(self.candidates)))])
        else:
            config = self.space.sample(self._rng)
        return config, self.hardware.sample(self._rng)

    def suggest(self) -> tuple[dict[str, Any], Hardware | None] | None:
        if self._total is not None and len(self._seen) >= self._total:
            return None
        for _ in range(self.max_retries):
            config, hardware = self._draw()
            key = self._key(config, hardware)
            if key not in self._seen:
                self._seen.add(key)
                return config, hardware
        if self._total is not None:
            return self._first_unseen()
        log.warning("random searcher found no new config in %d draws; giving up", self.max_retries)
        return None

    def _first_unseen(self) -> tuple[dict[str, Any], Hardware | None] | None:
        """A nearly exhausted finite space: pick uniformly among what is left."""
        configs = self.candidates if self.candidates is not None else list(self._all_configs())
        hardware: list[Hardware | None] = list(self.hardware) or [None]
        left = [(c, h) for c in configs for h in hardware if self._key(c, h) not in self._seen]
        if not left:
            return None
        config, hw = left[int(self._rng.integers(len(left)))]
        self._seen.add(self._key(config, hw))
        return dict(config), hw

    def _all_configs(self):
        sizes = [d.size or 1 for d in self.space.domains.values()]
        return self.space.grid(max(sizes))

    def on_trial_add(self, trial: TrialRecord) -> None:
        self._seen.add(self._key(trial.config, trial.hardware))

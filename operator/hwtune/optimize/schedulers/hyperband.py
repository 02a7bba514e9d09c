"""Asynchronous Hyperband: several ASHA brackets with different grace periods.

Bracket b starts deciding at ``r_min * eta^b``: bracket 0 is plain ASHA, the last bracket has
no rung below ``r_max`` and runs its trials to the end. Each new trial is placed in a bracket at
random, with the probability of bracket b proportional to the number of configurations that
synchronous Hyperband (Li et al., 2018) starts in it: ``(K + 1) / (K - b + 1) * eta^(K - b)``
with K the number of rungs of bracket 0, so aggressive brackets get most trials.

The draw uses a generator seeded with ``(seed, trial_id)``: the bracket of a trial is a pure
function of the study seed and the trial id, so replaying the trial records rebuilds the same
assignment whatever order suggestions were made in.

Only the stopping variant exists: in the promotion variant a new trial's first target level
would have to be fixed in ``suggest()``, before the trial (and so its bracket) exists.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hwtune.api.records import Objective, TrialRecord
from hwtune.optimize.schedulers.asha import ASHAScheduler
from hwtune.optimize.searchers.base import Searcher

__all__ = ["HyperbandScheduler", "bracket_probabilities"]


def bracket_probabilities(num_rungs: int, reduction_factor: float, brackets: int) -> np.ndarray:
    """Probability of each of the first ``brackets`` brackets (see the module docstring)."""
    K = num_rungs
    weights = np.array(
        [(K + 1) / (K - b + 1) * reduction_factor ** (K - b) for b in range(brackets)], dtype=float
    )
    return weights / weights.sum()


class HyperbandScheduler(ASHAScheduler):
    """Stopping-variant Hyperband over ``brackets`` ASHA brackets (default: all K + 1)."""

    def __init__(
        self,
        searcher: Searcher,
        objectives: Sequence[Objective],
        *,
        resource_min: int = 1,
        resource_max: int,
        reduction_factor: float = 3,
        brackets: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            searcher,
            objectives,
            resource_min=resource_min,
            resource_max=resource_max,
            reduction_factor=reduction_factor,
            promotion=False,
        )
        most = len(self.levels) + 1
        if brackets is None:
            brackets = most
        is_int = isinstance(brackets, (int, np.integer)) and not isinstance(brackets, bool)
        if not is_int or not 1 <= brackets <= most:
            raise ValueError(
                f"algorithm.settings.brackets: must be an integer in [1, {most}] for "
                f"resource {resource_min}..{resource_max} with eta {reduction_factor}, got {brackets!r}"
            )
        self.seed = int(seed)
        self.num_brackets = int(brackets)
        self.bracket_probabilities = bracket_probabilities(
            len(self.levels), reduction_factor, self.num_brackets
        )
        self._brackets = [self._make_rungs(self.levels[b:]) for b in range(self.num_brackets)]

    def _assign_bracket(self, trial: TrialRecord) -> int:
        if trial.trial_id < 0:
            raise ValueError(f"trial {trial.trial_id}: Hyperband needs non-negative trial ids")
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, trial.trial_id])
        return int(rng.choice(self.num_brackets, p=self.bracket_probabilities))

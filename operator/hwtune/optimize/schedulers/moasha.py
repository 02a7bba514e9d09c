"""MO-ASHA (Schmucker et al. 2020; Salinas et al. 2021, "A multi-objective perspective on
jointly tuning hardware and hyperparameters"): ASHA whose rung ranking is non-dominated sorting
over every objective (quality, runtime, cost, ...), with a tie-break inside each front.

The rule at a rung is ASHA's with the multi-objective order: a reporting trial is kept iff its
position in (front, tie-break) order among the n results recorded at the rung, itself included,
is below n / eta. Syne Tune's MOASHA keeps a trial when position / n <= 1 / eta, which keeps one
more trial whenever n is a multiple of eta; hwtune uses the strict form, so that for n = 9 and
eta = 3 exactly three trials (positions 0, 1, 2) pass, as in single-objective ASHA.

The tie-break is the paper's epsilon-net (start at the best point on the first objective, then
farthest-first in normalised objective space) or NSGA-II crowding distance. Objectives are
turned into losses once (``Objective.loss``), so any mix of minimise and maximise works.
"""

from __future__ import annotations

from typing import Sequence

from hwtune.api.records import Objective
from hwtune.optimize.pareto.tiebreak import TieBreak
from hwtune.optimize.schedulers.asha import ASHAScheduler
from hwtune.optimize.searchers.base import Searcher

__all__ = ["MOASHAScheduler"]


class MOASHAScheduler(ASHAScheduler):
    """ASHA ranking by all ``objectives`` (stopping variant, or promotion with ``promotion``)."""

    def __init__(
        self,
        searcher: Searcher,
        objectives: Sequence[Objective],
        *,
        resource_min: int = 1,
        resource_max: int,
        reduction_factor: float = 3,
        promotion: bool = False,
        tie_break: TieBreak | str = TieBreak.EPSILON_NET,
    ) -> None:
        # Parsed before the base class builds the rungs, which need it.
        self._tie_break = TieBreak.parse(tie_break, field="algorithm.settings.tieBreak")
        super().__init__(
            searcher,
            objectives,
            resource_min=resource_min,
            resource_max=resource_max,
            reduction_factor=reduction_factor,
            promotion=promotion,
        )

    @property
    def ranked_objectives(self) -> tuple[Objective, ...]:
        return self.objectives

    @property
    def tie_break(self) -> TieBreak:
        return self._tie_break

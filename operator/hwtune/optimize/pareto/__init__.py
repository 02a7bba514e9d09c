"""Multi-objective core: non-dominated sorting, tie-breaks inside a front, hypervolume.

All functions take an ``(n, m)`` loss matrix (minimise every column); build it from metric
dicts with :func:`to_loss_matrix`, which applies each objective's goal once.
"""

from hwtune.optimize.pareto.hypervolume import default_reference_point, hypervolume
from hwtune.optimize.pareto.nondominated import (
    as_loss_matrix,
    dominance_matrix,
    dominates,
    nondominated_fronts,
    nondominated_ranks,
    pareto_front,
    pareto_front_mask,
    to_loss_matrix,
)
from hwtune.optimize.pareto.tiebreak import (
    EpsilonNet,
    TieBreak,
    crowding_distance,
    crowding_order,
    epsilon_net_order,
    normalize_columns,
    position_in_order,
    rank_multiobjective,
    within_cutoff,
)

__all__ = [
    "EpsilonNet",
    "TieBreak",
    "as_loss_matrix",
    "crowding_distance",
    "crowding_order",
    "default_reference_point",
    "dominance_matrix",
    "dominates",
    "epsilon_net_order",
    "hypervolume",
    "nondominated_fronts",
    "nondominated_ranks",
    "normalize_columns",
    "pareto_front",
    "pareto_front_mask",
    "position_in_order",
    "rank_multiobjective",
    "to_loss_matrix",
    "within_cutoff",
]

"""Hand-checked non-dominated sorting, front extraction, tie-breaks and total orders."""

import math

import numpy as np
import pytest

from hwtune.api.records import Goal, Objective
from hwtune.optimize.pareto import (
    TieBreak,
    crowding_distance,
    crowding_order,
    dominance_matrix,
    dominates,
    epsilon_net_order,
    nondominated_fronts,
    nondominated_ranks,
    normalize_columns,
    pareto_front,
    pareto_front_mask,
    position_in_order,
    rank_multiobjective,
    to_loss_matrix,
)

# 2-D example: fronts worked out by hand (index 7 duplicates index 0).
LOSSES_2D = np.array(
    [[1, 5], [2, 3], [3, 1], [2, 4], [4, 4], [3, 3], [5, 5], [1, 5]], dtype=float
)
RANKS_2D = [0, 0, 0, 1, 2, 1, 3, 0]


def test_ranks_of_a_hand_checked_2d_matrix():
    assert nondominated_ranks(LOSSES_2D).tolist() == RANKS_2D


def test_fronts_list_indices_by_front():
    fronts = nondominated_fronts(LOSSES_2D)
    assert [f.tolist() for f in fronts] == [[0, 1, 2, 7], [3, 5], [4], [6]]


def test_ranks_of_a_hand_checked_3d_matrix():
    losses = [[1, 2, 3], [3, 2, 1], [2, 2, 2], [2, 3, 3], [3, 3, 3]]
    assert nondominated_ranks(losses).tolist() == [0, 0, 0, 1, 2]


def test_single_objective_fronts_are_distinct_values_and_ties_share_a_front():
    assert nondominated_ranks([[3.0], [1.0], [3.0], [2.0]]).tolist() == [2, 0, 2, 1]


def test_duplicates_never_dominate_each_other():
    assert not dominates([1, 1], [1, 1])
    assert nondominated_ranks([[1, 1], [1, 1], [2, 2]]).tolist() == [0, 0, 1]


def test_dominates_needs_one_strict_improvement():
    assert dominates([1, 2], [1, 3])
    assert not dominates([1, 3], [1, 2])
    assert not dominates([0, 3], [1, 2])
    with pytest.raises(ValueError, match="shapes"):
        dominates([1, 2], [1, 2, 3])


def test_dominance_matrix_matches_pairwise_definition():
    D = dominance_matrix(LOSSES_2D)
    for i in range(len(LOSSES_2D)):
        for j in range(len(LOSSES_2D)):
            assert D[i, j] == dominates(LOSSES_2D[i], LOSSES_2D[j])


def test_pareto_front_mask_and_indices():
    assert pareto_front(LOSSES_2D).tolist() == [0, 1, 2, 7]
    assert pareto_front_mask(LOSSES_2D).tolist() == [r == 0 for r in RANKS_2D]


def test_front_mask_handles_ties_on_either_axis():
    # (2,2) ties (1,2) on y and loses on x; (1,3) ties it on x; the duplicate (1,2) stays.
    losses = [[1, 2], [2, 2], [1, 2], [1, 3], [0, 9]]
    assert pareto_front_mask(losses).tolist() == [True, False, True, False, True]
    assert pareto_front_mask([[1, 2, 0], [1, 2, 1], [1, 2, 0]]).tolist() == [True, False, True]


def test_empty_input_gives_empty_results():
    assert nondominated_ranks(np.empty((0, 2))).tolist() == []
    assert nondominated_fronts(np.empty((0, 2))) == []
    assert pareto_front(np.empty((0, 3))).tolist() == []


def test_infinite_losses_sort_last():
    ranks = nondominated_ranks([[1.0, math.inf], [2.0, 2.0], [math.inf, math.inf]])
    assert ranks.tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    "bad, message",
    [([[1.0, float("nan")]], "NaN at point 0, objective 1"), ([1.0, 2.0], "2-D"), ([[]], "at least one")],
)
def test_bad_loss_matrices_are_refused_with_a_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        nondominated_ranks(bad)


def test_to_loss_matrix_negates_maximised_objectives_once():
    objectives = [Objective("accuracy", Goal.MAXIMIZE), Objective("cost")]
    rows = [{"accuracy": 0.9, "cost": 2.0}, {"accuracy": 0.5, "cost": 1.0, "extra": 7.0}]
    assert to_loss_matrix(rows, objectives).tolist() == [[-0.9, 2.0], [-0.5, 1.0]]


def test_to_loss_matrix_names_the_missing_metric():
    with pytest.raises(ValueError, match=r"rows\[1\]: missing objective metric 'cost'"):
        to_loss_matrix([{"cost": 1.0}, {"loss": 2.0}], [Objective("cost")])


# ---- tie-breaks ---------------------------------------------------------------------------

# Already in [0, 1]. By hand: start at the best first objective (index 2, (0, 1)); farthest from
# it is index 4 (1, 0) at sqrt(2); then index 0 (0.5, 0.5) at 0.707 from both; then index 3 at
# 0.354 beats index 1 at 0.141 (its distance to (1, 0)).
FRONT = np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0], [0.25, 0.75], [1.0, 0.0]])


def test_epsilon_net_order_hand_checked():
    assert epsilon_net_order(FRONT).tolist() == [2, 4, 0, 3, 1]


def test_epsilon_net_is_invariant_to_objective_scale_and_shift():
    scaled = FRONT * np.array([3.0, 250.0]) + np.array([-7.0, 1000.0])
    assert epsilon_net_order(scaled).tolist() == [2, 4, 0, 3, 1]


def test_epsilon_net_can_start_from_another_objective():
    assert epsilon_net_order(FRONT, start_objective=1).tolist()[0] == 4


def test_normalize_columns_keeps_infinities_extreme_and_constant_columns_at_zero():
    out = normalize_columns([[0.0, 5.0], [2.0, 5.0], [math.inf, 5.0]])
    assert out.tolist() == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]


def test_crowding_distance_hand_checked():
    # obj0 range 5: (2,3) gets (4-1)/5 = 0.6 and (4,2) gets (6-2)/5 = 0.8
    # obj1 range 4: (2,3) gets (5-2)/4 = 0.75 and (4,2) gets (3-1)/4 = 0.5
    points = [[1, 5], [2, 3], [4, 2], [6, 1]]
    distance = crowding_distance(points)
    assert math.isinf(distance[0]) and math.isinf(distance[3])
    assert distance[1] == pytest.approx(1.35)
    assert distance[2] == pytest.approx(1.30)
    assert crowding_order(points).tolist() == [0, 3, 1, 2]


def test_crowding_of_two_points_is_infinite():
    assert np.isinf(crowding_distance([[0, 1], [1, 0]])).all()


# Mixed goals (accuracy maximised, cost minimised); worked through in the MO-ASHA tests too.
ACC_COST = [
    (0.90, 4.0), (0.80, 1.0), (0.85, 2.0), (0.70, 3.0), (0.95, 8.0),
    (0.60, 0.5), (0.88, 5.0), (0.75, 1.5), (0.50, 6.0),
]


def _acc_cost_losses():
    objectives = [Objective("acc", Goal.MAXIMIZE), Objective("cost")]
    return to_loss_matrix([{"acc": a, "cost": c} for a, c in ACC_COST], objectives)


def test_rank_multiobjective_by_fronts_then_epsilon_net():
    # Fronts: {0,1,2,4,5}, {6,7}, {3}, {8}. Inside front 0 (normalised over it) the net starts
    # at the most accurate (4), then the cheapest (5), then 2 (0.742 from both), 0, 1.
    losses = _acc_cost_losses()
    assert nondominated_ranks(losses).tolist() == [0, 0, 0, 2, 0, 0, 1, 1, 3]
    assert rank_multiobjective(losses).tolist() == [4, 5, 2, 0, 1, 6, 7, 3, 8]


def test_rank_multiobjective_with_crowding():
    # Crowding in front 0: 4 and 5 are extremes; 0 has 0.286 + 0.8, 1 has 0.714 + 0.2, 2 has
    # 0.286 + 0.4.
    order = rank_multiobjective(_acc_cost_losses(), TieBreak.CROWDING)
    assert order.tolist() == [4, 5, 0, 1, 2, 6, 7, 3, 8]


@pytest.mark.parametrize("tie_break", ["epsilon-net", "crowding"])
def test_position_in_order_agrees_with_full_order(tie_break):
    rng = np.random.default_rng(7)
    losses = rng.integers(0, 6, size=(60, 3)).astype(float)
    order = rank_multiobjective(losses, tie_break).tolist()
    for index in range(len(losses)):
        assert position_in_order(losses, index, tie_break) == order.index(index)


def test_unknown_tie_break_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown tie-break 'random'; expected one of epsilon-net, crowding"):
        rank_multiobjective([[1, 2]], "random")


@pytest.mark.parametrize("tie_break", ["epsilon-net", "crowding"])
def test_limited_order_is_a_prefix_of_the_full_order(tie_break):
    rng = np.random.default_rng(3)
    losses = rng.uniform(size=(300, 3))
    full = rank_multiobjective(losses, tie_break)
    for limit in (0, 1, 7, 100, 300, 400):
        assert rank_multiobjective(losses, tie_break, limit=limit).tolist() == full[:limit].tolist()

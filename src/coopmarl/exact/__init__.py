"""Exact solvers for tabular games, and the tabular learners that use them."""

from coopmarl.exact.solve import (Evaluation, Solution, evaluate, joint_policy, optimal_joint_mask, p_optimal,
                                  regret, solve, state_visitation, uniform_policy)

__all__ = ["Evaluation", "Solution", "evaluate", "joint_policy", "optimal_joint_mask", "p_optimal", "regret",
           "solve", "state_visitation", "uniform_policy"]

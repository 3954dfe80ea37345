"""Executable theory: every theorem behind the methods, checked on exact tabular MDPs.

``python -m trpojax.verify [--mdps N] [--seed S] [--json PATH]`` draws N random MDPs, computes exact
values, visitations, gradients and Fisher matrices with :mod:`trpojax.core.tabular` in float64, feeds them to
one checker per statement and prints a table: statement, instances, worst relative error (identities) or
worst violation value - bound (bounds, <= 0 when they hold), whether it holds, and for bounds the median
slack bound - value and the largest ratio value / bound. Exit code 0 when all hold, 1 naming the first
that fails, 2 for bad arguments (one line, nothing written).

Each checker is a pure host-side function of the exact quantities it needs (a visitation, advantages, a
divergence, a margin ...) returning a :class:`Check`, so a test can hand it a deliberately wrong input and
watch it fail. Sources: Sutton et al. (2000) for the policy gradient theorem and compatible function
approximation; Kakade & Langford (2002) for the performance difference; Schulman et al. (2015, TRPO:
Theorem 1, the coupling Lemmas of its Appendix A, numbered 2.3-2.5 here as in the issue, and Appendix C
for the step); Fatkhullin et al. (2023) for g(tau, theta), B(tau, theta) and the variance bound.
docs/theory.md states each one, with the derivation of M_g = sqrt(2) and the table of a default run.

Modules: :mod:`~trpojax.verify.checks` (the checkers, :class:`Check` and the tolerances),
:mod:`~trpojax.verify.quantities` (the exact quantities they consume), :mod:`~trpojax.verify.suite`
(instances, :func:`run_suite`, :class:`Row`) and :mod:`~trpojax.verify.cli` (:func:`main`, the table).
Their public names are re-exported here.
"""

from trpojax.verify.checks import (
    BOUND_ATOL,
    CG_RTOL,
    IDENTITY_RTOL,
    MAX_RATIO_GROWTH,
    NUM_STANDARD_ERRORS,
    TABULAR_SCORE_BOUND,
    Check,
    check_advantage_bound,
    check_compatible_approximation,
    check_conjugate_gradient,
    check_gradient_variance,
    check_kl_quadratic,
    check_monotonic_improvement,
    check_monte_carlo_mean,
    check_performance_difference,
    check_policy_gradient,
    check_state_shift_bound,
    check_surrogate_first_order,
    check_surrogate_gap,
    check_trpo_lower_bound,
    check_trust_region_kkt,
    check_trust_region_optimality,
    fit_compatible_critic,
    penalty_coefficient,
    policy_gradient_expectation,
    trust_region_step,
)
from trpojax.verify.cli import (
    format_table,
    main,
)
from trpojax.verify.quantities import (
    SHIFT_STEPS,
    TRAJECTORY_STEPS,
    EstimatorQuantities,
    PairQuantities,
    PolicyQuantities,
    TrustRegionQuantities,
    estimator_quantities,
    improvement_path,
    pair_quantities,
    policy_quantities,
    state_distributions,
    tabular_score,
    trust_region_quantities,
)
from trpojax.verify.suite import (
    ESTIMATOR_GAMMA,
    ESTIMATOR_HORIZON,
    ESTIMATOR_MDPS,
    ESTIMATOR_TRAJECTORIES,
    FAR_SCALE,
    FISHER_DAMPING,
    IMPROVEMENT_INNER,
    IMPROVEMENT_ITERS,
    IMPROVEMENT_LEARNING_RATE,
    NEAR_SCALE,
    NUM_ACTIONS,
    NUM_DIRECTIONS,
    NUM_SCALES,
    NUM_STATES,
    STATEMENTS,
    TRUST_REGION_DELTA,
    Row,
    run_suite,
    summarise,
)

__all__ = [
    "IDENTITY_RTOL",
    "CG_RTOL",
    "BOUND_ATOL",
    "NUM_STANDARD_ERRORS",
    "MAX_RATIO_GROWTH",
    "TABULAR_SCORE_BOUND",
    "Check",
    "policy_gradient_expectation",
    "check_policy_gradient",
    "fit_compatible_critic",
    "check_compatible_approximation",
    "check_performance_difference",
    "check_surrogate_first_order",
    "check_advantage_bound",
    "check_state_shift_bound",
    "check_surrogate_gap",
    "penalty_coefficient",
    "check_trpo_lower_bound",
    "check_monotonic_improvement",
    "trust_region_step",
    "check_trust_region_kkt",
    "check_trust_region_optimality",
    "check_conjugate_gradient",
    "check_kl_quadratic",
    "check_monte_carlo_mean",
    "check_gradient_variance",
    "SHIFT_STEPS",
    "TRAJECTORY_STEPS",
    "tabular_score",
    "state_distributions",
    "PolicyQuantities",
    "policy_quantities",
    "PairQuantities",
    "pair_quantities",
    "improvement_path",
    "TrustRegionQuantities",
    "trust_region_quantities",
    "EstimatorQuantities",
    "estimator_quantities",
    "NUM_STATES",
    "NUM_ACTIONS",
    "NEAR_SCALE",
    "FAR_SCALE",
    "TRUST_REGION_DELTA",
    "FISHER_DAMPING",
    "NUM_DIRECTIONS",
    "NUM_SCALES",
    "IMPROVEMENT_ITERS",
    "IMPROVEMENT_INNER",
    "IMPROVEMENT_LEARNING_RATE",
    "ESTIMATOR_MDPS",
    "ESTIMATOR_HORIZON",
    "ESTIMATOR_GAMMA",
    "ESTIMATOR_TRAJECTORIES",
    "Row",
    "summarise",
    "STATEMENTS",
    "run_suite",
    "format_table",
    "main",
]

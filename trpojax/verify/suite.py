"""The suite: random instances, the exact quantities, one checker per statement and one row per statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax.core.lqr import default_system
from trpojax.core.tabular import MDP, random_mdp
from trpojax.verify.checks import (
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
    trust_region_step,
)
from trpojax.verify.lqr import (
    DECREMENT_STEP_SIZE,
    LINEARISATION_NEXT_ACTIONS,
    LQR_GAIN_SCALE,
    LQR_GAMMA,
    NTD_DRAWS,
    QUADRATIC_NET,
    SQUARE_NET,
    check_critic_matrix,
    check_critic_misses,
    check_data_vector,
    check_excitation_persists,
    check_excitation_vanishes,
    check_gain,
    check_lyapunov_decrement,
    check_normalized_step,
    check_td_linearization,
    initial_weights,
    learned_policy_iteration,
    lqr_oracles,
    lqr_target,
    ntd_quantities,
    quadratic_coefficients,
    random_inputs,
    run_critic,
)
from trpojax.verify.quantities import (
    SHIFT_STEPS,
    estimator_quantities,
    improvement_path,
    pair_quantities,
    policy_quantities,
    trust_region_quantities,
)

NUM_STATES = 6
NUM_ACTIONS = 3
NEAR_SCALE = 0.1  # pi' = softmax(theta + 0.1 N(0, I)): a small step
FAR_SCALE = 2.0  # pi' = softmax(2 N(0, I)), independent of pi: a large one
TRUST_REGION_DELTA = 0.01
FISHER_DAMPING = 1e-3
NUM_DIRECTIONS = 256
NUM_SCALES = 11  # ||Delta|| = 1, 1/2, ..., 2^-10
IMPROVEMENT_ITERS = 8
IMPROVEMENT_INNER = 200
IMPROVEMENT_LEARNING_RATE = 0.01
ESTIMATOR_MDPS = 3
ESTIMATOR_HORIZON = 20
ESTIMATOR_GAMMA = 0.9
ESTIMATOR_TRAJECTORIES = 4000


class Row(NamedTuple):
    """One statement over all instances: a line of the table and of the JSON output.

    Attributes:
        statement: short name.
        kind: "identity" (worst = largest relative error) or "bound" (worst = largest value - bound).
        instances: number of instances checked.
        worst: largest relative error, or largest value - bound (<= 0 when the bound held everywhere).
        holds: whether every instance held.
        median_slack: bounds only: median over instances of bound - value; None for identities.
        max_ratio: bounds only: largest value / bound over instances with bound > 0; None otherwise.
    """

    statement: str
    kind: str
    instances: int
    worst: float
    holds: bool
    median_slack: float | None
    max_ratio: float | None


def _random_mdps(key: jax.Array, num: int) -> MDP:
    """[num]-batched random MDPs from diffuse to near-deterministic, gamma ~ U[0.5, 0.95].

    Each MDP of ``random_mdp`` (rows of P uniform on the simplex) has its rows sharpened to P^k / sum P^k
    with k ~ U[1, 6], which concentrates the transitions on a few next states.
    """
    key_mdp, key_gamma, key_power = jax.random.split(key, 3)
    gammas = jax.random.uniform(key_gamma, (num,), minval=0.5, maxval=0.95)
    powers = jax.random.uniform(key_power, (num,), minval=1.0, maxval=6.0)

    def one(k, gamma, power):
        mdp = random_mdp(k, NUM_STATES, NUM_ACTIONS, gamma)
        sharp = mdp.P**power
        return mdp._replace(P=sharp / jnp.sum(sharp, axis=-1, keepdims=True))

    return jax.vmap(one)(jax.random.split(key_mdp, num), gammas, powers)


def _index(tree, i: int):
    return jax.tree.map(lambda x: np.asarray(x[i]), tree)


def summarise(statement: str, kind: str, checks: Sequence[Check]) -> Row:
    """Aggregate the checks of one statement into a table row (see :class:`Row`)."""
    values = np.array([c.value for c in checks], np.float64)
    bounds = np.array([c.bound for c in checks], np.float64)
    holds = all(c.holds for c in checks)
    if kind == "identity":
        return Row(statement, kind, len(checks), float(values.max()), holds, None, None)
    positive = bounds > 0
    max_ratio = float(np.max(values[positive] / bounds[positive])) if positive.any() else None
    return Row(
        statement,
        kind,
        len(checks),
        float(np.max(values - bounds)),
        holds,
        float(np.median(bounds - values)),
        max_ratio,
    )


STATEMENTS: tuple[tuple[str, str, str], ...] = (  # (key, title, kind), in table order
    ("1", "1 policy gradient theorem", "identity"),
    ("2", "2 compatible function approximation", "identity"),
    ("3", "3 performance difference (both forms)", "identity"),
    ("4", "4 L_pi(pi) = eta, grad L = grad eta", "identity"),
    ("5a", "5 L2.3 |Abar| <= 2 alpha eps", "bound"),
    ("5b", "5 L2.4 state shift, t <= 50", "bound"),
    ("5c", "5 L2.5 |eta - L| <= 4a^2 g eps/(1-g)^2", "bound"),
    ("6", "6 TRPO lower bound", "bound"),
    ("7", "7 monotonic improvement", "bound"),
    ("8a", "8 TR step satisfies KKT", "identity"),
    ("8b", "8 TR step beats random feasible", "bound"),
    ("8c", "8 CG solution = H^-1 g", "identity"),
    ("8d", "8 KL - quadratic = O(|Delta|^3)", "bound"),
    ("9a", "9 E[g] = grad J_H (z-score)", "bound"),
    ("9b", "9 E[B v] = hess J_H v (z-score)", "bound"),
    ("9c", "9 E|g - grad J_H|^2 <= r^2 M_g^2/(1-g)^3", "bound"),
    ("10a", "10a d = (g; G w1) closed form", "identity"),
    ("10b", "10b TD linearisation residual O(|dw|^2)", "bound"),
    ("10c", "10c normalised step <= c_p sum|e|", "bound"),
    ("11a", "11a LQR critic -> H_K (rel err)", "identity"),
    ("11b", "11b LQR Lyapunov decrement, linear critic", "bound"),
    ("11c", "11c LQR no excitation without noise", "bound"),
    ("11d", "11d LQR no noise: critic misses H_K", "bound"),
    ("11e", "11e LQR noise: excitation > 0", "bound"),
    ("12", "12 policy iteration -> Riccati gain", "identity"),
)


def _number(key: str) -> int:
    """The statement number of a key: "8d" -> 8, "10a" -> 10."""
    return int(key.rstrip("abcdefghijklmnopqrstuvwxyz"))


def run_suite(num_mdps: int = 20, seed: int = 0) -> list[Row]:
    """Check every statement on ``num_mdps`` random MDPs (float64); returns one row per statement.

    Per MDP: statements 1, 2, 4 at two policies (a moderate and a near-deterministic one); 3, 5, 6 on a
    near and a far pair; 7 along ``IMPROVEMENT_ITERS`` penalised iterations; 8 at one policy. Statement 9
    runs on min(num_mdps, ``ESTIMATOR_MDPS``) further MDPs with ``ESTIMATOR_TRAJECTORIES`` each. Statements
    10-12 (the normalised-TD critic, :mod:`trpojax.verify.lqr`) do not depend on ``num_mdps``.
    """
    if num_mdps < 1:
        raise ValueError(f"num_mdps must be >= 1, got {num_mdps}")
    with jax.enable_x64(True):
        key_tabular, key_estimators = jax.random.split(jax.random.key(seed))
        checks = _tabular_checks(key_tabular, num_mdps)
        checks.update(_estimator_checks(key_estimators, min(num_mdps, ESTIMATOR_MDPS)))
        checks.update(_ntd_checks(seed))
    return [summarise(title, kind, checks[key]) for key, title, kind in STATEMENTS]


def _tabular_checks(key: jax.Array, num_mdps: int) -> dict[str, list[Check]]:
    """Statements 1-8 on ``num_mdps`` random MDPs: exact quantities vmapped over MDPs, then the checkers."""
    keys = jax.random.split(key, 5)
    mdps = _random_mdps(keys[0], num_mdps)
    shape = (num_mdps, NUM_STATES, NUM_ACTIONS)
    theta = jax.random.normal(keys[1], shape)
    theta_near = theta + NEAR_SCALE * jax.random.normal(keys[2], shape)
    theta_far = FAR_SCALE * jax.random.normal(keys[3], shape)
    directions = np.asarray(jax.random.normal(keys[4], (NUM_DIRECTIONS, NUM_STATES * NUM_ACTIONS)))

    batched = lambda f: jax.jit(jax.vmap(f))  # noqa: E731
    twice = jax.tree.map(lambda x: jnp.concatenate([x, x]), mdps)  # instance i and i + num_mdps: MDP i
    policies = batched(policy_quantities)(twice, jnp.concatenate([theta, theta_far]))
    pairs = batched(pair_quantities)(
        twice, jnp.concatenate([theta, theta]), jnp.concatenate([theta_near, theta_far])
    )
    paths = batched(
        lambda m, th: improvement_path(m, th, IMPROVEMENT_ITERS, IMPROVEMENT_INNER, IMPROVEMENT_LEARNING_RATE)
    )(mdps, theta)
    regions = batched(lambda m, th: trust_region_quantities(m, th, FISHER_DAMPING, NUM_SCALES))(mdps, theta)

    checks: dict[str, list[Check]] = {key: [] for key, _, _ in STATEMENTS if _number(key) <= 8}
    for i in range(num_mdps):
        gamma = float(mdps.gamma[i])
        for j in (i, i + num_mdps):
            p = _index(policies, j)
            checks["1"].append(check_policy_gradient(p.grad_eta, p.visitation, p.pi, p.score, p.q, gamma))
            critic = fit_compatible_critic(p.score, p.q, p.visitation[:, None] * p.pi)
            checks["2"].append(
                check_compatible_approximation(p.grad_eta, p.visitation, p.pi, p.score, gamma, critic)
            )
            checks["4"].append(
                check_surrogate_first_order(p.eta, p.surrogate_at_old, p.grad_eta, p.grad_surrogate)
            )
            q = _index(pairs, j)
            eps = np.max(np.abs(q.adv))
            checks["3"].append(
                check_performance_difference(
                    q.eta, q.eta_new, q.pi_new, q.adv, q.visitation_new, q.state_dists_new, gamma
                )
            )
            checks["5a"].append(check_advantage_bound(q.pi_new, q.adv, q.alpha))
            checks["5b"].append(
                check_state_shift_bound(
                    q.state_dists, q.state_dists_new[: SHIFT_STEPS + 1], q.pi_new, q.adv, q.alpha
                )
            )
            checks["5c"].append(check_surrogate_gap(q.eta_new, q.surrogate_new, q.alpha, eps, gamma))
            checks["6"].append(check_trpo_lower_bound(q.eta_new, q.surrogate_new, q.kl, eps, gamma))
        checks["7"].append(check_monotonic_improvement(_index(paths, i)))
        tr = _index(regions, i)
        damped = tr.fisher + FISHER_DAMPING * np.eye(tr.g.shape[0])
        step = trust_region_step(tr.g, damped, TRUST_REGION_DELTA)
        checks["8a"].append(check_trust_region_kkt(tr.g, damped, TRUST_REGION_DELTA, step))
        checks["8b"].append(check_trust_region_optimality(tr.g, damped, TRUST_REGION_DELTA, step, directions))
        checks["8c"].append(check_conjugate_gradient(damped, tr.g, tr.cg_solution))
        checks["8d"].append(check_kl_quadratic(tr.step_norms, tr.kl_values, tr.quadratic_values))
    return checks


def _estimator_checks(key: jax.Array, num_mdps: int) -> dict[str, list[Check]]:
    """Statement 9 on ``num_mdps`` diffuse random MDPs (no sharpening, gamma = ESTIMATOR_GAMMA).

    Diffuse dynamics visit every state often, so each component has a sample spread; one jitted call
    per MDP compiles faster than a vmap over MDPs.
    """
    estimate = jax.jit(estimator_quantities, static_argnums=(4, 5))
    checks: dict[str, list[Check]] = {"9a": [], "9b": [], "9c": []}
    for key_mdp in jax.random.split(key, num_mdps):
        key_mdp, key_theta, key_sample = jax.random.split(key_mdp, 3)
        mdp = random_mdp(key_mdp, NUM_STATES, NUM_ACTIONS, ESTIMATOR_GAMMA)
        theta, direction = jax.random.normal(key_theta, (2, NUM_STATES, NUM_ACTIONS))
        e = estimate(key_sample, mdp, theta, direction, ESTIMATOR_HORIZON, ESTIMATOR_TRAJECTORIES)
        e = jax.tree.map(np.asarray, e)
        r_max = float(jnp.max(jnp.abs(mdp.r)))
        checks["9a"].append(check_monte_carlo_mean(e.gradients, e.exact_gradient))
        checks["9b"].append(check_monte_carlo_mean(e.hessian_products, e.exact_hessian_product))
        checks["9c"].append(
            check_gradient_variance(
                e.gradients, e.exact_gradient, r_max, TABULAR_SCORE_BOUND, ESTIMATOR_GAMMA
            )
        )
    return checks


def _ntd_checks(seed: int) -> dict[str, list[Check]]:
    """Statements 10-12 (:mod:`trpojax.verify.lqr`), drawn from ``numpy.random.default_rng([seed, 10])``.

    10 on random networks of every features x activation; 11 on the default LQR system with K = 0.5 K*:
    11a the quadratic/linear (N = 1) and identity_bias/square (N = 4) critics, 11b-e the exact linear critic
    (quadratic/linear, omega1 held at 1) with noise (11b, 11e: lambda = DECREMENT_STEP_SIZE, one check per
    step) and without (11c-d: 11a's lambda and steps); 12 policy iteration from 11a's quadratic critic.
    """
    rng = np.random.default_rng([seed, 10])
    checks: dict[str, list[Check]] = {key: [] for key, _, _ in STATEMENTS if _number(key) >= 10}
    vector_inputs, step_inputs = random_inputs(rng)
    vectors, steps = jax.tree.map(np.asarray, ntd_quantities(vector_inputs, step_inputs))
    for (_, num_next), q in vectors.items():
        for i in range(NTD_DRAWS):
            checks["10a"].append(check_data_vector(q.autodiff[i], q.closed_form[i]))
            if num_next == LINEARISATION_NEXT_ACTIONS:
                checks["10b"].append(check_td_linearization(q.step_sizes, q.errors[i], q.error[i], q.slope[i]))
    for (dtype, power), directions in steps.items():
        _, e, mask = step_inputs[(dtype, power)]
        e = e.astype(dtype)  # the errors the step was computed with
        checks["10c"].extend(check_normalized_step(*args, power) for args in zip(directions, e, mask, strict=True))

    system = default_system()
    _, optimal_gain, _ = lqr_oracles(system, np.zeros((1, 2)), LQR_GAMMA)
    gain = LQR_GAIN_SCALE * np.asarray(optimal_gain)
    H = np.asarray(lqr_oracles(system, gain, LQR_GAMMA)[0])
    quadratic = run_critic(rng, system, gain, initial_weights(rng, QUADRATIC_NET))
    square = run_critic(rng, system, gain, initial_weights(rng, SQUARE_NET), net=SQUARE_NET)
    checks["11a"] = [check_critic_matrix(quadratic.matrix, H), check_critic_matrix(square.matrix, H)]

    linear_start = initial_weights(rng, QUADRATIC_NET)  # omega1 = 1, held: Q = omega2^T phi2(z)
    linear = run_critic(rng, system, gain, linear_start, step_size=DECREMENT_STEP_SIZE, output_trained=False)
    error = linear.weights[:, QUADRATIC_NET.width:] - quadratic_coefficients(lqr_target(H))
    checks["11b"] = [
        check_lyapunov_decrement(error[k], error[k + 1], gram, DECREMENT_STEP_SIZE)
        for k, gram in enumerate(linear.gram)
    ]
    quiet = run_critic(rng, system, gain, linear_start, sigma=0.0, output_trained=False)
    checks["11c"] = [check_excitation_vanishes(quiet.excitation, quiet.gram)]
    checks["11d"] = [check_critic_misses(quiet.matrix, H)]
    checks["11e"] = [check_excitation_persists(linear.excitation, linear.gram)]

    gains = learned_policy_iteration(rng, system, quadratic, gain)
    checks["12"] = [check_gain(gains[-1], optimal_gain)]
    return checks

"""Executable theory: every theorem behind the methods, checked on exact tabular MDPs.

``python -m trpojax.verify [--mdps N] [--seed S] [--json PATH]`` draws N random MDPs, computes exact
values, visitations, gradients and Fisher matrices with :mod:`trpojax.tabular` in float64, feeds them to
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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from trpojax import estimators, linalg
from trpojax.tabular import (
    MDP,
    action_values,
    advantages,
    discounted_visitation,
    expected_return,
    finite_horizon_return,
    kl_max,
    policy_transition,
    random_mdp,
    sample_trajectories,
    softmax_policy,
    surrogate,
    tv_max,
    unnormalized_visitation,
)

IDENTITY_RTOL = 1e-8  # relative error allowed in an exact identity (float64 solves and autodiff)
CG_RTOL = 1e-6  # relative error allowed between the CG solution and a dense solve
BOUND_ATOL = 1e-10  # round-off allowed when a bound is tight (value <= bound + BOUND_ATOL)
NUM_STANDARD_ERRORS = 5.0  # Monte-Carlo agreement: |mean - exact| <= 5 standard errors
MAX_RATIO_GROWTH = 2.0  # (KL - quadratic) / ||Delta||^3 on small steps vs large steps
TABULAR_SCORE_BOUND = math.sqrt(2.0)  # M_g: ||grad log pi(a|s)|| < sqrt(2) for tabular softmax
SHIFT_STEPS = 50  # Lemma 2.4 is checked for t = 1..SHIFT_STEPS
TRAJECTORY_STEPS = 700  # sum over t < 700 of gamma^t: tail gamma^700 < 3e-16 for gamma <= 0.95


class Check(NamedTuple):
    """One statement on one instance.

    Attributes:
        value: identity: relative error; bound: the quantity bounded (left-hand side).
        bound: identity: the tolerance; bound: right-hand side minus the margin asked for.
        holds: identity: ``value <= bound``; bound: ``value <= bound + BOUND_ATOL`` (round-off).
    """

    value: float
    bound: float
    holds: bool


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


def _identity(error: float, tolerance: float = IDENTITY_RTOL) -> Check:
    return Check(value=float(error), bound=float(tolerance), holds=bool(error <= tolerance))


def _bound(value: float, bound: float, margin: float = 0.0) -> Check:
    limit = float(bound) - float(margin)
    return Check(value=float(value), bound=limit, holds=bool(value <= limit + BOUND_ATOL))


def _relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """||estimate - reference|| / max(||reference||, 1e-12); float."""
    reference = np.asarray(reference, np.float64)
    difference = np.linalg.norm(np.asarray(estimate, np.float64) - reference)
    return float(difference / max(np.linalg.norm(reference), 1e-12))


def _f64(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, np.float64) for a in arrays]


# ----------------------------------------------------------------------------------------------------
# Checkers: pure functions of exact quantities (NumPy, float64). Shapes: S states, A actions, P params.
# ----------------------------------------------------------------------------------------------------


def policy_gradient_expectation(visitation, pi, score, q, gamma) -> np.ndarray:
    """1/(1-gamma) sum_s d(s) sum_a pi(a|s) grad log pi(a|s) q(s, a); [S], [S,A], [S,A,P], [S,A] -> [P]."""
    visitation, pi, score, q = _f64(visitation, pi, score, q)
    return np.einsum("s,sa,sap,sa->p", visitation, pi, score, q) / (1.0 - float(gamma))


def check_policy_gradient(grad, visitation, pi, score, q, gamma) -> Check:
    """Policy gradient theorem (Sutton et al. 2000, Theorem 1).

    grad J(theta) = 1/(1-gamma) E_{s ~ d^pi} E_{a ~ pi(.|s)}[grad log pi_theta(a|s) Q^pi(s, a)].

    Args:
        grad: [P] the gradient to test (autodiff of the exact J).
        visitation: [S] the normalised discounted visitation d^pi = (1-gamma) sum_t gamma^t P(s_t = s).
        pi: [S, A] policy; score: [S, A, P] grad_theta log pi(a|s); q: [S, A] Q^pi; gamma: discount.
    """
    return _identity(_relative_error(grad, policy_gradient_expectation(visitation, pi, score, q, gamma)))


def fit_compatible_critic(score, q, weights) -> np.ndarray:
    """w minimising sum_{s,a} weights(s, a) (q(s, a) - w . grad log pi(a|s))^2 (minimum-norm solution).

    Args:
        score: [S, A, P] features grad log pi(a|s); q: [S, A] targets; weights: [S, A], >= 0
            (d^pi(s) pi(a|s) for the compatible critic of Sutton et al. 2000).

    Returns:
        [P] critic parameters w.
    """
    score, q, weights = _f64(score, q, weights)
    root = np.sqrt(weights).reshape(-1)
    features = score.reshape(-1, score.shape[-1]) * root[:, None]
    return np.linalg.lstsq(features, q.reshape(-1) * root, rcond=None)[0]


def check_compatible_approximation(grad, visitation, pi, score, gamma, critic) -> Check:
    """Compatible function approximation (Sutton et al. 2000, Theorem 2).

    With Q_w(s, a) = w . grad log pi(a|s) and w minimising E_{d^pi, pi}[(Q^pi - Q_w)^2], the gradient
    1/(1-gamma) E_{d^pi, pi}[grad log pi Q_w] equals grad J exactly.

    Args:
        grad: [P] exact gradient; visitation: [S] d^pi; pi: [S, A]; score: [S, A, P]; gamma: discount.
        critic: [P] the critic parameters w (see :func:`fit_compatible_critic`).
    """
    score, critic = _f64(score, critic)
    q_critic = score @ critic
    return _identity(
        _relative_error(policy_gradient_expectation(visitation, pi, score, q_critic, gamma), grad)
    )


def check_performance_difference(eta, eta_new, pi_new, adv, visitation_new, state_dists_new, gamma) -> Check:
    """Performance difference (Kakade & Langford 2002, Lemma 6.1; Schulman et al. 2015, eqs. 1-2).

    eta(pi') - eta(pi) = E_{tau ~ pi'}[sum_t gamma^t A_pi(s_t, a_t)]
                       = sum_t gamma^t sum_s P_{pi'}(s_t = s) Abar(s)      (trajectory form)
                       = sum_s rho_{pi'}(s) Abar(s)                           (visitation form),
    Abar(s) = sum_a pi'(a|s) A_pi(s, a). The value is the larger error of the two forms relative to
    max(|eta(pi)|, |eta(pi')|).

    Args:
        eta, eta_new: eta(pi), eta(pi'); pi_new: [S, A]; adv: [S, A] A_pi.
        visitation_new: [S] the unnormalised rho_{pi'} = sum_t gamma^t P(s_t = s).
        state_dists_new: [T, S] P_{pi'}(s_t = s) for t < T (T large enough that gamma^T is negligible).
        gamma: discount.
    """
    pi_new, adv, visitation_new, state_dists_new = _f64(pi_new, adv, visitation_new, state_dists_new)
    abar = np.sum(pi_new * adv, axis=-1)
    discounts = float(gamma) ** np.arange(state_dists_new.shape[0])
    trajectory_form = discounts @ state_dists_new @ abar
    visitation_form = visitation_new @ abar
    gain = float(eta_new) - float(eta)
    scale = max(abs(float(eta)), abs(float(eta_new)), 1e-12)
    return _identity(max(abs(trajectory_form - gain), abs(visitation_form - gain)) / scale)


def check_surrogate_first_order(eta, surrogate_at_old, grad_eta, grad_surrogate) -> Check:
    """L_pi(pi) = eta(pi) and grad_theta L_{pi_old}(pi_theta) = grad eta(pi_theta) at theta = theta_old.

    Schulman et al. (2015, eqs. 3-4). The value is the larger of the two relative errors.

    Args:
        eta: eta(pi_old); surrogate_at_old: L_{pi_old}(pi_old); grad_eta, grad_surrogate: [P] gradients.
    """
    value_error = abs(float(surrogate_at_old) - float(eta)) / max(abs(float(eta)), 1e-12)
    return _identity(max(value_error, _relative_error(grad_surrogate, grad_eta)))


def check_advantage_bound(pi_new, adv, alpha, margin=0.0) -> Check:
    """Lemma 2.3: max_s |Abar(s)| <= 2 alpha max_{s,a} |A_pi(s, a)|, Abar(s) = sum_a pi'(a|s) A_pi(s, a).

    Schulman et al. (2015, Appendix A, Lemma 2), for alpha-coupled policies; alpha = D_TV^max(pi, pi')
    admits such a coupling.

    Args:
        pi_new: [S, A] pi'; adv: [S, A] A_pi; alpha: D_TV^max(pi, pi'); margin: slack required.
    """
    pi_new, adv = _f64(pi_new, adv)
    abar = np.sum(pi_new * adv, axis=-1)
    return _bound(np.max(np.abs(abar)), 2.0 * float(alpha) * np.max(np.abs(adv)), margin)


def check_state_shift_bound(state_dists, state_dists_new, pi_new, adv, alpha, margin=0.0) -> Check:
    """Lemma 2.4 for t = 1..T: |E_{s_t ~ pi'} Abar - E_{s_t ~ pi} Abar| <= 4 alpha (1-(1-alpha)^t) eps.

    eps = max |A_pi| (Schulman et al. 2015, Appendix A, Lemma 3). The check reports the step t with the
    least slack (t = 0, where both sides vanish, is left out).

    Args:
        state_dists, state_dists_new: [T+1, S] P(s_t = s) under pi and pi' for t = 0..T.
        pi_new: [S, A]; adv: [S, A] A_pi; alpha: D_TV^max(pi, pi'); margin: slack required.
    """
    state_dists, state_dists_new, pi_new, adv = _f64(state_dists, state_dists_new, pi_new, adv)
    abar = np.sum(pi_new * adv, axis=-1)
    steps = np.arange(1, state_dists.shape[0])
    lhs = np.abs((state_dists_new[1:] - state_dists[1:]) @ abar)
    rhs = 4.0 * float(alpha) * (1.0 - (1.0 - float(alpha)) ** steps) * np.max(np.abs(adv))
    worst = int(np.argmax(lhs - rhs))
    return _bound(lhs[worst], rhs[worst], margin)


def check_surrogate_gap(eta_new, surrogate_new, alpha, eps, gamma, margin=0.0) -> Check:
    """Lemma 2.5: |eta(pi') - L_pi(pi')| <= 4 alpha^2 gamma eps / (1-gamma)^2, eps = max |A_pi|.

    Summing Lemma 2.4 over t with weights gamma^t (Schulman et al. 2015, proof of Theorem 1).

    Args:
        eta_new: eta(pi'); surrogate_new: L_pi(pi'); alpha: D_TV^max(pi, pi'); eps: max |A_pi|;
        gamma: discount; margin: slack required.
    """
    gamma = float(gamma)
    rhs = 4.0 * float(alpha) ** 2 * gamma * float(eps) / (1.0 - gamma) ** 2
    return _bound(abs(float(eta_new) - float(surrogate_new)), rhs, margin)


def penalty_coefficient(eps, gamma):
    """C = 4 eps gamma / (1-gamma)^2 of Schulman et al. (2015, Theorem 1); floats or traced scalars."""
    return 4.0 * eps * gamma / (1.0 - gamma) ** 2


def check_trpo_lower_bound(eta_new, surrogate_new, kl, eps, gamma, margin=0.0) -> Check:
    """TRPO bound (Theorem 1): eta(pi') >= L_pi(pi') - C D_KL^max(pi, pi'), C = 4 eps gamma/(1-gamma)^2.

    Checked as L_pi(pi') - eta(pi') <= C D_KL^max (both sides are 0 at pi' = pi, so it is tight there).

    Args:
        eta_new: eta(pi'); surrogate_new: L_pi(pi'); kl: D_KL^max(pi, pi'); eps: max |A_pi|;
        gamma: discount; margin: slack required.
    """
    rhs = penalty_coefficient(float(eps), float(gamma)) * float(kl)
    return _bound(float(surrogate_new) - float(eta_new), rhs, margin)


def check_monotonic_improvement(etas, margin=0.0) -> Check:
    """Monotonic improvement: eta(pi_0) <= eta(pi_1) <= ... for the penalised iteration.

    pi_{i+1} = argmax_pi L_{pi_i}(pi) - C D_KL^max(pi_i, pi) never decreases eta (Schulman et al. 2015,
    Algorithm 1). The value is the largest decrease max_i eta_i - eta_{i+1} (negative: every step improved).

    Args:
        etas: [K+1] eta of the iterates; margin: improvement required at every step.
    """
    (etas,) = _f64(etas)
    return _bound(np.max(etas[:-1] - etas[1:]), 0.0, margin)


def trust_region_step(g, H, delta) -> np.ndarray:
    """Delta* = sqrt(2 delta / g^T H^-1 g) H^-1 g, argmax of g^T Delta s.t. 1/2 Delta^T H Delta <= delta.

    Args:
        g: [P] gradient; H: [P, P] positive definite; delta: trust-region radius.
    """
    g, H = _f64(g, H)
    direction = np.linalg.solve(H, g)
    return math.sqrt(2.0 * float(delta) / float(g @ direction)) * direction


def check_trust_region_kkt(g, H, delta, step) -> Check:
    """KKT conditions of max g^T Delta s.t. 1/2 Delta^T H Delta <= delta (Schulman et al. 2015, App. C).

    Stationarity g = lambda H Delta with lambda = g^T Delta / Delta^T H Delta, dual feasibility
    lambda >= 0 and an active constraint 1/2 Delta^T H Delta = delta. The value is the largest of
    ||g - lambda H Delta|| / ||g||, |1/2 Delta^T H Delta - delta| / delta and 1 if lambda < 0.

    Args:
        g: [P]; H: [P, P]; delta: radius; step: [P] the candidate Delta.
    """
    g, H, step = _f64(g, H, step)
    curvature_step = H @ step
    multiplier = float(g @ step) / float(step @ curvature_step)
    stationarity = np.linalg.norm(g - multiplier * curvature_step) / np.linalg.norm(g)
    activity = abs(0.5 * float(step @ curvature_step) - float(delta)) / float(delta)
    return _identity(max(stationarity, activity, float(multiplier < 0.0)))


def check_trust_region_optimality(g, H, delta, step, directions, margin=0.0) -> Check:
    """Delta* beats feasible directions: g^T d <= g^T Delta* for each d scaled to 1/2 d^T H d = delta.

    Args:
        g: [P]; H: [P, P]; delta: radius; step: [P] candidate; directions: [K, P] random directions;
        margin: slack required.
    """
    g, H, step, directions = _f64(g, H, step, directions)
    curvature = np.einsum("kp,pq,kq->k", directions, H, directions)
    feasible = directions * np.sqrt(2.0 * float(delta) / curvature)[:, None]
    return _bound(np.max(feasible @ g), float(g @ step), margin)


def check_conjugate_gradient(H, g, solution) -> Check:
    """The CG solution of H x = g matches the dense solve: ||x - H^-1 g|| / ||H^-1 g|| <= CG_RTOL.

    Args:
        H: [P, P]; g: [P]; solution: [P] the CG output.
    """
    H, g = _f64(H, g)
    return _identity(_relative_error(solution, np.linalg.solve(H, g)), CG_RTOL)


def check_kl_quadratic(step_norms, kl_values, quadratic_values) -> Check:
    """D_KL(theta_old || theta_old + Delta) - 1/2 Delta^T F Delta = O(||Delta||^3) (TRPO, Appendix C).

    With ratios r_k = |KL_k - quad_k| / ||Delta_k||^3 on steps shrinking by halves, the remainder is
    O(||Delta||^3) when the ratio stays bounded: the value max(r on the smaller half of the steps) /
    max(r on the larger half) must stay below MAX_RATIO_GROWTH (a second-order error makes it about
    2^(K - K // 2)).

    Args:
        step_norms: [K] ||Delta_k||, decreasing; kl_values: [K] the divergence at each step;
        quadratic_values: [K] 1/2 Delta_k^T F Delta_k.
    """
    step_norms, kl_values, quadratic_values = _f64(step_norms, kl_values, quadratic_values)
    ratios = np.abs(kl_values - quadratic_values) / step_norms**3
    half = ratios.shape[0] // 2
    return _bound(np.max(ratios[half:]) / max(np.max(ratios[:half]), 1e-300), MAX_RATIO_GROWTH)


def check_monte_carlo_mean(samples, exact) -> Check:
    """Unbiasedness: |mean_n samples[n, j] - exact[j]| <= 5 standard errors for every component j.

    The value is the largest z-score |mean - exact| / (std / sqrt(N)); a component with zero sample
    spread counts as z = 0 when it equals the exact value to 1e-12 and as infinite otherwise.

    Args:
        samples: [N, P] per-trajectory estimates (g(tau, theta) or B(tau, theta) v); exact: [P].
    """
    samples, exact = _f64(samples, exact)
    difference = np.abs(samples.mean(axis=0) - exact)
    standard_error = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    spread = standard_error > 0.0
    z = np.where(spread, difference / np.where(spread, standard_error, 1.0), 0.0)
    z = np.where(~spread & (difference > 1e-12), np.inf, z)
    return _bound(np.max(z), NUM_STANDARD_ERRORS)


def check_gradient_variance(samples, exact, r_max, score_bound, gamma, margin=0.0) -> Check:
    """Fatkhullin et al. (2023, Proposition 1): E||g(tau, theta) - grad J_H||^2 <= r_max^2 M_g^2/(1-gamma)^3.

    The value is the Monte-Carlo mean plus 5 standard errors (an upper confidence bound on the
    expectation). For tabular softmax M_g = sqrt(2) (see docs/theory.md).

    Args:
        samples: [N, P] g(tau_n, theta); exact: [P] grad J_H; r_max: max |r|; score_bound: M_g;
        gamma: discount; margin: slack required.
    """
    samples, exact = _f64(samples, exact)
    squared = np.sum((samples - exact) ** 2, axis=-1)
    upper = squared.mean() + NUM_STANDARD_ERRORS * squared.std(ddof=1) / math.sqrt(squared.shape[0])
    rhs = float(r_max) ** 2 * float(score_bound) ** 2 / (1.0 - float(gamma)) ** 3
    return _bound(upper, rhs, margin)


# ----------------------------------------------------------------------------------------------------
# Exact quantities (JAX, float64): one function per group, vmapped over the random MDPs.
# ----------------------------------------------------------------------------------------------------


def tabular_score(theta: jax.Array) -> jax.Array:
    """grad_theta log softmax(theta)[s, a] for every (s, a); [S, A] -> [S, A, S * A]."""
    chex.assert_rank(theta, 2)
    jacobian = jax.jacobian(lambda th: jax.nn.log_softmax(th, axis=-1))(theta)
    return jacobian.reshape(theta.shape + (-1,))


def state_distributions(mdp: MDP, pi: jax.Array, num_steps: int) -> jax.Array:
    """P(s_t = s) for t = 0..num_steps-1 from s_0 ~ rho under pi; returns [num_steps, S]."""
    transition = policy_transition(mdp, pi)

    def advance(dist, _):
        return dist @ transition, dist

    return jax.lax.scan(advance, mdp.rho, None, length=num_steps)[1]


def _return_of(mdp: MDP):
    """theta [S, A] -> eta(softmax(theta)), the exact objective autodiff differentiates."""
    return lambda theta: expected_return(mdp, softmax_policy(theta))


class PolicyQuantities(NamedTuple):
    """Exact quantities of one softmax policy pi = softmax(theta); P = S * A parameters."""

    pi: jax.Array  # [S, A] policy
    q: jax.Array  # [S, A] Q^pi
    visitation: jax.Array  # [S] d^pi, normalised discounted visitation
    score: jax.Array  # [S, A, P] grad log pi(a|s)
    eta: jax.Array  # [] eta(pi)
    grad_eta: jax.Array  # [P] autodiff of theta -> eta(softmax(theta))
    surrogate_at_old: jax.Array  # [] L_pi(pi)
    grad_surrogate: jax.Array  # [P] autodiff of theta -> L_pi(softmax(theta)), pi held fixed


def policy_quantities(mdp: MDP, theta: jax.Array) -> PolicyQuantities:
    """Exact values, visitation, score and the gradients of eta and of L_pi at theta; theta [S, A]."""
    pi = softmax_policy(theta)
    return PolicyQuantities(
        pi=pi,
        q=action_values(mdp, pi),
        visitation=discounted_visitation(mdp, pi),
        score=tabular_score(theta),
        eta=expected_return(mdp, pi),
        grad_eta=jax.grad(_return_of(mdp))(theta).reshape(-1),
        surrogate_at_old=surrogate(mdp, pi, pi),
        grad_surrogate=jax.grad(lambda th: surrogate(mdp, pi, softmax_policy(th)))(theta).reshape(-1),
    )


class PairQuantities(NamedTuple):
    """Exact quantities of a policy pair (pi, pi')."""

    eta: jax.Array  # [] eta(pi)
    eta_new: jax.Array  # [] eta(pi')
    surrogate_new: jax.Array  # [] L_pi(pi')
    alpha: jax.Array  # [] D_TV^max(pi, pi')
    kl: jax.Array  # [] D_KL^max(pi, pi')
    adv: jax.Array  # [S, A] A_pi
    pi_new: jax.Array  # [S, A] pi'
    visitation_new: jax.Array  # [S] unnormalised rho_{pi'}
    state_dists: jax.Array  # [SHIFT_STEPS + 1, S] P(s_t = s) under pi
    state_dists_new: jax.Array  # [TRAJECTORY_STEPS, S] P(s_t = s) under pi'


def pair_quantities(mdp: MDP, theta: jax.Array, theta_new: jax.Array) -> PairQuantities:
    """Exact quantities for the pair pi = softmax(theta), pi' = softmax(theta_new); both [S, A]."""
    pi, pi_new = softmax_policy(theta), softmax_policy(theta_new)
    return PairQuantities(
        eta=expected_return(mdp, pi),
        eta_new=expected_return(mdp, pi_new),
        surrogate_new=surrogate(mdp, pi, pi_new),
        alpha=tv_max(pi, pi_new),
        kl=kl_max(pi, pi_new),
        adv=advantages(mdp, pi),
        pi_new=pi_new,
        visitation_new=unnormalized_visitation(mdp, pi_new),
        state_dists=state_distributions(mdp, pi, SHIFT_STEPS + 1),
        state_dists_new=state_distributions(mdp, pi_new, TRAJECTORY_STEPS),
    )


def improvement_path(
    mdp: MDP, theta: jax.Array, num_iters: int, num_inner: int, learning_rate: float
) -> jax.Array:
    """eta along pi_{i+1} = argmax_pi L_{pi_i}(pi) - C_i D_KL^max(pi_i, pi), C_i = 4 eps_i gamma/(1-gamma)^2.

    Each inner problem is solved numerically by ``num_inner`` Adam steps on the softmax logits from
    theta_i (the non-smooth max differentiated as JAX does, through the arg-max state); the argmax is the
    best of the visited logits, theta_i itself included, under the exact penalised objective.

    Args:
        mdp: the MDP; theta: [S, A] initial logits; num_iters: K outer iterations; num_inner: Adam steps
        per iteration; learning_rate: Adam step size.

    Returns:
        [K + 1] eta(pi_0), ..., eta(pi_K).
    """
    chex.assert_rank(theta, 2)
    optimizer = optax.adam(learning_rate)

    def outer(theta_i, _):
        pi_i = softmax_policy(theta_i)
        penalty = penalty_coefficient(jnp.max(jnp.abs(advantages(mdp, pi_i))), mdp.gamma)

        def objective(th):
            pi = softmax_policy(th)
            return surrogate(mdp, pi_i, pi) - penalty * kl_max(pi_i, pi)

        def inner(carry, _):
            th, opt_state, best_th, best_value = carry
            value, grad = jax.value_and_grad(objective)(th)
            better = value > best_value
            best_th = jnp.where(better, th, best_th)
            best_value = jnp.where(better, value, best_value)
            updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grad), opt_state)
            return (optax.apply_updates(th, updates), opt_state, best_th, best_value), None

        init = (theta_i, optimizer.init(theta_i), theta_i, objective(theta_i))
        (last, _, best_th, best_value), _ = jax.lax.scan(inner, init, None, length=num_inner)
        return jnp.where(objective(last) > best_value, last, best_th), expected_return(mdp, pi_i)

    theta_last, etas = jax.lax.scan(outer, theta, None, length=num_iters)
    return jnp.append(etas, _return_of(mdp)(theta_last))


class TrustRegionQuantities(NamedTuple):
    """The TRPO step problem at one softmax policy; P = S * A parameters, K step sizes."""

    g: jax.Array  # [P] grad eta
    fisher: jax.Array  # [P, P] Hessian of the mean KL, built column by column with fisher_vector_product
    cg_solution: jax.Array  # [P] conjugate_gradient on (F + damping I) x = g
    step_norms: jax.Array  # [K] ||Delta_k|| = 2^-k
    kl_values: jax.Array  # [K] mean KL(pi_old || pi_{theta_old + Delta_k})
    quadratic_values: jax.Array  # [K] 1/2 Delta_k^T F Delta_k


def trust_region_quantities(
    mdp: MDP, theta: jax.Array, damping: float, num_scales: int
) -> TrustRegionQuantities:
    """Gradient, Fisher matrix, CG solution and the KL along the natural direction at theta [S, A].

    The divergence is TRPO's mean KL(theta) = sum_s d^pi(s) KL(pi_old(.|s) || pi_theta(.|s)) with pi_old
    and d^pi held fixed; F is its Hessian at theta_old (Schulman et al. 2015, Appendix C). Steps Delta_k
    = 2^-k u, k < num_scales, along the unit natural-gradient direction u of (F + damping I)^-1 g.
    """
    chex.assert_rank(theta, 2)
    pi = softmax_policy(theta)
    weights = discounted_visitation(mdp, pi)
    size = theta.size

    def mean_kl(th):
        return weights @ jnp.sum(jax.scipy.special.rel_entr(pi, softmax_policy(th)), axis=-1)

    def fisher_product(v, damping=0.0):
        return linalg.fisher_vector_product(mean_kl, theta, v, damping)

    g = jax.grad(_return_of(mdp))(theta)
    basis = jnp.eye(size, dtype=theta.dtype).reshape((size,) + theta.shape)
    fisher = jax.vmap(fisher_product)(basis).reshape(size, size)
    cg_solution, _ = linalg.conjugate_gradient(
        lambda v: fisher_product(v, damping), g, max_iters=4 * size, tol=1e-13 * linalg.tree_norm(g)
    )
    direction = jnp.linalg.solve(fisher + damping * jnp.eye(size, dtype=theta.dtype), g.reshape(-1))
    unit = direction / jnp.linalg.norm(direction)
    step_norms = 0.5 ** jnp.arange(num_scales, dtype=theta.dtype)
    kl_values = jax.vmap(lambda c: mean_kl(theta + c * unit.reshape(theta.shape)))(step_norms)
    return TrustRegionQuantities(
        g=g.reshape(-1),
        fisher=fisher,
        cg_solution=cg_solution.reshape(-1),
        step_norms=step_norms,
        kl_values=kl_values,
        quadratic_values=0.5 * step_norms**2 * (unit @ fisher @ unit),
    )


class EstimatorQuantities(NamedTuple):
    """Sampled g(tau, theta) and B(tau, theta) v with the exact finite-horizon oracles; P = S * A."""

    gradients: jax.Array  # [N, P] g(tau_n, theta)
    hessian_products: jax.Array  # [N, P] B(tau_n, theta) v
    exact_gradient: jax.Array  # [P] grad J_H(theta)
    exact_hessian_product: jax.Array  # [P] hess J_H(theta) v


def _tabular_log_prob(theta: jax.Array, state: jax.Array, action: jax.Array) -> jax.Array:
    return jax.nn.log_softmax(theta[state])[action]


def estimator_quantities(
    key: jax.Array, mdp: MDP, theta: jax.Array, v: jax.Array, horizon: int, num: int
) -> EstimatorQuantities:
    """Sample ``num`` trajectories of length H under softmax(theta) and evaluate the estimators on each.

    The oracles are autodiff of the exact J_H(theta) = finite_horizon_return(mdp, softmax(theta), H):
    its gradient and its forward-over-reverse Hessian-vector product with v [S, A].
    """
    chex.assert_equal_shape([theta, v])
    states, actions, rewards, mask = sample_trajectories(key, mdp, theta, horizon, num)

    def per_trajectory(s, a, r, m):
        g = estimators.policy_gradient(_tabular_log_prob, theta, s, a, r, m, mdp.gamma)
        bv = estimators.hessian_vector_product(_tabular_log_prob, theta, s, a, r, m, mdp.gamma, v)
        return g.reshape(-1), bv.reshape(-1)

    gradients, hessian_products = jax.vmap(per_trajectory)(states, actions, rewards, mask)

    def finite_return(th):
        return finite_horizon_return(mdp, softmax_policy(th), horizon)

    return EstimatorQuantities(
        gradients=gradients,
        hessian_products=hessian_products,
        exact_gradient=jax.grad(finite_return)(theta).reshape(-1),
        exact_hessian_product=linalg.hessian_vector_product(finite_return, theta, v).reshape(-1),
    )


# ----------------------------------------------------------------------------------------------------
# The suite.
# ----------------------------------------------------------------------------------------------------

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
)


def run_suite(num_mdps: int = 20, seed: int = 0) -> list[Row]:
    """Check every statement on ``num_mdps`` random MDPs (float64); returns one row per statement.

    Per MDP: statements 1, 2, 4 at two policies (a moderate and a near-deterministic one); 3, 5, 6 on a
    near and a far pair; 7 along ``IMPROVEMENT_ITERS`` penalised iterations; 8 at one policy. Statement 9
    runs on min(num_mdps, ``ESTIMATOR_MDPS``) further MDPs with ``ESTIMATOR_TRAJECTORIES`` each.
    """
    if num_mdps < 1:
        raise ValueError(f"num_mdps must be >= 1, got {num_mdps}")
    with jax.enable_x64(True):
        key_tabular, key_estimators = jax.random.split(jax.random.key(seed))
        checks = _tabular_checks(key_tabular, num_mdps)
        checks.update(_estimator_checks(key_estimators, min(num_mdps, ESTIMATOR_MDPS)))
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

    checks: dict[str, list[Check]] = {key: [] for key, _, _ in STATEMENTS if not key.startswith("9")}
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


def format_table(rows: Sequence[Row]) -> str:
    """Render rows as a fixed-width text table."""

    def number(x: float | None) -> str:
        return "-" if x is None else f"{x:.2e}"

    header = (
        f"{'statement':<42} {'kind':<8} {'n':>3} {'worst':>10} {'holds':>5} "
        f"{'med. slack':>10} {'max ratio':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.statement:<42} {r.kind:<8} {r.instances:>3} {number(r.worst):>10} "
            f"{'yes' if r.holds else 'NO':>5} {number(r.median_slack):>10} {number(r.max_ratio):>10}"
        )
    return "\n".join(lines)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _json_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written, or None; creates nothing."""
    if os.path.isdir(path):
        return f"--json {path} is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--json {path}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--json {path} is not writable"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 all hold, 1 one fails, 2 bad arguments)."""
    parser = _ArgumentParser(prog="python -m trpojax.verify", description=__doc__.split("\n")[0])
    parser.add_argument("--mdps", type=int, default=20, help="number of random MDPs (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (>= 0)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    args = parser.parse_args(argv)
    if args.mdps < 1:
        parser.error(f"--mdps must be >= 1, got {args.mdps}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.json is not None and (problem := _json_path_problem(args.json)):
        parser.error(problem)

    start = time.perf_counter()
    rows = run_suite(args.mdps, args.seed)
    elapsed = time.perf_counter() - start
    print(format_table(rows))
    print(f"{args.mdps} MDPs ({NUM_STATES} states, {NUM_ACTIONS} actions), seed {args.seed}, {elapsed:.1f} s")
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump(
                {"mdps": args.mdps, "seed": args.seed, "rows": [r._asdict() for r in rows]}, f, indent=2
            )
    failed = [r for r in rows if not r.holds]
    if failed:
        print(f"FAILED: {failed[0].statement} (worst {failed[0].worst:.3e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

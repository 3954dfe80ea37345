"""The checkers: one pure host-side function per statement, with the :class:`Check` they return.

Each checker takes the exact quantities it needs (NumPy or JAX arrays, converted to float64) and returns a
:class:`Check`, so a test can hand it a deliberately wrong input and watch it fail. The tolerances below
decide when an identity or a bound holds. See the package docstring of :mod:`trpojax.verify` for sources.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

IDENTITY_RTOL = 1e-8  # relative error allowed in an exact identity (float64 solves and autodiff)
CG_RTOL = 1e-6  # relative error allowed between the CG solution and a dense solve
BOUND_ATOL = 1e-10  # round-off allowed when a bound is tight (value <= bound + BOUND_ATOL)
NUM_STANDARD_ERRORS = 5.0  # Monte-Carlo agreement: |mean - exact| <= 5 standard errors
MAX_RATIO_GROWTH = 2.0  # (KL - quadratic) / ||Delta||^3 on small steps vs large steps
TABULAR_SCORE_BOUND = math.sqrt(2.0)  # M_g: ||grad log pi(a|s)|| < sqrt(2) for tabular softmax


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

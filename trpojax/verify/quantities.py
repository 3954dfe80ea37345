"""Exact quantities (JAX, float64) that the checkers consume: one function per group of statements.

Each is a pure function of a tabular MDP and softmax logits built on :mod:`trpojax.core.tabular`, vmapped over the
random MDPs by :mod:`trpojax.verify.suite`.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from trpojax.core import estimators, linalg, tree
from trpojax.core.tabular import (
    MDP,
    action_values,
    advantages,
    discounted_visitation,
    expected_return,
    finite_horizon_return,
    kl_max,
    policy_transition,
    sample_trajectories,
    softmax_policy,
    surrogate,
    tv_max,
    unnormalized_visitation,
)
from trpojax.verify.checks import penalty_coefficient

SHIFT_STEPS = 50  # Lemma 2.4 is checked for t = 1..SHIFT_STEPS
TRAJECTORY_STEPS = 700  # sum over t < 700 of gamma^t: tail gamma^700 < 3e-16 for gamma <= 0.95


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
        lambda v: fisher_product(v, damping), g, max_iters=4 * size, tol=1e-13 * tree.norm(g)
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

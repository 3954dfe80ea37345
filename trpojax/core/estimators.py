"""Per-trajectory policy-gradient and policy-Hessian estimators g(tau, theta) and B(tau, theta) v.

All estimators take ONE trajectory tau = (s_0, a_0, r_0, ..., s_{H-1}, a_{H-1}, r_{H-1}) of static horizon H
and a policy given as ``log_prob_fn(params, obs_t, action_t) -> []`` (log pi_theta(a_t | s_t)); the caller
vmaps over trajectories (rlax convention). ``mask`` [H] in {0, 1} removes steps entirely: a step with
mask 0 contributes neither its reward nor its log-probability. Discount exponents are array positions, so
masking is meant for padding after an episode ends (a mask that is a prefix of ones), where it is the same
as truncating the trajectory.

The target is the finite-horizon objective of Fatkhullin et al. (2023), J_H(theta) =
E[sum_{t<H} gamma^t r_t], with

    g(tau, theta) = sum_t (sum_{h>=t} gamma^h r_h) grad log pi(a_t | s_t) = grad Phi(tau, theta),
    Phi(tau, theta) = sum_t (sum_{h>=t} gamma^h r_h) log pi(a_t | s_t)      (weights held constant),
    B(tau, theta) = grad Phi(tau, theta) grad log p(tau | theta)^T + hess Phi(tau, theta),
    grad log p(tau | theta) = sum_t grad log pi(a_t | s_t),

so that E[g] = grad J_H and E[B] = hess J_H (Fatkhullin et al. 2023, HARPG; g is the GPOMDP estimator of
Baxter & Bartlett 2001, REINFORCE with reward-to-go of Williams 1992). Parameters may be any pytree;
B(tau, theta) v is computed matrix-free by one forward-over-reverse pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

PyTree = Any
LogProbFn = Callable[[PyTree, jax.Array, jax.Array], jax.Array]


def _check_trajectory(obs: PyTree, actions: jax.Array, rewards: jax.Array, mask: jax.Array) -> None:
    chex.assert_rank([rewards, mask], 1)
    chex.assert_equal_shape([rewards, mask])
    chex.assert_tree_shape_prefix((obs, actions), rewards.shape)


def reward_to_go(rewards: jax.Array, mask: jax.Array, gamma: float | jax.Array) -> jax.Array:
    """Masked discounted reward-to-go G_t = sum_{h=t}^{H-1} gamma^{h-t} mask_h r_h.

    Computed by the backward recursion G_{H-1} = mask_{H-1} r_{H-1}, G_t = mask_t r_t + gamma G_{t+1}.

    Args:
        rewards: [H] rewards r_t.
        mask: [H] step validity in {0, 1}.
        gamma: [] discount.

    Returns:
        [H] G_t, in the dtype of ``rewards``.
    """
    chex.assert_rank([rewards, mask], 1)
    chex.assert_equal_shape([rewards, mask])
    gamma = jnp.asarray(gamma, rewards.dtype)
    chex.assert_rank(gamma, 0)

    def backup(future, reward):
        value = reward + gamma * future
        return value, value

    _, returns = jax.lax.scan(backup, jnp.zeros((), rewards.dtype), mask * rewards, reverse=True)
    return returns


def _log_probs(log_prob_fn: LogProbFn, params: PyTree, obs: PyTree, actions: jax.Array) -> jax.Array:
    """[H] log pi_theta(a_t | s_t), the policy evaluated at every step."""
    return jax.vmap(log_prob_fn, in_axes=(None, 0, 0))(params, obs, actions)


def _score_weights(rewards: jax.Array, mask: jax.Array, gamma: float | jax.Array) -> jax.Array:
    """[H] w_t = mask_t gamma^t G_t = mask_t sum_{h>=t} gamma^h mask_h r_h, the weights of Phi."""
    returns = reward_to_go(rewards, mask, gamma)
    discounts = jnp.asarray(gamma, rewards.dtype) ** jnp.arange(rewards.shape[0], dtype=rewards.dtype)
    return mask * discounts * returns


def _weighted_log_prob(
    log_prob_fn: LogProbFn, params: PyTree, obs: PyTree, actions: jax.Array, weights: jax.Array
) -> jax.Array:
    """sum_t weights_t log pi_theta(a_t | s_t), skipping steps of zero weight (so junk values never leak)."""
    log_probs = _log_probs(log_prob_fn, params, obs, actions)
    return jnp.sum(jnp.where(weights != 0, weights * log_probs, 0.0))


def policy_gradient_surrogate(
    log_prob_fn: LogProbFn,
    params: PyTree,
    obs: PyTree,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
) -> jax.Array:
    """Phi(tau, theta) = sum_t mask_t (sum_{h>=t} gamma^h mask_h r_h) log pi_theta(a_t | s_t).

    The weights are constants (``stop_gradient``), so grad Phi = g(tau, theta) and hess Phi is the second
    term of B(tau, theta) (Fatkhullin et al. 2023).

    Args:
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        params: policy parameters theta (any pytree).
        obs: [H, ...] observations s_t (array or pytree with leading axis H).
        actions: [H, ...] actions a_t.
        rewards: [H] rewards r_t.
        mask: [H] step validity in {0, 1}.
        gamma: [] discount.

    Returns:
        [] Phi(tau, theta).
    """
    _check_trajectory(obs, actions, rewards, mask)
    weights = jax.lax.stop_gradient(_score_weights(rewards, mask, gamma))
    return _weighted_log_prob(log_prob_fn, params, obs, actions, weights)


def policy_gradient(
    log_prob_fn: LogProbFn,
    params: PyTree,
    obs: PyTree,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
) -> PyTree:
    """g(tau, theta) = sum_{t<H} mask_t (sum_{h=t}^{H-1} gamma^h mask_h r_h) grad log pi_theta(a_t | s_t).

    The GPOMDP / reward-to-go REINFORCE estimator (Williams 1992; Baxter & Bartlett 2001) of the gradient
    of J_H(theta) = E[sum_{t<H} gamma^t r_t]: E[g] = grad J_H (Fatkhullin et al. 2023). Note gamma^h counts
    from the start of the trajectory. Computed as grad Phi with one reverse pass.

    Args:
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        params: policy parameters theta (any pytree).
        obs: [H, ...] observations s_t.
        actions: [H, ...] actions a_t.
        rewards: [H] rewards r_t.
        mask: [H] step validity in {0, 1}.
        gamma: [] discount.

    Returns:
        g, a pytree like ``params``.
    """
    return jax.grad(policy_gradient_surrogate, argnums=1)(
        log_prob_fn, params, obs, actions, rewards, mask, gamma
    )


def policy_gradient_with_baseline(
    log_prob_fn: LogProbFn,
    params: PyTree,
    obs: PyTree,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
    baselines: jax.Array,
) -> PyTree:
    """REINFORCE with a baseline: sum_t mask_t gamma^t (G_t - b_t) grad log pi_theta(a_t | s_t).

    G_t = sum_{h>=t} gamma^{h-t} mask_h r_h is the reward-to-go (``reward_to_go``) and b_t = baselines[t]
    an estimate of it. Since gamma^t G_t = sum_{h>=t} gamma^h r_h, a zero baseline gives exactly g(tau,
    theta); any baseline that does not depend on a_t, ..., a_{H-1} (a constant, or a function of s_t
    only) leaves the expectation unchanged, E = grad J_H, and a good one lowers the variance (Williams
    1992; Greensmith et al. 2004). The baselines are held constant (no gradient flows into them).

    Args:
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        params: policy parameters theta (any pytree).
        obs: [H, ...] observations s_t.
        actions: [H, ...] actions a_t.
        rewards: [H] rewards r_t.
        mask: [H] step validity in {0, 1}.
        gamma: [] discount.
        baselines: [H] b_t, estimates of the discounted reward-to-go G_t from step t.

    Returns:
        A pytree like ``params``.
    """
    _check_trajectory(obs, actions, rewards, mask)
    chex.assert_equal_shape([rewards, baselines])
    discounts = jnp.asarray(gamma, rewards.dtype) ** jnp.arange(rewards.shape[0], dtype=rewards.dtype)
    advantages = reward_to_go(rewards, mask, gamma) - baselines
    weights = jax.lax.stop_gradient(mask * discounts * advantages)
    return jax.grad(_weighted_log_prob, argnums=1)(log_prob_fn, params, obs, actions, weights)


def policy_gradient_and_hessian_vector_product(
    log_prob_fn: LogProbFn,
    params: PyTree,
    obs: PyTree,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
    v: PyTree,
) -> tuple[PyTree, PyTree]:
    """g(tau, theta) and B(tau, theta) v together, from one forward-over-reverse pass.

    B v = grad Phi (grad log p(tau | theta) . v) + hess Phi v with grad log p(tau | theta) = sum_t mask_t
    grad log pi_theta(a_t | s_t) (Fatkhullin et al. 2023, HARPG). One ``jax.jvp`` in direction v of
    theta -> (grad Phi(theta), [log pi_theta(a_t | s_t)]_t) yields g = grad Phi as its primal output,
    hess Phi v as the tangent of the first output and the per-step directional derivatives
    grad log pi(a_t | s_t) . v as the tangent of the second, so no matrix is formed and the cost is a
    small constant times that of g alone.

    Args:
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        params: policy parameters theta (any pytree).
        obs: [H, ...] observations s_t.
        actions: [H, ...] actions a_t.
        rewards: [H] rewards r_t.
        mask: [H] step validity in {0, 1}.
        gamma: [] discount.
        v: direction, a pytree like ``params``.

    Returns:
        (g, B v), both pytrees like ``params``; E[g] = grad J_H and E[B v] = hess J_H v.
    """
    _check_trajectory(obs, actions, rewards, mask)
    chex.assert_trees_all_equal_shapes(params, v)
    weights = jax.lax.stop_gradient(_score_weights(rewards, mask, gamma))

    def grad_phi_and_log_probs(theta):
        log_probs, pullback = jax.vjp(lambda p: _log_probs(log_prob_fn, p, obs, actions), theta)
        (grad_phi,) = pullback(weights.astype(log_probs.dtype))
        return grad_phi, log_probs

    (grad_phi, _), (hess_phi_v, log_prob_tangents) = jax.jvp(grad_phi_and_log_probs, (params,), (v,))
    score_dot_v = jnp.sum(jnp.where(mask != 0, log_prob_tangents, 0.0))
    return grad_phi, optax.tree.add_scale(hess_phi_v, score_dot_v, grad_phi)


def hessian_vector_product(
    log_prob_fn: LogProbFn,
    params: PyTree,
    obs: PyTree,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
    v: PyTree,
) -> PyTree:
    """B(tau, theta) v = grad Phi (grad log p(tau | theta) . v) + hess Phi v, without forming B.

    B(tau, theta) = grad Phi grad log p(tau | theta)^T + hess Phi is the unbiased policy-Hessian estimator
    of Fatkhullin et al. (2023): E[B v] = hess J_H(theta) v. See
    ``policy_gradient_and_hessian_vector_product``, which also returns g at no extra cost.

    Args:
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        params: policy parameters theta (any pytree).
        obs: [H, ...] observations s_t.
        actions: [H, ...] actions a_t.
        rewards: [H] rewards r_t.
        mask: [H] step validity in {0, 1}.
        gamma: [] discount.
        v: direction, a pytree like ``params``.

    Returns:
        B v, a pytree like ``params``.
    """
    _, hessian_v = policy_gradient_and_hessian_vector_product(
        log_prob_fn, params, obs, actions, rewards, mask, gamma, v
    )
    return hessian_v

"""Advantage and return estimation with termination and truncation kept apart.

Time runs along axis 0: every array is ``[T, ...]`` (usually ``[T, B]``). For step t, ``bootstrap_values[t]``
is V(s'_t) of the true successor state, i.e. V(``info["final_observation"]``) from gymnax >= 1.0, which
equals V(obs_{t+1}) except where the env auto-reset. The successor's value counts unless the episode
*terminated* at t; an episode *truncated* at t (time limit) is bootstrapped with V(s'_t). Either way the
recursion does not run past the end of the episode.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gae_advantages(
    rewards: jax.Array,
    values: jax.Array,
    bootstrap_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016), GAE(gamma, lambda).

    delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t);
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}, done_t = terminated_t or truncated_t, A_T = 0.

    Args:
        rewards: [T, ...] r_t.
        values: [T, ...] V(s_t).
        bootstrap_values: [T, ...] V(s'_t) of the successor state (before any auto-reset).
        terminated: [T, ...] bool, the episode reached a terminal state at t.
        truncated: [T, ...] bool, the episode hit its time limit at t.
        gamma: discount.
        gae_lambda: GAE lambda; 1 gives Monte-Carlo advantages, 0 one-step TD errors.

    Returns:
        ``(advantages, returns)``, both [T, ...]; returns = advantages + values (the critic's target).
    """
    chex.assert_equal_shape([rewards, values, bootstrap_values, terminated, truncated])
    not_term = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(rewards.dtype)
    deltas = rewards + gamma * not_term * bootstrap_values - values

    def backward(next_adv: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, cont = xs
        adv = delta + gamma * gae_lambda * cont * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def discounted_returns(
    rewards: jax.Array,
    bootstrap_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float | jax.Array,
) -> jax.Array:
    """Bootstrapped discounted returns G_t = r_t + gamma G_{t+1} within an episode.

    At the end of an episode G_t = r_t + gamma (1 - terminated_t) V(s'_t), and at the end of the
    rollout (t = T-1, episode still running) G_t = r_t + gamma V(s'_t). Shapes as in :func:`gae_advantages`.
    """
    chex.assert_equal_shape([rewards, bootstrap_values, terminated, truncated])
    not_term = 1.0 - terminated.astype(rewards.dtype)
    done = jnp.logical_or(terminated, truncated)
    cut = done.at[-1].set(True)  # the rollout's last step always bootstraps

    def backward(next_ret: jax.Array, xs: tuple) -> tuple[jax.Array, jax.Array]:
        r, nt, c, v = xs
        ret = r + gamma * jnp.where(c, nt * v, next_ret)
        return ret, ret

    _, returns = jax.lax.scan(
        backward, jnp.zeros_like(rewards[0]), (rewards, not_term, cut, bootstrap_values), reverse=True
    )
    return returns


def normalize_advantages(advantages: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(A - mean(A)) / (std(A) + eps) over the whole batch."""
    return (advantages - jnp.mean(advantages)) / (jnp.std(advantages) + eps)

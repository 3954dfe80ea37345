"""The one value-function fit every learner with a critic or baseline uses (TRPO, NPG, REINFORCE).

V_phi is fitted to targets y by Adam (``optax.scale_by_adam``, then a step of ``-learning_rate``) on the
(weighted) mean squared error

    L(phi) = sum_i w_i (V_phi(s_i) - y_i)^2 / max(sum_i w_i, 1)      (w = 1: the plain mean)

over ``epochs`` passes, each a fresh shuffle of the N samples split into ``minibatches`` equal
minibatches (a remainder of N not divisible by ``minibatches`` is left out of that pass). REINFORCE's
baseline is the full-batch case (``minibatches = 1``) with its trajectories' masks as weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

ADAM = optax.scale_by_adam()


def init_opt_state(value_params: Any) -> Any:
    """Adam moments for ``value_params``."""
    return ADAM.init(value_params)


def fit_value(
    value_params: Any,
    opt_state: Any,
    obs: jax.Array,
    targets: jax.Array,
    key: jax.Array,
    *,
    learning_rate: float | jax.Array,
    epochs: int,
    minibatches: int,
    value_apply: Callable[[Any, jax.Array], jax.Array],
    weights: jax.Array | None = None,
) -> tuple[Any, Any, jax.Array]:
    """Fit V to ``targets [N]`` at ``obs [N, obs_dim]`` (see the module docstring).

    Args:
        value_params, opt_state: the critic and its Adam moments.
        obs: [N, obs_dim] inputs.
        targets: [N] regression targets y.
        key: PRNG key of the shuffles.
        learning_rate: Adam step size (may be traced).
        epochs: passes over the data (static); 0 fits nothing.
        minibatches: minibatches per pass (static).
        value_apply: (params, obs [n, obs_dim]) -> [n].
        weights: [N] sample weights w (None: all ones).

    Returns:
        ``(value_params, opt_state, losses)``, ``losses [epochs, minibatches]`` the loss of each step before
        it was taken (``[1, 1]``, the loss on all the data, when ``epochs`` is 0).
    """
    n = targets.shape[0]
    size = n // minibatches
    plain = weights is None
    weights = jnp.ones_like(targets) if plain else weights

    def loss_fn(params: Any, x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
        errors = (value_apply(params, x) - y) ** 2
        return jnp.mean(errors) if plain else jnp.sum(w * errors) / jnp.maximum(jnp.sum(w), 1.0)

    def minibatch_step(carry: tuple, idx: jax.Array) -> tuple[tuple, jax.Array]:
        params, opt = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, obs[idx], targets[idx], weights[idx])
        updates, opt = ADAM.update(grads, opt)
        params = optax.tree.add_scale(params, -learning_rate, updates)
        return (params, opt), loss

    def epoch(carry: tuple, epoch_key: jax.Array) -> tuple[tuple, jax.Array]:
        perm = jax.random.permutation(epoch_key, n)[: size * minibatches].reshape(minibatches, size)
        return jax.lax.scan(minibatch_step, carry, perm)

    if epochs == 0:
        return value_params, opt_state, loss_fn(value_params, obs, targets, weights).reshape(1, 1)
    (value_params, opt_state), losses = jax.lax.scan(
        epoch, (value_params, opt_state), jax.random.split(key, epochs)
    )
    return value_params, opt_state, losses

"""Shared pieces of the episodic policy-gradient learners (REINFORCE / GPOMDP, N-PG-IGT, (N-)HARPG).

These learners sample n fresh trajectories of horizon H = ``num_steps`` per estimate with
:func:`trpojax.rollout.episodic_rollout` (n = ``num_envs`` for the gradient batch), average the
per-trajectory estimators of :mod:`trpojax.estimators` over them, and count all n * H simulated steps as
environment steps, including the masked steps after an episode's end. Observation normalisation is not
offered: the estimators assume one fixed policy function theta -> pi_theta between updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from trpojax.envs import EnvSpec, init_running_stats
from trpojax.estimators import (
    LogProbFn,
    hessian_vector_product,
    policy_gradient,
)
from trpojax.rollout import EpisodeBatch

if TYPE_CHECKING:
    from trpojax.algos import TrainState

EPISODIC_ALGOS = ("reinforce", "pg_igt", "harpg")


class RecursiveState(NamedTuple):
    """The agent state of the recursive-momentum methods, N-PG-IGT and (N-)HARPG.

    Attributes:
        policy_params: theta_t.
        prev_params: theta_{t-1} (theta_0 at t = 0).
        direction: d_{t-1}, like ``policy_params`` (zeros at t = 0, where it is not used).
        step: [] int32, t, the number of accepted updates.
    """

    policy_params: Any
    prev_params: Any
    direction: Any
    step: jax.Array


def init_recursive(policy_params: Any) -> RecursiveState:
    """State at t = 0: theta_{-1} = theta_0, d_{-1} = 0."""
    zeros = jax.tree.map(jnp.zeros_like, policy_params)
    return RecursiveState(policy_params, policy_params, zeros, jnp.zeros((), jnp.int32))


def make_log_prob_fn(policy_apply: Callable[[Any, jax.Array], Any]) -> LogProbFn:
    """``(params, obs_t [obs_dim], action_t) -> []`` log pi_theta(a_t | s_t), the estimators' policy."""
    return lambda params, obs, action: policy_apply(params, obs).log_prob(action)


def mean_policy_gradient(
    log_prob_fn: LogProbFn, params: Any, batch: EpisodeBatch, discount: float | jax.Array
) -> Any:
    """g_hat = (1/n) sum_i g(tau_i, theta) over the n trajectories of ``batch`` ([n, H, ...])."""
    grads = jax.vmap(policy_gradient, in_axes=(None, None, 0, 0, 0, 0, None))(
        log_prob_fn, params, batch.obs, batch.action, batch.reward, batch.mask, discount
    )
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), grads)


def mean_hessian_vector_product(
    log_prob_fn: LogProbFn, params: Any, batch: EpisodeBatch, discount: float | jax.Array, v: Any
) -> Any:
    """(1/m) sum_j B(tau_j, theta) v over the m trajectories of ``batch`` ([m, H, ...])."""
    products = jax.vmap(hessian_vector_product, in_axes=(None, None, 0, 0, 0, 0, None, None))(
        log_prob_fn, params, batch.obs, batch.action, batch.reward, batch.mask, discount, v
    )
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), products)


def episode_metrics(batch: EpisodeBatch) -> dict[str, jax.Array]:
    """Mean undiscounted return and length of the trajectories' first episodes (capped at the horizon)."""
    return {
        "episode_return_mean": jnp.mean(jnp.sum(batch.reward, axis=1)),
        "episode_length_mean": jnp.mean(jnp.sum(batch.mask, axis=1)),
    }


def initial_train_state(agent: Any, spec: EnvSpec, key: jax.Array) -> TrainState:
    """A :class:`~trpojax.algos.TrainState` around ``agent`` for an episodic learner (no runner)."""
    from trpojax.algos import TrainState

    return TrainState(
        agent=agent,
        obs_stats=init_running_stats(spec.obs_dim),
        runner=None,
        key=key,
        update=jnp.zeros((), jnp.int32),
    )

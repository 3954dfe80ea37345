"""Step-budgeted batches of whole episodes, the way garage's samplers collect them.

garage's ``LocalSampler.obtain_samples(itr, B)`` (the sampler of the HARPG authors' code, Fatkhullin et al.
2023) runs one environment episode after episode, each to its end or to the time limit H, and stops after
the first episode that brings the total to at least B steps: a batch holds a variable number of complete
episodes and between B and B + H - 1 real steps. :func:`step_budget_rollout` reproduces that rule with
static shapes: one environment runs L = B + H - 1 steps in a ``lax.scan``, restarting after every end, and a
step is kept (``mask`` 1) when its episode *started* before step B. Such an episode ends within L steps,
so every kept episode is complete, and the kept steps are exactly garage's batch. Steps of episodes that
started at or after B are simulated but not part of the batch (``mask`` 0, zero reward).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trpojax.envs.base import EnvSpec, env_action, flatten_obs
from trpojax.envs.rollout import PolicyFn


class StepBatch(NamedTuple):
    """One step-budgeted batch, time-major over a single environment, ``L = budget + horizon - 1`` steps.

    Attributes:
        obs: [L, obs_dim] raw (flattened) observation s_t the action was taken in.
        action: [L] int32 (discrete) or [L, d] float, the sampled a_t.
        reward: [L] r_t where ``mask`` is 1, else 0.
        mask: [L] float32, 1 for the steps of the batch's episodes (those started before step ``budget``).
        done: [L] bool, the last step of an episode (termination, truncation or the horizon).
        time: [L] int32, the step's index within its episode (0 at a reset).
        episode: [L] int32, the episode's index within the rollout (0, 1, ...).
        weights: [L] per-step estimator weights, filled in by the learner (zeros as sampled).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    mask: jax.Array
    done: jax.Array
    time: jax.Array
    episode: jax.Array
    weights: jax.Array


def rollout_length(budget: int, horizon: int) -> int:
    """L = budget + horizon - 1, the steps :func:`step_budget_rollout` simulates (enough for every kept episode)."""
    return budget + horizon - 1


def step_budget_rollout(
    spec: EnvSpec, policy_fn: PolicyFn, params: Any, key: jax.Array, budget: int, horizon: int
) -> StepBatch:
    """Sample whole episodes of at most ``horizon`` steps under pi_params until at least ``budget`` steps.

    Args:
        spec: the environment (its own time limit also ends episodes; ``horizon`` may be shorter).
        policy_fn: (params, obs [1, obs_dim]) -> distribution over actions.
        params: policy parameters theta.
        key: PRNG key for resets, action sampling and transitions.
        budget: B, static: the batch's minimum number of real steps.
        horizon: H, static: the longest episode, in steps.

    Returns:
        The :class:`StepBatch` of L = B + H - 1 steps; ``mask.sum()`` is in [B, B + H - 1].
    """
    length = rollout_length(budget, horizon)
    reset_key, run_key = jax.random.split(key)
    obs, env_state = spec.reset(reset_key)
    zero = jnp.zeros((), jnp.int32)

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, tuple]:
        env_state, obs, time, episode, start = carry
        index, step_key = inputs
        act_key, env_key, reset_key = jax.random.split(step_key, 3)
        action = policy_fn(params, obs).sample(act_key)
        next_obs, next_state, reward, terminated, truncated, _ = spec.step(env_key, env_state, env_action(spec, action))
        done = terminated.astype(bool) | truncated.astype(bool) | (time == horizon - 1)
        # The environment resets itself at its own end; at the horizon we reset it here.
        cut = (time == horizon - 1) & ~(terminated.astype(bool) | truncated.astype(bool))
        fresh_obs, fresh_state = spec.reset(reset_key)
        next_state = jax.tree.map(lambda f, s: jnp.where(cut, f, s), fresh_state, next_state)
        next_obs = jnp.where(cut, flatten_obs(spec, fresh_obs), flatten_obs(spec, next_obs))
        keep = (start < budget).astype(jnp.float32)
        out = (obs, action, keep * reward.astype(jnp.float32), keep, done, time, episode)
        carry = (
            next_state,
            next_obs,
            jnp.where(done, 0, time + 1),
            episode + done.astype(jnp.int32),
            jnp.where(done, index + 1, start),
        )
        return carry, out

    init = (env_state, flatten_obs(spec, obs), zero, zero, zero)
    inputs = (jnp.arange(length, dtype=jnp.int32), jax.random.split(run_key, length))
    _, (obs, action, reward, mask, done, time, episode) = jax.lax.scan(step, init, inputs)
    return StepBatch(obs, action, reward, mask, done, time, episode, jnp.zeros_like(reward))


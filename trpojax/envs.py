"""gymnax environments: construction, action-space -> policy family, observation normalisation, episode stats.

gymnax >= 1.0 ``step`` returns ``(obs, state, reward, terminated, truncated, info)`` and resets
automatically: when an episode ends, ``obs`` already belongs to the next episode and
``info["final_observation"]`` is the last observation of the finished one. trpojax bootstraps a truncated
episode with V(final_observation) and a terminated one with zero (:mod:`trpojax.returns`).
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax import gymnax_light


class EnvSpec(NamedTuple):
    """What the policy needs to know about an environment (all static).

    Attributes:
        name: gymnax id, e.g. "CartPole-v1".
        env: the gymnax environment object.
        params: its default ``EnvParams``.
        obs_shape: shape of one observation as returned by the env.
        obs_dim: flattened observation size (the networks see ``[..., obs_dim]``).
        discrete: True for a Discrete action space (Categorical policy), False for Box (DiagGaussian).
        action_dim: number of actions (discrete) or action dimensions (continuous).
        action_low, action_high: Box bounds as tuples (continuous only; empty for discrete).
        max_episode_steps: the env's time limit ``max_steps_in_episode``.
    """

    name: str
    env: Any
    params: Any
    obs_shape: tuple[int, ...]
    obs_dim: int
    discrete: bool
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int


class UnknownEnvError(ValueError):
    """An environment id gymnax does not register, or whose spaces trpojax cannot handle."""


def check_env_name(name: str) -> None:
    """Raise :class:`UnknownEnvError` naming the closest registered ids if ``name`` is not one."""
    if name in gymnax_light.CLASSIC_CONTROL:
        return
    registered = gymnax_light.registered_envs()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            f"choose one of: {', '.join(registered)}"
        )
        raise UnknownEnvError(f"unknown environment {name!r}; {hint}")


def make_env(name: str) -> EnvSpec:
    """Build a gymnax environment and describe its spaces.

    Raises:
        UnknownEnvError: ``name`` is not a registered gymnax id, or its action space is neither
            Discrete nor Box.
    """
    check_env_name(name)
    env, params = gymnax_light.make(name)
    spaces = gymnax_light.spaces()
    # gymnax builds the observation space's bounds with jax.numpy, which run eagerly as small XLA programs
    # compiled on the spot (about 0.1 s on CPU, before the run's own compilation can start); only the
    # shape is needed, so the space is built abstractly.
    obs_shape = jax.eval_shape(lambda: jnp.zeros(env.observation_space(params).shape)).shape
    space = env.action_space(params)
    if isinstance(space, spaces.Discrete):
        discrete, action_dim, low, high = True, int(space.n), (), ()
    elif isinstance(space, spaces.Box):
        shape = tuple(space.shape)
        action_dim = int(np.prod(shape)) if shape else 1
        low = tuple(float(x) for x in np.broadcast_to(np.asarray(space.low), (action_dim,)))
        high = tuple(float(x) for x in np.broadcast_to(np.asarray(space.high), (action_dim,)))
        discrete = False
    else:
        raise UnknownEnvError(f"environment {name!r} has a {type(space).__name__} action space; "
                              "trpojax supports Discrete and Box")
    obs_dim = int(np.prod(obs_shape)) if obs_shape else 1
    return EnvSpec(
        name=name,
        env=env,
        params=params,
        obs_shape=obs_shape,
        obs_dim=obs_dim,
        discrete=discrete,
        action_dim=action_dim,
        action_low=low,
        action_high=high,
        max_episode_steps=int(params.max_steps_in_episode),
    )


def flatten_obs(spec: EnvSpec, obs: jax.Array) -> jax.Array:
    """[..., *obs_shape] -> float32 [..., obs_dim]."""
    lead = obs.shape[: obs.ndim - len(spec.obs_shape)]
    return jnp.reshape(obs, (*lead, spec.obs_dim)).astype(jnp.float32)


def env_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """The action sent to the env: Box actions clipped to the bounds; log-probs use the unclipped one."""
    if spec.discrete:
        return action
    return jnp.clip(action, jnp.array(spec.action_low), jnp.array(spec.action_high))


class RunningMeanStd(NamedTuple):
    """Running mean and variance of observations (Chan et al. parallel update).

    Attributes:
        mean: [obs_dim]
        var: [obs_dim]
        count: [] number of observations seen (starts at a tiny epsilon).
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_running_stats(obs_dim: int) -> RunningMeanStd:
    """Zero mean, unit variance, count 1e-4."""
    return RunningMeanStd(
        mean=jnp.zeros((obs_dim,), jnp.float32),
        var=jnp.ones((obs_dim,), jnp.float32),
        count=jnp.asarray(1e-4, jnp.float32),
    )


def update_running_stats(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merge a batch ``[N, obs_dim]`` into the running statistics."""
    batch = jnp.reshape(batch, (-1, stats.mean.shape[0]))
    n = jnp.asarray(batch.shape[0], jnp.float32)
    b_mean = jnp.mean(batch, axis=0)
    b_var = jnp.var(batch, axis=0)
    delta = b_mean - stats.mean
    total = stats.count + n
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + b_var * n + delta**2 * stats.count * n / total
    return RunningMeanStd(mean=mean, var=m2 / total, count=total)


def normalize_obs(stats: RunningMeanStd, obs: jax.Array, enabled: bool, clip: float = 10.0) -> jax.Array:
    """clip((obs - mean) / sqrt(var + 1e-8), -clip, clip) when ``enabled``, else ``obs`` unchanged."""
    if not enabled:
        return obs
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -clip, clip)


class EpisodeStats(NamedTuple):
    """Per-env episode accumulators, carried across rollouts.

    Attributes:
        episode_return: [B] undiscounted return of the episode in progress.
        episode_length: [B] steps of the episode in progress.
        last_return_mean: [] mean return of the episodes completed in the latest rollout that completed
            any (NaN before the first), reported while a rollout completes none.
        last_length_mean: [] likewise for lengths.
    """

    episode_return: jax.Array
    episode_length: jax.Array
    last_return_mean: jax.Array
    last_length_mean: jax.Array


def init_episode_stats(num_envs: int) -> EpisodeStats:
    """Fresh accumulators for ``num_envs`` envs."""
    return EpisodeStats(
        episode_return=jnp.zeros((num_envs,), jnp.float32),
        episode_length=jnp.zeros((num_envs,), jnp.int32),
        last_return_mean=jnp.asarray(jnp.nan, jnp.float32),
        last_length_mean=jnp.asarray(jnp.nan, jnp.float32),
    )

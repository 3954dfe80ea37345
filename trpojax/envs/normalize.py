"""Running observation normalisation, kept in the train state (Chan et al.'s parallel mean/variance update)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


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

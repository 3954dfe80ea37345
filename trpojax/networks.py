"""Flax MLPs for the policy and the state-value function.

Hidden layers use orthogonal initialisation with gain sqrt(2) and zero biases; the policy head uses gain
0.01 so the initial policy is close to uniform (Categorical) or centred (Gaussian), and the value head gain
1.0 (Andrychowicz et al. 2021, "What matters in on-policy RL"). The orthogonal matrices come from
:func:`orthogonal`, which needs no LAPACK call: jaxlib's CPU QR kernel splits a batch (as under a vmap
over seeds) over the intra-op thread pool and can deadlock when two such kernels run at once on a small
machine. The Gaussian policy has a
state-independent ``log_std`` parameter vector, as in Schulman et al. (2015).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trpojax.core.distributions import Categorical, DiagGaussian

if TYPE_CHECKING:
    from trpojax.config import NetworkConfig
    from trpojax.envs import EnvSpec

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "swish": nn.swish, "elu": nn.elu}


def orthonormal_columns(a: jax.Array) -> jax.Array:
    """Q with orthonormal columns spanning those of ``a [m, k]`` (m >= k), R's diagonal kept positive.

    Modified Gram-Schmidt with one re-orthogonalisation pass per column, in plain jax.numpy: for a Gaussian
    ``a`` this is the Q factor of the QR decomposition with positive diag(R), i.e. Haar-distributed
    (Mezzadri 2007), the same distribution as ``flax.linen.initializers.orthogonal``.
    """
    k = a.shape[1]

    def column(j: jax.Array, q: jax.Array) -> jax.Array:
        earlier = q * (jnp.arange(k) < j)  # the columns already orthonormalised, others zeroed
        v = q[:, j]
        for _ in range(2):
            v = v - earlier @ (earlier.T @ v)
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, k, column, a)


def orthogonal(scale: float = 1.0) -> Callable[..., jax.Array]:
    """Initializer of ``scale`` times a random matrix with orthonormal rows or columns (Saxe et al. 2014).

    The kernel is viewed as a ``[prod(shape[:-1]), shape[-1]]`` matrix (for a dense layer ``[n_in, n_out]``)
    whose smaller dimension's vectors are orthonormal, as in ``flax.linen.initializers.orthogonal``.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        n_rows, n_cols = math.prod(shape[:-1]), shape[-1]
        tall = (max(n_rows, n_cols), min(n_rows, n_cols))
        q = orthonormal_columns(jax.random.normal(key, tall, jnp.float32))
        q = q if n_rows >= n_cols else q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


class MLP(nn.Module):
    """x [..., in] -> [..., out_dim] through ``hidden`` layers with ``activation``."""

    hidden: Sequence[int]
    out_dim: int
    activation: str = "tanh"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=orthogonal(math.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=orthogonal(self.out_scale))(x)


class PolicyNetwork(nn.Module):
    """obs [..., obs_dim] -> a Categorical over ``action_dim`` actions or a DiagGaussian in ``action_dim``.

    Attributes:
        action_dim: number of actions (discrete) or action dimensions (continuous).
        discrete: Categorical when True, DiagGaussian with a learned state-independent log-std otherwise.
        hidden: hidden layer widths.
        activation: one of ``ACTIVATIONS``.
        init_log_std: initial value of every log-std entry (continuous only).
        mean_box: ``(low, high)`` bounds per action dimension to keep the Gaussian's mean in, as
            mu = centre + half * tanh(MLP(obs)) (continuous only); None for an unbounded mean mu = MLP(obs).
            Actions are clipped to the box in the environment, so an unbounded mean that drifts outside it
            stops mattering (every sample clips to the bound) and the policy gradient there is noise.
    """

    action_dim: int
    discrete: bool
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0
    mean_box: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> Categorical | DiagGaussian:
        out = MLP(self.hidden, self.action_dim, self.activation, out_scale=0.01)(obs)
        if self.discrete:
            return Categorical(logits=out)
        log_std = self.param(
            "log_std", lambda _, shape: jnp.full(shape, self.init_log_std, jnp.float32), (self.action_dim,)
        )
        if self.mean_box is not None:
            low, high = (jnp.asarray(bound, jnp.float32) for bound in self.mean_box)
            out = 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(out)
        return DiagGaussian(mean=out, log_std=log_std)


class ValueNetwork(nn.Module):
    """obs [..., obs_dim] -> V(s) [...]."""

    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.activation, out_scale=1.0)(obs)[..., 0]


class DeterministicPolicy(nn.Module):
    """obs [..., obs_dim] -> N(mu(obs), diag(exp(2 log_std))) with mu = centre + half * tanh(MLP(obs)).

    The deterministic policy of a deterministic actor-critic (:mod:`trpojax.algos.ntdac`): mu maps into the
    action box [low, high] (centre = (low + high) / 2, half = (high - low) / 2) and is the distribution's
    mode, the action evaluations take; ``log_std`` (a parameter the learner sets and never trains) is the
    Gaussian exploration noise that sampling adds.

    Attributes:
        action_low, action_high: the box bounds, one per action dimension.
        hidden: hidden layer widths.
        activation: one of ``ACTIVATIONS``.
    """

    action_low: Sequence[float]
    action_high: Sequence[float]
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> DiagGaussian:
        low, high = jnp.asarray(self.action_low, jnp.float32), jnp.asarray(self.action_high, jnp.float32)
        out = MLP(self.hidden, len(self.action_low), self.activation, out_scale=0.01)(obs)
        log_std = self.param("log_std", lambda _, shape: jnp.zeros(shape, jnp.float32), (len(self.action_low),))
        return DiagGaussian(mean=0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(out), log_std=log_std)


def make_policy(network: NetworkConfig, spec: EnvSpec) -> PolicyNetwork:
    """The policy MLP of a run's ``network:`` section for ``spec``'s action space."""
    bounded = network.bounded_mean and not spec.discrete
    return PolicyNetwork(
        spec.action_dim, spec.discrete, network.policy_hidden, network.activation, network.init_log_std,
        (spec.action_low, spec.action_high) if bounded else None,
    )

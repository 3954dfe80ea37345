"""Flax MLPs for the policy and the state-value function.

Hidden layers use orthogonal initialisation with gain sqrt(2) and zero biases; the policy head uses gain
0.01 so the initial policy is close to uniform (Categorical) or centred (Gaussian), and the value head gain
1.0 (Andrychowicz et al. 2021, "What matters in on-policy RL"). The Gaussian policy has a
state-independent ``log_std`` parameter vector, as in Schulman et al. (2015).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp

from trpojax.distributions import Categorical, DiagGaussian

if TYPE_CHECKING:
    from trpojax.config import NetworkConfig
    from trpojax.envs import EnvSpec

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "swish": nn.swish, "elu": nn.elu}


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
            x = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


class PolicyNetwork(nn.Module):
    """obs [..., obs_dim] -> a Categorical over ``action_dim`` actions or a DiagGaussian in ``action_dim``.

    Attributes:
        action_dim: number of actions (discrete) or action dimensions (continuous).
        discrete: Categorical when True, DiagGaussian with a learned state-independent log-std otherwise.
        hidden: hidden layer widths.
        activation: one of ``ACTIVATIONS``.
        init_log_std: initial value of every log-std entry (continuous only).
    """

    action_dim: int
    discrete: bool
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> Categorical | DiagGaussian:
        out = MLP(self.hidden, self.action_dim, self.activation, out_scale=0.01)(obs)
        if self.discrete:
            return Categorical(logits=out)
        log_std = self.param(
            "log_std", lambda _, shape: jnp.full(shape, self.init_log_std, jnp.float32), (self.action_dim,)
        )
        return DiagGaussian(mean=out, log_std=log_std)


class ValueNetwork(nn.Module):
    """obs [..., obs_dim] -> V(s) [...]."""

    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.activation, out_scale=1.0)(obs)[..., 0]


def make_policy(network: NetworkConfig, spec: EnvSpec) -> PolicyNetwork:
    """The policy MLP of a run's ``network:`` section for ``spec``'s action space."""
    return PolicyNetwork(
        spec.action_dim, spec.discrete, network.policy_hidden, network.activation, network.init_log_std
    )

"""Action distributions: Categorical (Discrete spaces) and diagonal Gaussian (Box spaces).

Both are ``flax.struct`` dataclasses, so they pass through ``jit``/``vmap`` and can be returned by a
policy network. Batch dimensions are leading: a Categorical over ``n`` actions has ``logits [..., n]``;
a DiagGaussian over ``d`` dimensions has ``mean [..., d]`` and ``log_std`` broadcastable to it.
The KL divergences are closed-form (Kullback & Leibler 1951); TRPO constrains their batch mean.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_LOG_2PI = np.float32(math.log(2.0 * math.pi))  # a host constant: no device op at import


@struct.dataclass
class Categorical:
    """pi(a) = softmax(logits)[a] over ``logits [..., n]``; actions are int32 of shape ``[...]``."""

    logits: jax.Array

    def _log_probs(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        """Draw a ~ pi, shape ``[...]``."""
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """log pi(a), shape ``[...]``."""
        logp = self._log_probs()
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        """H(pi) = -sum_a pi(a) log pi(a), shape ``[...]``."""
        logp = self._log_probs()
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)

    def mode(self) -> jax.Array:
        """argmax_a pi(a), shape ``[...]``."""
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)

    def kl(self, other: Categorical) -> jax.Array:
        """KL(self || other) = sum_a p(a) (log p(a) - log q(a)), shape ``[...]``."""
        logp, logq = self._log_probs(), other._log_probs()
        return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


@struct.dataclass
class DiagGaussian:
    """N(mean, diag(exp(2 log_std))) over ``mean [..., d]``; actions are float ``[..., d]``."""

    mean: jax.Array
    log_std: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        """Draw a = mean + std * eps, eps ~ N(0, I), shape ``[..., d]``."""
        eps = jax.random.normal(key, jnp.shape(self.mean), dtype=jnp.result_type(self.mean))
        return self.mean + jnp.exp(self.log_std) * eps

    def log_prob(self, action: jax.Array) -> jax.Array:
        """log N(a; mean, std^2) summed over the last axis, shape ``[...]``."""
        z = (action - self.mean) * jnp.exp(-self.log_std)
        per_dim = -0.5 * z**2 - self.log_std - 0.5 * _LOG_2PI
        return jnp.sum(jnp.broadcast_to(per_dim, jnp.shape(z)), axis=-1)

    def entropy(self) -> jax.Array:
        """H = sum_i (log_std_i + (1 + log 2 pi) / 2), shape ``[...]``."""
        per_dim = jnp.broadcast_to(self.log_std + 0.5 * (1.0 + _LOG_2PI), jnp.shape(self.mean))
        return jnp.sum(per_dim, axis=-1)

    def mode(self) -> jax.Array:
        """The mean, shape ``[..., d]``."""
        return self.mean

    def kl(self, other: DiagGaussian) -> jax.Array:
        """KL(self || other) = sum_i log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2."""
        var_ratio = jnp.exp(2.0 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        per_dim = other.log_std - self.log_std + 0.5 * (var_ratio + mean_term) - 0.5
        return jnp.sum(jnp.broadcast_to(per_dim, jnp.shape(mean_term)), axis=-1)


Distribution = Categorical | DiagGaussian

"""Distributions: closed-form KL and entropy against Monte-Carlo estimates; log-probs against scipy-free formulas."""

import jax
import jax.numpy as jnp
import numpy as np

from trpojax.core.distributions import Categorical, DiagGaussian

N = 200_000


def _mc_kl(p, q, key):
    a = p.sample(key)
    diff = p.log_prob(a) - q.log_prob(a)
    return float(jnp.mean(diff)), float(jnp.std(diff) / np.sqrt(N))


def test_categorical_kl_and_entropy_match_monte_carlo():
    key = jax.random.PRNGKey(0)
    p = Categorical(logits=jnp.broadcast_to(jnp.array([0.5, -1.0, 2.0, 0.0]), (N, 4)))
    q = Categorical(logits=jnp.broadcast_to(jnp.array([-0.3, 0.7, 1.0, 0.2]), (N, 4)))
    mc, se = _mc_kl(p, q, key)
    assert abs(float(p.kl(q)[0]) - mc) < 5 * se + 1e-6
    a = p.sample(jax.random.PRNGKey(1))
    ent_mc = -float(jnp.mean(p.log_prob(a)))
    assert abs(float(p.entropy()[0]) - ent_mc) < 5 * float(jnp.std(p.log_prob(a))) / np.sqrt(N)
    assert float(p.kl(p)[0]) == 0.0
    assert int(p.mode()[0]) == 2


def test_gaussian_kl_entropy_and_log_prob():
    key = jax.random.PRNGKey(2)
    p = DiagGaussian(mean=jnp.broadcast_to(jnp.array([0.3, -1.0]), (N, 2)), log_std=jnp.array([-0.2, 0.4]))
    q = DiagGaussian(mean=jnp.broadcast_to(jnp.array([0.0, -0.5]), (N, 2)), log_std=jnp.array([0.1, 0.0]))
    mc, se = _mc_kl(p, q, key)
    assert abs(float(p.kl(q)[0]) - mc) < 5 * se + 1e-6
    a = p.sample(jax.random.PRNGKey(3))
    np.testing.assert_allclose(np.mean(np.asarray(a), 0), [0.3, -1.0], atol=0.01)
    np.testing.assert_allclose(np.std(np.asarray(a), 0), np.exp([-0.2, 0.4]), rtol=0.01)
    x = np.array([0.1, 0.2])
    ref = sum(
        -0.5 * ((x[i] - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
        for i, (m, s) in enumerate(zip([0.3, -1.0], np.exp([-0.2, 0.4]), strict=True))
    )
    np.testing.assert_allclose(float(p.log_prob(jnp.asarray(x))[0]), ref, rtol=1e-5)
    ent_mc = -float(jnp.mean(p.log_prob(a)))
    assert abs(float(p.entropy()[0]) - ent_mc) < 0.01
    np.testing.assert_allclose(np.asarray(p.mode()[0]), [0.3, -1.0])

"""GAE and discounted returns against a plain-Python reference, with terminations and truncations."""

import jax.numpy as jnp
import numpy as np
import pytest

from trpojax.core.returns import discounted_returns, gae_advantages


def reference_gae(r, v, boot, term, trunc, gamma, lam):
    t_len = len(r)
    adv = [0.0] * t_len
    nxt = 0.0
    for t in reversed(range(t_len)):
        done = term[t] or trunc[t]
        succ = 0.0 if term[t] else boot[t]
        delta = r[t] + gamma * succ - v[t]
        nxt = delta + (0.0 if done else gamma * lam * nxt)
        adv[t] = nxt
    return np.array(adv), np.array(adv) + np.array(v)


def reference_returns(r, boot, term, trunc, gamma):
    out, nxt = [0.0] * len(r), 0.0
    for t in reversed(range(len(r))):
        if term[t]:
            nxt = r[t]
        elif trunc[t] or t == len(r) - 1:
            nxt = r[t] + gamma * boot[t]
        else:
            nxt = r[t] + gamma * nxt
        out[t] = nxt
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_gae_matches_reference(x64, seed):
    rng = np.random.default_rng(seed)
    t_len, b = 37, 5
    r, v, boot = (rng.normal(size=(t_len, b)) for _ in range(3))
    term = rng.random((t_len, b)) < 0.1
    trunc = (rng.random((t_len, b)) < 0.1) & ~term
    gamma, lam = 0.97, 0.9
    adv, ret = gae_advantages(*(jnp.asarray(x) for x in (r, v, boot, term, trunc)), gamma, lam)
    for j in range(b):
        a_ref, ret_ref = reference_gae(r[:, j], v[:, j], boot[:, j], term[:, j], trunc[:, j], gamma, lam)
        np.testing.assert_allclose(adv[:, j], a_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ret[:, j], ret_ref, rtol=1e-10, atol=1e-12)
    g = discounted_returns(*(jnp.asarray(x) for x in (r, boot, term, trunc)), gamma)
    for j in range(b):
        ref = reference_returns(r[:, j], boot[:, j], term[:, j], trunc[:, j], gamma)
        np.testing.assert_allclose(g[:, j], ref, rtol=1e-10)


def test_truncation_bootstraps_and_termination_does_not(x64):
    r = jnp.array([1.0, 1.0])
    v = jnp.array([0.0, 0.0])
    boot = jnp.array([5.0, 5.0])
    no = jnp.array([False, False])
    at_end = jnp.array([True, False])
    adv_trunc, _ = gae_advantages(r, v, boot, no, at_end, 0.5, 1.0)
    adv_term, _ = gae_advantages(r, v, boot, at_end, no, 0.5, 1.0)
    assert float(adv_trunc[0]) == pytest.approx(1.0 + 0.5 * 5.0)  # bootstraps V(final obs), stops there
    assert float(adv_term[0]) == pytest.approx(1.0)
    # lambda = 1 GAE returns equal the bootstrapped discounted returns
    _, ret = gae_advantages(r, v, boot, no, at_end, 0.5, 1.0)
    np.testing.assert_allclose(ret, discounted_returns(r, boot, no, at_end, 0.5))

"""Networks: the LAPACK-free orthogonal initialiser against flax's QR-based one, and the policy heads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax.core.distributions import Categorical, DiagGaussian
from trpojax.networks import PolicyNetwork, ValueNetwork, orthogonal


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (64, 1), (3, 5, 7)])
def test_orthogonal_matches_flax_qr_initializer(shape):
    key = jax.random.PRNGKey(11)
    ours = np.asarray(orthogonal(1.7)(key, shape))
    ref = np.asarray(nn.initializers.orthogonal(1.7)(key, shape))
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    flat = ours.reshape(-1, shape[-1])
    small = min(flat.shape)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, 1.7**2 * np.eye(small), atol=1e-5)


def test_initialisation_uses_no_lapack_call():
    policy = PolicyNetwork(2, True)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    jaxpr = str(jax.make_jaxpr(jax.vmap(lambda k: policy.init(k, jnp.zeros(4))))(keys))
    assert "qr" not in jaxpr.replace("sqrt", "") and "householder" not in jaxpr


def test_policy_and_value_heads():
    obs = jnp.zeros((5, 3))
    cat = PolicyNetwork(4, True)
    dist = cat.apply(cat.init(jax.random.PRNGKey(0), obs), obs)
    assert isinstance(dist, Categorical) and dist.logits.shape == (5, 4)
    gauss = PolicyNetwork(2, False, init_log_std=-0.5)
    params = gauss.init(jax.random.PRNGKey(0), obs)
    dist = gauss.apply(params, obs)
    assert isinstance(dist, DiagGaussian) and dist.mean.shape == (5, 2)
    np.testing.assert_allclose(params["params"]["log_std"], [-0.5, -0.5])
    value = ValueNetwork((8,))
    assert value.apply(value.init(jax.random.PRNGKey(1), obs), obs).shape == (5,)


def test_bounded_mean_stays_in_the_box_where_the_unbounded_one_leaves_it():
    box = ((-3.0, 0.0), (1.0, 2.0))
    bounded = PolicyNetwork(2, False, (8,), "tanh", 0.0, box)
    free = PolicyNetwork(2, False, (8,), "tanh", 0.0)
    obs = jnp.zeros((1, 4))
    params = free.init(jax.random.PRNGKey(0), obs)
    # The same parameters with a large output layer: the MLP's output is far outside the box.
    big = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 1e4 if "Dense_1" in jax.tree_util.keystr(path) else x, params
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (256, 4))
    raw = np.asarray(free.apply(big, x).mean)
    mean = np.asarray(bounded.apply(big, x).mean)
    assert np.any(raw < np.array(box[0])) and np.any(raw > np.array(box[1]))
    assert np.all(mean >= np.array(box[0])) and np.all(mean <= np.array(box[1]))
    # At zero MLP output the mean is the box's centre; the tanh map is centre + half * tanh(raw).
    np.testing.assert_allclose(mean, np.array([-1.0, 1.0]) + np.array([2.0, 1.0]) * np.tanh(raw), atol=1e-5)

"""The TRPO update on fixed batches: trust region respected, surrogate improved, rejection leaves theta unchanged."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from trpojax.algos import trpo
from trpojax.networks import PolicyNetwork, ValueNetwork

# One compiled program per configuration shape (op-by-op dispatch would compile each primitive on its own).
POLICY_UPDATE = jax.jit(trpo.policy_update, static_argnums=3)


def make_batch(discrete, key, n=256, obs_dim=4, action_dim=2):
    policy = PolicyNetwork(action_dim, discrete, (16,), "tanh", 0.0)
    value = ValueNetwork((16,), "tanh")
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    obs = jax.random.normal(k1, (n, obs_dim))
    params = policy.init(k2, obs[0])
    actions = policy.apply(params, obs).sample(k3)
    advantages = jax.random.normal(k4, (n,))
    batch = trpo.Batch(obs=obs, actions=actions, advantages=advantages, returns=advantages)
    state = trpo.init(params, value.init(k5, obs[0]), trpo.Config())
    return policy, value, state, batch


def surrogate_and_kl(policy, old_params, new_params, batch):
    old = policy.apply(old_params, batch.obs)
    new = policy.apply(new_params, batch.obs)
    ratio = jnp.exp(new.log_prob(batch.actions) - old.log_prob(batch.actions))
    return float(jnp.mean(ratio * batch.advantages)), float(jnp.mean(old.kl(new)))


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("max_kl", [0.001, 0.01, 0.05])
def test_update_respects_trust_region_and_improves(discrete, max_kl):
    policy, value, state, batch = make_batch(discrete, jax.random.PRNGKey(int(discrete) * 10 + int(max_kl * 1000)))
    config = trpo.Config(max_kl=max_kl)
    new_state, metrics = jax.jit(
        lambda s, b, c: trpo.update(s, b, jax.random.PRNGKey(0), c, nets=trpo.Networks(policy.apply, value.apply))
    )(state, batch, config)
    surr_old, _ = surrogate_and_kl(policy, state.policy_params, state.policy_params, batch)
    surr_new, kl = surrogate_and_kl(policy, state.policy_params, new_state.policy_params, batch)
    assert float(metrics["accepted"]) == 1.0
    assert 0.0 < kl <= max_kl * (1 + 1e-4)
    assert surr_new > surr_old
    np.testing.assert_allclose(float(metrics["kl"]), kl, rtol=1e-3)
    np.testing.assert_allclose(float(metrics["surrogate_gain"]), surr_new - surr_old, rtol=1e-3, atol=1e-7)
    assert float(metrics["value_loss"]) > 0


def test_step_direction_matches_dense_natural_gradient(x64):
    """With enough CG iterations, the full step equals sqrt(2 delta / s^T F s) s, s = (F + lambda I)^-1 g."""
    policy, _, state, batch = make_batch(True, jax.random.PRNGKey(7), n=64)
    params = state.policy_params
    flat, unravel = ravel_pytree(params)
    config = trpo.Config(max_kl=1e-4, cg_iters=200, cg_tol=1e-12, cg_damping=0.05, backtrack_steps=1)
    old = policy.apply(params, batch.obs)

    def surrogate(z):
        new = policy.apply(unravel(z), batch.obs)
        return jnp.mean(jnp.exp(new.log_prob(batch.actions) - old.log_prob(batch.actions)) * batch.advantages)

    fisher = jax.jit(jax.hessian(lambda z: jnp.mean(old.kl(policy.apply(unravel(z), batch.obs)))))(flat)
    fisher = fisher + config.cg_damping * jnp.eye(flat.size)
    g = jax.grad(surrogate)(flat)
    s = jnp.linalg.solve(fisher, g)
    expected = flat + jnp.sqrt(2 * config.max_kl / (s @ fisher @ s)) * s
    new_params, metrics = POLICY_UPDATE(params, batch, config, policy.apply)
    assert float(metrics["accepted"]) == 1.0  # a tiny trust region: the quadratic model is accurate
    np.testing.assert_allclose(ravel_pytree(new_params)[0], expected, rtol=1e-5, atol=1e-9)


def test_entropy_bonus_is_the_dense_natural_gradient_of_surrogate_plus_entropy(x64):
    """With entropy_coef c the step is the natural gradient of L(theta) + c * mean H(pi_theta); with zero
    advantages that is the entropy's alone, so the Gaussian policy's log-std grows."""
    policy, _, state, batch = make_batch(False, jax.random.PRNGKey(8), n=64)
    batch = batch._replace(advantages=jnp.zeros_like(batch.advantages))
    params = state.policy_params
    flat, unravel = ravel_pytree(params)
    config = trpo.Config(max_kl=1e-4, cg_iters=200, cg_tol=1e-12, cg_damping=0.05, backtrack_steps=1,
                         entropy_coef=0.5)
    old = policy.apply(params, batch.obs)
    fisher = jax.jit(jax.hessian(lambda z: jnp.mean(old.kl(policy.apply(unravel(z), batch.obs)))))(flat)
    fisher = fisher + config.cg_damping * jnp.eye(flat.size)
    g = jax.grad(lambda z: config.entropy_coef * jnp.mean(policy.apply(unravel(z), batch.obs).entropy()))(flat)
    s = jnp.linalg.solve(fisher, g)
    expected = flat + jnp.sqrt(2 * config.max_kl / (s @ fisher @ s)) * s
    new_params, metrics = POLICY_UPDATE(params, batch, config, policy.apply)
    assert float(metrics["accepted"]) == 1.0
    np.testing.assert_allclose(ravel_pytree(new_params)[0], expected, rtol=1e-5, atol=1e-9)
    assert np.all(np.asarray(new_params["params"]["log_std"]) > np.asarray(params["params"]["log_std"]))
    _, rejected = POLICY_UPDATE(params, batch, dataclasses.replace(config, entropy_coef=0.0), policy.apply)
    assert float(rejected["accepted"]) == 0.0  # without the bonus there is nothing to gain


@pytest.mark.parametrize(
    "case",
    ["zero_advantages", "nan_advantages", "indefinite_fisher", "no_improving_step"],
)
def test_rejected_update_keeps_parameters(case):
    policy, value, state, batch = make_batch(True, jax.random.PRNGKey(3))
    config = trpo.Config()
    if case == "zero_advantages":
        batch = batch._replace(advantages=jnp.zeros_like(batch.advantages))
    elif case == "nan_advantages":
        batch = batch._replace(advantages=batch.advantages.at[0].set(jnp.nan))
    elif case == "indefinite_fisher":  # damping below -lambda_max(F): F + damping I negative definite
        config = dataclasses.replace(config, cg_damping=-10.0)
    else:  # every trial step is scaled past the trust region: backtrack_ratio**k too large
        config = dataclasses.replace(config, max_kl=1e-30, backtrack_steps=2)
    new_params, metrics = POLICY_UPDATE(state.policy_params, batch, config, policy.apply)
    assert float(metrics["accepted"]) == 0.0
    assert float(metrics["rejected_updates"]) == 1.0
    for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(state.policy_params), strict=True):
        np.testing.assert_array_equal(a, b)

"""Numerical guards: a full TRPO update fed an adversarial batch keeps the policy unchanged and finite and
counts the rejection."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax.algos import trpo
from trpojax.networks import PolicyNetwork, ValueNetwork

POLICY = PolicyNetwork(2, True, (16,), "tanh", 0.0)
VALUE = ValueNetwork((16,), "tanh")
# The config's floats are traced, so cases that differ only in them share one compilation.
UPDATE = jax.jit(trpo.update, static_argnames="nets")


def constant_policy(params, obs):
    """A policy that does not depend on theta: its Fisher matrix (and gradient) is zero."""
    return POLICY.apply(jax.lax.stop_gradient(params), obs)


def setup_update(key, n=128, obs_dim=4):
    policy, value = POLICY, VALUE
    k_obs, k_pol, k_act, k_adv, k_val, k_upd = jax.random.split(key, 6)
    obs = jax.random.normal(k_obs, (n, obs_dim))
    params = policy.init(k_pol, obs[0])
    advantages = jax.random.normal(k_adv, (n,))
    batch = trpo.Batch(
        obs=obs, actions=policy.apply(params, obs).sample(k_act), advantages=advantages, returns=advantages
    )
    return policy, value, trpo.init(params, value.init(k_val, obs[0]), trpo.Config()), batch, k_upd


@pytest.mark.parametrize("case", ["nan_advantages", "zero_fisher", "indefinite_curvature"])
def test_adversarial_batch_is_rejected(case):
    policy, value, state, batch, key = setup_update(jax.random.PRNGKey(0))
    config = trpo.Config(critic_epochs=1, critic_minibatches=2, backtrack_steps=3)
    policy_apply = policy.apply
    if case == "nan_advantages":
        batch = batch._replace(advantages=batch.advantages.at[3].set(jnp.nan))
    elif case == "zero_fisher":  # F = 0 (and g = 0) with no damping: s^T F s = 0
        config = dataclasses.replace(config, cg_damping=0.0)
        policy_apply = constant_policy
    else:  # damping below -lambda_max(F): F + damping I is negative definite, s^T F s < 0
        config = dataclasses.replace(config, cg_damping=-10.0)
    new_state, metrics = UPDATE(state, batch, key, config, nets=trpo.Networks(policy_apply, value.apply))
    assert float(metrics["rejected_updates"]) == 1.0 and float(metrics["accepted"]) == 0.0
    assert float(metrics["step_norm"]) == 0.0 and float(metrics["kl"]) == 0.0
    new_params, old_params = jax.tree.leaves(new_state.policy_params), jax.tree.leaves(state.policy_params)
    for new, old in zip(new_params, old_params, strict=True):
        assert np.isfinite(new).all()
        np.testing.assert_array_equal(new, old)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(new_state.value_params))

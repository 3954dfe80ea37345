"""Tests of g(tau, theta) and B(tau, theta) v against exact tabular oracles, dense autodiff, plain Python."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from trpojax.core import estimators, tabular


def jitted(estimator):
    """Jit an estimator with its ``log_prob_fn`` (first argument) static, so eager tests compile once."""
    return jax.jit(estimator, static_argnums=0)


def softmax_log_prob(theta, state, action):
    return jax.nn.log_softmax(theta[state])[action]


def agrees(samples, exact, atol=1e-8):
    """True when every component of the sample mean is within 5 standard errors (+ atol) of ``exact``."""
    samples, exact = np.asarray(samples), np.asarray(exact)
    standard_error = samples.std(axis=0) / np.sqrt(samples.shape[0])
    return bool(np.all(np.abs(samples.mean(axis=0) - exact) <= 5 * standard_error + atol))


def wrong_hessian_vector_product(log_prob_fn, params, obs, actions, rewards, mask, gamma, v):
    """hess Phi v alone: B v without the grad Phi grad log p^T term, biased for hess J_H v."""
    phi_grad = jax.grad(estimators.policy_gradient_surrogate, argnums=1)
    return jax.jvp(lambda p: phi_grad(log_prob_fn, p, obs, actions, rewards, mask, gamma), (params,), (v,))[1]


def undiscounted_weight_gradient(log_prob_fn, params, obs, actions, rewards, mask, gamma):
    """sum_t G_t grad log pi (the gamma^t factor dropped): biased for grad J_H."""
    weights = estimators.reward_to_go(rewards, mask, gamma)
    log_probs = jax.vmap(log_prob_fn, (None, 0, 0))
    return jax.grad(lambda p: jnp.sum(weights * log_probs(p, obs, actions)))(params)


def sampled_estimates(mdp, theta, v, horizon, num, key):
    """Exact grad J_H and hess J_H v, and per-trajectory estimates over ``num`` sampled trajectories."""

    def objective(t):
        return tabular.finite_horizon_return(mdp, tabular.softmax_policy(t), horizon)

    exact_grad, exact_hvp = jax.jvp(jax.grad(objective), (theta,), (v,))
    states, actions, rewards, mask = tabular.sample_trajectories(key, mdp, theta, horizon, num)
    constant = 0.5 * jnp.mean(rewards @ mdp.gamma ** jnp.arange(horizon))
    values = tabular.state_values(mdp, tabular.softmax_policy(theta))

    def estimates(states, actions, rewards, mask):
        trajectory = (softmax_log_prob, theta, states, actions, rewards, mask, mdp.gamma)
        g, bv = estimators.policy_gradient_and_hessian_vector_product(*trajectory, v)
        return {
            "g": g,
            "bv": bv,
            "g_constant_baseline": estimators.policy_gradient_with_baseline(
                *trajectory, jnp.full_like(rewards, constant)
            ),
            "g_state_baseline": estimators.policy_gradient_with_baseline(*trajectory, values[states]),
            "wrong_bv": wrong_hessian_vector_product(*trajectory, v),
            "wrong_g": undiscounted_weight_gradient(*trajectory),
        }

    results = jax.jit(jax.vmap(estimates))(states, actions, rewards, mask)
    results.update(exact_grad=exact_grad, exact_hvp=exact_hvp)
    return {name: np.asarray(value) for name, value in results.items()}


def greedy_policy(mdp, iterations=20):
    """[S, A] one-hot policy from policy iteration, a good policy to centre the FrozenLake samples on."""
    pi = jnp.full(mdp.r.shape, 1.0 / mdp.r.shape[1])
    for _ in range(iterations):
        pi = jax.nn.one_hot(jnp.argmax(tabular.action_values(mdp, pi), axis=-1), mdp.r.shape[1])
    return pi


@pytest.fixture(scope="module")
def random_mdp_samples():
    with jax.enable_x64(True):
        mdp = tabular.random_mdp(jax.random.PRNGKey(0), num_states=4, num_actions=3, gamma=0.9)
        theta = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
        v = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
        return sampled_estimates(mdp, theta, v, horizon=6, num=25_000, key=jax.random.PRNGKey(3))


@pytest.fixture(scope="module")
def frozen_lake_samples():
    with jax.enable_x64(True):
        mdp = tabular.frozen_lake_mdp(gamma=0.95)
        # A noisy version of a good policy, so that a fair share of the trajectories reach the goal.
        theta = 3.0 * greedy_policy(mdp) + 0.3 * jax.random.normal(jax.random.PRNGKey(4), (16, 4))
        v = jax.random.normal(jax.random.PRNGKey(5), (16, 4))
        return sampled_estimates(mdp, theta, v, horizon=20, num=25_000, key=jax.random.PRNGKey(6))


@pytest.fixture(params=["random_mdp", "frozen_lake"])
def samples(request, random_mdp_samples, frozen_lake_samples):
    return {"random_mdp": random_mdp_samples, "frozen_lake": frozen_lake_samples}[request.param]


def test_policy_gradient_is_unbiased(samples):
    assert agrees(samples["g"], samples["exact_grad"])


def test_hessian_vector_product_is_unbiased(samples):
    assert agrees(samples["bv"], samples["exact_hvp"])


def test_baselines_keep_the_mean(samples):
    assert agrees(samples["g_constant_baseline"] - samples["g"], 0.0)
    assert agrees(samples["g_constant_baseline"], samples["exact_grad"])
    assert agrees(samples["g_state_baseline"], samples["exact_grad"])


def test_check_detects_wrong_estimators(samples):
    assert not agrees(samples["wrong_bv"], samples["exact_hvp"])
    assert not agrees(samples["wrong_g"], samples["exact_grad"])


def test_frozen_lake_samples_reach_the_goal(frozen_lake_samples):
    # Guard against a vacuous test: the goal reward must show up in a good share of the trajectories.
    assert np.mean(np.any(frozen_lake_samples["g"] != 0, axis=(1, 2))) > 0.05


def one_trajectory(num_states=4, num_actions=3, horizon=5, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    theta = jax.random.normal(keys[0], (num_states, num_actions))
    states = jax.random.randint(keys[1], (horizon,), 0, num_states)
    actions = jax.random.randint(keys[2], (horizon,), 0, num_actions)
    rewards = jax.random.uniform(keys[3], (horizon,))
    v = jax.random.normal(keys[4], (num_states, num_actions))
    return theta, states, actions, rewards, v


def test_reward_to_go_matches_python_loop(x64):
    rewards = jnp.array([1.0, -2.0, 0.5, 3.0, 7.0])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0])
    expected = [sum(0.9 ** (h - t) * float(rewards[h] * mask[h]) for h in range(t, 5)) for t in range(5)]
    np.testing.assert_allclose(estimators.reward_to_go(rewards, mask, 0.9), expected, rtol=1e-12)


def test_matches_plain_python_reference(x64):
    theta, states, actions, rewards, v = one_trajectory()
    gamma, horizon = 0.8, len(states)
    pi = np.asarray(jax.nn.softmax(theta, axis=-1))
    num_states, num_actions = pi.shape
    scores, hessians = [], []
    for s, a in zip(np.asarray(states), np.asarray(actions), strict=True):
        score = np.zeros((num_states, num_actions))
        score[s] = np.eye(num_actions)[a] - pi[s]
        hessian = np.zeros((num_states * num_actions,) * 2)
        block = slice(s * num_actions, (s + 1) * num_actions)
        hessian[block, block] = -(np.diag(pi[s]) - np.outer(pi[s], pi[s]))
        scores.append(score.ravel())
        hessians.append(hessian)
    weights = [sum(gamma**h * float(rewards[h]) for h in range(t, horizon)) for t in range(horizon)]
    g = sum(w * score for w, score in zip(weights, scores, strict=True))
    b = np.outer(g, sum(scores)) + sum(w * hessian for w, hessian in zip(weights, hessians, strict=True))
    mask = jnp.ones(horizon)
    args = (softmax_log_prob, theta, states, actions, rewards, mask, gamma)
    g_both, bv_both = jitted(estimators.policy_gradient_and_hessian_vector_product)(*args, v)
    computed = [
        (g_both, g),
        (bv_both, b @ np.asarray(v).ravel()),
        (jitted(estimators.policy_gradient)(*args), g),
        (jitted(estimators.hessian_vector_product)(*args, v), b @ np.asarray(v).ravel()),
        (jitted(estimators.policy_gradient_with_baseline)(*args, jnp.zeros(horizon)), g),
    ]
    for actual, expected in computed:
        np.testing.assert_allclose(np.asarray(actual).ravel(), expected, rtol=1e-10, atol=1e-14)


def test_masked_padding_changes_nothing(x64):
    theta, states, actions, rewards, v = one_trajectory(horizon=5, seed=1)
    _, junk_states, junk_actions, junk_rewards, _ = one_trajectory(horizon=4, seed=2)
    padded = [jnp.concatenate(pair) for pair in ((states, junk_states), (actions, junk_actions))]
    padded_rewards = jnp.concatenate([rewards, 100.0 * junk_rewards])
    padded_mask = jnp.concatenate([jnp.ones(5), jnp.zeros(4)])
    both = jitted(estimators.policy_gradient_and_hessian_vector_product)
    g, bv = both(softmax_log_prob, theta, states, actions, rewards, jnp.ones(5), 0.9, v)
    g_padded, bv_padded = both(softmax_log_prob, theta, *padded, padded_rewards, padded_mask, 0.9, v)
    np.testing.assert_allclose(g_padded, g, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(bv_padded, bv, rtol=1e-12, atol=1e-15)


def mlp_log_prob(params, obs, action):
    hidden = jnp.tanh(obs @ params["w1"] + params["b1"])
    return jax.nn.log_softmax(hidden @ params["w2"] + params["b2"])[action]


def test_matches_dense_autodiff_on_pytree_policy(x64):
    keys = jax.random.split(jax.random.PRNGKey(8), 8)
    params = {
        "w1": jax.random.normal(keys[0], (4, 8)),
        "b1": jax.random.normal(keys[1], (8,)),
        "w2": jax.random.normal(keys[2], (8, 2)),
        "b2": jax.random.normal(keys[3], (2,)),
    }
    v = jax.tree.map(lambda p: jax.random.normal(keys[4], p.shape), params)
    horizon = 7
    obs = jax.random.normal(keys[5], (horizon, 4))
    actions = jax.random.randint(keys[6], (horizon,), 0, 2)
    rewards = jax.random.normal(keys[7], (horizon,))
    mask = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    gamma = 0.95
    flat, unravel = ravel_pytree(params)

    def phi(x):
        return estimators.policy_gradient_surrogate(
            mlp_log_prob, unravel(x), obs, actions, rewards, mask, gamma
        )

    def log_likelihood(x):
        log_probs = jax.vmap(mlp_log_prob, (None, 0, 0))(unravel(x), obs, actions)
        return jnp.sum(mask * log_probs)

    @jax.jit
    def dense_gradient_and_hessian(x):
        grad_phi = jax.grad(phi)(x)
        return grad_phi, jnp.outer(grad_phi, jax.grad(log_likelihood)(x)) + jax.hessian(phi)(x)

    dense_g, dense_b = dense_gradient_and_hessian(flat)
    g, bv = jitted(estimators.policy_gradient_and_hessian_vector_product)(
        mlp_log_prob, params, obs, actions, rewards, mask, gamma, v
    )
    np.testing.assert_allclose(ravel_pytree(g)[0], dense_g, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ravel_pytree(bv)[0], dense_b @ ravel_pytree(v)[0], rtol=1e-10, atol=1e-12)


def test_rejects_mismatched_shapes(x64):
    theta, states, actions, rewards, v = one_trajectory()
    with pytest.raises(AssertionError):
        estimators.policy_gradient(softmax_log_prob, theta, states, actions, rewards, jnp.ones(4), 0.9)
    with pytest.raises(AssertionError):
        estimators.hessian_vector_product(
            softmax_log_prob, theta, states, actions, rewards, jnp.ones(5), 0.9, v[:2]
        )

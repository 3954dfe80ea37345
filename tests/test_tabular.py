"""Oracle tests of the exact finite-MDP toolkit against plain NumPy/Python references and gymnax itself."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.misc import frozen_lake

from trpojax.core import tabular


@pytest.fixture
def mdp(x64):
    return tabular.random_mdp(jax.random.PRNGKey(0), num_states=5, num_actions=3, gamma=0.9)


@pytest.fixture
def pi(mdp):
    return tabular.softmax_policy(jax.random.normal(jax.random.PRNGKey(1), (5, 3)))


def test_random_mdp_is_valid(mdp):
    np.testing.assert_allclose(mdp.P.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(mdp.rho.sum(), 1.0, atol=1e-12)
    assert mdp.P.dtype == jnp.float64
    assert bool(jnp.all(mdp.r >= 0.0)) and bool(jnp.all(mdp.r <= 1.0))


def test_state_values_match_iterative_policy_evaluation(mdp, pi):
    P, r, gamma, policy = np.asarray(mdp.P), np.asarray(mdp.r), float(mdp.gamma), np.asarray(pi)
    values = np.zeros(P.shape[0])
    for _ in range(2000):
        values = np.array(
            [
                sum(policy[s, a] * (r[s, a] + gamma * P[s, a] @ values) for a in range(P.shape[1]))
                for s in range(P.shape[0])
            ]
        )
    np.testing.assert_allclose(tabular.state_values(mdp, pi), values, rtol=1e-10)
    np.testing.assert_allclose(tabular.expected_return(mdp, pi), np.asarray(mdp.rho) @ values, rtol=1e-10)


def test_action_values_and_advantages_are_consistent(mdp, pi):
    values = tabular.state_values(mdp, pi)
    np.testing.assert_allclose(jnp.sum(pi * tabular.action_values(mdp, pi), -1), values, rtol=1e-10)
    np.testing.assert_allclose(jnp.sum(pi * tabular.advantages(mdp, pi), -1), 0.0, atol=1e-10)


def test_visitation_sums_and_series(mdp, pi):
    gamma = float(mdp.gamma)
    visitation = tabular.unnormalized_visitation(mdp, pi)
    np.testing.assert_allclose(visitation.sum(), 1.0 / (1.0 - gamma), rtol=1e-10)
    np.testing.assert_allclose(tabular.discounted_visitation(mdp, pi).sum(), 1.0, rtol=1e-10)
    series = sum(gamma**t * tabular.state_distribution(mdp, pi, t) for t in range(400))
    np.testing.assert_allclose(visitation, series, rtol=1e-9)
    # eta = sum_s rho_pi(s) r_pi(s): values and visitation agree.
    np.testing.assert_allclose(
        visitation @ tabular.policy_reward(mdp, pi), tabular.expected_return(mdp, pi), rtol=1e-10
    )


def test_state_distribution_matches_matrix_power(mdp, pi):
    P_pi = np.asarray(tabular.policy_transition(mdp, pi))
    np.testing.assert_allclose(P_pi.sum(-1), 1.0, atol=1e-12)
    for t in (0, 1, 7):
        expected = np.asarray(mdp.rho) @ np.linalg.matrix_power(P_pi, t)
        np.testing.assert_allclose(tabular.state_distribution(mdp, pi, t), expected, rtol=1e-10)


def test_finite_horizon_return_matches_brute_force_enumeration(x64):
    small = tabular.random_mdp(jax.random.PRNGKey(3), num_states=2, num_actions=2, gamma=0.8)
    policy = np.asarray(tabular.softmax_policy(jnp.array([[0.3, -0.2], [1.0, 0.5]])))
    P, r, rho, gamma = np.asarray(small.P), np.asarray(small.r), np.asarray(small.rho), 0.8
    horizon = 3
    total = 0.0
    for states in itertools.product(range(2), repeat=horizon):
        for actions in itertools.product(range(2), repeat=horizon):
            prob = rho[states[0]]
            for t in range(horizon):
                prob *= policy[states[t], actions[t]]
                if t + 1 < horizon:
                    prob *= P[states[t], actions[t], states[t + 1]]
            total += prob * sum(gamma**t * r[states[t], actions[t]] for t in range(horizon))
    np.testing.assert_allclose(tabular.finite_horizon_return(small, jnp.asarray(policy), horizon), total)


def test_finite_horizon_return_tends_to_expected_return(mdp, pi):
    np.testing.assert_allclose(
        tabular.finite_horizon_return(mdp, pi, 400), tabular.expected_return(mdp, pi), rtol=1e-12
    )
    assert tabular.finite_horizon_return(mdp, pi, 0) == 0.0


def test_sampled_returns_match_finite_horizon_return(mdp):
    theta = jax.random.normal(jax.random.PRNGKey(4), (5, 3))
    horizon, num = 12, 20_000
    states, actions, rewards, mask = tabular.sample_trajectories(
        jax.random.PRNGKey(5), mdp, theta, horizon, num
    )
    assert states.shape == actions.shape == rewards.shape == mask.shape == (num, horizon)
    assert states.dtype == actions.dtype == jnp.int32
    assert bool(jnp.all(mask == 1.0))
    np.testing.assert_array_equal(rewards, mdp.r[states, actions])
    returns = rewards @ (mdp.gamma ** jnp.arange(horizon))
    exact = tabular.finite_horizon_return(mdp, tabular.softmax_policy(theta), horizon)
    assert abs(returns.mean() - exact) < 5 * returns.std() / np.sqrt(num)


def test_surrogate_matches_return_to_first_order(mdp, pi):
    np.testing.assert_allclose(tabular.surrogate(mdp, pi, pi), tabular.expected_return(mdp, pi), rtol=1e-12)
    theta = jnp.log(pi)
    grad_surrogate = jax.grad(lambda t: tabular.surrogate(mdp, pi, tabular.softmax_policy(t)))(theta)
    grad_return = jax.grad(lambda t: tabular.expected_return(mdp, tabular.softmax_policy(t)))(theta)
    np.testing.assert_allclose(grad_surrogate, grad_return, rtol=1e-9, atol=1e-12)


def test_divergence_maxima(pi):
    assert tv_and_kl(pi, pi) == (0.0, 0.0)
    pi_new = tabular.softmax_policy(jax.random.normal(jax.random.PRNGKey(6), pi.shape))
    tv, kl = tv_and_kl(pi, pi_new)
    expected_tv = max(0.5 * np.abs(np.asarray(pi - pi_new)).sum(-1))
    expected_kl = max((np.asarray(pi) * np.log(np.asarray(pi / pi_new))).sum(-1))
    np.testing.assert_allclose([tv, kl], [expected_tv, expected_kl], rtol=1e-12)
    assert kl >= 2 * tv**2  # Pinsker
    deterministic = jnp.eye(3)[jnp.array([0, 1, 2, 0, 1])]
    assert np.isfinite(float(tabular.kl_max(deterministic, pi)))


def tv_and_kl(pi, pi_new):
    return float(tabular.tv_max(pi, pi_new)), float(tabular.kl_max(pi, pi_new))


def test_frozen_lake_deterministic_map(x64):
    lake = tabular.frozen_lake_mdp(is_slippery=False)
    assert lake.P.shape == (16, 4, 16) and lake.r.shape == (16, 4)
    np.testing.assert_array_equal(lake.P.sum(-1), 1.0)
    np.testing.assert_array_equal(lake.rho, jnp.eye(16)[0])
    left, down, right, up = range(4)
    # Map "SFFF / FHFH / FFFH / HFFG": state 14 is left of the goal 15, state 5 is a hole.
    assert lake.P[0, down, 4] == 1.0 and lake.P[0, left, 0] == 1.0 and lake.P[0, up, 0] == 1.0
    assert lake.P[0, right, 1] == 1.0
    assert lake.r[14, right] == 1.0 and lake.r.sum() == 1.0  # 11 (above the goal) is a hole
    for absorbing in (5, 7, 11, 12, 15):
        np.testing.assert_array_equal(lake.P[absorbing], jnp.eye(16)[jnp.full(4, absorbing)])
        np.testing.assert_array_equal(lake.r[absorbing], 0.0)
    # A shortest-path policy reaches the goal in 6 moves, so its return is gamma^5.
    path = np.zeros(16, int)
    path[[0, 4, 8, 9, 13, 14]] = [down, down, right, down, right, right]
    policy = jax.nn.one_hot(path, 4)
    np.testing.assert_allclose(tabular.expected_return(lake, policy), 0.95**5, rtol=1e-12)


def test_frozen_lake_matches_gymnax_step_frequencies(x64):
    lake = tabular.frozen_lake_mdp(is_slippery=True)
    np.testing.assert_allclose(lake.P.sum(-1), 1.0, atol=1e-12)
    env = frozen_lake.FrozenLake(map_name="4x4", is_slippery=True)
    params = env.default_params
    num = 3000

    def next_position(key, position, action):
        state = frozen_lake.EnvState(position=position, time=0)
        _, next_state, reward, _, _ = env.step_env(key, state, action, params)
        return next_state.position, reward

    positions, actions = jnp.meshgrid(jnp.arange(16), jnp.arange(4), indexing="ij")
    keys = jax.random.split(jax.random.PRNGKey(7), num)
    sample = jax.jit(jax.vmap(jax.vmap(jax.vmap(next_position, (None, 0, 0)), (None, 0, 0)), (0, None, None)))
    landed, reward = sample(keys, positions, actions)  # [num, 16, 4]
    frequencies = jax.nn.one_hot(landed, 16).mean(0)  # [16, 4, 16]
    live = np.asarray(~jnp.isin(jnp.arange(16), jnp.array([5, 7, 11, 12, 15])))
    expected = lake.P[live]
    tolerance = 5 * jnp.sqrt(expected * (1 - expected) / num) + 1e-12
    assert bool(jnp.all(jnp.abs(frequencies[live] - expected) <= tolerance))
    reward_tolerance = 5 * jnp.sqrt(lake.r[live] * (1 - lake.r[live]) / num) + 1e-12
    assert bool(jnp.all(jnp.abs(reward.mean(0)[live] - lake.r[live]) <= reward_tolerance))


def test_frozen_lake_8x8(x64):
    lake = tabular.frozen_lake_mdp(gamma=0.99, map_name="8x8")
    assert lake.P.shape == (64, 4, 64)
    np.testing.assert_allclose(lake.P.sum(-1), 1.0, atol=1e-12)
    assert float(lake.gamma) == 0.99

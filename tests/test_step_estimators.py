"""The HARPG authors' protocol (issue 15): garage's step-budgeted batches, linear baseline and per-step estimators.

Oracles: plain-Python loops, numpy's least squares on garage's own normal equations, and closed-form
scores and Hessians of a linear softmax policy (psi = s (e_a - p)^T, hess log pi [V] = -s ((diag p - p p^T)
V^T s)^T), none of them JAX autodiff.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax.algos import pg_igt
from trpojax.algos.episodic import RecursiveState
from trpojax.core import step_estimators as se
from trpojax.core.schedules import schedule_value
from trpojax.envs import make_env
from trpojax.envs.step_batches import step_budget_rollout
from trpojax.networks import PolicyNetwork

RNG = np.random.default_rng(0)
OBS_DIM, ACTIONS, GAMMA = 3, 2, 0.9


def _episodes(length):
    """Random episode ends (some), a batch mask that is a prefix of ones, and episode indices."""
    done = RNG.random(length) < 0.3
    done[-1] = True
    episode = np.concatenate([[0], np.cumsum(done)[:-1]]).astype(np.int32)
    keep = int(RNG.integers(length // 2, length))
    while not done[keep - 1]:  # the batch ends at an episode's end
        keep += 1
    mask = (np.arange(length) < keep).astype(np.float32)
    return done, episode, mask


def test_episode_reward_to_go_matches_a_loop():
    rewards = RNG.normal(size=17).astype(np.float32)
    done, _, _ = _episodes(17)
    expected, future = np.zeros(17), 0.0
    for t in reversed(range(17)):
        future = rewards[t] + (0.0 if done[t] else GAMMA * future)
        expected[t] = future
    got = se.episode_reward_to_go(jnp.asarray(rewards), jnp.asarray(done), GAMMA)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_linear_baseline_matches_garage_normal_equations_with_numpy_lstsq():
    length = 60
    obs = RNG.normal(scale=4.0, size=(length, OBS_DIM)).astype(np.float32)  # some beyond the +-10 clip
    obs[0, 0] = 25.0
    time = RNG.integers(0, 200, size=length)
    targets = RNG.normal(size=length).astype(np.float32) * 10
    mask = (np.arange(length) < 50).astype(np.float32)
    feats = np.asarray(se.linear_baseline_features(jnp.asarray(obs), jnp.asarray(time)))
    # garage's _features, by hand
    clipped = np.clip(obs, -10, 10).astype(np.float64)
    al = time[:, None] / 100.0
    ref = np.concatenate([clipped, clipped**2, al, al**2, al**3, np.ones((length, 1))], axis=1)
    np.testing.assert_allclose(feats, ref, rtol=1e-5)
    assert feats.shape[1] == se.num_features(OBS_DIM)
    # garage's fit on the batch's steps: lstsq(F^T F + reg I, F^T G)
    f, g = ref[:50], targets[:50].astype(np.float64)
    expected = np.linalg.lstsq(f.T @ f + 1e-5 * np.eye(f.shape[1]), f.T @ g, rcond=-1)[0]
    coeffs = np.asarray(se.fit_linear_baseline(jnp.asarray(feats), jnp.asarray(targets), jnp.asarray(mask)))
    np.testing.assert_allclose(ref @ coeffs, ref @ expected, rtol=1e-3, atol=1e-3 * np.abs(ref @ expected).max())


def _log_prob(params, obs, action):
    return jax.nn.log_softmax(obs @ params["w"])[action]


def _reference(w, obs, actions, weights, mask, episode, v):
    """g = sum_t w_t psi_t and both forms of B v, from closed-form scores and Hessians."""
    grad, hess_v, psi_dot_v, psis = np.zeros_like(w), np.zeros_like(w), np.zeros(len(obs)), []
    for t, (s, a) in enumerate(zip(obs, actions, strict=True)):
        p = np.exp(s @ w - np.logaddexp.reduce(s @ w))
        psi = np.outer(s, np.eye(ACTIONS)[a] - p)
        u = v.T @ s
        hess = -np.outer(s, p * u - p * (p @ u))
        psis.append(psi)
        grad += weights[t] * psi
        hess_v += weights[t] * hess
        psi_dot_v[t] = mask[t] * np.sum(psi * v)
    paper = hess_v.copy()
    for e in np.unique(episode):
        steps = np.nonzero(episode == e)[0]
        paper += sum(weights[t] * psis[t] for t in steps) * psi_dot_v[steps].sum()
    authors = hess_v - grad * psi_dot_v.sum() / mask.sum()
    return grad, paper, authors


def test_weighted_gradient_and_both_hvp_forms_match_a_closed_form_reference():
    length = 14
    obs = RNG.normal(size=(length, OBS_DIM))
    actions = RNG.integers(0, ACTIONS, size=length)
    done, episode, mask = _episodes(length)
    rewards = RNG.normal(size=length) * mask
    baselines = RNG.normal(size=length)
    weights = np.asarray(se.baseline_weights(jnp.asarray(rewards, jnp.float32), jnp.asarray(done),
                                             jnp.asarray(mask), jnp.asarray(baselines, jnp.float32), GAMMA))
    w, v = RNG.normal(size=(OBS_DIM, ACTIONS)), RNG.normal(size=(OBS_DIM, ACTIONS))
    grad, paper, authors = _reference(w, obs, actions, weights.astype(np.float64), mask, episode, v)
    args = ({"w": jnp.asarray(w, jnp.float32)}, jnp.asarray(obs, jnp.float32), jnp.asarray(actions))
    got = se.weighted_policy_gradient(_log_prob, *args, jnp.asarray(weights))
    np.testing.assert_allclose(np.asarray(got["w"]), grad, rtol=1e-4, atol=1e-5)
    for form, expected in (("paper", paper), ("authors", authors)):
        got = se.weighted_hessian_vector_product(
            _log_prob, *args, jnp.asarray(weights), jnp.asarray(mask), jnp.asarray(episode),
            {"w": jnp.asarray(v, jnp.float32)}, form,
        )
        np.testing.assert_allclose(np.asarray(got["w"]), expected, rtol=1e-4, atol=1e-5, err_msg=form)
    # the weights: mask (G_t - b_t) / N
    returns = np.asarray(se.episode_reward_to_go(jnp.asarray(rewards, jnp.float32), jnp.asarray(done), GAMMA))
    np.testing.assert_allclose(weights, mask * (returns - baselines) / mask.sum(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown Hessian-vector-product form"):
        se.weighted_hessian_vector_product(_log_prob, *args, jnp.asarray(weights), jnp.asarray(mask),
                                           jnp.asarray(episode), {"w": jnp.asarray(v, jnp.float32)}, "other")


def test_step_budget_rollout_keeps_whole_episodes_until_the_budget_like_garage():
    spec = make_env("CartPole-v1")
    policy = PolicyNetwork(action_dim=spec.action_dim, discrete=True, hidden=(8,), activation="tanh")
    params = policy.init(jax.random.PRNGKey(0), jnp.zeros((spec.obs_dim,)))
    budget, horizon = 40, 12  # horizon well below CartPole's own limit: episodes are cut at H
    sample = jax.jit(lambda key: step_budget_rollout(spec, policy.apply, params, key, budget, horizon))
    for seed in range(3):
        batch = jax.tree.map(np.asarray, sample(jax.random.PRNGKey(seed)))
        length = budget + horizon - 1
        assert batch.mask.shape == (length,)
        kept = int(batch.mask.sum())
        # the kept steps are a prefix, they end with an episode's end, and garage's rule picks them: the
        # last kept episode started before the budget, the first dropped one at or after it
        assert np.all(batch.mask[:kept] == 1) and np.all(batch.mask[kept:] == 0)
        assert budget <= kept <= length and batch.done[kept - 1]
        last_start = kept - 1 - batch.time[kept - 1]
        assert last_start < budget
        # time counts steps within episodes, which end at termination or at the horizon
        assert batch.time.max() <= horizon - 1 and np.all(batch.done[batch.time == horizon - 1])
        assert np.all(batch.time[1:][batch.done[:-1]] == 0)
        assert np.all(np.diff(batch.episode) == batch.done[:-1])
        np.testing.assert_array_equal(batch.reward[kept:], 0.0)


def test_garage_lookahead_uses_the_previous_momentum_weight():
    theta, prev = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    config = pg_igt.Config(eta0=0.9, protocol="garage")
    for t in (0, 1, 4):
        state = RecursiveState(theta, prev, {"w": jnp.zeros(3)}, jnp.asarray(t))
        eta = float(schedule_value("harmonic_4_5", 0.9, max(t - 1, 0)))
        got = pg_igt.lookahead_params(state, config)["w"]
        np.testing.assert_allclose(np.asarray(got), 1.0 + (1 - eta) / eta, rtol=1e-6)

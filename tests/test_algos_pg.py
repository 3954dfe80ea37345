"""REINFORCE, NPG, N-PG-IGT and (N-)HARPG updates against plain step-by-step references; schedules; guards."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from trpojax.algos import Networks, harpg, npg, pg_igt, reinforce, trpo
from trpojax.algos.episodic import make_log_prob_fn
from trpojax.core.schedules import schedule_value
from trpojax.envs.rollout import EpisodeBatch
from trpojax.networks import PolicyNetwork, ValueNetwork

OBS_DIM, HORIZON, DISCOUNT = 3, 6, 0.9


def test_schedules_match_the_paper_formulas():
    for t in range(6):
        r = 2.0 / (t + 2)
        expected = {"constant": 0.7, "harmonic": 0.7 * r, "sqrt": 0.7 * r**0.5, "harmonic_4_5": 0.7 * r**0.8,
                    "harmonic_2_3": 0.7 * r ** (2 / 3)}
        for name, value in expected.items():
            np.testing.assert_allclose(float(schedule_value(name, 0.7, jnp.asarray(t))), value, rtol=1e-6)
    assert float(schedule_value("harmonic", 1.0, 0)) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_value("cosine", 1.0, 0)


def test_harpg_paper_schedule_depends_on_normalisation():
    assert harpg.step_schedule(harpg.Config(normalized=True)) == "harmonic"
    assert harpg.step_schedule(harpg.Config(normalized=False)) == "sqrt"
    assert harpg.step_schedule(harpg.Config(normalized=False, step_schedule="constant")) == "constant"


# --- a tiny policy and fixed synthetic batches -------------------------------------------------------------


def tiny_policy(key):
    policy = PolicyNetwork(2, True, (5,), "tanh", 0.0)
    params = policy.init(key, jnp.zeros((OBS_DIM,)))
    # Scale the head up so that the policy is far from uniform and the Hessian terms matter.
    params = jax.tree.map(lambda x: 30.0 * x if x.ndim == 2 and x.shape[-1] == 2 else x, params)
    return policy, jax.tree.map(lambda x: x.astype(jnp.result_type(float)), params)


def make_batch(key, n):
    """n trajectories of HORIZON steps; trajectory i ends at step HORIZON - 1 - i (mask a prefix of ones)."""
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (n, HORIZON, OBS_DIM))
    actions = jax.random.bernoulli(k2, 0.5, (n, HORIZON)).astype(jnp.int32)
    mask = (jnp.arange(HORIZON)[None, :] <= (HORIZON - 1 - jnp.arange(n))[:, None]).astype(obs.dtype)
    rewards = mask * jax.random.uniform(k3, (n, HORIZON), minval=-1.0, maxval=2.0)
    # Junk after the end must not matter: large observations that would change every estimate.
    obs = obs + 100.0 * (1.0 - mask)[..., None]
    return EpisodeBatch(obs=obs, action=actions, reward=rewards, mask=mask)


class Reference:
    """Plain per-step computations on flat parameter vectors (loops, dense per-step Hessians)."""

    def __init__(self, policy, params):
        self.flat, self.unravel = ravel_pytree(params)
        log_prob = lambda flat, o, a: policy.apply(self.unravel(flat), o).log_prob(a)  # noqa: E731
        self.score = jax.jit(jax.grad(log_prob))
        self.hess = jax.jit(jax.hessian(log_prob))

    def weights(self, rewards, mask):
        """w_t = mask_t sum_{h>=t} gamma^h mask_h r_h."""
        horizon = len(rewards)
        return [
            mask[t] * sum(DISCOUNT**h * mask[h] * rewards[h] for h in range(t, horizon))
            for t in range(horizon)
        ]

    def grad(self, theta, batch):
        """(1/n) sum_i g(tau_i, theta)."""
        total = np.zeros_like(theta)
        for obs, act, rew, mask in zip(*(np.asarray(x) for x in batch), strict=True):
            for t, w in enumerate(self.weights(rew, mask)):
                if mask[t]:
                    total += w * np.asarray(self.score(theta, obs[t], act[t]))
        return total / batch.reward.shape[0]

    def hvp(self, theta, batch, v):
        """(1/m) sum_j [grad Phi (grad log p . v) + hess Phi v] at theta."""
        total = np.zeros_like(theta)
        for obs, act, rew, mask in zip(*(np.asarray(x) for x in batch), strict=True):
            grad_phi, score_sum, hess_phi = np.zeros_like(theta), np.zeros_like(theta), 0.0
            for t, w in enumerate(self.weights(rew, mask)):
                if mask[t]:
                    s = np.asarray(self.score(theta, obs[t], act[t]))
                    grad_phi += w * s
                    score_sum += s
                    hess_phi = hess_phi + w * np.asarray(self.hess(theta, obs[t], act[t]))
            total += grad_phi * (score_sum @ v) + hess_phi @ v
        return total / batch.reward.shape[0]


KEY = jax.random.PRNGKey(99)  # the updates' key (used only by REINFORCE's baseline fit)


def flat(tree):
    return np.asarray(ravel_pytree(tree)[0])


@pytest.fixture
def setup(x64):
    policy, params = tiny_policy(jax.random.PRNGKey(0))
    batches = [make_batch(jax.random.PRNGKey(10 + i), 3) for i in range(3)]
    return policy, params, batches, Reference(policy, params)


def test_reference_gradient_matches_jax_sanity(setup):
    """The reference and the library agree on g for one batch (the tests below then compare updates)."""
    from trpojax.algos.episodic import mean_policy_gradient

    policy, params, batches, ref = setup
    g = mean_policy_gradient(make_log_prob_fn(policy.apply), params, batches[0], DISCOUNT)
    np.testing.assert_allclose(flat(g), ref.grad(ref.flat, batches[0]), rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(ref.grad(ref.flat, batches[0])) > 1e-3


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_reinforce_matches_reference(setup, optimizer):
    policy, params, batches, ref = setup
    config = reinforce.Config(optimizer=optimizer, learning_rate=0.05)
    state = reinforce.init(params, None, config)
    update = jax.jit(lambda s, b: reinforce.update(
        s, reinforce.Batch(b, DISCOUNT), KEY, config, nets=Networks(policy.apply)))
    theta, m, v = ref.flat.copy(), 0.0, 0.0
    for k, batch in enumerate(batches):
        state, metrics = update(state, batch)
        g = ref.grad(theta, batch)
        if optimizer == "sgd":
            direction = g
        else:
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
            direction = (m / (1 - 0.9 ** (k + 1))) / (np.sqrt(v / (1 - 0.999 ** (k + 1))) + 1e-8)
        theta = theta + 0.05 * direction
        np.testing.assert_allclose(flat(state.policy_params), theta, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(float(metrics["grad_norm"]), np.linalg.norm(g), rtol=1e-7)
        assert float(metrics["rejected_updates"]) == 0.0


def test_reinforce_decaying_step_size_follows_its_schedule(setup):
    """lr_t = lr (2/(t+2))^(2/3): the HARPG authors' vanilla PG (garage's SGD), t counting updates from 0."""
    policy, params, batches, ref = setup
    config = reinforce.Config(optimizer="sgd", learning_rate=0.05, step_schedule="harmonic_2_3")
    state = reinforce.init(params, None, config)
    update = jax.jit(lambda s, b: reinforce.update(
        s, reinforce.Batch(b, DISCOUNT), KEY, config, nets=Networks(policy.apply)))
    theta = ref.flat.copy()
    for k, batch in enumerate(batches):
        state, _ = update(state, batch)
        theta = theta + 0.05 * (2 / (k + 2)) ** (2 / 3) * ref.grad(theta, batch)
        np.testing.assert_allclose(flat(state.policy_params), theta, rtol=1e-7, atol=1e-10)
    assert int(state.step) == len(batches)


def test_reinforce_baseline_gradient_and_fit(setup):
    policy, params, batches, ref = setup
    value = ValueNetwork((4,), "tanh")
    config = reinforce.Config(
        optimizer="sgd", learning_rate=0.05, baseline=True, critic_lr=0.01, critic_steps=50
    )
    state = reinforce.init(params, value.init(jax.random.PRNGKey(3), jnp.zeros((OBS_DIM,))), config)
    batch = batches[0]
    nets = Networks(policy.apply, value.apply)
    new_state, metrics = reinforce.update(state, reinforce.Batch(batch, DISCOUNT), KEY, config, nets=nets)
    baselines = np.asarray(value.apply(state.value_params, batch.obs))
    expected = np.zeros_like(ref.flat)
    for i in range(3):
        rew, mask = np.asarray(batch.reward[i]), np.asarray(batch.mask[i])
        for t in range(HORIZON):
            if mask[t]:
                to_go = sum(DISCOUNT ** (h - t) * rew[h] for h in range(t, HORIZON))
                score = np.asarray(ref.score(ref.flat, batch.obs[i, t], batch.action[i, t]))
                expected += DISCOUNT**t * (to_go - baselines[i, t]) * score
    np.testing.assert_allclose(
        flat(new_state.policy_params), ref.flat + 0.05 * expected / 3, rtol=1e-7, atol=1e-10
    )
    refit = dataclasses.replace(config, critic_steps=1)
    _, after = reinforce.update(new_state, reinforce.Batch(batch, DISCOUNT), KEY, refit, nets=nets)
    assert float(after["value_loss"]) < float(metrics["value_loss"])


def igt_reference(ref, batches, gamma0, eta0):
    theta = prev = ref.flat.copy()
    d = None
    thetas = []
    for t, batch in enumerate(batches):
        gamma_t = gamma0 * 2 / (t + 2)
        eta_t = eta0 * (2 / (t + 2)) ** 0.8
        lookahead = theta + (1 - eta_t) / eta_t * (theta - prev)
        g = ref.grad(lookahead, batch)
        d = g if t == 0 else (1 - eta_t) * d + eta_t * g
        theta, prev = theta + gamma_t * d / np.linalg.norm(d), theta
        thetas.append(theta)
    return thetas


def test_pg_igt_matches_reference(setup):
    policy, params, batches, ref = setup
    config = pg_igt.Config(gamma0=0.3, eta0=0.6)
    state = pg_igt.init(params, None, config)
    update = jax.jit(lambda s, b: pg_igt.update(s, pg_igt.Batch(b, DISCOUNT), KEY, config, nets=Networks(policy.apply)))
    for t, (batch, expected) in enumerate(zip(batches, igt_reference(ref, batches, 0.3, 0.6), strict=True)):
        state, metrics = update(state, batch)
        np.testing.assert_allclose(flat(state.policy_params), expected, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(float(metrics["step_norm"]), 0.3 * 2 / (t + 2), rtol=1e-6)
        assert int(state.step) == t + 1


def harpg_reference(ref, batches, hvp_batches, qs, gamma0, eta0, normalized):
    theta = prev = ref.flat.copy()
    d = None
    thetas = []
    for t, (batch, hvp_batch, q) in enumerate(zip(batches, hvp_batches, qs, strict=True)):
        ratio = 2 / (t + 2)
        gamma_t = gamma0 * (ratio if normalized else np.sqrt(ratio))
        eta_t = eta0 * ratio
        g = ref.grad(theta, batch)
        if t == 0:
            d = g
        else:
            v = ref.hvp(q * theta + (1 - q) * prev, hvp_batch, theta - prev)
            d = (1 - eta_t) * (d + v) + eta_t * g
        step = gamma_t * d / np.linalg.norm(d) if normalized else gamma_t * d
        theta, prev = theta + step, theta
        thetas.append(theta)
    return thetas


@pytest.mark.parametrize("normalized", [True, False])
def test_harpg_matches_reference(setup, normalized):
    policy, params, batches, ref = setup
    hvp_batches = [make_batch(jax.random.PRNGKey(20 + i), 2) for i in range(3)]
    qs = [0.3, 0.8, 0.55]
    gamma0 = 0.4 if normalized else 0.02
    config = harpg.Config(normalized=normalized, gamma0=gamma0, eta0=0.7)
    state = harpg.init(params, None, config)
    update = jax.jit(lambda s, b, hb, q: harpg.update(
        s, harpg.Batch(b, hb, q, DISCOUNT), KEY, config, nets=Networks(policy.apply)))
    expected = harpg_reference(ref, batches, hvp_batches, qs, gamma0, 0.7, normalized)
    for t in range(3):
        state, metrics = update(state, batches[t], hvp_batches[t], jnp.asarray(qs[t]))
        np.testing.assert_allclose(flat(state.policy_params), expected[t], rtol=1e-7, atol=1e-10)
        assert float(metrics["rejected_updates"]) == 0.0
        assert (float(metrics["hvp_norm"]) > 0) == (t > 0)
    np.testing.assert_allclose(flat(state.prev_params), expected[1], rtol=1e-7, atol=1e-10)


def test_npg_matches_dense_natural_gradient(x64):
    policy, _ = tiny_policy(jax.random.PRNGKey(1))
    value = ValueNetwork((4,), "tanh")
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.PRNGKey(2), 5)
    obs = jax.random.normal(k1, (64, OBS_DIM))
    params = jax.tree.map(lambda x: x.astype(jnp.float64), policy.init(k2, obs[0]))
    actions = policy.apply(params, obs).sample(k3)
    advantages = jax.random.normal(k4, (64,))
    batch = trpo.Batch(obs=obs, actions=actions, advantages=advantages, returns=advantages)
    state = npg.init(params, value.init(k5, obs[0]), npg.Config())
    theta, unravel = ravel_pytree(params)
    old = policy.apply(params, obs)

    def surrogate(f):
        new = policy.apply(unravel(f), obs)
        return jnp.mean(jnp.exp(new.log_prob(actions) - old.log_prob(actions)) * advantages)

    fisher = jax.jit(jax.hessian(lambda f: jnp.mean(old.kl(policy.apply(unravel(f), obs)))))(theta)
    fisher = np.asarray(fisher) + 0.05 * np.eye(theta.size)
    s = np.linalg.solve(fisher, np.asarray(jax.grad(surrogate)(theta)))
    for rule, alpha in (("kl", np.sqrt(2 * 0.01 / (s @ fisher @ s))), ("fixed", 0.3)):
        config = npg.Config(step_rule=rule, max_kl=0.01, learning_rate=0.3, cg_iters=200, cg_tol=1e-14,
                            cg_damping=0.05, critic_epochs=1)
        new_state, metrics = jax.jit(lambda s, b, c: npg.update(
            s, b, jax.random.PRNGKey(0), c, nets=Networks(policy.apply, value.apply)
        ))(state, batch, config)
        expected = np.asarray(theta) + alpha * s
        np.testing.assert_allclose(flat(new_state.policy_params), expected, rtol=1e-8, atol=1e-10)
        if rule == "kl":
            np.testing.assert_allclose(float(metrics["kl_quadratic"]), 0.01, rtol=1e-6)
        assert float(metrics["rejected_updates"]) == 0.0


# --- numerical guards ---------------------------------------------------------------------------------


def poisoned(batch):
    return batch._replace(reward=batch.reward.at[0, 0].set(jnp.nan))


def test_non_finite_estimates_leave_every_policy_unchanged(setup):
    policy, params, batches, _ = setup
    nets = Networks(policy.apply)
    bad = poisoned(batches[0])
    results = {}
    for optimizer in ("sgd", "adam"):
        config = reinforce.Config(optimizer=optimizer)
        state = reinforce.init(params, None, config)
        results[f"reinforce_{optimizer}"] = (
            state, reinforce.update(state, reinforce.Batch(bad, DISCOUNT), KEY, config, nets=nets)
        )
    state = pg_igt.init(params, None, pg_igt.Config())
    results["pg_igt"] = (state, pg_igt.update(state, pg_igt.Batch(bad, DISCOUNT), KEY, pg_igt.Config(), nets=nets))
    for normalized in (True, False):
        config = harpg.Config(normalized=normalized)
        first = harpg.Batch(batches[0], batches[1], 0.5, DISCOUNT)
        state, _ = harpg.update(harpg.init(params, None, config), first, KEY, config, nets=nets)
        for name, (b, hb) in {"g": (bad, batches[1]), "hvp": (batches[1], bad)}.items():
            results[f"harpg_{normalized}_{name}"] = (
                state, harpg.update(state, harpg.Batch(b, hb, 0.5, DISCOUNT), KEY, config, nets=nets)
            )
    for name, (before, (after, metrics)) in results.items():
        assert float(metrics["rejected_updates"]) == 1.0, name
        for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
            np.testing.assert_array_equal(np.asarray(old), np.asarray(new), err_msg=name)


def test_npg_rejects_non_finite_advantages():
    policy, params = tiny_policy(jax.random.PRNGKey(1))
    obs = jax.random.normal(jax.random.PRNGKey(4), (16, OBS_DIM))
    advantages = jnp.ones((16,)).at[3].set(jnp.nan)
    actions = jnp.zeros((16,), jnp.int32)
    batch = trpo.Batch(obs=obs, actions=actions, advantages=advantages, returns=advantages)
    new_params, metrics = jax.jit(lambda p, b: npg.policy_update(p, b, npg.Config(), policy.apply))(
        params, batch
    )
    assert float(metrics["rejected_updates"]) == 1.0
    for old, new in zip(jax.tree.leaves(params), jax.tree.leaves(new_params), strict=True):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))


# --- configs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["reinforce", "npg", "pg_igt", "harpg", "nharpg"])
@pytest.mark.parametrize("env", ["cartpole", "acrobot", "pendulum"])
def test_method_configs_load(method, env):
    from pathlib import Path

    from trpojax import config as config_lib

    config = config_lib.load(Path(__file__).parent.parent / "configs" / f"{method}_{env}.yaml")
    assert config.algo == ("harpg" if method == "nharpg" else method)
    if config.algo == "harpg":
        assert config.harpg.normalized == (method == "nharpg")
        assert config.steps_per_update == (config.num_envs + config.harpg.hvp_trajectories) * config.num_steps


def test_episodic_algorithms_reject_observation_normalisation():
    from trpojax import config as config_lib

    for algo in ("reinforce", "pg_igt", "harpg"):
        with pytest.raises(config_lib.ConfigError, match="normalize_obs: not supported"):
            config_lib.from_dict({"algo": algo, "normalize_obs": True})
    assert config_lib.from_dict({"algo": "npg", "normalize_obs": True}).normalize_obs

"""The normalised-TD actor-critic: its critic maths against closed forms, its window, its update, its runs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax.algos import ntdac
from trpojax.core import ntd
from trpojax.envs import make_env
from trpojax.trainer import make_learner, make_train, seed_keys

OPTIONS = [(f, a) for f in ntd.FEATURES for a in ntd.ACTIVATIONS]


def _random_transition(key, net, num_next):
    k = jax.random.split(key, 5)
    omega = ntd.init_weights(k[0], net, jnp.float64)
    z = jax.random.normal(k[1], (net.z_dim,), jnp.float64)
    z_next = jax.random.normal(k[2], (num_next, net.z_dim), jnp.float64)
    weights = jax.nn.softmax(jax.random.normal(k[3], (num_next,), jnp.float64))
    return omega, z, z_next, weights


@pytest.mark.parametrize(("features", "activation"), OPTIONS)
def test_data_vector_is_the_notes_closed_form_and_the_gradient_of_e(x64, features, activation):
    net = ntd.QNet(z_dim=3, width=5, features=features, activation=activation)
    for num_next in (1, 3):
        omega, z, z_next, weights = _random_transition(jax.random.PRNGKey(num_next), net, num_next)
        e, d = ntd.td_error_and_data_vector(omega, omega, 1.0, z, 0.7, z_next, weights, 0.9, net)
        closed = ntd.closed_form_data_vector(omega, z, z_next, weights, 0.9, net)
        np.testing.assert_allclose(d, closed, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(d, jax.grad(ntd.td_error)(omega, z, 0.7, z_next, weights, 0.9, net), rtol=1e-12)
        assert e == pytest.approx(float(ntd.td_error(omega, z, 0.7, z_next, weights, 0.9, net)), rel=1e-12)
    # A wrong closed form is caught: the hidden block depends on omega1 (d = (g; G omega1)).
    flipped = ntd.pack(-ntd.unpack(omega, net)[0], ntd.unpack(omega, net)[1])
    wrong = ntd.closed_form_data_vector(flipped, z, z_next, weights, 0.9, net)
    assert not np.allclose(wrong[net.width:], d[net.width:])


def test_semi_gradient_ignores_the_target_term_and_uses_the_target_weights(x64):
    net = ntd.QNet(z_dim=3, width=4)
    omega, z, z_next, weights = _random_transition(jax.random.PRNGKey(0), net, 1)
    target = omega + 0.1
    e, d = ntd.td_error_and_data_vector(omega, target, 0.0, z, 0.5, z_next, weights, 0.9, net)
    np.testing.assert_allclose(d, jax.grad(ntd.q_value)(omega, z, net), rtol=1e-12)
    expected = ntd.q_value(omega, z, net) - 0.5 - 0.9 * ntd.q_value(target, z_next[0], net)
    assert float(e) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize(("features", "activation"), OPTIONS)
def test_linearisation_residual_is_quadratic(x64, features, activation):
    net = ntd.QNet(z_dim=3, width=5, features=features, activation=activation)
    omega, z, z_next, weights = _random_transition(jax.random.PRNGKey(4), net, 2)
    v = jax.random.normal(jax.random.PRNGKey(5), omega.shape, jnp.float64)
    e0, d = ntd.td_error_and_data_vector(omega, omega, 1.0, z, 0.3, z_next, weights, 0.95, net)
    residuals = []
    for t in (1e-2, 1e-3, 1e-4):
        e = ntd.td_error(omega + t * v, z, 0.3, z_next, weights, 0.95, net)
        residuals.append(abs(float(e - e0 - t * d @ v)))
    # t / 10 -> residual / 100: e - e0 - t d^T v = O(t^2).
    for big, small in zip(residuals, residuals[1:], strict=False):
        assert 0.005 * big <= small <= 0.02 * big, residuals


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_normalised_step_is_bounded_for_any_data_vector_scale(x64, dtype, power):
    key_d, key_e = jax.random.split(jax.random.PRNGKey(0))
    e = jax.random.normal(key_e, (16,), dtype)
    mask = jnp.ones((16,), dtype)
    bound = float(ntd.step_bound(e, mask, power))
    for scale in 10.0 ** np.arange(-3, 7):
        d = (scale * jax.random.normal(key_d, (16, 40))).astype(dtype)
        step = ntd.normalized_direction(d, e, mask, jnp.asarray(power, dtype))
        assert bool(jnp.all(jnp.isfinite(step))), scale
        assert float(jnp.linalg.norm(step)) <= bound * (1 + 1e-5), scale
    # The constant is the supremum: a single data vector of length 1/sqrt(2p - 1) attains it.
    one = jnp.zeros((1, 3), jnp.float64).at[0, 0].set(1.0 / math.sqrt(2 * power - 1))
    step = ntd.normalized_direction(one, jnp.ones(1), jnp.ones(1), power)
    assert float(jnp.linalg.norm(step)) == pytest.approx(ntd.normalization_constant(power), rel=1e-12)


def test_excitation_needs_as_many_transitions_as_weights(x64):
    net = ntd.QNet(z_dim=2, width=2)
    d = jax.random.normal(jax.random.PRNGKey(0), (net.num_weights - 1, net.num_weights), jnp.float64)
    assert float(ntd.excitation(d, jnp.ones(d.shape[0]), 2.0)) == 0.0
    d = jax.random.normal(jax.random.PRNGKey(0), (3 * net.num_weights, net.num_weights), jnp.float64)
    level = float(ntd.excitation(d, jnp.ones(d.shape[0]), 2.0))
    gram = ntd.normalized_gram(d, jnp.ones(d.shape[0]), 2.0)
    assert level == pytest.approx(float(np.linalg.eigvalsh(np.asarray(gram))[0]), rel=1e-10)
    assert level > 0
    # Masked rows do not count: one direction never excited leaves lambda_min at 0.
    d_flat = d.at[:, 0].set(0.0)
    assert float(ntd.excitation(d_flat, jnp.ones(d.shape[0]), 2.0)) == pytest.approx(0.0, abs=1e-14)


def test_quadratic_forms_reproduce_q(x64):
    for features, activation in [("quadratic", "linear"), ("identity_bias", "square")]:
        net = ntd.QNet(z_dim=3, width=4, features=features, activation=activation)
        omega, z, _, _ = _random_transition(jax.random.PRNGKey(2), net, 1)
        m = ntd.quadratic_form(omega, net)
        y = jnp.append(z, 1.0)
        assert float(y @ m @ y) == pytest.approx(float(ntd.q_value(omega, z, net)), rel=1e-12)
        np.testing.assert_allclose(m, m.T)
    with pytest.raises(ValueError, match="quadratic form"):
        ntd.quadratic_form(omega, ntd.QNet(3, 4, "identity_bias", "tanh"))


# ---------------------------------------------------------------------------------------------------------
# The window and one update


def _step(b, obs_dim, a, value, discount=0.9, truncated=False):
    full = lambda *s: jnp.full((b, *s), value, jnp.float32)  # noqa: E731
    return ntdac.Step(full(obs_dim), full(a), full(), jnp.full((b,), discount, jnp.float32),
                      jnp.full((b,), truncated), full(obs_dim))


def test_window_is_a_ring_buffer_that_links_the_action_taken_next():
    window = ntdac.init_window(num_envs=2, size=3, obs_dim=1, action_width=1)
    write = lambda w, s: ntdac._write(w, s, link_taken=True)  # noqa: E731
    window = write(window, _step(2, 1, 1, 1.0))
    window = write(window, _step(2, 1, 1, 2.0, discount=0.0))  # terminated: no next action to link
    window = write(window, _step(2, 1, 1, 3.0))
    assert window.filled.all() and int(window.pos) == 0
    np.testing.assert_array_equal(window.has_next[0], [True, False, False])
    assert float(window.next_action[0, 0, 0]) == 2.0
    window = write(window, _step(2, 1, 1, 4.0))  # overwrites the oldest slot and links slot 2
    np.testing.assert_array_equal(window.transitions.obs[1, :, 0], [4.0, 2.0, 3.0])
    np.testing.assert_array_equal(window.has_next[0], [False, False, True])
    assert float(window.next_action[0, 2, 0]) == 4.0


def _nets(spec, run_config):
    _, learner = make_learner(run_config)
    section = run_config.ntdac
    width = spec.action_dim
    qnet = ntd.QNet(spec.obs_dim + width, section.width, section.features, section.activation)
    return learner, ntdac.Nets(learner.policy.apply, qnet, spec.action_dim if spec.discrete else 0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_update_takes_the_notes_critic_step(optimizer):
    config = config_lib.from_dict({"algo": "ntdac", "env": "Pendulum-v1", "num_envs": 2, "num_steps": 4,
                                   "ntdac": {"window": 4, "width": 8, "critic_optimizer": optimizer}})
    spec = make_env(config.env)
    learner, nets = _nets(spec, config)
    state = jax.jit(learner.init)(seed_keys(config)[0], config)
    # Fill the window with random transitions, then check one update by hand.
    window = state.agent.window
    for i in range(4):
        k = jax.random.split(jax.random.PRNGKey(i), 3)
        obs, next_obs = jax.random.normal(k[0], (2, 2, spec.obs_dim))
        random_step = ntdac.Step(obs, jax.random.uniform(k[1], (2, 1), minval=-2, maxval=2),
                                 jax.random.normal(k[2], (2,)), jnp.full((2,), 0.99), jnp.zeros(2, bool), next_obs)
        window = ntdac._write(window, random_step, link_taken=False)
    agent = state.agent._replace(window=window)
    step = _step(2, spec.obs_dim, 1, 0.5)
    new, metrics = jax.jit(lambda a, s: ntdac.update(a, s, jax.random.PRNGKey(0), config.ntdac, nets=nets))(agent, step)
    window = ntdac._write(agent.window, step, link_taken=False)
    e, d, mask = jax.jit(lambda a, w: ntdac._window_terms(a, w, config.ntdac, nets))(agent, window)
    direction = ntd.normalized_direction(d, e, mask, 2.0)
    if optimizer == "adam":
        direction, _ = ntdac.ADAM.update(direction, agent.critic_opt_state)
    np.testing.assert_allclose(new.critic, agent.critic - 0.1 * direction, rtol=1e-5, atol=1e-7)
    assert float(metrics["critic_step_norm"]) == pytest.approx(float(jnp.linalg.norm(new.critic - agent.critic)),
                                                                rel=1e-5)
    assert float(metrics["td_rms"]) == pytest.approx(float(jnp.sqrt(jnp.mean(e**2))), rel=1e-5)
    assert mask.all()  # the policy target needs no next action
    np.testing.assert_array_equal(new.target_critic, agent.target_critic)  # tau = 0: no target moves
    # The actor moved (no warm-up), along the gradient of the critic's value of its actions.
    assert not np.allclose(jax.tree.leaves(new.policy_params)[0], jax.tree.leaves(agent.policy_params)[0])


def test_target_critic_moves_by_tau_and_warmup_holds_the_actor():
    config = config_lib.from_dict({"algo": "ntdac", "env": "CartPole-v1", "num_envs": 2, "num_steps": 4,
                                   "ntdac": {"window": 4, "width": 8, "target_tau": 0.25, "warmup_steps": 10**6}})
    spec = make_env(config.env)
    learner, nets = _nets(spec, config)
    state = jax.jit(learner.init)(seed_keys(config)[0], config)
    agent = state.agent._replace(target_critic=state.agent.critic + 1.0)
    update = jax.jit(lambda a, s: ntdac.update(a, s, jax.random.PRNGKey(0), config.ntdac, nets=nets,
                                               warmup_steps=10**6))
    new, _ = update(agent, _step(2, spec.obs_dim, 2, 0.5))
    np.testing.assert_allclose(new.target_critic, agent.target_critic + 0.25 * (new.critic - agent.target_critic),
                               rtol=1e-6)
    for a, b in zip(jax.tree.leaves(new.policy_params), jax.tree.leaves(agent.policy_params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_policy_is_deterministic_in_evaluation_and_explores_in_training():
    config = config_lib.from_dict({"algo": "ntdac", "env": "Pendulum-v1", "num_envs": 2, "num_steps": 4,
                                   "ntdac": {"window": 4, "width": 8, "exploration_noise": 0.2}})
    spec, learner = make_learner(config)
    state = learner.init(seed_keys(config)[0], config)
    dist = learner.policy.apply(state.agent.policy_params, jnp.zeros((5, spec.obs_dim)))
    np.testing.assert_allclose(jnp.exp(dist.log_std), 0.2 * 2.0, rtol=1e-6)  # Pendulum's half-width is 2
    assert bool(jnp.all(jnp.abs(dist.mode()) <= 2.0))


@pytest.mark.parametrize("env", ["CartPole-v1", "LQR-v0"])
def test_runs_are_finite_and_report_the_critic_metrics(env):
    config = config_lib.from_dict({"algo": "ntdac", "env": env, "num_envs": 2, "num_steps": 8,
                                   "total_env_steps": 64, "ntdac": {"window": 16, "width": 8,
                                                                    "excitation_every": 2, "target_action": "taken"}})
    state, metrics = jax.jit(make_train(config))(seed_keys(config)[0])
    for name in ("td_rms", "critic_step_norm", "output_weight_abs_mean", "actor_objective", "excitation"):
        assert np.isfinite(np.asarray(metrics[name])[1:]).all(), name
    # Window of 16 x 2 transitions < N + pN weights: the excitation level is exactly 0 (the rank condition).
    assert float(metrics["excitation"][-1]) == 0.0
    assert int(state.agent.env_steps) == 32


def test_config_refuses_observation_normalisation():
    with pytest.raises(config_lib.ConfigError, match="normalize_obs: not supported by algo 'ntdac'"):
        config_lib.from_dict({"algo": "ntdac", "normalize_obs": True})
    with pytest.raises(config_lib.ConfigError, match="ntdac.norm_power"):
        config_lib.from_dict({"algo": "ntdac", "ntdac": {"norm_power": 0.5}})
    config = config_lib.from_dict({"algo": "ntdac"})
    assert dataclasses.asdict(config.ntdac)["critic_lr"] == 0.1


def test_learns_the_riccati_controller_on_lqr():
    """A small real run of the notes' method: within 5% of the optimal controller's return, every seed."""
    from trpojax.core.distributions import DiagGaussian
    from trpojax.core.lqr import riccati_gain
    from trpojax.envs import evaluate_policy
    from trpojax.trainer import eval_keys, make_evaluate, make_trainer

    config = config_lib.load(Path(__file__).parent.parent / "configs" / "ntdac_lqr.yaml",
                             ["num_seeds=2", "total_env_steps=12000", "eval_episodes=8"])
    trainer = make_trainer(config)
    states = trainer.init(seed_keys(config), config)
    states, _ = trainer.run_chunk(states, config, config.num_updates)
    keys = eval_keys(config)
    learned = np.asarray(make_evaluate(config, trainer.spec, trainer.learner, 8)(states, keys)).mean(axis=1)
    gain, _ = riccati_gain(*(jnp.asarray(m, jnp.float32) for m in trainer.spec.params.system), 1.0)

    def linear(k, obs):
        return DiagGaussian(mean=-obs @ k.T, log_std=jnp.zeros(k.shape[0]))

    optimal = np.asarray(jax.vmap(lambda key: evaluate_policy(trainer.spec, linear, gain, key, 8)[0])(keys))
    optimal = optimal.mean(axis=1)
    assert (optimal < 0).all()
    assert ((learned - optimal) / np.abs(optimal) >= -0.05).all(), (learned, optimal)
    # The untrained policy (u ~ 0) is far from it: the test can fail.
    untrained = np.asarray(make_evaluate(config, trainer.spec, trainer.learner, 8)(
        trainer.init(seed_keys(config), config), keys)).mean(axis=1)
    assert ((untrained - optimal) / np.abs(optimal) < -0.05).all(), (untrained, optimal)


def test_warmup_acts_uniformly_and_discrete_exploration_mixes_in_random_actions():
    base = {"algo": "ntdac", "num_envs": 4, "num_steps": 32, "total_env_steps": 512,
            "ntdac": {"window": 32, "width": 4}}

    def trained(env, **section):
        config = config_lib.from_dict({**base, "env": env, "ntdac": {**base["ntdac"], **section}})
        state, _ = jax.jit(make_train(config))(seed_keys(config)[0])
        return make_learner(config)[1], state.agent

    # Pendulum's box is [-2, 2]: uniform actions have std 4 / sqrt(12) ~ 1.15; the still actor's (near 0 plus
    # noise of std 0.2) far less. The window holds steps 96-127 of each env: 16 warm-up steps, 16 after.
    _, agent = trained("Pendulum-v1", warmup_steps=112, actor_optimizer="sgd", actor_lr=1e-9)
    actions = np.asarray(agent.window.transitions.action)[..., 0]  # [B, M], slot j holds step 96 + j
    assert actions[:, :16].std() > 0.9 and actions[:, 16:].std() < 0.4
    # A huge actor step makes the softmax policy deterministic; exploration_noise 1 still acts uniformly.
    learner, agent = trained("CartPole-v1", actor_optimizer="sgd", actor_lr=1e3, exploration_noise=1.0)
    probs = jax.nn.softmax(learner.policy.apply(agent.policy_params, agent.window.transitions.obs).logits, axis=-1)
    assert float(jnp.mean(jnp.max(probs, axis=-1))) > 0.9
    assert abs(float(np.asarray(agent.window.transitions.action)[..., 0].mean()) - 0.5) < 0.1

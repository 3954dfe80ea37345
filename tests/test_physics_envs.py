"""The physics families (MuJoCo Playground, Brax) on their real environments: the interface's episode
contract, resets, time limits, termination, action repeat and boxes, and the errors for bad names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax.envs import UnknownEnvError, make_env
from trpojax.envs.physics import flatten_observation, reset_where

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = "playground:CartpoleBalance"
PENDULUM = "brax:inverted_pendulum"


def keys(seed: int, n: int) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(seed), n)


@pytest.fixture(scope="module")
def cartpole():
    """Playground's CartpoleBalance: spec and jitted vmapped reset (compiled once for the module: physics
    programs take seconds to build)."""
    spec = make_env(CARTPOLE)
    return spec, jax.jit(jax.vmap(spec.reset))


@pytest.fixture(scope="module")
def pendulum():
    """Brax's inverted_pendulum: spec, jitted vmapped reset and step, and the raw environment's jitted
    vmapped step."""
    spec = make_env(PENDULUM)
    return spec, jax.jit(jax.vmap(spec.reset)), jax.jit(jax.vmap(spec.step)), jax.jit(jax.vmap(spec.env.step))


@pytest.fixture(scope="module")
def short_pendulum():
    """Brax's inverted_pendulum with 5-step episodes of two physics steps each: spec, jitted vmapped reset
    and step."""
    spec = make_env(PENDULUM, episode_length=5, action_repeat=2)
    return spec, jax.jit(jax.vmap(spec.reset)), jax.jit(jax.vmap(spec.step))


@pytest.mark.parametrize("family", ["cartpole", "pendulum"])
def test_resets_with_different_keys_differ_and_the_same_key_repeats(family, request):
    spec, reset, *_ = request.getfixturevalue(family)
    assert spec.max_episode_steps == 1000  # both families' own time limit
    obs, state = reset(keys(0, 2))  # batches of 2 throughout: each program compiles once per module
    again, _ = reset(keys(0, 2))
    assert obs.shape == (2, spec.obs_dim)
    assert not np.allclose(obs[0], obs[1])
    np.testing.assert_array_equal(obs, again)
    assert np.all(np.asarray(state.steps) == 0)


def test_time_limit_is_truncation_with_the_final_observation_kept_and_a_fresh_reset(short_pendulum, pendulum):
    """Five agent steps of two physics steps each: the environment's own steps, rewards summed, then a
    truncation whose next observation is a fresh reset with that step's key."""
    spec, reset, step = short_pendulum
    raw_step = pendulum[3]
    assert spec.max_episode_steps == 5 and pendulum[0].max_episode_steps == 1000  # Brax's default
    obs, state = reset(keys(1, 2))
    action = jnp.zeros((2, spec.action_dim))
    for t in range(5):
        expected = raw_step(raw_step(state.inner, action), action)  # action_repeat 2
        total = raw_step(state.inner, action).reward + expected.reward
        step_keys = keys(100 + t, 2)
        obs, state, reward, terminated, truncated, info = step(step_keys, state, action)
        np.testing.assert_allclose(info["final_observation"], expected.obs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reward, total, rtol=1e-6)
        np.testing.assert_array_equal(reward, 2.0)  # upright: Brax's 1 per physics step, twice
        assert not np.any(terminated)
        if t < 4:
            assert not np.any(truncated)
            np.testing.assert_allclose(obs, expected.obs, rtol=1e-5, atol=1e-6)
    assert np.all(truncated)
    # The returned observation belongs to the next episode: a reset with this step's own key.
    fresh, _ = reset(step_keys)
    np.testing.assert_allclose(obs, fresh, rtol=1e-6, atol=1e-6)
    assert not np.allclose(obs, info["final_observation"])
    assert np.all(np.asarray(state.steps) == 0)


def test_a_fall_is_termination_not_truncation(pendulum):
    spec, reset, step, _ = pendulum
    assert (spec.action_low, spec.action_high) == ((-3.0,), (3.0,))  # the actuator's ctrlrange
    np.testing.assert_allclose(np.asarray(spec.env.sys.actuator.ctrl_range), [[-3.0, 3.0]])
    obs, state = reset(keys(2, 2))
    push = jnp.full((2, 1), 3.0)
    for t in range(200):
        obs, state, reward, terminated, truncated, info = step(keys(t, 2), state, push)
        if np.any(terminated):
            break
    assert np.all(terminated), "a constant full push topples the pole in both envs at the same step"
    assert not np.any(truncated)
    assert np.all(np.abs(info["final_observation"][:, 1]) > 0.2)  # Brax's unhealthy angle
    assert np.all(np.abs(obs[:, 1]) < 0.05)  # the next episode starts near upright
    assert t + 1 < spec.max_episode_steps


def test_non_finite_physics_terminates_with_a_finite_final_observation_and_reward(pendulum):
    spec, reset, step, _ = pendulum
    obs, state = reset(keys(3, 2))
    pipeline = state.inner.pipeline_state
    broken = state._replace(
        inner=state.inner.replace(pipeline_state=pipeline.replace(qd=pipeline.qd.at[0].set(jnp.nan)))
    )
    obs, state, reward, terminated, truncated, info = step(keys(4, 2), broken, jnp.zeros((2, 1)))
    np.testing.assert_array_equal(terminated, [True, False])
    assert not np.any(truncated)
    assert np.all(np.isfinite(info["final_observation"])) and np.all(np.isfinite(reward))
    assert np.all(np.isfinite(obs)) and int(state.steps[0]) == 0 and int(state.steps[1]) == 1


def test_reset_where_under_nested_vmap_matches_a_plain_select_and_is_a_real_cond():
    def reset(key):
        return jax.random.normal(key, (3,)), jnp.zeros((), jnp.int32)

    where_done = reset_where(reset)
    k = jax.random.split(jax.random.PRNGKey(7), 6).reshape(2, 3, 2)
    done = jnp.array([[True, False, False], [False, False, True]])
    current = (jnp.ones((2, 3, 3)), jnp.full((2, 3), 4, jnp.int32))
    nested = jax.jit(jax.vmap(jax.vmap(where_done)))(k, done, current)
    fresh = jax.vmap(jax.vmap(reset))(k)
    expected = jax.tree.map(
        lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 2)), a, b), fresh, current
    )
    jax.tree.map(np.testing.assert_array_equal, nested, expected)
    none_done = jax.vmap(jax.vmap(where_done))(k, jnp.zeros_like(done), current)
    jax.tree.map(np.testing.assert_array_equal, none_done, current)
    jaxpr = str(jax.make_jaxpr(jax.vmap(jax.vmap(where_done)))(k, done, current))
    assert "cond[" in jaxpr  # the batch's reset sits behind one cond, not a select of both branches


def test_dict_observations_flatten_in_sorted_key_order():
    obs = {"state": jnp.arange(3.0), "privileged_state": jnp.arange(4.0).reshape(2, 2) + 10}
    np.testing.assert_array_equal(flatten_observation(obs), [10, 11, 12, 13, 0, 1, 2])


@pytest.mark.parametrize(
    ("name", "nearest"),
    [("playground:CartpoleBalanse", "playground:CartpoleBalance"), ("brax:inverted_pendulm", "brax:inverted_pendulum")],
)
def test_unknown_names_name_the_nearest(name, nearest):
    with pytest.raises(UnknownEnvError, match=nearest):
        make_env(name)


def test_episode_options_are_refused_for_families_without_them():
    with pytest.raises(UnknownEnvError, match="episode_length and action_repeat apply"):
        make_env("CartPole-v1", episode_length=10)


MISSING_EXTRA = """
import sys
sys.modules["mujoco_playground"] = None  # how Python blocks an import: as if the extra were not installed
sys.argv = ["trpojax.train", "--config", sys.argv[2], "--set", "env=playground:CartpoleBalance", "--out", sys.argv[1]]
from trpojax.train.cli import entry_point
entry_point()
"""


def test_without_the_extra_the_cli_exits_2_with_what_to_install(tmp_path):
    out = tmp_path / "run"
    config = ROOT / "configs" / "trpo_cartpole.yaml"
    proc = subprocess.run([sys.executable, "-c", MISSING_EXTRA, str(out), str(config)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mujoco extra" in lines[0] and 'pip install -e ".[mujoco]"' in lines[0]
    assert not out.exists()

"""The exact LQR module (trpojax.core.lqr) against scipy and its definitions, and the LQR environment family.

Oracles: scipy.linalg.solve_discrete_lyapunov for P_K, scipy.linalg.solve_discrete_are for P* and K* (the
discounted problems as undiscounted ones in sqrt(gamma) A, sqrt(gamma) B), the Bellman equation for H_K, and
plain numpy loops of the dynamics for the environment.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from trpojax.core import lqr
from trpojax.envs import UnknownEnvError, make_env
from trpojax.envs.lqr import LQRParams, LQRState, make_lqr

# Jitted once per shape (eager calls would compile every primitive separately, which dominates the runtime).
lyapunov_value = jax.jit(lqr.lyapunov_value)
q_matrix = jax.jit(lqr.q_matrix)
riccati_gain = jax.jit(lqr.riccati_gain)
closed_loop_stable = jax.jit(lqr.closed_loop_stable)
policy_iteration = jax.jit(lqr.policy_iteration, static_argnames="iters")
greedy_gain = jax.jit(lqr.greedy_gain, static_argnames="n")


def random_system(seed: int, n: int = 3, m: int = 2, radius: float = 0.95) -> lqr.LQRSystem:
    """A random float64 system with rho(A) = radius, Q and R symmetric positive definite."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A *= radius / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(n, m))
    L, M = rng.normal(size=(n, n)), rng.normal(size=(m, m))
    return lqr.LQRSystem(*(jnp.asarray(x) for x in (A, B, L @ L.T + 0.1 * np.eye(n), M @ M.T + 0.1 * np.eye(m))))


def scipy_riccati(system, gamma):
    """(K*, P*) of the discounted problem from scipy's DARE on (sqrt(gamma) A, sqrt(gamma) B)."""
    A, B, Q, R = (np.asarray(x, np.float64) for x in system)
    s = np.sqrt(gamma)
    P = scipy.linalg.solve_discrete_are(s * A, s * B, Q, R)
    K = gamma * np.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
    return K, P


def systems_and_gains():
    """(system, stabilising K, gamma) cases: the default system and random 3x2 ones, one open-loop unstable."""
    cases = [(lqr.default_system(), jnp.array([[0.1, 0.3]]), 0.9), (lqr.default_system(), jnp.zeros((1, 2)), 1.0)]
    for seed in range(3):
        system = random_system(seed)
        cases.append((system, jnp.zeros((2, 3)), 0.95))
    unstable = random_system(7, radius=1.2)
    K0, _ = scipy_riccati(unstable._replace(R=100 * unstable.R), 1.0)  # stabilising, far from optimal
    cases.append((unstable, jnp.asarray(K0), 0.99))
    return cases


def rel_err(x, y):
    return float(np.linalg.norm(np.asarray(x) - np.asarray(y)) / np.linalg.norm(np.asarray(y)))


# --- trpojax.core.lqr -----------------------------------------------------------------------------------------


def test_lyapunov_value_matches_scipy(x64):
    for system, K, gamma in systems_and_gains():
        A, B, Q, R = system
        assert bool(closed_loop_stable(A, B, K, gamma))
        P = lyapunov_value(A, B, Q, R, K, gamma)
        assert P.dtype == jnp.float64
        A_K = np.asarray(A - B @ K)
        # solve_discrete_lyapunov(a, q) solves X = a X a^T + q; a = sqrt(gamma) A_K^T gives P's equation.
        oracle = scipy.linalg.solve_discrete_lyapunov(np.sqrt(gamma) * A_K.T, np.asarray(Q + K.T @ R @ K))
        assert rel_err(P, oracle) < 1e-10
        np.testing.assert_array_equal(P, P.T)
        assert np.all(np.linalg.eigvalsh(np.asarray(P)) > 0)


def test_stability_depends_on_gamma(x64):
    A, B, Q, R = lqr.default_system()
    K = jnp.array([[0.0, -2.0]])  # A_K = [[0.9, 0.2], [0, 2.8]]: rho = 2.8
    assert not bool(closed_loop_stable(A, B, K, 1.0))
    assert not bool(closed_loop_stable(A, B, K, 0.2))  # sqrt(0.2) * 2.8 = 1.25
    assert bool(closed_loop_stable(A, B, K, 0.1))  # sqrt(0.1) * 2.8 = 0.885
    P = lyapunov_value(A, B, Q, R, K, 1.0)  # solves the equation but is no value: indefinite
    assert np.min(np.linalg.eigvalsh(np.asarray(P))) < 0


def test_q_matrix_satisfies_bellman_equation(x64):
    rng = np.random.default_rng(0)
    for system, K, gamma in systems_and_gains():
        A, B, Q, R = system
        n, m = B.shape
        P = lyapunov_value(A, B, Q, R, K, gamma)
        H = q_matrix(A, B, Q, R, K, gamma)
        assert H.shape == (n + m, n + m)
        np.testing.assert_array_equal(H, H.T)
        for _ in range(5):
            x, u = jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=m))
            z = jnp.concatenate([x, u])
            x_next = A @ x + B @ u
            bellman = -(x @ Q @ x + u @ R @ u) + gamma * -(x_next @ P @ x_next)
            np.testing.assert_allclose(-(z @ H @ z), bellman, rtol=1e-10)
            # On the policy's own action Q_K is V_K.
            z_pi = jnp.concatenate([x, -K @ x])
            np.testing.assert_allclose(-(z_pi @ H @ z_pi), -(x @ P @ x), rtol=1e-10)


def test_riccati_gain_matches_scipy_are(x64):
    for system, _, gamma in systems_and_gains():
        K_star, P_star = riccati_gain(*system, gamma)
        K_ref, P_ref = scipy_riccati(system, gamma)
        assert rel_err(P_star, P_ref) < 1e-9
        assert rel_err(K_star, K_ref) < 1e-9
        # K* is a fixed point of policy improvement, and its own value is P*.
        A, B, Q, R = system
        assert rel_err(lyapunov_value(A, B, Q, R, K_star, gamma), P_ref) < 1e-9
        H = q_matrix(A, B, Q, R, K_star, gamma)
        assert rel_err(greedy_gain(H, n=A.shape[0]), K_ref) < 1e-9


def test_policy_iteration_reaches_optimal_gain(x64):
    for system, K0, gamma in systems_and_gains():
        A, B, Q, R = system
        gains = policy_iteration(A, B, Q, R, K0, gamma, iters=12)
        assert gains.shape == (13, *K0.shape)
        np.testing.assert_array_equal(gains[0], K0)
        K_ref, _ = scipy_riccati(system, gamma)
        assert rel_err(gains[-1], K_ref) < 1e-6
        # Every iterate stabilises and the value matrices decrease (Hewer, 1971).
        traces = []
        for K in gains:
            assert bool(closed_loop_stable(A, B, K, gamma))
            traces.append(float(jnp.trace(lyapunov_value(A, B, Q, R, K, gamma))))
        assert all(b <= a * (1 + 1e-12) for a, b in zip(traces[:-1], traces[1:], strict=True))


def test_eager_matches_jitted_and_float32_converges():
    system = random_system(1)
    K0 = jnp.zeros((2, 3))  # float32: policy_iteration casts it to the system's dtype
    with jax.enable_x64(True):
        system64 = lqr.LQRSystem(*(jnp.asarray(np.asarray(x), jnp.float64) for x in system))
        K_eager, P_eager = lqr.riccati_gain(*system64, 0.9)
        K_jit, P_jit = riccati_gain(*system64, 0.9)
        np.testing.assert_allclose(K_jit, K_eager, rtol=1e-12)
        np.testing.assert_allclose(P_jit, P_eager, rtol=1e-12)
        gains = lqr.policy_iteration(*system64, K0, 0.9, 8)
        assert gains.dtype == jnp.float64
        np.testing.assert_allclose(gains, policy_iteration(*system64, K0, 0.9, iters=8), rtol=1e-12, atol=1e-15)
        assert rel_err(gains[-1], K_eager) < 1e-9
        assert bool(lqr.closed_loop_stable(system64.A, system64.B, K_eager, 0.9))
    # Default float32: the dtype-based tolerance still stops the Riccati loop near the answer.
    K32, P32 = riccati_gain(*system, 0.9)
    assert K32.dtype == jnp.float32
    K_ref, P_ref = scipy_riccati(system, 0.9)
    assert rel_err(K32, K_ref) < 1e-4 and rel_err(P32, P_ref) < 1e-4


# --- trpojax.envs.lqr -----------------------------------------------------------------------------------------


def test_make_env_builds_the_lqr_family():
    for name in ("LQR-v0", "lqr:LQR-v0"):
        spec = make_env(name)
        assert spec.name == "LQR-v0"
        assert (spec.obs_shape, spec.obs_dim, spec.discrete, spec.action_dim) == ((2,), 2, False, 1)
        assert (spec.action_low, spec.action_high, spec.max_episode_steps) == ((-5.0,), (5.0,), 100)
        assert isinstance(spec.params, LQRParams) and spec.env is None
        assert (spec.params.noise_std, spec.params.reset_scale, spec.params.action_bound) == (0.0, 1.0, 5.0)
        np.testing.assert_allclose(spec.params.system.A, [[0.9, 0.2], [0.0, 0.8]], rtol=1e-7)
        assert spec.params.system.A.dtype == np.float64
    with pytest.raises(UnknownEnvError, match="LQR-v0"):
        make_env("lqr:Foo")
    with pytest.raises(UnknownEnvError, match="did you mean 'LQR-v0'"):
        make_env("LQR-v1")  # a plain id near a native one (gymnax's candidates are searched too)
    with pytest.raises(ValueError, match="Q"):
        make_lqr(lqr.LQRSystem(np.eye(2), np.ones((2, 1)), np.eye(3), np.eye(1)))


def test_reset_draws_uniform_states():
    spec = make_lqr(reset_scale=0.5)
    obs, state = jax.vmap(spec.reset)(jax.random.split(jax.random.key(0), 256))
    assert obs.shape == (256, 2) and obs.dtype == jnp.float32
    assert isinstance(state, LQRState) and np.all(state.time == 0)
    np.testing.assert_array_equal(obs, state.x)
    assert np.all(np.abs(obs) <= 0.5) and np.max(np.abs(obs)) > 0.45
    assert abs(float(jnp.mean(obs))) < 0.05


def test_step_dynamics_reward_and_clipping():
    system = random_system(3, n=3, m=2)
    spec = make_lqr(system, action_bound=0.5, max_steps=10)
    A, B, Q, R = spec.params.system
    x = np.array([0.3, -0.7, 0.2], np.float32)
    state = LQRState(jnp.asarray(x), jnp.asarray(4, jnp.int32))
    action = jnp.array([3.0, -0.2], jnp.float32)
    obs, new_state, reward, terminated, truncated, info = jax.jit(spec.step)(jax.random.key(1), state, action)
    u = np.array([0.5, -0.2])  # clipped
    x_next = A @ x + B @ u
    np.testing.assert_allclose(obs, x_next, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info["final_observation"], x_next, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reward, -(x @ Q @ x + u @ R @ u), rtol=1e-5)
    assert int(new_state.time) == 5 and not bool(terminated) and not bool(truncated)
    assert obs.dtype == jnp.float32 and reward.shape == () and reward.dtype == jnp.float32
    assert set(info) == {"discount", "terminated", "truncated", "final_observation"}


def test_time_limit_truncates_and_resets_with_a_fresh_start():
    spec = make_lqr(max_steps=3)
    step = jax.jit(spec.step)
    obs, state = spec.reset(jax.random.key(0))
    action = jnp.array([0.4])
    keys = jax.random.split(jax.random.key(1), 3)
    for t, key in enumerate(keys):
        x = np.asarray(state.x)
        obs, state, _, terminated, truncated, info = step(key, state, action)
        assert not bool(terminated) and not bool(info["terminated"])
        assert bool(truncated) == bool(info["truncated"]) == (t == 2)
    np.testing.assert_allclose(info["final_observation"], spec.params.system.A @ x + spec.params.system.B @ [0.4],
                               rtol=1e-5)
    # The returned obs and state are a new episode's start: time 0, inside the reset box, not the last state.
    assert int(state.time) == 0
    np.testing.assert_array_equal(obs, state.x)
    assert np.all(np.abs(obs) <= 1.0) and not np.allclose(obs, info["final_observation"])
    # Fresh randomness: different step keys give different restarts.
    other = step(jax.random.key(2), LQRState(jnp.asarray(x), jnp.asarray(2, jnp.int32)), action)[0]
    assert not np.allclose(other, obs)


def test_noise_has_the_stated_standard_deviation():
    spec = make_lqr(noise_std=0.3)
    _, state = spec.reset(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 4000)
    obs = jax.vmap(spec.step, in_axes=(0, None, None))(keys, state, jnp.array([0.1]))[0]
    A, B, _, _ = spec.params.system
    noise = np.asarray(obs) - (A @ np.asarray(state.x) + B @ [0.1])
    np.testing.assert_allclose(noise.std(axis=0), 0.3, rtol=0.06)
    assert np.all(np.abs(noise.mean(axis=0)) < 0.03)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_optimal_controller_return_matches_the_oracle(gamma):
    """The env's (discounted) episode return under u = -K* x equals -x0^T P_N x0 and a numpy rollout."""
    horizon = 60
    spec = make_lqr(max_steps=horizon)
    A, B, Q, R = spec.params.system
    with jax.enable_x64(True):
        K_star, P_star = (np.asarray(v) for v in riccati_gain(*(jnp.asarray(x) for x in (A, B, Q, R)), gamma))
        P_inf = np.asarray(lyapunov_value(A, B, Q, R, K_star, gamma))
    np.testing.assert_allclose(P_inf, P_star, rtol=1e-9)
    K32 = jnp.asarray(K_star, jnp.float32)

    def policy_step(carry, key):
        state, discount = carry
        obs, state, reward, _, truncated, info = spec.step(key, state, -K32 @ state.x)
        return (state, discount * gamma), (discount * reward, truncated, info["final_observation"])

    x0, state = spec.reset(jax.random.key(3))
    keys = jax.random.split(jax.random.key(4), horizon)
    _, (rewards, truncated, finals) = jax.jit(lambda s: jax.lax.scan(policy_step, (s, 1.0), keys))(state)
    assert np.flatnonzero(np.asarray(truncated)).tolist() == [horizon - 1]
    env_return = float(np.sum(np.asarray(rewards, np.float64)))

    # Finite-horizon value: P_0 = 0, P_{k+1} = Q + K^T R K + gamma A_K^T P_k A_K; the return is -x0^T P_N x0.
    x0 = np.asarray(x0, np.float64)
    A_K = A - B @ K_star
    P_N = np.zeros_like(A)
    for _ in range(horizon):
        P_N = Q + K_star.T @ R @ K_star + gamma * A_K.T @ P_N @ A_K
    # Plain-Python rollout of the dynamics.
    x, ret, states = x0, 0.0, []
    for t in range(horizon):
        u = -K_star @ x
        ret += gamma**t * -(x @ Q @ x + u @ R @ u)
        x = A @ x + B @ u
        states.append(x)
    np.testing.assert_allclose(ret, -x0 @ P_N @ x0, rtol=1e-12)
    np.testing.assert_allclose(env_return, ret, rtol=1e-5)
    np.testing.assert_allclose(finals, np.array(states), rtol=1e-4, atol=1e-6)
    # The closed loop is fast, so 60 steps already give the infinite-horizon value.
    np.testing.assert_allclose(env_return, -x0 @ P_star @ x0, rtol=1e-5)

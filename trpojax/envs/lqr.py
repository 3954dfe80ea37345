"""The LQR family: a linear system with quadratic cost as an :class:`EnvSpec` (``LQR-v0``).

One environment follows x_{t+1} = A x_t + B clip(u_t) + noise_std * eps_t (eps_t ~ N(0, I_n)) and pays
r_t = -(x_t^T Q x_t + u_t^T R u_t) with the clipped u_t; the observation is the state x_t (float32). Episodes
start at x_0 ~ Uniform[-reset_scale, reset_scale]^n, never terminate, and are truncated after ``max_steps``
steps, with gymnax 1.0's automatic reset (:mod:`trpojax.envs.base`). With ``noise_std = 0`` and a gain
that never clips, its returns are the exact quadratic forms of :mod:`trpojax.core.lqr`, which is what the
family is for: checking sampled estimators against closed-form values, Q-matrices and gains.

Registered ids (:data:`ENVS`): ``LQR-v0``, :func:`~trpojax.core.lqr.default_system` with the defaults of
:func:`make_lqr`. Any other system: ``make_lqr(LQRSystem(A, B, Q, R), ...)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax.core.lqr import LQRSystem, default_system
from trpojax.envs.base import EnvSpec, unknown_env


class LQRState(NamedTuple):
    """State of one LQR environment.

    Attributes:
        x: [n] float32 system state (also the observation).
        time: [] int32 steps taken in this episode.
    """

    x: jax.Array
    time: jax.Array


class LQRParams(NamedTuple):
    """Everything that defines an LQR environment (``EnvSpec.params``), for tools such as oracle comparisons.

    Attributes:
        system: the ``LQRSystem`` (A, B, Q, R) the environment simulates: its float32 matrices, exactly, as
            float64 numpy arrays (so oracles computed from it in float64 describe this environment, whatever
            JAX's x64 setting was when it was made).
        noise_std: standard deviation of the additive Gaussian state noise.
        reset_scale: initial states are Uniform[-reset_scale, reset_scale]^n.
        max_steps: episode time limit (truncation).
        action_bound: actions are clipped to [-action_bound, action_bound]^m.
    """

    system: LQRSystem
    noise_std: float
    reset_scale: float
    max_steps: int
    action_bound: float


def _as_system(system: LQRSystem) -> LQRSystem:
    """``system`` rounded to float32 (what the environment simulates), as float64 numpy arrays; shapes checked."""
    A, B, Q, R = (np.asarray(x, np.float32).astype(np.float64) for x in system)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or B.ndim != 2 or B.shape[0] != A.shape[0]:
        raise ValueError(f"LQR system needs A [n, n] and B [n, m]; got A {A.shape}, B {B.shape}")
    n, m = B.shape
    if Q.shape != (n, n) or R.shape != (m, m):
        raise ValueError(f"LQR system with n={n}, m={m} needs Q [{n}, {n}] and R [{m}, {m}]; "
                         f"got Q {Q.shape}, R {R.shape}")
    return LQRSystem(A, B, Q, R)


def make_lqr(
    system: LQRSystem | None = None,
    *,
    noise_std: float = 0.0,
    reset_scale: float = 1.0,
    max_steps: int = 100,
    action_bound: float = 5.0,
    name: str = "LQR-v0",
) -> EnvSpec:
    """The :class:`EnvSpec` of the LQR environment of ``system`` (default: :func:`default_system`).

    ``reset(key) -> (x_0, LQRState(x_0, 0))`` and ``step(key, state, action) -> (obs, state, reward,
    terminated, truncated, info)`` where, with u = clip(action, -action_bound, action_bound) of shape [m]::

        x+ = A x + B u + noise_std * N(0, I_n),    reward = -(x^T Q x + u^T R u),
        terminated = False,    truncated = (time + 1 >= max_steps),

    and on truncation ``obs`` and the returned state are a fresh reset (drawn with a key split from the
    step's), ``info["final_observation"]`` is x+ and ``info`` also holds ``terminated``, ``truncated`` and
    ``discount`` (always 1), as gymnax 1.0's ``step`` returns them. All arrays are float32 (time int32).

    Args:
        system: (A [n, n], B [n, m], Q [n, n], R [m, m]), any array type.
        noise_std: state-noise standard deviation (0: deterministic dynamics).
        reset_scale: half-width of the uniform initial-state box.
        max_steps: episode length (at least 1).
        action_bound: half-width of the action box.
        name: the spec's name.

    Returns:
        A continuous-action ``EnvSpec`` with obs_shape (n,), action_dim m, bounds +-action_bound and
        ``params`` an :class:`LQRParams`; ``env`` is None.

    Raises:
        ValueError: inconsistent system shapes, or max_steps < 1.
    """
    system = _as_system(default_system() if system is None else system)
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    n, m = system.B.shape
    params = LQRParams(system, float(noise_std), float(reset_scale), int(max_steps), float(action_bound))
    A, B, Q, R = (jnp.asarray(x, jnp.float32) for x in system)  # closed over: constants of the programs

    def reset(key: jax.Array) -> tuple[jax.Array, LQRState]:
        x = jax.random.uniform(key, (n,), jnp.float32, -params.reset_scale, params.reset_scale)
        return x, LQRState(x, jnp.zeros((), jnp.int32))

    def step(key: jax.Array, state: LQRState, action: jax.Array):
        key_noise, key_reset = jax.random.split(key)
        x = state.x
        u = jnp.clip(jnp.reshape(action, (m,)).astype(jnp.float32), -params.action_bound, params.action_bound)
        reward = -(x @ Q @ x + u @ R @ u)
        x_next = A @ x + B @ u
        if params.noise_std:
            x_next = x_next + params.noise_std * jax.random.normal(key_noise, (n,), jnp.float32)
        time = state.time + 1
        terminated = jnp.zeros((), bool)
        truncated = time >= params.max_steps
        obs_reset, state_reset = reset(key_reset)
        obs = jnp.where(truncated, obs_reset, x_next)
        next_state = jax.tree.map(lambda r, s: jnp.where(truncated, r, s), state_reset, LQRState(x_next, time))
        info = {
            "discount": jnp.ones((), jnp.float32),
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": x_next,
        }
        return obs, next_state, reward, terminated, truncated, info

    return EnvSpec(
        name=name,
        reset=reset,
        step=step,
        obs_shape=(n,),
        obs_dim=n,
        discrete=False,
        action_dim=m,
        action_low=(-params.action_bound,) * m,
        action_high=(params.action_bound,) * m,
        max_episode_steps=params.max_steps,
        env=None,
        params=params,
    )


# Registered id -> its spec's builder.
ENVS = {"LQR-v0": lambda: make_lqr(name="LQR-v0")}


def registered_envs() -> list[str]:
    """All registered LQR ids."""
    return list(ENVS)


def make(name: str) -> EnvSpec:
    """The :class:`EnvSpec` of the registered LQR id ``name`` (see :data:`ENVS`).

    Raises:
        UnknownEnvError: ``name`` is not a registered LQR id (the message names the closest ones).
    """
    if name not in ENVS:
        raise unknown_env(name, list(ENVS), kind="LQR environment")
    return ENVS[name]()

"""The adapter shared by the physics families (MuJoCo Playground and Brax): their environments as an EnvSpec.

Playground's ``MjxEnv`` and Brax's ``Env`` have one API: ``reset(rng) -> State`` and ``step(state, action)
-> State`` with ``State.obs``, ``.reward`` and ``.done``; neither enforces a time limit nor resets itself
(Brax's training wrappers do, resetting to a cached first state: every episode after the first starts from
the same state). :func:`adapt` wraps one in the interface's contract (:mod:`trpojax.envs.base`):

- **Episodes.** The adapter counts agent steps. An episode *terminates* when the environment reports
  ``done`` (Brax: unhealthy; Playground: NaN physics) or its observation or reward is not finite, and is
  *truncated* at ``episode_length`` agent steps otherwise. Either way the step returns the next episode's
  first observation from a reset with that step's own key (fresh randomness every episode) and
  ``info["final_observation"]`` the finished one's last (non-finite entries set to 0, as is a non-finite
  reward: a terminated step bootstraps with zero, and 0 * NaN would not be zero).
- **Action repeat.** One agent step applies the action ``action_repeat`` times and sums the rewards; a
  ``done`` within the repeats freezes the state from there (later repeats add nothing).
- **Actions** are a box from the actuators' control range (the rollout clips to it; an actuator without
  a finite range gets [-1, 1], Brax's and Playground's convention for normalised controls).
- **Observations**: a dict of arrays (Playground's asymmetric observations) is flattened into one vector,
  leaves in sorted key order.

**Resets under vmap.** A reset can cost far more than a step (Playground's ``CheetahRun`` lets the body
fall and settle for 200 physics steps), and under ``jax.vmap`` a ``lax.cond`` on a per-environment ``done``
computes both branches for every environment at every step. :func:`reset_where` is a
``jax.custom_batching.custom_vmap`` function whose batching rule instead merges all vmapped axes (envs,
seeds, ...) into one batch and takes a real ``lax.cond`` on "any environment done", so a batch pays for
resets only at steps where some episode ended.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trpojax.envs.base import EnvSpec, UnknownEnvError

EXTRA_HINT = 'pip install -e ".[mujoco]" (or pip install "trpojax[mujoco]")'


def require(module: str, family: str) -> Any:
    """Import ``module`` for ``family``, or raise :class:`UnknownEnvError` saying which extra to install when
    it (or a package it needs) is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise UnknownEnvError(
            f"{family}: environments need the mujoco extra ({err.name} is not installed): {EXTRA_HINT}"
        ) from None


class PhysicsState(NamedTuple):
    """One adapted environment's state.

    Attributes:
        inner: the family's own ``State`` (physics data, observation, reward, done, metrics, info).
        steps: [] int32 agent steps taken in the current episode.
    """

    inner: Any
    steps: jax.Array


def flatten_observation(obs: Any) -> jax.Array:
    """An observation as one float32 vector: an array raveled, a dict's leaves raveled and concatenated in
    sorted key order (``jax.tree`` order)."""
    leaves = jax.tree.leaves(obs)
    return jnp.concatenate([jnp.ravel(leaf).astype(jnp.float32) for leaf in leaves])


def action_bounds(ctrl_range: np.ndarray, action_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(low, high)`` per action dimension from the actuators' ``[n, 2]`` control range; an actuator whose
    range is not finite or empty gets [-1, 1]."""
    ranges = np.asarray(ctrl_range, dtype=np.float64).reshape(-1, 2)
    if ranges.shape[0] != action_size:
        raise UnknownEnvError(f"{ranges.shape[0]} actuator control ranges for {action_size} actions")
    low, high = ranges[:, 0].copy(), ranges[:, 1].copy()
    bad = ~(np.isfinite(low) & np.isfinite(high) & (high > low))
    low[bad], high[bad] = -1.0, 1.0
    return tuple(float(x) for x in low), tuple(float(x) for x in high)


def _tree_where(cond: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Select per leading index: ``cond`` [B] against leaves [B, ...]."""
    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(jnp.reshape(cond, cond.shape + (1,) * (a.ndim - cond.ndim)), a, b)

    return jax.tree.map(pick, on_true, on_false)


def reset_where(reset: Callable[[jax.Array], Any]) -> Callable[[jax.Array, jax.Array, Any], Any]:
    """``where_done(key, done, current) -> reset(key) if done else current`` for one environment, which
    computes ``reset`` only when some environment of the (vmapped) batch is done.

    Unbatched it is a ``lax.cond``. Vmapped over any number of axes, the custom batching rule flattens those
    axes into one batch ``[N]`` and runs ``lax.cond(any(done), where(done, vmap(reset)(keys), current),
    current)``: exact, and a batch with no finished episode costs one reduction.
    """

    @jax.custom_batching.custom_vmap
    def flat(keys: jax.Array, done: jax.Array, current: Any) -> Any:
        # keys [N, ...], done [N], current leaves [N, ...]
        def fresh(_: None) -> Any:
            return _tree_where(done, jax.vmap(reset)(keys), current)

        return jax.lax.cond(jnp.any(done), fresh, lambda _: current, None)

    @flat.def_vmap
    def flat_rule(axis_size: int, in_batched: Any, keys: jax.Array, done: jax.Array, current: Any) -> Any:
        # Another vmapped axis [M] in front of the batch [N]: fold it in, [M, N, ...] -> [M * N, ...].
        args = _broadcast_unbatched(axis_size, in_batched, (keys, done, current))
        merged = jax.tree.map(lambda x: jnp.reshape(x, (x.shape[0] * x.shape[1], *x.shape[2:])), args)
        out = flat(*merged)
        out = jax.tree.map(lambda x: jnp.reshape(x, (axis_size, x.shape[0] // axis_size, *x.shape[1:])), out)
        return out, jax.tree.map(lambda _: True, out)

    @jax.custom_batching.custom_vmap
    def where_done(key: jax.Array, done: jax.Array, current: Any) -> Any:
        return jax.lax.cond(done, reset, lambda _: current, key)

    @where_done.def_vmap
    def where_done_rule(axis_size: int, in_batched: Any, key: jax.Array, done: jax.Array, current: Any) -> Any:
        keys, dones, currents = _broadcast_unbatched(axis_size, in_batched, (key, done, current))
        out = flat(keys, dones, currents)
        return out, jax.tree.map(lambda _: True, out)

    return where_done


def _broadcast_unbatched(axis_size: int, in_batched: Any, args: Any) -> Any:
    """Give every leaf of ``args`` the vmapped leading axis (``in_batched`` mirrors ``args``)."""
    return jax.tree.map(
        lambda x, batched: x if batched else jnp.broadcast_to(x, (axis_size, *jnp.shape(x))), args, tuple(in_batched)
    )


def adapt(
    name: str,
    env: Any,
    *,
    episode_length: int,
    action_repeat: int,
    ctrl_range: np.ndarray,
    params: Any = None,
) -> EnvSpec:
    """The :class:`EnvSpec` of a Brax-API environment ``env`` (see the module docstring).

    Args:
        name: the id it was made from (``playground:CartpoleBalance``).
        env: an object with ``reset(rng) -> State``, ``step(state, action) -> State``, ``observation_size``
            and ``action_size``.
        episode_length: time limit in agent steps (truncation), >= 1.
        action_repeat: physics steps per agent step, >= 1.
        ctrl_range: the actuators' ``[action_size, 2]`` control range.
        params: kept on the spec for tools (the family's config).
    """
    if episode_length < 1 or action_repeat < 1:
        raise UnknownEnvError(f"{name}: episode_length and action_repeat must be >= 1")
    action_size = int(env.action_size)
    low, high = action_bounds(ctrl_range, action_size)

    def reset(key: jax.Array) -> tuple[jax.Array, PhysicsState]:
        inner = env.reset(key)
        return flatten_observation(inner.obs), PhysicsState(inner=inner, steps=jnp.zeros((), jnp.int32))

    def physics_step(inner: Any, action: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
        if action_repeat == 1:
            nxt = env.step(inner, action)
            return nxt, jnp.asarray(nxt.reward, jnp.float32), jnp.asarray(nxt.done) > 0

        def repeat(_: int, carry: tuple) -> tuple:
            state, total, done = carry
            nxt = env.step(state, action)
            state = optax.tree.where(done, state, nxt)  # frozen from the first done on
            total = total + jnp.where(done, 0.0, jnp.asarray(nxt.reward, jnp.float32))
            return state, total, done | (jnp.asarray(nxt.done) > 0)

        return jax.lax.fori_loop(0, action_repeat, repeat, (inner, jnp.zeros((), jnp.float32), jnp.asarray(False)))

    where_done = reset_where(reset)

    def step(key: jax.Array, state: PhysicsState, action: jax.Array) -> tuple:
        inner, reward, done = physics_step(state.inner, action)
        obs = flatten_observation(inner.obs)
        finite = jnp.all(jnp.isfinite(obs)) & jnp.isfinite(reward)
        terminated = done | ~finite
        steps = state.steps + 1
        truncated = (steps >= episode_length) & ~terminated
        final_obs = jnp.where(jnp.isfinite(obs), obs, 0.0)
        reward = jnp.where(jnp.isfinite(reward), reward, 0.0)
        next_obs, next_state = where_done(
            key, terminated | truncated, (final_obs, PhysicsState(inner=inner, steps=steps))
        )
        return next_obs, next_state, reward, terminated, truncated, {"final_observation": final_obs}

    obs_dim = int(jax.eval_shape(lambda k: reset(k)[0], jax.random.PRNGKey(0)).shape[0])
    return EnvSpec(
        name=name,
        reset=reset,
        step=step,
        obs_shape=(obs_dim,),
        obs_dim=obs_dim,
        discrete=False,
        action_dim=action_size,
        action_low=low,
        action_high=high,
        max_episode_steps=int(episode_length),
        env=env,
        params=params,
    )

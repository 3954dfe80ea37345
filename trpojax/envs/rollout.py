"""Rollouts: ``lax.scan`` over time of ``jax.vmap``-ed environments (any family's :class:`EnvSpec`).

:func:`rollout` runs B environments for T steps from wherever they are (continuing rollouts, for
actor-critic methods such as TRPO and NPG) and returns a time-major :class:`Transition` batch ``[T, B, ...]``.
:func:`episodic_rollout` samples n trajectories of horizon H from reset, masked after their first end
(for the episodic estimators of REINFORCE, N-PG-IGT and HARPG), trajectory-major ``[n, H, ...]``.
:func:`evaluate_policy` runs fresh episodes to their end with a fixed policy. Observations are normalised
with statistics frozen for the whole rollout; the transitions keep the raw observations so the learner can
normalise them identically and update the statistics afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trpojax.core.distributions import Categorical, DiagGaussian
from trpojax.envs.base import EnvSpec, env_action, flatten_obs

PolicyFn = Callable[[Any, jax.Array], Categorical | DiagGaussian]


class EpisodeStats(NamedTuple):
    """Per-env episode accumulators, carried across rollouts.

    Attributes:
        episode_return: [B] undiscounted return of the episode in progress.
        episode_length: [B] steps of the episode in progress.
        last_return_mean: [] mean return of the episodes completed in the latest rollout that completed
            any (NaN before the first), reported while a rollout completes none.
        last_length_mean: [] likewise for lengths.
    """

    episode_return: jax.Array
    episode_length: jax.Array
    last_return_mean: jax.Array
    last_length_mean: jax.Array


def init_episode_stats(num_envs: int) -> EpisodeStats:
    """Fresh accumulators for ``num_envs`` envs."""
    return EpisodeStats(
        episode_return=jnp.zeros((num_envs,), jnp.float32),
        episode_length=jnp.zeros((num_envs,), jnp.int32),
        last_return_mean=jnp.asarray(jnp.nan, jnp.float32),
        last_length_mean=jnp.asarray(jnp.nan, jnp.float32),
    )


def count_episodes(
    ep_ret: jax.Array, ep_len: jax.Array, reward: jax.Array, done: jax.Array
) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """One step of the per-env accumulators ``[B]``: add ``reward``, and restart those whose episode is ``done``.

    Returns:
        ``(ep_ret, ep_len, finished)``, the accumulators after the step and ``finished = (done, return,
        length)`` of the episodes that ended at it (0 elsewhere), which :func:`close_episodes` summarises.
    """
    ep_ret, ep_len = ep_ret + reward, ep_len + 1
    finished = (done, jnp.where(done, ep_ret, 0.0), jnp.where(done, ep_len, 0))
    return jnp.where(done, 0.0, ep_ret), jnp.where(done, 0, ep_len), finished


def close_episodes(
    previous: EpisodeStats, ep_ret: jax.Array, ep_len: jax.Array, finished: tuple[jax.Array, ...]
) -> EpisodeStats:
    """The episode stats after a rollout: its accumulators and the means over the episodes it finished
    (``finished`` from :func:`count_episodes`, stacked over steps), or ``previous``'s means if none."""
    done, returns, lengths = finished
    count = jnp.sum(done)
    safe = jnp.maximum(count, 1)
    return EpisodeStats(
        episode_return=ep_ret,
        episode_length=ep_len,
        last_return_mean=jnp.where(count > 0, jnp.sum(returns) / safe, previous.last_return_mean),
        last_length_mean=jnp.where(count > 0, jnp.sum(lengths) / safe, previous.last_length_mean),
    )


class Transition(NamedTuple):
    """One rollout, time-major.

    Attributes:
        obs: [T, B, obs_dim] raw (flattened) observation s_t the action was taken in.
        action: [T, B] int32 (discrete) or [T, B, d] float, the unclipped sample.
        log_prob: [T, B] log pi_old(a_t | s_t) of the unclipped sample.
        reward: [T, B] r_t.
        terminated: [T, B] bool, s'_t is terminal.
        truncated: [T, B] bool, the episode hit its time limit at t (and did not terminate).
        final_obs: [T, B, obs_dim] raw successor s'_t before any auto-reset.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array


class RunnerState(NamedTuple):
    """Where B continuing environments are.

    Attributes:
        env_state: the environments' state pytree with leading [B].
        obs: [B, obs_dim] raw current observation.
        episodes: per-env episode accumulators.
    """

    env_state: Any
    obs: jax.Array
    episodes: EpisodeStats


def reset_envs(spec: EnvSpec, key: jax.Array, num_envs: int) -> RunnerState:
    """Reset ``num_envs`` environments with independent keys."""
    obs, env_state = jax.vmap(spec.reset)(jax.random.split(key, num_envs))
    return RunnerState(env_state=env_state, obs=flatten_obs(spec, obs), episodes=init_episode_stats(num_envs))


def rollout(
    spec: EnvSpec,
    policy_fn: PolicyFn,
    params: Any,
    runner: RunnerState,
    key: jax.Array,
    num_steps: int,
    normalize: Callable[[jax.Array], jax.Array] = lambda obs: obs,
) -> tuple[RunnerState, Transition]:
    """Step B environments ``num_steps`` times with actions sampled from ``policy_fn(params, obs)``.

    Args:
        spec: the environment.
        policy_fn: (params, normalised obs [B, obs_dim]) -> distribution over actions.
        params: policy parameters.
        runner: current env states, observations and episode accumulators.
        key: PRNG key for action sampling and env transitions.
        num_steps: T, static.
        normalize: raw obs -> policy input, fixed over the rollout.

    Returns:
        ``(runner, transitions)``; transitions are ``[T, B, ...]``. ``runner.episodes.last_*_mean`` hold
        the mean return and length of the episodes completed in this rollout (unchanged if none).
    """
    num_envs = runner.obs.shape[0]
    step_env = jax.vmap(spec.step)

    def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, tuple]:
        env_state, obs, ep_ret, ep_len = carry
        act_key, env_key = jax.random.split(step_key)
        dist = policy_fn(params, normalize(obs))
        action = dist.sample(act_key)
        log_prob = dist.log_prob(action)
        next_obs, env_state, reward, terminated, truncated, info = step_env(
            jax.random.split(env_key, num_envs), env_state, env_action(spec, action)
        )
        reward = reward.astype(jnp.float32)
        terminated = terminated.astype(bool)
        truncated = truncated.astype(bool) & ~terminated
        ep_ret, ep_len, finished = count_episodes(ep_ret, ep_len, reward, terminated | truncated)
        transition = Transition(
            obs=obs,
            action=action,
            log_prob=log_prob,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=flatten_obs(spec, info["final_observation"]),
        )
        carry = (env_state, flatten_obs(spec, next_obs), ep_ret, ep_len)
        return carry, (transition, finished)

    init = (runner.env_state, runner.obs, runner.episodes.episode_return, runner.episodes.episode_length)
    (env_state, obs, ep_ret, ep_len), (transitions, finished) = jax.lax.scan(
        step, init, jax.random.split(key, num_steps)
    )
    episodes = close_episodes(runner.episodes, ep_ret, ep_len, finished)
    return RunnerState(env_state=env_state, obs=obs, episodes=episodes), transitions


def evaluate_policy(
    spec: EnvSpec,
    policy_fn: PolicyFn,
    params: Any,
    key: jax.Array,
    num_episodes: int,
    normalize: Callable[[jax.Array], jax.Array] = lambda obs: obs,
    deterministic: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Run ``num_episodes`` fresh episodes in parallel to their end (termination or time limit).

    Actions are the distribution's mode when ``deterministic`` (sampled otherwise), clipped to the bounds.
    Each episode's return is the undiscounted sum of rewards up to and including its first end; the
    auto-reset after it is masked out (:func:`episodic_rollout` over the env's time limit).

    Returns:
        ``(returns [num_episodes], lengths [num_episodes])``.
    """
    batch = episodic_rollout(
        spec, policy_fn, params, key, num_episodes, spec.max_episode_steps, normalize, deterministic
    )
    return jnp.sum(batch.reward, axis=1), jnp.sum(batch.mask, axis=1).astype(jnp.int32)


class EpisodeBatch(NamedTuple):
    """n trajectories of horizon H, each from a fresh reset, trajectory-major (the estimators' layout).

    Attributes:
        obs: [n, H, obs_dim] raw (flattened) observation s_t the action was taken in.
        action: [n, H] int32 (discrete) or [n, H, d] float, the unclipped sample a_t.
        reward: [n, H] r_t where ``mask`` is 1, else 0.
        mask: [n, H] float32, 1 for the steps up to and including the trajectory's first termination or
            truncation, 0 after it (the auto-reset's next episode) and never 0 before a 1.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    mask: jax.Array


def episodic_rollout(
    spec: EnvSpec,
    policy_fn: PolicyFn,
    params: Any,
    key: jax.Array,
    num_trajectories: int,
    horizon: int,
    normalize: Callable[[jax.Array], jax.Array] = lambda obs: obs,
    deterministic: bool = False,
) -> EpisodeBatch:
    """Sample n trajectories tau = (s_0, a_0, r_0, ..., s_{H-1}, a_{H-1}, r_{H-1}), each from a reset.

    The episodic sampler of REINFORCE / GPOMDP, N-PG-IGT and (N-)HARPG (Fatkhullin et al. 2023): every
    trajectory starts from s_0 ~ rho and runs for exactly ``horizon`` steps under pi_params, so all
    n * H steps are simulated (and counted as environment steps by the learners) whatever the episode
    lengths. gymnax resets automatically, so a trajectory is masked from the step after its first
    termination or truncation: with e the index of that step, mask_t = 1 for t <= e and 0 for t > e
    (all ones when the episode outlasts the horizon). Masked steps carry the next episode's junk in
    ``obs``/``action`` and zero reward; estimators ignore them.

    Args:
        spec: the environment.
        policy_fn: (params, obs [n, obs_dim]) -> distribution over actions.
        params: policy parameters theta.
        key: PRNG key for resets, action sampling and transitions.
        num_trajectories: n, static.
        horizon: H, static.
        normalize: raw obs -> policy input (``obs`` in the batch stays raw).
        deterministic: act with the distribution's mode instead of sampling (evaluation).

    Returns:
        The :class:`EpisodeBatch`, arrays ``[n, H, ...]``.
    """
    def keep(env_state: Any, obs: jax.Array, action: jax.Array, reward: jax.Array, mask: jax.Array) -> tuple:
        return obs, action, mask * reward, mask

    time_major = scan_episodes(spec, policy_fn, params, key, num_trajectories, horizon, keep, normalize, deterministic)
    return EpisodeBatch(*(jnp.swapaxes(x, 0, 1) for x in time_major))


def scan_episodes(
    spec: EnvSpec,
    policy_fn: PolicyFn,
    params: Any,
    key: jax.Array,
    num_trajectories: int,
    horizon: int,
    keep: Callable[[Any, jax.Array, jax.Array, jax.Array, jax.Array], Any],
    normalize: Callable[[jax.Array], jax.Array] = lambda obs: obs,
    deterministic: bool = False,
) -> Any:
    """Step n episodes from fresh resets for ``horizon`` steps: the stepping of :func:`episodic_rollout`.

    Reset keys are ``split(reset_key, n)`` and each step's env keys ``split(env_key, n)``, with
    ``reset_key, run_key = split(key)`` and one ``(act_key, env_key)`` per step from ``split(run_key, H)``, so
    any caller with the same key steps the same episodes (:func:`trpojax.envs.render.record_episode` films one
    of an evaluation's).

    Args:
        spec, policy_fn, params, key, num_trajectories, horizon, normalize, deterministic: as in
            :func:`episodic_rollout`.
        keep: ``(env_state, obs [n, obs_dim], action, reward [n] float32, mask [n] float32) -> pytree``: what
            to record of each step, from the state and (raw, flattened) observation the action was taken in;
            ``mask`` is 1 up to and including each episode's first end, 0 after.

    Returns:
        ``keep``'s pytree stacked time-major, leaves ``[H, ...]``.
    """
    reset_key, run_key = jax.random.split(key)
    obs, env_state = jax.vmap(spec.reset)(jax.random.split(reset_key, num_trajectories))
    step_env = jax.vmap(spec.step)

    def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, Any]:
        env_state, obs, alive = carry
        act_key, env_key = jax.random.split(step_key)
        dist = policy_fn(params, normalize(obs))
        action = dist.mode() if deterministic else dist.sample(act_key)
        next_obs, next_state, reward, terminated, truncated, _ = step_env(
            jax.random.split(env_key, num_trajectories), env_state, env_action(spec, action)
        )
        out = keep(env_state, obs, action, reward.astype(jnp.float32), alive.astype(jnp.float32))
        alive = alive & ~(terminated.astype(bool) | truncated.astype(bool))
        return (next_state, flatten_obs(spec, next_obs), alive), out

    init = (env_state, flatten_obs(spec, obs), jnp.ones((num_trajectories,), bool))
    _, time_major = jax.lax.scan(step, init, jax.random.split(run_key, horizon))
    return time_major

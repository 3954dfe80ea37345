"""The environment interface every family implements (gymnax today; Brax and Playground beside it).

An environment is an :class:`EnvSpec`: pure ``reset`` and ``step`` functions on one (unbatched) environment
plus static facts about its spaces. Rollouts (:mod:`trpojax.envs.rollout`) vmap and scan them and use
nothing else, so a family only has to build the spec:

- ``reset(key) -> (obs, state)``;
- ``step(key, state, action) -> (obs, state, reward, terminated, truncated, info)``, where after an
  episode's end ``obs`` already belongs to the next episode (a fresh reset) and
  ``info["final_observation"]`` is the finished episode's last observation (gymnax 1.0's contract);
  ``terminated`` marks a terminal state (no bootstrap), ``truncated`` a time limit (bootstrap from the
  final observation).

trpojax bootstraps a truncated step with V(final observation) and a terminated one with zero
(:mod:`trpojax.core.returns`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

ResetFn = Callable[[jax.Array], tuple[jax.Array, Any]]
StepFn = Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict]]


class EnvSpec(NamedTuple):
    """One environment: its pure functions and what the policy needs to know about it (all static).

    Attributes:
        name: the id it was made from, e.g. ``"CartPole-v1"``.
        reset: ``key -> (obs, state)`` for one environment.
        step: ``(key, state, action) -> (obs, state, reward, terminated, truncated, info)`` with automatic
            reset and ``info["final_observation"]`` (see the module docstring).
        obs_shape: shape of one observation as the environment returns it.
        obs_dim: flattened observation size (the networks see ``[..., obs_dim]``).
        discrete: True for a discrete action space (Categorical policy), False for a box (DiagGaussian).
        action_dim: number of actions (discrete) or action dimensions (box).
        action_low, action_high: box bounds as tuples (box only; empty for discrete).
        max_episode_steps: the time limit of one episode.
        env, params: the family's own environment object and its parameters (gymnax: the ``Environment`` and
            its default ``EnvParams``), for tools that need them; rollouts use ``reset`` and ``step`` only.
    """

    name: str
    reset: ResetFn
    step: StepFn
    obs_shape: tuple[int, ...]
    obs_dim: int
    discrete: bool
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int
    env: Any = None
    params: Any = None


class UnknownEnvError(ValueError):
    """An environment id no family registers, or whose spaces trpojax cannot handle."""


def unknown_env(name: str, candidates: Sequence[str], prefix: str = "", kind: str = "environment") -> UnknownEnvError:
    """The error for id ``prefix + name`` not among ``candidates`` (names without the prefix): the message names
    the (up to three) closest, with the prefix, or else lists them all."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else (
        f"choose one of: {', '.join(candidates)}"
    )
    return UnknownEnvError(f"unknown {kind} {prefix + name!r}; {hint}")


def flatten_obs(spec: EnvSpec, obs: jax.Array) -> jax.Array:
    """[..., *obs_shape] -> float32 [..., obs_dim]."""
    lead = obs.shape[: obs.ndim - len(spec.obs_shape)]
    return jnp.reshape(obs, (*lead, spec.obs_dim)).astype(jnp.float32)


def env_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """The action sent to the env: box actions clipped to the bounds; log-probs use the unclipped one."""
    if spec.discrete:
        return action
    return jnp.clip(action, jnp.array(spec.action_low), jnp.array(spec.action_high))

"""Environments: the interface (:mod:`~trpojax.envs.base`), its families, rollouts and normalisation.

:func:`make_env` picks the family from the id: ``family:name`` for a named family, a plain gymnax id
otherwise. Families: ``gymnax`` (:mod:`trpojax.envs.gymnax`, the default).
"""

from __future__ import annotations

from collections.abc import Callable

from trpojax.envs import gymnax
from trpojax.envs.base import EnvSpec, UnknownEnvError, env_action, flatten_obs
from trpojax.envs.normalize import RunningMeanStd, init_running_stats, normalize_obs, update_running_stats
from trpojax.envs.rollout import (
    EpisodeBatch,
    EpisodeStats,
    RunnerState,
    Transition,
    episodic_rollout,
    evaluate_policy,
    reset_envs,
    rollout,
)

# family prefix -> make(name) -> EnvSpec, raising UnknownEnvError with the nearest names for an unknown one;
# ids without a prefix are gymnax's.
FAMILIES: dict[str, Callable[[str], EnvSpec]] = {"gymnax": gymnax.make}


def make_env(name: str) -> EnvSpec:
    """Build the environment ``name`` (``CartPole-v1``, ``gymnax:CartPole-v1``, ...) as an :class:`EnvSpec`.

    Raises:
        UnknownEnvError: no family knows ``name``, or its spaces are unsupported.
    """
    prefix, sep, rest = name.partition(":")
    if not sep:
        return FAMILIES["gymnax"](name)
    if prefix not in FAMILIES:
        raise UnknownEnvError(f"unknown environment family {prefix!r} in {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[prefix](rest)


__all__ = [
    "FAMILIES",
    "EnvSpec",
    "EpisodeBatch",
    "EpisodeStats",
    "RunnerState",
    "RunningMeanStd",
    "Transition",
    "UnknownEnvError",
    "env_action",
    "episodic_rollout",
    "evaluate_policy",
    "flatten_obs",
    "init_running_stats",
    "make_env",
    "normalize_obs",
    "reset_envs",
    "rollout",
    "update_running_stats",
]

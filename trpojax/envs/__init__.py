"""Environments: the interface (:mod:`~trpojax.envs.base`), its families, rollouts and normalisation.

:func:`make_env` picks the family from the id: ``family:name`` for a named family; a plain id is one of
:data:`NATIVE` (trpojax's own environments, e.g. ``LQR-v0``) or else a gymnax id. Families: ``gymnax``
(:mod:`trpojax.envs.gymnax`, the default for plain ids) and ``lqr`` (:mod:`trpojax.envs.lqr`, linear systems
with quadratic cost, whose values :mod:`trpojax.core.lqr` computes exactly), and the physics families
``playground`` (:mod:`trpojax.envs.playground`, MuJoCo Playground) and ``brax`` (:mod:`trpojax.envs.brax`),
both adapted by :mod:`trpojax.envs.physics` and installed with the ``mujoco`` extra.
"""

from __future__ import annotations

from collections.abc import Callable

from trpojax.envs import brax, gymnax, lqr, playground
from trpojax.envs.base import EnvSpec, UnknownEnvError, env_action, flatten_obs, unknown_env
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

# family prefix -> make(name) -> EnvSpec, raising UnknownEnvError with the nearest names for an unknown one.
FAMILIES: dict[str, Callable[[str], EnvSpec]] = {
    "gymnax": gymnax.make,
    "lqr": lqr.make,
    "playground": playground.make,
    "brax": brax.make,
}

# Families whose environments take ``episode_length`` and ``action_repeat`` (:mod:`trpojax.envs.physics`).
PHYSICS_FAMILIES = ("playground", "brax")

# Plain ids (no prefix) that are not gymnax's -> their family's make; checked before the gymnax fallback.
NATIVE: dict[str, Callable[[str], EnvSpec]] = dict.fromkeys(lqr.registered_envs(), lqr.make)


def make_env(name: str, *, episode_length: int = 0, action_repeat: int = 0) -> EnvSpec:
    """Build the environment ``name`` (``CartPole-v1``, ``gymnax:CartPole-v1``, ``LQR-v0``, ``lqr:LQR-v0``,
    ``playground:CartpoleBalance``, ``brax:inverted_pendulum``, ...) as an :class:`EnvSpec`.

    Args:
        name: the id.
        episode_length: time limit in agent steps for the physics families (0: the environment's own).
        action_repeat: physics steps per agent step for the physics families (0: the environment's own).

    Raises:
        UnknownEnvError: no family knows ``name``, its spaces are unsupported, its family needs an extra that
            is not installed, or ``episode_length`` / ``action_repeat`` is set for a family without them.
    """
    prefix, sep, rest = name.partition(":")
    if prefix in PHYSICS_FAMILIES and sep:
        return FAMILIES[prefix](rest, episode_length, action_repeat)
    if episode_length or action_repeat:
        raise UnknownEnvError(f"episode_length and action_repeat apply to the {' and '.join(PHYSICS_FAMILIES)} "
                              f"families only, not {name!r}")
    if not sep:
        if name in NATIVE:
            return NATIVE[name](name)
        try:
            return FAMILIES["gymnax"](name)
        except UnknownEnvError:
            # gymnax's message again, with the native ids among the candidates.
            candidates = [*NATIVE, *gymnax.registered_envs()]
            if name in candidates:  # a gymnax id with unsupported spaces: gymnax's message says so
                raise
            raise unknown_env(name, candidates) from None
    if prefix not in FAMILIES:
        raise UnknownEnvError(f"unknown environment family {prefix!r} in {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[prefix](rest)


__all__ = [
    "FAMILIES",
    "NATIVE",
    "PHYSICS_FAMILIES",
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

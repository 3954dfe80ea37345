"""The Brax family: ``brax:<name>`` for any environment of ``brax.envs`` (``inverted_pendulum``,
``halfcheetah``, ``hopper``, ``walker2d``, ``ant``, ...), on Brax's default (``generalized``) backend.

Needs the ``mujoco`` extra (``pip install -e ".[mujoco]"``, included in ``dev``). Brax's own auto-reset
wrapper is not used (it restarts every episode from one cached state); the episode and reset semantics are
:mod:`trpojax.envs.physics`'s, with Brax's defaults: 1000-step episodes, action repeat 1.
"""

from __future__ import annotations

import functools
import importlib
import warnings

from trpojax.envs.base import EnvSpec, unknown_env
from trpojax.envs.physics import adapt, require

DEFAULT_EPISODE_LENGTH = 1000  # brax.envs.create's default


def registered_envs() -> list[str]:
    """Every name in Brax's environment registry."""
    envs = require("brax.envs", "brax")
    return sorted(envs._envs)  # noqa: SLF001 - Brax's only list of its registered names


@functools.cache
def make(name: str, episode_length: int = 0, action_repeat: int = 0) -> EnvSpec:
    """The :class:`EnvSpec` of Brax environment ``name``.

    Args:
        name: a name of Brax's registry (``inverted_pendulum``).
        episode_length: time limit in agent steps; 0 for Brax's default (1000) divided by ``action_repeat``.
        action_repeat: physics steps per agent step; 0 for 1.

    Raises:
        UnknownEnvError: the extra is missing or ``name`` is not registered (the message names the nearest).
    """
    names = registered_envs()
    if name not in names:
        raise unknown_env(name, names, prefix="brax:")
    envs = importlib.import_module("brax.envs")
    with warnings.catch_warnings():  # "Brax System, pipelines and environments are not actively maintained"
        warnings.simplefilter("ignore", UserWarning)
        env = envs.get_environment(name)
    repeat = action_repeat or 1
    return adapt(
        f"brax:{name}",
        env,
        episode_length=episode_length or max(1, DEFAULT_EPISODE_LENGTH // repeat),
        action_repeat=repeat,
        ctrl_range=env.sys.actuator.ctrl_range,
    )

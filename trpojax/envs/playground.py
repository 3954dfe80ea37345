"""The MuJoCo Playground family: ``playground:<Name>`` for any environment of ``mujoco_playground.registry``
(the DeepMind Control Suite on MJX: ``CartpoleBalance``, ``CheetahRun``, ``WalkerWalk``, ...).

Needs the ``mujoco`` extra (``pip install -e ".[mujoco]"``, included in ``dev``). Environments are loaded
with MJX's JAX implementation (``impl: jax``), which runs under ``jax.vmap`` on every backend. The default
``episode_length`` and ``action_repeat`` are the environment's own config's; the episode and reset
semantics are :mod:`trpojax.envs.physics`'s. Locomotion and manipulation environments need the MuJoCo
Menagerie, which Playground downloads on first use; without it (or without network) they are refused.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from typing import Any

from trpojax.envs.base import EnvSpec, UnknownEnvError, unknown_env
from trpojax.envs.physics import adapt, require


def registry() -> Any:
    """``mujoco_playground.registry`` (raises :class:`UnknownEnvError` without the extra)."""
    return require("mujoco_playground", "playground").registry


def registered_envs() -> list[str]:
    """Every name in Playground's registry."""
    return list(registry().ALL_ENVS)


def _config(reg: Any, name: str) -> Any:
    config = reg.get_default_config(name)
    if "impl" in config:
        config.impl = "jax"
    return config


@functools.cache
def make(name: str, episode_length: int = 0, action_repeat: int = 0) -> EnvSpec:
    """The :class:`EnvSpec` of Playground environment ``name``.

    Args:
        name: a name of ``mujoco_playground.registry`` (``CartpoleBalance``).
        episode_length: time limit in agent steps; 0 for the environment's own (its config's
            ``episode_length`` divided by ``action_repeat``, Brax's training wrapper's convention).
        action_repeat: physics steps per agent step; 0 for the environment's own (its config's
            ``action_repeat``, 1 where it has none).

    Raises:
        UnknownEnvError: the extra is missing, ``name`` is not registered (the message names the nearest
            ones), or the environment cannot be loaded (e.g. its assets are not available).
    """
    reg = registry()
    names = list(reg.ALL_ENVS)
    if name not in names:
        raise unknown_env(name, names, prefix="playground:")
    # Playground prints while it fetches assets (and on failing to): kept for a successful load, replaced by
    # the one line of UnknownEnvError for a failed one.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            config = _config(reg, name)
            env = reg.load(name, config=config)
    except Exception as err:  # noqa: BLE001 - Playground raises many kinds (missing assets, git, mujoco)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnknownEnvError(f"playground:{name} cannot be loaded here: {first}") from None
    sys.stderr.write(printed.getvalue())
    repeat = action_repeat or int(config.get("action_repeat", 1) or 1)
    length = episode_length or max(1, int(config.get("episode_length", 1000)) // repeat)
    return adapt(
        f"playground:{name}",
        env,
        episode_length=length,
        action_repeat=repeat,
        ctrl_range=env.mj_model.actuator_ctrlrange,
        params=config,
    )

"""The gymnax family: any gymnax id (``CartPole-v1``, ``Pendulum-v1``, ...) as an :class:`EnvSpec`.

gymnax >= 1.0 ``step`` already honours the interface's contract (automatic reset, ``terminated`` /
``truncated``, ``info["final_observation"]``), so the spec's functions are gymnax's own with the default
``EnvParams`` bound.

Import time: ``import gymnax`` runs ``gymnax/__init__.py``, which imports every environment family, and
through ``misc.pong`` and ``bsuite`` also seaborn, scipy.stats and matplotlib: more of a short run's start-up
than the whole rest of trpojax's imports (benchmarks/RESULTS.md measures it). The five classic-control
environments need none of it. :func:`classic_control_env` imports just ``gymnax.environments.{environment,
spaces}`` and the one environment module. To do so it registers gymnax's two package modules (and
``classic_control``) as *deferred* modules: real module objects with gymnax's own spec and ``__path__``, whose
``__init__`` code runs in place the first time a name it defines is looked up (PEP 562 ``__getattr__``). Later
code that does ``import gymnax; gymnax.make(...)`` therefore gets the complete, ordinary package and the same
classes. Every other id goes through ``gymnax.make`` as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trpojax.envs.base import EnvSpec, UnknownEnvError, unknown_env

# gymnax id -> (module in gymnax.environments.classic_control, class); as gymnax.registration registers them.
CLASSIC_CONTROL = {
    "CartPole-v1": ("cartpole", "CartPole"),
    "Acrobot-v1": ("acrobot", "Acrobot"),
    "Pendulum-v1": ("pendulum", "Pendulum"),
    "MountainCar-v0": ("mountain_car", "MountainCar"),
    "MountainCarContinuous-v0": ("continuous_mountain_car", "ContinuousMountainCar"),
}
_PACKAGES = ("gymnax", "gymnax.environments", "gymnax.environments.classic_control")


def _deferred_package(name: str) -> types.ModuleType:
    """Put package ``name`` in ``sys.modules`` with its ``__init__`` not yet run (it runs on first lookup)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"no package {name}")
    module = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str) -> Any:
        # The package's own code defines the rest of its namespace: run it once, in this module object.
        del module.__dict__["__getattr__"]
        spec.loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def import_classic_control() -> None:
    """Make ``gymnax.environments.{environment, spaces, classic_control}`` importable without the rest.

    A no-op when gymnax (or a deferred gymnax) is already imported.
    """
    if "gymnax" in sys.modules:
        return
    try:
        for name in _PACKAGES:
            _deferred_package(name)
        # Bound as attributes before any ``from gymnax.environments import environment, spaces`` runs, so
        # that statement finds them without looking up (and so running) the deferred package code.
        importlib.import_module("gymnax.environments.environment")
        importlib.import_module("gymnax.environments.spaces")
    except Exception:  # an unexpected gymnax layout: forget the deferred modules, import gymnax normally
        for name in [m for m in sys.modules if m == "gymnax" or m.startswith("gymnax.")]:
            del sys.modules[name]
        importlib.import_module("gymnax")


def spaces() -> types.ModuleType:
    """``gymnax.environments.spaces`` (Discrete, Box, ...)."""
    import_classic_control()
    return importlib.import_module("gymnax.environments.spaces")


def classic_control_env(name: str) -> tuple[Any, Any]:
    """``(env, default_params)`` of the classic-control id ``name`` (a key of :data:`CLASSIC_CONTROL`),
    the same objects ``gymnax.make(name)`` returns."""
    module, cls = CLASSIC_CONTROL[name]
    import_classic_control()
    env = getattr(importlib.import_module(f"gymnax.environments.classic_control.{module}"), cls)()
    return env, env.default_params


def registered_envs() -> list[str]:
    """All gymnax ids (this imports the whole of gymnax)."""
    import gymnax

    return list(gymnax.registered_envs)


def make_native(name: str) -> tuple[Any, Any]:
    """``gymnax.make(name)``, without gymnax's package-wide imports for classic-control ids."""
    if name in CLASSIC_CONTROL:
        return classic_control_env(name)
    import gymnax

    return gymnax.make(name)


def check_name(name: str) -> None:
    """Raise :class:`UnknownEnvError` naming the closest registered ids if ``name`` is not a gymnax id."""
    if name in CLASSIC_CONTROL:
        return
    registered = registered_envs()
    if name not in registered:
        raise unknown_env(name, registered)


def make(name: str) -> EnvSpec:
    """The :class:`EnvSpec` of gymnax id ``name`` with its default ``EnvParams``.

    Raises:
        UnknownEnvError: ``name`` is not a registered gymnax id, or its action space is neither
            Discrete nor Box.
    """
    check_name(name)
    env, params = make_native(name)
    space_types = spaces()
    # gymnax builds the observation space's bounds with jax.numpy, which run eagerly as small XLA programs
    # compiled on the spot (before the run's own compilation can start); only the
    # shape is needed, so the space is built abstractly.
    obs_shape = jax.eval_shape(lambda: jnp.zeros(env.observation_space(params).shape)).shape
    space = env.action_space(params)
    if isinstance(space, space_types.Discrete):
        discrete, action_dim, low, high = True, int(space.n), (), ()
    elif isinstance(space, space_types.Box):
        shape = tuple(space.shape)
        action_dim = int(np.prod(shape)) if shape else 1
        low = tuple(float(x) for x in np.broadcast_to(np.asarray(space.low), (action_dim,)))
        high = tuple(float(x) for x in np.broadcast_to(np.asarray(space.high), (action_dim,)))
        discrete = False
    else:
        raise UnknownEnvError(f"environment {name!r} has a {type(space).__name__} action space; "
                              "trpojax supports Discrete and Box")
    return EnvSpec(
        name=name,
        reset=lambda key: env.reset(key, params),
        step=lambda key, state, action: env.step(key, state, action, params),
        obs_shape=obs_shape,
        obs_dim=int(np.prod(obs_shape)) if obs_shape else 1,
        discrete=discrete,
        action_dim=action_dim,
        action_low=low,
        action_high=high,
        max_episode_steps=int(params.max_steps_in_episode),
        env=env,
        params=params,
    )

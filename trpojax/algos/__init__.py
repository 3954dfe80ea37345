"""Algorithms and their registry.

Each algorithm module exposes a ``Config`` (a :func:`trpojax.hparams.config_dataclass`), a pure ``init``
and a pure ``update`` returning ``(new_state, metrics)``, and ``make_learner(config, spec) -> Learner``,
which composes them with rollouts into the two functions :func:`trpojax.train.make_train` scans over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from trpojax.envs import RunningMeanStd
from trpojax.rollout import RunnerState


class TrainState(NamedTuple):
    """Everything one seed's training run carries from update to update.

    Attributes:
        agent: algorithm-specific state; always has a ``policy_params`` attribute.
        obs_stats: running observation statistics (used when ``normalize_obs``).
        runner: continuing environments (None for algorithms that reset for every batch).
        key: PRNG key for the next update.
        update: [] int32, number of updates done.
    """

    agent: Any
    obs_stats: RunningMeanStd
    runner: RunnerState | None
    key: jax.Array
    update: jax.Array


class Learner(NamedTuple):
    """An algorithm bound to an environment and networks.

    Attributes:
        init: (key, config) -> TrainState for one seed.
        step: (state, config) -> (state, metrics): one rollout and one update; metrics is a dict of
            scalars and always holds ``episode_return_mean`` and ``episode_length_mean``.
        env_steps_per_update: environment steps one ``step`` takes (static).
        policy: the policy network module (``policy.apply(params, obs) -> distribution``).
        split: ``step`` as separate stages whose policy and critic halves may run concurrently
            (:class:`trpojax.algos.actor_critic.SplitStep`), for learners that have them (TRPO, NPG); None
            otherwise.
    """

    init: Callable[[jax.Array, Any], TrainState]
    step: Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]
    env_steps_per_update: int
    policy: Any
    split: Any = None


class AlgorithmSpec(NamedTuple):
    """Registry entry: the config section class and the learner factory of one algorithm.

    ``splittable``: its learners have ``split`` stages (actor-critic methods).
    """

    config_cls: type
    make_learner: Callable[..., Learner]
    splittable: bool = False


def registry() -> dict[str, AlgorithmSpec]:
    """Algorithm name (the config's ``algo``) -> its spec."""
    from trpojax.algos import harpg, npg, pg_igt, reinforce, trpo

    return {
        "trpo": AlgorithmSpec(trpo.Config, trpo.make_learner, splittable=True),
        "npg": AlgorithmSpec(npg.Config, npg.make_learner, splittable=True),
        "reinforce": AlgorithmSpec(reinforce.Config, reinforce.make_learner),
        "pg_igt": AlgorithmSpec(pg_igt.Config, pg_igt.make_learner),
        "harpg": AlgorithmSpec(harpg.Config, harpg.make_learner),
    }

"""Algorithms and their registry.

Each algorithm is one module (:mod:`trpojax.algos.base` states the interface): a ``Config`` section, pure
``init`` and ``update(state, batch, key, config, *, nets)``, ``make_learner(config, spec) -> Learner``
and its ``SPEC``. Adding one is a new module and its ``SPEC`` in :data:`REGISTRY` below; the run config,
its validation and the CLIs take everything else from the spec. Shared pieces: :mod:`~.actor_critic`
(TRPO, NPG), :mod:`~.episodic` (REINFORCE, N-PG-IGT, (N-)HARPG), :mod:`~.critic` (the value fit).
:mod:`~.ntdac`, the normalised-TD actor-critic, steps after every environment step over a replay window.
"""

from __future__ import annotations

from trpojax.algos import harpg, npg, ntdac, pg_igt, reinforce, trpo
from trpojax.algos.base import AlgorithmSpec, Learner, Networks, TrainState

# The config's ``algo`` -> its spec, in the order the docs list them.
REGISTRY: dict[str, AlgorithmSpec] = {
    s.name: s for s in (trpo.SPEC, npg.SPEC, reinforce.SPEC, pg_igt.SPEC, harpg.SPEC, ntdac.SPEC)
}


def registry() -> dict[str, AlgorithmSpec]:
    """Algorithm name (the config's ``algo``) -> its spec (a copy of :data:`REGISTRY`)."""
    return dict(REGISTRY)


__all__ = ["REGISTRY", "AlgorithmSpec", "Learner", "Networks", "TrainState", "registry"]

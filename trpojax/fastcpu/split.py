"""Run actor-critic updates as separate programs, the critic fit on a second thread (``execution: split``).

XLA:CPU runs one program's operations one after another, and the small matrix products of a one-seed
TRPO update keep barely more than one core busy. The policy step (gradient, conjugate gradient, line
search) and the critic fit (epochs of Adam) of an update share nothing but the batch, and the next rollout
needs only the new policy. :class:`SplitRunner` therefore runs an update's stages
(:class:`trpojax.algos.actor_critic.SplitStep`) as separate compiled programs: on the calling thread
``prepare`` (GAE with V_k), ``policy`` (theta_k -> theta_k+1) and the next ``collect`` (rollout with
theta_k+1), while a worker thread runs ``critic`` (V_k -> V_k+1) at the same time. Two threads calling
two programs run them concurrently, where programs dispatched from one thread run in turn.

The stages are the very functions ``Learner.step`` composes, so a split chunk computes what the scanned
chunk program computes (up to XLA's choice of fusions, i.e. float rounding), from and to the same
:class:`~trpojax.algos.TrainState`: checkpoints, resume and metrics do not see the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import numpy as np

from trpojax.algos import Learner, TrainState
from trpojax.algos.actor_critic import SplitStep


class SplitPrograms(NamedTuple):
    """The stages of :class:`trpojax.algos.actor_critic.SplitStep`, each jitted and vmapped over seeds.

    Attributes:
        collect: (states, run_config) -> collected.
        prepare: (value_params, obs_stats, transitions, run_config) -> batch.
        policy: (policy_params, batch, run_config) -> (policy_params, metrics).
        critic: (value_params, value_opt_state, batch, update_keys, run_config) -> (value_params,
            value_opt_state, metrics).
    """

    collect: Callable[..., Any]
    prepare: Callable[..., Any]
    policy: Callable[..., Any]
    critic: Callable[..., Any]


def split_programs(learner: Learner) -> SplitPrograms:
    """The learner's split stages (it must have them), jitted and vmapped over seeds."""
    stages = learner.split
    return SplitPrograms(
        collect=jax.jit(jax.vmap(stages.collect, in_axes=(0, None))),
        prepare=jax.jit(jax.vmap(stages.prepare, in_axes=(0, 0, 0, None))),
        policy=jax.jit(jax.vmap(stages.policy, in_axes=(0, 0, None))),
        critic=jax.jit(jax.vmap(stages.critic, in_axes=(0, 0, 0, 0, None))),
    )


class SplitRunner:
    """``(states, run_config, length) -> (states, metrics {name: [S, length]})`` by split stages.

    Has the signature of :attr:`trpojax.trainer.Trainer.run_chunk`, but runs on the host and returns when
    the chunk is done, with NumPy metrics.

    Args:
        programs: the compiled (or jitted) seed-vmapped stages.
    """

    def __init__(self, programs: SplitPrograms):
        self.programs = programs
        self._worker: ThreadPoolExecutor | None = None
        # The rollout of the update after the last chunk, collected while its critic fit ran: reused when
        # the next chunk starts from that chunk's final states (with the same run config).
        self._prefetched: tuple[TrainState, Any, Any] | None = None

    def _critic(self, *args: Any) -> Any:
        return jax.block_until_ready(self.programs.critic(*args))

    def __call__(self, states: TrainState, run_config: Any, length: int) -> tuple[TrainState, dict[str, np.ndarray]]:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trpojax-critic")
        stages = self.programs
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and prefetched[0] is states and prefetched[1] is run_config:
            collected = prefetched[2]
        else:
            collected = stages.collect(states, run_config)
        rows = []
        for _ in range(length):
            agent = states.agent
            batch = stages.prepare(agent.value_params, states.obs_stats, collected.transitions, run_config)
            critic = self._worker.submit(
                self._critic, agent.value_params, agent.value_opt_state, batch, collected.update_key, run_config
            )
            policy_out = stages.policy(agent.policy_params, batch, run_config)
            # The next rollout needs only the new policy: run it while the critic is still fitting.
            ahead = TrainState(
                agent._replace(policy_params=policy_out[0]),
                collected.obs_stats,
                collected.runner,
                collected.key,
                collected.update,
            )
            next_collected = stages.collect(ahead, run_config)
            states, metrics = SplitStep.assemble(collected, policy_out, critic.result())
            rows.append(metrics)
            collected = next_collected
        self._prefetched = (states, run_config, collected)
        host = jax.device_get(rows)
        names = list(rows[0]) if rows else []
        return states, {name: np.stack([np.asarray(row[name]) for row in host], axis=1) for name in names}

    def close(self) -> None:
        """Stop the worker thread (a later call starts a new one)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._prefetched = None

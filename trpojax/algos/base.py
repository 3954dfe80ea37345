"""What every algorithm is: its train state, its learner, its registry entry, its networks argument.

An algorithm is a module with

- ``Config``: its config section (:func:`trpojax.core.hparams.config_dataclass`; floats traced);
- ``init(policy_params, value_params, config) -> state``: the agent state around fresh networks
  (``value_params`` is None for algorithms without a critic);
- ``update(state, batch, key, config, *, nets) -> (state, metrics)``: one pure update on a batch of its
  own kind, ``key`` for any randomness of the update, ``config`` its section, ``nets`` the
  :class:`Networks` it applies;
- ``make_learner(config, spec) -> Learner``: the update composed with rollouts for one environment;
- ``SPEC``: its :class:`AlgorithmSpec`, listed once in :data:`trpojax.algos.REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from trpojax.envs import RunnerState, RunningMeanStd


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


class Networks(NamedTuple):
    """The apply functions an update uses.

    Attributes:
        policy_apply: ``(params, obs [..., obs_dim]) -> distribution`` with batch shape ``[...]``.
        value_apply: ``(params, obs [..., obs_dim]) -> V [...]``; None for algorithms without a critic.
    """

    policy_apply: Callable[[Any, jax.Array], Any]
    value_apply: Callable[[Any, jax.Array], jax.Array] | None = None


class Learner(NamedTuple):
    """An algorithm bound to an environment and networks.

    Attributes:
        init: (key, run_config) -> TrainState for one seed.
        step: (state, run_config) -> (state, metrics): one rollout and one update; metrics is a dict of
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


def _no_extra_trajectories(section: Any) -> int:
    del section
    return 0


class AlgorithmSpec(NamedTuple):
    """Registry entry of one algorithm: everything the rest of trpojax needs to know about it.

    Attributes:
        name: the config's ``algo`` value and the name of its config section.
        config_cls: its config section class.
        make_learner: ``(run_config, env_spec) -> Learner``; the run config it gets is a static view
            (:func:`trpojax.core.hparams.static_view`): float hyperparameters are read inside ``init`` and
            ``step`` from the traced run config.
        doc: one line naming the method, shown in config errors and docs.
        episodic: it samples fresh trajectories from reset for every update (its estimators need one fixed
            policy function, so observation normalisation is not offered).
        extra_trajectories: ``section -> int``, trajectories an update samples beyond ``num_envs`` (HARPG's
            Hessian-vector-product batch).
        extra_steps: ``section -> int``, further environment steps an update counts (HARPG's Hessian batch
            under the authors' step-budgeted protocol).
        fixed_inputs: why the algorithm needs raw observations (``normalize_obs`` is refused with this
            reason); empty when it supports observation normalisation. Defaults to the episodic reason for
            episodic algorithms.
    """

    name: str
    config_cls: type
    make_learner: Callable[[Any, Any], Learner]
    doc: str
    episodic: bool = False
    extra_trajectories: Callable[[Any], int] = _no_extra_trajectories
    fixed_inputs: str = ""
    extra_steps: Callable[[Any], int] = _no_extra_trajectories

    @property
    def refuses_normalize_obs(self) -> str:
        """The reason ``normalize_obs`` is refused (:attr:`fixed_inputs`, or the episodic one); empty if none."""
        if self.fixed_inputs:
            return self.fixed_inputs
        return "its estimators need one fixed policy function across updates" if self.episodic else ""

    def steps_per_update(self, config: Any) -> int:
        """Environment steps one update consumes, per seed: (num_envs + extra) * num_steps + extra steps."""
        section = getattr(config, self.name)
        return (config.num_envs + self.extra_trajectories(section)) * config.num_steps + self.extra_steps(section)

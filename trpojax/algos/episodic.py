"""What the episodic policy-gradient learners share (REINFORCE / GPOMDP, N-PG-IGT, (N-)HARPG): one learner
factory, the recursive-momentum state, and batch means of the per-trajectory estimators.

These learners sample n fresh trajectories of horizon H = ``num_steps`` per estimate with
:func:`trpojax.envs.episodic_rollout` (n = ``num_envs`` for the gradient batch), average the
per-trajectory estimators of :mod:`trpojax.core.estimators` over them, and count all n * H simulated steps
as environment steps, including the masked steps after an episode's end. Observation normalisation is not
offered: the estimators assume one fixed policy function theta -> pi_theta between updates.

An algorithm plugs into :func:`make_learner` with its ``init``, its ``update`` and a ``sample`` function
that draws its batch (where it samples, and how many batches, is what distinguishes the three methods).

With the section option ``protocol: garage`` the learners run the HARPG authors' code instead
(:mod:`trpojax.core.step_estimators`): ``draw`` returns a step-budgeted batch of whole episodes of at most
H steps holding at least n * H real steps (:func:`trpojax.envs.step_batches.step_budget_rollout`, garage's
sampler), whose per-step weights w_t = (G_t - b_t) / N the learner fills in from a linear-feature
baseline fitted to the previous gradient batch (kept in ``TrainState.runner``; zeros before the first
fit, as garage predicts before its first fit). :func:`mean_policy_gradient` and
:func:`mean_hessian_vector_product` then compute the authors' per-step estimators on such batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from trpojax.algos.base import Learner, Networks, TrainState
from trpojax.core import step_estimators
from trpojax.core.estimators import LogProbFn, hessian_vector_product, policy_gradient
from trpojax.envs import EnvSpec, EpisodeBatch, episodic_rollout, init_running_stats
from trpojax.envs.step_batches import StepBatch, step_budget_rollout
from trpojax.networks import ValueNetwork, make_policy

if TYPE_CHECKING:
    from trpojax.config import Config as RunConfig

# (params, key, num_trajectories = num_envs, *, steps = None) -> EpisodeBatch [num_trajectories, H, ...]
# sampled at params; with ``protocol: garage`` a StepBatch of at least ``steps`` (else num_trajectories * H)
# real steps in whole episodes.
DrawFn = Callable[..., EpisodeBatch | StepBatch]
# (agent, key, section, draw, discount) -> (batch, key for the next update).
SampleFn = Callable[[Any, jax.Array, Any, DrawFn, jax.Array], tuple[Any, jax.Array]]


class RecursiveState(NamedTuple):
    """The agent state of the recursive-momentum methods, N-PG-IGT and (N-)HARPG.

    Attributes:
        policy_params: theta_t.
        prev_params: theta_{t-1} (theta_0 at t = 0).
        direction: d_{t-1}, like ``policy_params`` (zeros at t = 0, where it is not used).
        step: [] int32, t, the number of accepted updates.
    """

    policy_params: Any
    prev_params: Any
    direction: Any
    step: jax.Array


def init_recursive(policy_params: Any, value_params: Any = None, config: Any = None) -> RecursiveState:
    """State at t = 0: theta_{-1} = theta_0, d_{-1} = 0 (no critic; ``value_params`` and ``config`` unused)."""
    del value_params, config
    zeros = jax.tree.map(jnp.zeros_like, policy_params)
    return RecursiveState(policy_params, policy_params, zeros, jnp.zeros((), jnp.int32))


def make_log_prob_fn(policy_apply: Callable[[Any, jax.Array], Any]) -> LogProbFn:
    """``(params, obs_t [obs_dim], action_t) -> []`` log pi_theta(a_t | s_t), the estimators' policy."""
    return lambda params, obs, action: policy_apply(params, obs).log_prob(action)


def mean_policy_gradient(
    log_prob_fn: LogProbFn, params: Any, batch: EpisodeBatch | StepBatch, discount: float | jax.Array
) -> Any:
    """g_hat = (1/n) sum_i g(tau_i, theta) over the n trajectories of ``batch`` ([n, H, ...]).

    On a :class:`StepBatch` (``protocol: garage``): the authors' sum_t w_t grad log pi(a_t | s_t), the
    discount already in the weights.
    """
    if isinstance(batch, StepBatch):
        return step_estimators.weighted_policy_gradient(log_prob_fn, params, batch.obs, batch.action, batch.weights)
    grads = jax.vmap(policy_gradient, in_axes=(None, None, 0, 0, 0, 0, None))(
        log_prob_fn, params, batch.obs, batch.action, batch.reward, batch.mask, discount
    )
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), grads)


def mean_hessian_vector_product(
    log_prob_fn: LogProbFn,
    params: Any,
    batch: EpisodeBatch | StepBatch,
    discount: float | jax.Array,
    v: Any,
    form: str = "paper",
) -> Any:
    """(1/m) sum_j B(tau_j, theta) v over the m trajectories of ``batch`` ([m, H, ...]).

    On a :class:`StepBatch` (``protocol: garage``): B v of the weighted surrogate in the ``paper`` or the
    ``authors`` form (:func:`trpojax.core.step_estimators.weighted_hessian_vector_product`); ``form`` is
    ignored on trajectory batches.
    """
    if isinstance(batch, StepBatch):
        return step_estimators.weighted_hessian_vector_product(
            log_prob_fn, params, batch.obs, batch.action, batch.weights, batch.mask, batch.episode, v, form
        )
    products = jax.vmap(hessian_vector_product, in_axes=(None, None, 0, 0, 0, 0, None, None))(
        log_prob_fn, params, batch.obs, batch.action, batch.reward, batch.mask, discount, v
    )
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), products)


def episode_metrics(batch: EpisodeBatch | StepBatch) -> dict[str, jax.Array]:
    """Mean undiscounted return and length of the trajectories' first episodes (capped at the horizon).

    On a :class:`StepBatch`: of the batch's episodes.
    """
    if isinstance(batch, StepBatch):
        episodes = jnp.maximum(jnp.sum(batch.mask * batch.done), 1.0)
        return {
            "episode_return_mean": jnp.sum(batch.reward) / episodes,
            "episode_length_mean": jnp.sum(batch.mask) / episodes,
        }
    return {
        "episode_return_mean": jnp.mean(jnp.sum(batch.reward, axis=1)),
        "episode_length_mean": jnp.mean(jnp.sum(batch.mask, axis=1)),
    }


# The update's key is derived from the train state's key without consuming it, so the sampling streams
# (and so the runs) are those of the methods' own key splits.
_UPDATE_KEY_SALT = 0x7D


def make_learner(
    config: RunConfig,
    spec: EnvSpec,
    *,
    init: Callable[[Any, Any, Any], Any],
    update: Callable[..., tuple[Any, dict[str, jax.Array]]],
    sample: SampleFn,
    critic: bool = False,
) -> Learner:
    """Bind an episodic method to an environment.

    Each ``step``: ``sample(agent, key, section, draw, gamma) -> (batch, next_key)`` draws the method's
    batch (``batch.episodes`` the gradient trajectories, reported as the episode metrics) with
    ``draw(params, key, n)``, n (default ``num_envs``) trajectories of horizon H = ``num_steps`` at
    ``params``; then ``update(agent, batch, key, section, nets=...)``, ``section`` the run config's
    ``algo_section``. Every simulated step counts: ``env_steps_per_update`` is the config's
    ``steps_per_update`` (its :class:`~trpojax.algos.base.AlgorithmSpec` adds HARPG's extra batch).

    Args:
        config: the run config (a static view: its float fields are read from the traced run config).
        spec: the environment.
        init: ``(policy_params, value_params, section) -> agent``.
        update: the algorithm's pure update (the uniform signature of :mod:`trpojax.algos.base`).
        sample: see above.
        critic: build a value network (REINFORCE's baseline); its parameters go to ``init``.
    """
    policy = make_policy(config.network, spec)
    value = ValueNetwork(config.network.value_hidden, config.network.activation) if critic else None
    nets = Networks(policy.apply, value.apply if value is not None else None)
    horizon = config.num_steps
    garage = getattr(config.algo_section, "protocol", "paper") == "garage"

    def draw(params: Any, key: jax.Array, num_trajectories: int = config.num_envs, *, steps: int | None = None):
        return episodic_rollout(spec, policy.apply, params, key, num_trajectories, horizon)

    def garage_draw(coeffs: jax.Array, gamma: jax.Array) -> DrawFn:
        def draw_steps(params: Any, key: jax.Array, num_trajectories: int = config.num_envs, *,
                       steps: int | None = None) -> StepBatch:
            budget = steps if steps is not None else num_trajectories * horizon
            batch = step_budget_rollout(spec, policy.apply, params, key, budget, horizon)
            baselines = step_estimators.linear_baseline_features(batch.obs, batch.time) @ coeffs
            weights = step_estimators.baseline_weights(batch.reward, batch.done, batch.mask, baselines, gamma)
            return batch._replace(weights=weights)

        return draw_steps

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        if critic:
            policy_key, value_key, key = jax.random.split(key, 3)
        else:
            policy_key, key = jax.random.split(key)
        dummy = jnp.zeros((spec.obs_dim,), jnp.float32)
        value_params = value.init(value_key, dummy) if critic else None
        agent = init(policy.init(policy_key, dummy), value_params, run_config.algo_section)
        # garage protocol: the linear baseline's coefficients ride in the (otherwise unused) runner slot.
        runner = jnp.zeros((step_estimators.num_features(spec.obs_dim),), jnp.float32) if garage else None
        return TrainState(
            agent=agent, obs_stats=init_running_stats(spec.obs_dim), runner=runner, key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        hyper = run_config.algo_section
        sampler = garage_draw(state.runner, run_config.gamma) if garage else draw
        batch, key = sample(state.agent, state.key, hyper, sampler, run_config.gamma)
        update_key = jax.random.fold_in(state.key, _UPDATE_KEY_SALT)
        agent, metrics = update(state.agent, batch, update_key, hyper, nets=nets)
        runner = state.runner
        if garage:  # refit the baseline to this gradient batch, for the next update (garage's order)
            episodes = batch.episodes
            targets = step_estimators.episode_reward_to_go(episodes.reward, episodes.done, run_config.gamma)
            features = step_estimators.linear_baseline_features(episodes.obs, episodes.time)
            runner = step_estimators.fit_linear_baseline(features, targets, episodes.mask)
            metrics = {**metrics, "real_env_steps": sum(
                jnp.sum(x.mask) for x in batch if isinstance(x, StepBatch))}
        new_state = state._replace(agent=agent, key=key, update=state.update + 1, runner=runner)
        return new_state, {**episode_metrics(batch.episodes), **metrics}

    return Learner(init=init_state, step=step, env_steps_per_update=config.steps_per_update, policy=policy)

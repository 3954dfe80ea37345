"""What TRPO and NPG share: the batch, the agent state, the natural direction, the critic fit, the learner.

Both collect continuing rollouts of ``num_envs x num_steps``, estimate advantages by GAE(gamma, lambda)
with a learned critic V, compute the natural direction s = (F + damping I)^{-1} g of the importance-ratio
surrogate L(theta) = E[pi_theta(a|s) / pi_old(a|s) A(s, a)] by conjugate gradient on Fisher-vector
products (Kakade 2001; Schulman et al. 2015), and fit V to the GAE returns with Adam. They differ only in
how far they step along s, which each module's ``policy_update`` decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from trpojax.algos.base import Learner, Networks, TrainState
from trpojax.algos.critic import fit_value, init_opt_state
from trpojax.core.linalg import CGInfo, conjugate_gradient, make_gauss_newton_fvp
from trpojax.core.returns import gae_advantages, normalize_advantages
from trpojax.core.tree import all_finite
from trpojax.envs import EnvSpec, init_running_stats, normalize_obs, reset_envs, rollout, update_running_stats
from trpojax.networks import ValueNetwork, make_policy

if TYPE_CHECKING:
    from trpojax.config import Config as RunConfig

PolicyApply = Callable[[Any, jax.Array], Any]
ValueApply = Callable[[Any, jax.Array], jax.Array]


class ActorCriticState(NamedTuple):
    """The agent state of TRPO and NPG.

    Attributes:
        policy_params: policy network parameters theta.
        value_params: value network parameters.
        value_opt_state: Adam moments of the value function (``optax.scale_by_adam``).
    """

    policy_params: Any
    value_params: Any
    value_opt_state: Any


class Batch(NamedTuple):
    """A flattened on-policy batch of N = T * B samples.

    Attributes:
        obs: [N, obs_dim] (normalised) observations.
        actions: [N] or [N, d] actions taken.
        advantages: [N] advantage estimates A(s, a).
        returns: [N] value targets.
    """

    obs: jax.Array
    actions: jax.Array
    advantages: jax.Array
    returns: jax.Array


def init(policy_params: Any, value_params: Any, config: Any = None) -> ActorCriticState:
    """Fresh state around initial network parameters (``config`` is not needed: TRPO's and NPG's state has
    the same layout whatever their hyperparameters)."""
    del config
    return ActorCriticState(policy_params, value_params, init_opt_state(value_params))


class NaturalDirection(NamedTuple):
    """The natural direction of the surrogate at theta_old and what a step along it needs.

    Attributes:
        surrogate: [] L(theta_old).
        grad: g = grad L(theta_old), like the parameters.
        direction: s ~ (F + damping I)^{-1} g from conjugate gradient, like the parameters.
        curvature: [] s^T (F + damping I) s.
        valid: [] g and s finite and the curvature finite and positive; a step is safe to take.
        cg_info: the solver's iterations and residual.
        surrogate_and_kl: theta -> (L(theta), mean KL(pi_old || pi_theta)), both [].
        entropy: [] mean entropy of pi_old over the batch.
    """

    surrogate: jax.Array
    grad: Any
    direction: Any
    curvature: jax.Array
    valid: jax.Array
    cg_info: CGInfo
    surrogate_and_kl: Callable[[Any], tuple[jax.Array, jax.Array]]
    entropy: jax.Array


def natural_direction(
    policy_params: Any,
    batch: Batch,
    policy_apply: PolicyApply,
    *,
    cg_iters: int,
    cg_tol: float | jax.Array,
    damping: float | jax.Array,
    entropy_coef: float | jax.Array = 0.0,
) -> NaturalDirection:
    """Solve (F + damping I) s = g by ``cg_iters`` CG steps on Fisher-vector products, F never formed.

    g is the gradient of the surrogate mean(ratio * A) + entropy_coef * mean_s H(pi_theta(.|s)) (the
    entropy bonus is 0 unless asked for), which is also the objective the line search must improve.

    F is the Hessian of the mean KL(pi_old || pi_theta) at theta_old (the average Fisher information),
    applied in its factored form J^T M J with the network linearised once
    (:func:`trpojax.core.linalg.make_gauss_newton_fvp`).
    """
    chex.assert_rank(batch.advantages, 1)
    old_dist = jax.lax.stop_gradient(policy_apply(policy_params, batch.obs))
    old_log_prob = old_dist.log_prob(batch.actions)

    def surrogate_and_kl(params: Any) -> tuple[jax.Array, jax.Array]:
        dist = policy_apply(params, batch.obs)
        ratio = jnp.exp(dist.log_prob(batch.actions) - old_log_prob)
        objective = jnp.mean(ratio * batch.advantages) + entropy_coef * jnp.mean(dist.entropy())
        return objective, jnp.mean(old_dist.kl(dist))

    surrogate, grad = jax.value_and_grad(lambda p: surrogate_and_kl(p)[0])(policy_params)
    fvp = make_gauss_newton_fvp(
        lambda p: policy_apply(p, batch.obs), lambda dist: jnp.mean(old_dist.kl(dist)), policy_params, damping
    )
    direction, cg_info = conjugate_gradient(fvp, grad, max_iters=cg_iters, tol=cg_tol)
    curvature = optax.tree.vdot(direction, fvp(direction))
    valid = jnp.isfinite(curvature) & (curvature > 0) & all_finite(grad) & all_finite(direction)
    return NaturalDirection(
        surrogate=surrogate,
        grad=grad,
        direction=direction,
        curvature=curvature,
        valid=valid,
        cg_info=cg_info,
        surrogate_and_kl=surrogate_and_kl,
        entropy=jnp.mean(old_dist.entropy()),
    )


def update_with_critic(
    policy_update: Callable[[Any, Batch, Any, PolicyApply], tuple[Any, dict[str, jax.Array]]],
    state: ActorCriticState,
    batch: Batch,
    key: jax.Array,
    config: Any,
    nets: Networks,
) -> tuple[ActorCriticState, dict[str, jax.Array]]:
    """``policy_update(theta, batch, config, policy_apply)`` then the critic fit of :func:`fit_critic`.

    ``config`` must carry ``critic_lr``, ``critic_epochs`` and ``critic_minibatches``. The metrics are the
    policy step's plus ``value_loss``.
    """
    policy_params, metrics = policy_update(state.policy_params, batch, config, nets.policy_apply)
    value_params, opt_state, value_loss = fit_critic(
        state.value_params, state.value_opt_state, batch, key, config, nets.value_apply
    )
    return ActorCriticState(policy_params, value_params, opt_state), {**metrics, "value_loss": value_loss}


def fit_critic(
    value_params: Any, opt_state: Any, batch: Batch, key: jax.Array, config: Any, value_apply: ValueApply
) -> tuple[Any, Any, jax.Array]:
    """:func:`trpojax.algos.critic.fit_value` on ``batch``'s returns with ``config``'s ``critic_lr``,
    ``critic_epochs`` and ``critic_minibatches``; returns ``(value_params, opt_state, value_loss)``,
    value_loss the mean minibatch loss over all steps (the loss on the whole batch when ``critic_epochs``
    is 0)."""
    value_params, opt_state, losses = fit_value(
        value_params,
        opt_state,
        batch.obs,
        batch.returns,
        key,
        learning_rate=config.critic_lr,
        epochs=config.critic_epochs,
        minibatches=config.critic_minibatches,
        value_apply=value_apply,
    )
    return value_params, opt_state, jnp.mean(losses)


class Collected(NamedTuple):
    """One seed's rollout, and the train-state fields that follow it (:attr:`SplitStep.collect`).

    Attributes:
        runner: the environments after the rollout.
        transitions: the rollout, time-major ``[T, B, ...]`` with raw observations.
        key: the train state's PRNG key for the next update.
        update_key: the key of this update's critic fit.
        obs_stats: the running observation statistics with this rollout merged in (unchanged when
            ``normalize_obs`` is off); the batch is normalised with the statistics before it.
        update: [] int32, updates done once this one is.
    """

    runner: Any
    transitions: Any
    key: jax.Array
    update_key: jax.Array
    obs_stats: Any
    update: jax.Array


EPISODE_METRICS = ("episode_return_mean", "episode_length_mean")  # SplitStep.assemble's first metrics


class SplitStep(NamedTuple):
    """One actor-critic update as four pure stages, for running its policy and critic halves concurrently.

    ``Learner.step`` is their composition (:meth:`step`): ``collect`` the rollout with theta_k,
    ``prepare`` the batch with V_k, then ``policy`` (theta_k -> theta_k+1) and ``critic`` (V_k -> V_k+1),
    which share only the batch. The next ``collect`` needs only theta_k+1, so it too can run while the
    critic is still fitting.

    Attributes:
        collect: (state, run_config) -> :class:`Collected`.
        prepare: (value_params, obs_stats, transitions, run_config) -> :class:`Batch`, ``obs_stats`` those
            the rollout was normalised with.
        policy: (policy_params, batch, run_config) -> (policy_params, metrics).
        critic: (value_params, value_opt_state, batch, update_key, run_config) -> (value_params,
            value_opt_state, {"value_loss": []}).
    """

    collect: Callable[..., Collected]
    prepare: Callable[..., Batch]
    policy: Callable[..., tuple[Any, dict[str, jax.Array]]]
    critic: Callable[..., tuple[Any, Any, dict[str, jax.Array]]]

    @staticmethod
    def assemble(
        collected: Collected, policy_out: tuple, critic_out: tuple
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """The next train state and this update's metrics from the stages' outputs (no computation)."""
        policy_params, policy_metrics = policy_out
        value_params, opt_state, critic_metrics = critic_out
        episodes = collected.runner.episodes
        metrics = {
            **dict(zip(EPISODE_METRICS, (episodes.last_return_mean, episodes.last_length_mean), strict=True)),
            **policy_metrics,
            **critic_metrics,
        }
        agent = ActorCriticState(policy_params, value_params, opt_state)
        return TrainState(agent, collected.obs_stats, collected.runner, collected.key, collected.update), metrics

    def step(self, state: TrainState, run_config: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        """One whole update: the stages in order."""
        collected = self.collect(state, run_config)
        agent = state.agent
        batch = self.prepare(agent.value_params, state.obs_stats, collected.transitions, run_config)
        policy_out = self.policy(agent.policy_params, batch, run_config)
        critic_out = self.critic(agent.value_params, agent.value_opt_state, batch, collected.update_key, run_config)
        return self.assemble(collected, policy_out, critic_out)


def make_learner(
    config: RunConfig,
    spec: EnvSpec,
    policy_update: Callable[[Any, Batch, Any, PolicyApply], tuple[Any, dict[str, jax.Array]]],
) -> Learner:
    """Bind an actor-critic method to an environment: continuing rollouts, GAE, its policy step, the critic
    fit of :func:`fit_critic` (as :func:`update_with_critic` composes them).

    Args:
        config: the run config (a static view: static fields fix shapes; the algorithm's section is read
            from the run config passed to ``step``, ``run_config.algo_section``, so its floats may be traced).
        spec: the environment.
        policy_update: ``(theta, batch, section_config, policy_apply) -> (theta, metrics)``.

    Returns:
        A :class:`~trpojax.algos.Learner` whose ``step`` is ``split.step`` (:class:`SplitStep`).
    """
    policy = make_policy(config.network, spec)
    value = ValueNetwork(config.network.value_hidden, config.network.activation)
    num_envs, num_steps, normalize = config.num_envs, config.num_steps, config.normalize_obs

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        del run_config
        policy_key, value_key, env_key, key = jax.random.split(key, 4)
        dummy = jnp.zeros((spec.obs_dim,), jnp.float32)
        return TrainState(
            agent=init(policy.init(policy_key, dummy), value.init(value_key, dummy)),
            obs_stats=init_running_stats(spec.obs_dim),
            runner=reset_envs(spec, env_key, num_envs),
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def collect(state: TrainState, run_config: RunConfig) -> Collected:
        del run_config
        key, rollout_key, update_key = jax.random.split(state.key, 3)
        norm = lambda obs: normalize_obs(state.obs_stats, obs, normalize)  # noqa: E731
        runner, tr = rollout(
            spec, policy.apply, state.agent.policy_params, state.runner, rollout_key, num_steps, norm
        )
        obs_stats = update_running_stats(state.obs_stats, tr.obs) if normalize else state.obs_stats
        return Collected(runner, tr, key, update_key, obs_stats, state.update + 1)

    def prepare(value_params: Any, obs_stats: Any, tr: Any, run_config: RunConfig) -> Batch:
        norm = lambda obs: normalize_obs(obs_stats, obs, normalize)  # noqa: E731
        obs = norm(tr.obs)
        advantages, returns = gae_advantages(
            tr.reward,
            value.apply(value_params, obs),
            value.apply(value_params, norm(tr.final_obs)),
            tr.terminated,
            tr.truncated,
            run_config.gamma,
            run_config.gae_lambda,
        )
        flat = lambda x: x.reshape((num_envs * num_steps, *x.shape[2:]))  # noqa: E731
        advantages = flat(advantages)
        if config.normalize_advantages:
            advantages = normalize_advantages(advantages)
        return Batch(obs=flat(obs), actions=flat(tr.action), advantages=advantages, returns=flat(returns))

    def policy_stage(policy_params: Any, batch: Batch, run_config: RunConfig) -> tuple[Any, dict[str, jax.Array]]:
        return policy_update(policy_params, batch, run_config.algo_section, policy.apply)

    def critic_stage(
        value_params: Any, opt_state: Any, batch: Batch, key: jax.Array, run_config: RunConfig
    ) -> tuple[Any, Any, dict[str, jax.Array]]:
        value_params, opt_state, value_loss = fit_critic(
            value_params, opt_state, batch, key, run_config.algo_section, value.apply
        )
        return value_params, opt_state, {"value_loss": value_loss}

    split = SplitStep(collect=collect, prepare=prepare, policy=policy_stage, critic=critic_stage)
    return Learner(
        init=init_state,
        step=split.step,
        env_steps_per_update=config.steps_per_update,
        policy=policy,
        split=split,
    )

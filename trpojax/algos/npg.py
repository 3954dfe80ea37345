"""Natural policy gradient (Kakade 2001) with conjugate gradient and no line search.

On a continuing-rollout batch with GAE advantages A (as TRPO), the vanilla gradient of the surrogate
L(theta) = E[pi_theta(a|s) / pi_old(a|s) A(s, a)] at theta_old is g = E[A grad log pi(a|s)]. The natural
direction s = (F + lambda I)^{-1} g, F the Fisher matrix (the Hessian of the mean KL(pi_old || pi_theta)),
comes from ``cg_iters`` conjugate-gradient steps on Fisher-vector products (no matrix formed), and

    theta_{t+1} = theta_t + alpha s,   alpha = lr                        (``step_rule: fixed``)
                                        alpha = sqrt(2 delta / s^T F s)  (``step_rule: kl``)

the second being the step whose quadratic KL model equals delta (Schulman et al. 2015, without TRPO's
line search). A non-finite g or s, or a non-positive or non-finite s^T F s, leaves theta unchanged and
counts as a rejected update. The critic is fitted to the GAE returns as in TRPO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import chex
import jax
import jax.numpy as jnp

from trpojax.algos.episodic import policy_network
from trpojax.algos.trpo import Batch, TRPOState, value_update
from trpojax.algos.trpo import init as trpo_init
from trpojax.envs import EnvSpec, init_running_stats, normalize_obs, update_running_stats
from trpojax.hparams import config_dataclass, hp
from trpojax.linalg import (
    conjugate_gradient,
    make_fisher_vector_product,
    tree_all_finite,
    tree_axpy,
    tree_norm,
    tree_vdot,
)
from trpojax.networks import ValueNetwork
from trpojax.returns import gae_advantages, normalize_advantages
from trpojax.rollout import reset_envs, rollout

if TYPE_CHECKING:
    from trpojax.algos import Learner, TrainState
    from trpojax.config import Config as RunConfig


@config_dataclass
class Config:
    """Natural PG hyperparameters (the ``npg:`` section)."""

    step_rule: str = hp("kl", "kl: step sqrt(2 max_kl / s^T F s); fixed: step learning_rate",
                        choices=("kl", "fixed"))
    max_kl: float = hp(0.01, "delta of the kl step rule (quadratic-model KL of each step)", gt=0.0)
    learning_rate: float = hp(0.1, "step size of the fixed step rule", gt=0.0)
    cg_iters: int = hp(10, "conjugate-gradient iterations for s = F^-1 g", ge=1, le=1000)
    cg_tol: float = hp(1e-10, "conjugate-gradient tolerance on the residual norm", ge=0.0)
    cg_damping: float = hp(0.1, "damping added to the Fisher matrix: (F + damping I) s = g", ge=0.0)
    critic_lr: float = hp(1e-3, "Adam learning rate of the value function", gt=0.0)
    critic_epochs: int = hp(5, "passes over the batch when fitting the value function", ge=0)
    critic_minibatches: int = hp(4, "minibatches per critic epoch", ge=1)


def init(policy_params: Any, value_params: Any) -> TRPOState:
    """Fresh NPG state around initial networks (TRPO's layout: policy, value, critic Adam moments)."""
    return trpo_init(policy_params, value_params)


def policy_update(
    policy_params: Any,
    batch: Batch,
    config: Config,
    policy_apply: Callable[[Any, jax.Array], Any],
) -> tuple[Any, dict[str, jax.Array]]:
    """One natural-gradient step theta + alpha (F + damping I)^{-1} g on ``batch`` (N samples).

    Returns:
        ``(new_params, metrics)``: ``grad_norm`` ||g||, ``direction_norm`` ||s||, ``step_norm``
        ||alpha s||, ``kl_quadratic`` alpha^2 s^T F s / 2 (the quadratic model of the step's KL),
        ``cg_iters``, ``cg_residual``, ``entropy``, ``rejected_updates``.
    """
    chex.assert_rank(batch.advantages, 1)
    old_dist = jax.lax.stop_gradient(policy_apply(policy_params, batch.obs))
    old_log_prob = old_dist.log_prob(batch.actions)

    def surrogate(params: Any) -> jax.Array:
        ratio = jnp.exp(policy_apply(params, batch.obs).log_prob(batch.actions) - old_log_prob)
        return jnp.mean(ratio * batch.advantages)

    def mean_kl(params: Any) -> jax.Array:
        return jnp.mean(old_dist.kl(policy_apply(params, batch.obs)))

    grad = jax.grad(surrogate)(policy_params)
    fvp = make_fisher_vector_product(mean_kl, policy_params, config.cg_damping)
    direction, cg_info = conjugate_gradient(fvp, grad, max_iters=config.cg_iters, tol=config.cg_tol)
    shs = tree_vdot(direction, fvp(direction))
    valid = jnp.isfinite(shs) & (shs > 0) & tree_all_finite(grad) & tree_all_finite(direction)
    if config.step_rule == "kl":
        alpha = jnp.sqrt(2.0 * config.max_kl / jnp.where(valid, shs, 1.0))
    else:
        alpha = jnp.asarray(config.learning_rate, shs.dtype)
    alpha = jnp.where(valid, alpha, 0.0)
    new_params = jax.tree.map(
        lambda new, old: jnp.where(valid, new, old), tree_axpy(alpha, direction, policy_params), policy_params
    )
    metrics = {
        "grad_norm": tree_norm(grad),
        "direction_norm": tree_norm(direction),
        "step_norm": alpha * tree_norm(direction),
        "kl_quadratic": jnp.where(valid, 0.5 * alpha**2 * shs, 0.0),
        "cg_iters": cg_info.num_iters.astype(jnp.float32),
        "cg_residual": cg_info.residual_norm,
        "entropy": jnp.mean(old_dist.entropy()),
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    return new_params, metrics


def update(
    state: TRPOState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    policy_apply: Callable[[Any, jax.Array], Any],
    value_apply: Callable[[Any, jax.Array], jax.Array],
) -> tuple[TRPOState, dict[str, jax.Array]]:
    """One NPG update on a flattened batch: natural-gradient policy step and critic fit.

    Args:
        state: policy, value and critic-optimiser state (TRPO's state layout).
        batch: N samples with advantages and value targets.
        key: PRNG key for critic minibatch shuffling.
        config: NPG hyperparameters (float fields may be traced, for sweeps).
        policy_apply: (params, obs [N, obs_dim]) -> distribution with batch shape [N].
        value_apply: (params, obs [N, obs_dim]) -> values [N].

    Returns:
        ``(new_state, metrics)`` (see :func:`policy_update`, plus ``value_loss``).
    """
    policy_params, metrics = policy_update(state.policy_params, batch, config, policy_apply)
    value_params, opt_state, value_loss = value_update(
        state.value_params,
        state.value_opt_state,
        batch.obs,
        batch.returns,
        key,
        learning_rate=config.critic_lr,
        epochs=config.critic_epochs,
        minibatches=config.critic_minibatches,
        value_apply=value_apply,
    )
    return TRPOState(policy_params, value_params, opt_state), {**metrics, "value_loss": value_loss}


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind NPG to an environment: continuing rollouts of ``num_envs x num_steps``, GAE, :func:`update`."""
    from trpojax.algos import Learner, TrainState

    policy = policy_network(config, spec)
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

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        key, rollout_key, update_key = jax.random.split(state.key, 3)
        agent = state.agent
        norm = lambda obs: normalize_obs(state.obs_stats, obs, normalize)  # noqa: E731
        runner, tr = rollout(
            spec, policy.apply, agent.policy_params, state.runner, rollout_key, num_steps, norm
        )
        obs = norm(tr.obs)
        advantages, returns = gae_advantages(
            tr.reward,
            value.apply(agent.value_params, obs),
            value.apply(agent.value_params, norm(tr.final_obs)),
            tr.terminated,
            tr.truncated,
            run_config.gamma,
            run_config.gae_lambda,
        )
        flat = lambda x: x.reshape((num_envs * num_steps, *x.shape[2:]))  # noqa: E731
        advantages = flat(advantages)
        if config.normalize_advantages:
            advantages = normalize_advantages(advantages)
        batch = Batch(obs=flat(obs), actions=flat(tr.action), advantages=advantages, returns=flat(returns))
        agent, metrics = update(
            agent, batch, update_key, run_config.npg, policy_apply=policy.apply, value_apply=value.apply
        )
        obs_stats = update_running_stats(state.obs_stats, tr.obs) if normalize else state.obs_stats
        metrics = {
            "episode_return_mean": runner.episodes.last_return_mean,
            "episode_length_mean": runner.episodes.last_length_mean,
            **metrics,
        }
        return TrainState(agent, obs_stats, runner, key, state.update + 1), metrics

    return Learner(init=init_state, step=step, env_steps_per_update=num_envs * num_steps, policy=policy)

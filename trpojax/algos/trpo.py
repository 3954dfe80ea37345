"""Trust Region Policy Optimization (Schulman et al. 2015) as a pure update function.

Given a batch collected with pi_old, TRPO maximises the importance-sampled surrogate

    L(theta) = E[ pi_theta(a|s) / pi_old(a|s) * A(s, a) ]   s.t.   mean_s KL(pi_old(.|s) || pi_theta(.|s)) <= delta.

Linearising L (gradient g) and taking the KL to second order (Fisher matrix F) gives
max g^T Delta s.t. 1/2 Delta^T F Delta <= delta, solved by Delta* = sqrt(2 delta / s^T F s) s with
s = F^{-1} g. s comes from conjugate gradient on Fisher-vector products (no matrix is formed); a
backtracking line search over Delta*, ratio^1 Delta*, ... accepts the first step whose exact mean KL is
<= delta and whose surrogate improves, and otherwise keeps the old parameters. The critic V is fitted to
the GAE returns by Adam on minibatches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from trpojax.envs import EnvSpec, init_running_stats, normalize_obs, update_running_stats
from trpojax.hparams import config_dataclass, hp
from trpojax.linalg import (
    conjugate_gradient,
    make_fisher_vector_product,
    tree_all_finite,
    tree_axpy,
    tree_vdot,
)
from trpojax.networks import PolicyNetwork, ValueNetwork
from trpojax.returns import gae_advantages, normalize_advantages
from trpojax.rollout import reset_envs, rollout

if TYPE_CHECKING:
    from trpojax.algos import Learner
    from trpojax.config import Config as RunConfig


@config_dataclass
class Config:
    """TRPO hyperparameters (the ``trpo:`` section of a run config)."""

    max_kl: float = hp(0.01, "trust-region radius delta on the mean KL(pi_old || pi_new)", gt=0.0)
    cg_iters: int = hp(10, "conjugate-gradient iterations for s = F^-1 g", ge=1, le=1000)
    cg_tol: float = hp(1e-10, "conjugate-gradient tolerance on the residual norm", ge=0.0)
    cg_damping: float = hp(0.1, "damping added to the Fisher matrix: (F + damping I) s = g", ge=0.0)
    backtrack_ratio: float = hp(0.8, "line-search step shrink factor", gt=0.0, lt=1.0)
    backtrack_steps: int = hp(10, "line-search trials before the update is rejected", ge=1, le=100)
    critic_lr: float = hp(1e-3, "Adam learning rate of the value function", gt=0.0)
    critic_epochs: int = hp(5, "passes over the batch when fitting the value function", ge=0)
    critic_minibatches: int = hp(4, "minibatches per critic epoch", ge=1)


class TRPOState(NamedTuple):
    """TRPO's agent state.

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


_ADAM = optax.scale_by_adam()


def init(policy_params: Any, value_params: Any) -> TRPOState:
    """Fresh TRPO state around initial network parameters."""
    return TRPOState(policy_params, value_params, _ADAM.init(value_params))


def policy_update(
    policy_params: Any,
    batch: Batch,
    config: Config,
    policy_apply: Callable[[Any, jax.Array], Any],
) -> tuple[Any, dict[str, jax.Array]]:
    """One TRPO policy step on ``batch``: CG natural direction, maximal step, KL-checked line search.

    Returns the new parameters (the old ones when the step is rejected: non-finite or non-positive
    s^T F s, a non-finite gradient, or no line-search trial that satisfies the KL bound and improves the
    surrogate) and metrics: ``surrogate_gain``, ``kl``, ``cg_iters``, ``cg_residual``,
    ``line_search_steps``, ``accepted``, ``rejected_updates``, ``entropy``, ``step_norm``.
    """
    chex.assert_rank(batch.advantages, 1)
    old_dist = jax.lax.stop_gradient(policy_apply(policy_params, batch.obs))
    old_log_prob = old_dist.log_prob(batch.actions)

    def surrogate_and_kl(params: Any) -> tuple[jax.Array, jax.Array]:
        dist = policy_apply(params, batch.obs)
        ratio = jnp.exp(dist.log_prob(batch.actions) - old_log_prob)
        return jnp.mean(ratio * batch.advantages), jnp.mean(old_dist.kl(dist))

    surrogate = lambda p: surrogate_and_kl(p)[0]  # noqa: E731
    mean_kl = lambda p: surrogate_and_kl(p)[1]  # noqa: E731

    surr_old, grad = jax.value_and_grad(surrogate)(policy_params)
    fvp = make_fisher_vector_product(mean_kl, policy_params, config.cg_damping)
    direction, cg_info = conjugate_gradient(fvp, grad, max_iters=config.cg_iters, tol=config.cg_tol)
    shs = tree_vdot(direction, fvp(direction))
    valid = jnp.isfinite(shs) & (shs > 0) & tree_all_finite(grad) & tree_all_finite(direction)
    full_step_size = jnp.sqrt(2.0 * config.max_kl / jnp.where(valid, shs, 1.0))

    def candidate(fraction: jax.Array) -> Any:
        return tree_axpy(fraction * full_step_size, direction, policy_params)

    def cond(carry: tuple) -> jax.Array:
        trial, accepted, _, _ = carry
        return valid & ~accepted & (trial < config.backtrack_steps)

    def body(carry: tuple) -> tuple:
        trial, _, _, _ = carry
        surr, kl = surrogate_and_kl(candidate(config.backtrack_ratio**trial))
        ok = jnp.isfinite(surr) & jnp.isfinite(kl) & (kl <= config.max_kl) & (surr > surr_old)
        return trial + 1, ok, surr, kl

    zero = jnp.zeros((), surr_old.dtype)
    trials, accepted, surr_new, kl_new = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), jnp.array(False), surr_old, zero)
    )
    fraction = jnp.where(accepted, config.backtrack_ratio ** (trials - 1).astype(surr_old.dtype), 0.0)
    new_params = jax.tree.map(
        lambda new, old: jnp.where(accepted, new, old), candidate(fraction), policy_params
    )
    metrics = {
        "surrogate_gain": jnp.where(accepted, surr_new - surr_old, zero),
        "kl": jnp.where(accepted, kl_new, zero),
        "cg_iters": cg_info.num_iters.astype(jnp.float32),
        "cg_residual": cg_info.residual_norm,
        "line_search_steps": trials.astype(jnp.float32),
        "accepted": accepted.astype(jnp.float32),
        "rejected_updates": (~accepted).astype(jnp.float32),
        "entropy": jnp.mean(old_dist.entropy()),
        "step_norm": jnp.where(accepted, fraction * full_step_size * jnp.sqrt(tree_vdot(direction, direction)), 0.0),
    }
    return new_params, metrics


def value_update(
    value_params: Any,
    opt_state: Any,
    obs: jax.Array,
    returns: jax.Array,
    key: jax.Array,
    *,
    learning_rate: float | jax.Array,
    epochs: int,
    minibatches: int,
    value_apply: Callable[[Any, jax.Array], jax.Array],
) -> tuple[Any, Any, jax.Array]:
    """Fit V to ``returns [N]`` by Adam on mean squared error, ``epochs`` shuffled passes of ``minibatches``.

    A remainder of N not divisible by ``minibatches`` is left out of that epoch (a fresh shuffle each epoch).

    Returns:
        ``(value_params, opt_state, value_loss)``; value_loss is the mean minibatch loss over all steps
        (the loss on the whole batch when ``epochs`` is 0).
    """
    n = returns.shape[0]
    size = n // minibatches

    def loss_fn(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((value_apply(params, x) - y) ** 2)

    def minibatch_step(carry: tuple, idx: jax.Array) -> tuple[tuple, jax.Array]:
        params, opt = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, obs[idx], returns[idx])
        updates, opt = _ADAM.update(grads, opt)
        params = tree_axpy(-learning_rate, updates, params)
        return (params, opt), loss

    def epoch(carry: tuple, epoch_key: jax.Array) -> tuple[tuple, jax.Array]:
        perm = jax.random.permutation(epoch_key, n)[: size * minibatches].reshape(minibatches, size)
        return jax.lax.scan(minibatch_step, carry, perm)

    if epochs == 0:
        return value_params, opt_state, loss_fn(value_params, obs, returns)
    (value_params, opt_state), losses = jax.lax.scan(
        epoch, (value_params, opt_state), jax.random.split(key, epochs)
    )
    return value_params, opt_state, jnp.mean(losses)


def update(
    state: TRPOState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    policy_apply: Callable[[Any, jax.Array], Any],
    value_apply: Callable[[Any, jax.Array], jax.Array],
) -> tuple[TRPOState, dict[str, jax.Array]]:
    """One TRPO update on a flattened batch: policy step (see :func:`policy_update`) and critic fit.

    Args:
        state: current TRPO state.
        batch: N samples with advantages (already normalised if desired) and value targets.
        key: PRNG key for critic minibatch shuffling.
        config: TRPO hyperparameters (float fields may be traced, for sweeps).
        policy_apply: (params, obs [N, obs_dim]) -> distribution with batch shape [N].
        value_apply: (params, obs [N, obs_dim]) -> values [N].

    Returns:
        ``(new_state, metrics)``, metrics a dict of scalars (see :func:`policy_update`, plus
        ``value_loss``).
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
    """Bind TRPO to an environment: continuing rollouts of ``num_envs x num_steps``, GAE, :func:`update`."""
    from trpojax.algos import Learner, TrainState

    net = config.network
    policy = PolicyNetwork(spec.action_dim, spec.discrete, net.policy_hidden, net.activation, net.init_log_std)
    value = ValueNetwork(net.value_hidden, net.activation)
    num_envs, num_steps, normalize = config.num_envs, config.num_steps, config.normalize_obs

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        del run_config
        policy_key, value_key, env_key, key = jax.random.split(key, 4)
        dummy = jnp.zeros((spec.obs_dim,), jnp.float32)
        agent = init(policy.init(policy_key, dummy), value.init(value_key, dummy))
        return TrainState(
            agent=agent,
            obs_stats=init_running_stats(spec.obs_dim),
            runner=reset_envs(spec, env_key, num_envs),
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        key, rollout_key, update_key = jax.random.split(state.key, 3)
        agent = state.agent
        norm = lambda obs: normalize_obs(state.obs_stats, obs, normalize)  # noqa: E731
        runner, tr = rollout(spec, policy.apply, agent.policy_params, state.runner, rollout_key, num_steps, norm)
        obs, final_obs = norm(tr.obs), norm(tr.final_obs)
        values = value.apply(agent.value_params, obs)
        bootstrap = value.apply(agent.value_params, final_obs)
        advantages, returns = gae_advantages(
            tr.reward, values, bootstrap, tr.terminated, tr.truncated, run_config.gamma, run_config.gae_lambda
        )
        flat = lambda x: x.reshape((num_envs * num_steps, *x.shape[2:]))  # noqa: E731
        advantages = flat(advantages)
        if config.normalize_advantages:
            advantages = normalize_advantages(advantages)
        batch = Batch(obs=flat(obs), actions=flat(tr.action), advantages=advantages, returns=flat(returns))
        agent, metrics = update(
            agent, batch, update_key, run_config.trpo, policy_apply=policy.apply, value_apply=value.apply
        )
        obs_stats = update_running_stats(state.obs_stats, tr.obs) if normalize else state.obs_stats
        metrics = {
            "episode_return_mean": runner.episodes.last_return_mean,
            "episode_length_mean": runner.episodes.last_length_mean,
            **metrics,
        }
        new_state = TrainState(agent, obs_stats, runner, key, state.update + 1)
        return new_state, metrics

    return Learner(init=init_state, step=step, env_steps_per_update=num_envs * num_steps, policy=policy)

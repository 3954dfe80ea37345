"""REINFORCE / GPOMDP with reward-to-go and an optional baseline (Williams 1992; Baxter & Bartlett 2001).

Each update samples n trajectories of horizon H from reset at theta_t
(:func:`trpojax.rollout.episodic_rollout`) and ascends J_H(theta) = E[sum_{t<H} gamma^t r_t] along

    g_hat = (1/n) sum_i sum_t mask_t gamma^t (G_t - b(s_t)) grad log pi_theta(a_t | s_t),
    G_t = sum_{h>=t} gamma^{h-t} mask_h r_h,

with b = 0 (the plain estimator g(tau, theta) of Fatkhullin et al. 2023) or b = V_phi, a value network fitted
to G_t after the gradient is taken (Greensmith et al. 2004). The step is theta_{t+1} = theta_t + lr * u_t with
u_t = g_hat (``sgd``) or Adam's preconditioned g_hat (``adam``; Kingma & Ba 2015). A non-finite g_hat leaves
theta and the optimiser state unchanged and counts as a rejected update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trpojax.algos.episodic import (
    episode_metrics,
    initial_train_state,
    make_log_prob_fn,
    mean_policy_gradient,
)
from trpojax.envs import EnvSpec
from trpojax.estimators import LogProbFn, policy_gradient_with_baseline, reward_to_go
from trpojax.hparams import config_dataclass, hp
from trpojax.linalg import tree_all_finite, tree_axpy, tree_norm
from trpojax.networks import ValueNetwork, make_policy
from trpojax.rollout import EpisodeBatch, episodic_rollout

if TYPE_CHECKING:
    from trpojax.algos import Learner, TrainState
    from trpojax.config import Config as RunConfig


@config_dataclass
class Config:
    """REINFORCE hyperparameters (the ``reinforce:`` section). n = ``num_envs``, H = ``num_steps``."""

    optimizer: str = hp("adam", "policy optimiser: adam (Adam-scaled gradient) or sgd (the raw gradient)",
                        choices=("adam", "sgd"))
    learning_rate: float = hp(0.01, "policy step size lr: theta += lr * u", gt=0.0)
    baseline: bool = hp(False, "subtract a learned state value V(s_t) from the reward-to-go")
    critic_lr: float = hp(1e-3, "Adam learning rate of the baseline value network", gt=0.0)
    critic_steps: int = hp(10, "full-batch Adam steps on the baseline per update", ge=1)


class ReinforceState(NamedTuple):
    """REINFORCE's agent state.

    Attributes:
        policy_params: policy parameters theta.
        policy_opt_state: Adam moments of the policy (``optax.scale_by_adam``; ``None`` for sgd).
        value_params: baseline network parameters (``None`` without a baseline).
        value_opt_state: Adam moments of the baseline (``None`` without a baseline).
    """

    policy_params: Any
    policy_opt_state: Any
    value_params: Any
    value_opt_state: Any


_ADAM = optax.scale_by_adam()


def init(policy_params: Any, value_params: Any, config: Config) -> ReinforceState:
    """Fresh state; ``value_params`` is ignored (stored as None) when ``config.baseline`` is False."""
    policy_opt = _ADAM.init(policy_params) if config.optimizer == "adam" else None
    if not config.baseline:
        return ReinforceState(policy_params, policy_opt, None, None)
    return ReinforceState(policy_params, policy_opt, value_params, _ADAM.init(value_params))


def fit_baseline(
    value_params: Any,
    opt_state: Any,
    batch: EpisodeBatch,
    targets: jax.Array,
    *,
    learning_rate: float | jax.Array,
    steps: int,
    value_apply: Callable[[Any, jax.Array], jax.Array],
) -> tuple[Any, Any, jax.Array]:
    """``steps`` full-batch Adam steps on the masked loss sum mask (V(s_t) - G_t)^2 / sum mask.

    Returns:
        ``(value_params, opt_state, loss)``, loss before the first step.
    """

    def loss_fn(params: Any) -> jax.Array:
        errors = (value_apply(params, batch.obs) - targets) ** 2
        return jnp.sum(batch.mask * errors) / jnp.maximum(jnp.sum(batch.mask), 1.0)

    def adam_step(carry: tuple, _: None) -> tuple[tuple, jax.Array]:
        params, opt = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = _ADAM.update(grads, opt)
        return (tree_axpy(-learning_rate, updates, params), opt), loss

    (value_params, opt_state), losses = jax.lax.scan(adam_step, (value_params, opt_state), None, length=steps)
    return value_params, opt_state, losses[0]


def update(
    state: ReinforceState,
    batch: EpisodeBatch,
    config: Config,
    *,
    log_prob_fn: LogProbFn,
    value_apply: Callable[[Any, jax.Array], jax.Array],
    discount: float | jax.Array,
) -> tuple[ReinforceState, dict[str, jax.Array]]:
    """One REINFORCE step on n trajectories sampled at ``state.policy_params``.

    Args:
        state: current state.
        batch: [n, H, ...] trajectories from :func:`trpojax.rollout.episodic_rollout` at theta_t.
        config: hyperparameters (float fields may be traced).
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        value_apply: (params, obs [..., obs_dim]) -> V [...] (used only with a baseline).
        discount: [] gamma of J_H.

    Returns:
        ``(new_state, metrics)``: ``grad_norm`` ||g_hat||, ``direction_norm`` ||u_t||, ``step_norm``
        ||theta_{t+1} - theta_t||, ``rejected_updates`` (1 when g_hat was non-finite), plus ``value_loss``
        with a baseline.
    """
    params = state.policy_params
    metrics = {}
    value_params, value_opt = state.value_params, state.value_opt_state
    if config.baseline:
        targets = jax.vmap(reward_to_go, in_axes=(0, 0, None))(batch.reward, batch.mask, discount)
        baselines = jax.lax.stop_gradient(value_apply(value_params, batch.obs))
        grads = jax.vmap(policy_gradient_with_baseline, in_axes=(None, None, 0, 0, 0, 0, None, 0))(
            log_prob_fn, params, batch.obs, batch.action, batch.reward, batch.mask, discount, baselines
        )
        grad = jax.tree.map(lambda x: jnp.mean(x, axis=0), grads)
        value_params, value_opt, metrics["value_loss"] = fit_baseline(
            value_params, value_opt, batch, targets,
            learning_rate=config.critic_lr, steps=config.critic_steps, value_apply=value_apply,
        )
    else:
        grad = mean_policy_gradient(log_prob_fn, params, batch, discount)
    valid = tree_all_finite(grad)
    safe_grad = jax.tree.map(lambda x: jnp.where(valid, x, 0.0), grad)
    if config.optimizer == "adam":
        direction, new_opt = _ADAM.update(safe_grad, state.policy_opt_state)
        policy_opt = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new_opt, state.policy_opt_state)
    else:
        direction, policy_opt = safe_grad, state.policy_opt_state
    step = jnp.where(valid, config.learning_rate, 0.0)
    new_params = tree_axpy(step, direction, params)
    metrics.update(
        grad_norm=tree_norm(grad),
        direction_norm=tree_norm(direction),
        step_norm=step * tree_norm(direction),
        rejected_updates=(~valid).astype(jnp.float32),
    )
    return ReinforceState(new_params, policy_opt, value_params, value_opt), metrics


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind REINFORCE to an environment: n = ``num_envs`` trajectories of H = ``num_steps`` steps each."""
    from trpojax.algos import Learner

    policy = make_policy(config.network, spec)
    value = ValueNetwork(config.network.value_hidden, config.network.activation)
    log_prob_fn = make_log_prob_fn(policy.apply)
    num_trajectories, horizon = config.num_envs, config.num_steps

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        policy_key, value_key, key = jax.random.split(key, 3)
        dummy = jnp.zeros((spec.obs_dim,), jnp.float32)
        agent = init(policy.init(policy_key, dummy), value.init(value_key, dummy), run_config.reinforce)
        return initial_train_state(agent, spec, key)

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        key, rollout_key = jax.random.split(state.key)
        theta = state.agent.policy_params
        batch = episodic_rollout(spec, policy.apply, theta, rollout_key, num_trajectories, horizon)
        agent, metrics = update(
            state.agent, batch, run_config.reinforce,
            log_prob_fn=log_prob_fn, value_apply=value.apply, discount=run_config.gamma,
        )
        new_state = state._replace(agent=agent, key=key, update=state.update + 1)
        return new_state, {**episode_metrics(batch), **metrics}

    return Learner(init=init_state, step=step, env_steps_per_update=num_trajectories * horizon, policy=policy)

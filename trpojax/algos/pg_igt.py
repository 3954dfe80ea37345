"""N-PG-IGT: normalised PG with implicit gradient transport (Fatkhullin et al. 2023, Algorithm 1).

With step sizes gamma_t and momentum weights eta_t in (0, 1] (t counted from 0, :mod:`trpojax.schedules`):

    theta~_t  = theta_t + ((1 - eta_t) / eta_t) (theta_t - theta_{t-1})      (look-ahead point)
    tau_t     ~ p(. | pi_{theta~_t})                                         (n trajectories of horizon H)
    d_t       = (1 - eta_t) d_{t-1} + eta_t g_hat(tau_t, theta~_t)
    theta_{t+1} = theta_t + gamma_t d_t / ||d_t||

with theta_{-1} = theta_0 and d_0 = g_hat(tau_0, theta_0). Evaluating the gradient at the extrapolated point
theta~_t transports the old gradients in d_{t-1} to theta_t to second order (Arnold et al. 2019), which is
what lets normalised momentum converge with a single trajectory per step. The paper's schedules are
gamma_t = gamma_0 2/(t+2) and eta_t = eta_0 (2/(t+2))^(4/5). A non-finite gradient or a zero direction
leaves the whole state (theta_t, theta_{t-1}, d_{t-1}, t) unchanged and counts as a rejected update, so t
counts accepted updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from trpojax.algos.episodic import (
    RecursiveState,
    episode_metrics,
    init_recursive,
    initial_train_state,
    make_log_prob_fn,
    mean_policy_gradient,
)
from trpojax.envs import EnvSpec
from trpojax.estimators import LogProbFn
from trpojax.hparams import config_dataclass, hp
from trpojax.linalg import tree_all_finite, tree_axpy, tree_norm, tree_scale
from trpojax.networks import make_policy
from trpojax.rollout import EpisodeBatch, episodic_rollout
from trpojax.schedules import SCHEDULES, schedule_value

if TYPE_CHECKING:
    from trpojax.algos import Learner, TrainState
    from trpojax.config import Config as RunConfig


@config_dataclass
class Config:
    """N-PG-IGT hyperparameters (the ``pg_igt:`` section). n = ``num_envs``, H = ``num_steps``."""

    gamma0: float = hp(0.1, "step-size scale gamma_0 (the normalised step has length gamma_t)", gt=0.0)
    eta0: float = hp(1.0, "momentum-weight scale eta_0; eta_t = eta_0 * schedule(t) must stay in (0, 1]",
                     gt=0.0, le=1.0)
    step_schedule: str = hp("harmonic", "gamma_t = gamma_0 * schedule(t)", choices=SCHEDULES)
    momentum_schedule: str = hp("harmonic_4_5", "eta_t = eta_0 * schedule(t)", choices=SCHEDULES)


IGTState = RecursiveState  # N-PG-IGT's agent state: (theta_t, theta_{t-1}, d_{t-1}, t)
init = init_recursive  # theta_{-1} = theta_0, d_{-1} = 0


def momentum_weight(state: IGTState, config: Config) -> jax.Array:
    """[] eta_t = eta_0 * momentum_schedule(t)."""
    return schedule_value(config.momentum_schedule, config.eta0, state.step)


def lookahead_params(state: IGTState, config: Config) -> Any:
    """theta~_t = theta_t + ((1 - eta_t) / eta_t) (theta_t - theta_{t-1}), where tau_t is sampled."""
    eta = momentum_weight(state, config)
    delta = jax.tree.map(jnp.subtract, state.policy_params, state.prev_params)
    return tree_axpy((1.0 - eta) / eta, delta, state.policy_params)


def update(
    state: IGTState,
    batch: EpisodeBatch,
    config: Config,
    *,
    log_prob_fn: LogProbFn,
    discount: float | jax.Array,
) -> tuple[IGTState, dict[str, jax.Array]]:
    """One N-PG-IGT step on n trajectories sampled at :func:`lookahead_params`.

    Args:
        state: (theta_t, theta_{t-1}, d_{t-1}, t).
        batch: [n, H, ...] trajectories tau_t from :func:`trpojax.rollout.episodic_rollout` at theta~_t.
        config: hyperparameters (float fields may be traced).
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        discount: [] gamma of J_H.

    Returns:
        ``(new_state, metrics)``: ``grad_norm`` ||g_hat||, ``direction_norm`` ||d_t||, ``step_norm``,
        ``step_size`` gamma_t, ``momentum`` eta_t, ``rejected_updates``.
    """
    eta = momentum_weight(state, config)
    gamma_t = schedule_value(config.step_schedule, config.gamma0, state.step)
    grad = mean_policy_gradient(log_prob_fn, lookahead_params(state, config), batch, discount)
    momentum = tree_axpy(eta, grad, tree_scale(1.0 - eta, state.direction))
    direction = jax.tree.map(lambda g, m: jnp.where(state.step == 0, g, m), grad, momentum)
    norm = tree_norm(direction)
    valid = tree_all_finite(grad) & jnp.isfinite(norm) & (norm > 0)
    step = gamma_t / jnp.where(valid, norm, 1.0)
    proposal = IGTState(
        policy_params=tree_axpy(step, direction, state.policy_params),
        prev_params=state.policy_params,
        direction=direction,
        step=state.step + 1,
    )
    new_state = jax.tree.map(lambda n, o: jnp.where(valid, n, o), proposal, state)
    metrics = {
        "grad_norm": tree_norm(grad),
        "direction_norm": norm,
        "step_norm": jnp.where(valid, gamma_t, 0.0),
        "step_size": gamma_t,
        "momentum": eta,
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    return new_state, metrics


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind N-PG-IGT to an environment: n = ``num_envs`` trajectories of H = ``num_steps`` steps each."""
    from trpojax.algos import Learner

    policy = make_policy(config.network, spec)
    log_prob_fn = make_log_prob_fn(policy.apply)
    num_trajectories, horizon = config.num_envs, config.num_steps

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        del run_config
        policy_key, key = jax.random.split(key)
        agent = init(policy.init(policy_key, jnp.zeros((spec.obs_dim,), jnp.float32)))
        return initial_train_state(agent, spec, key)

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        key, rollout_key = jax.random.split(state.key)
        section = run_config.pg_igt
        sample_at = lookahead_params(state.agent, section)
        batch = episodic_rollout(spec, policy.apply, sample_at, rollout_key, num_trajectories, horizon)
        agent, metrics = update(
            state.agent, batch, section, log_prob_fn=log_prob_fn, discount=run_config.gamma
        )
        new_state = state._replace(agent=agent, key=key, update=state.update + 1)
        return new_state, {**episode_metrics(batch), **metrics}

    return Learner(init=init_state, step=step, env_steps_per_update=num_trajectories * horizon, policy=policy)

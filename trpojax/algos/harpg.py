"""HARPG and N-HARPG: Hessian-aided recursive policy gradient (Fatkhullin et al. 2023, Algorithms 2 and 3).

With step sizes gamma_t and momentum weights eta_t in (0, 1] (t counted from 0, :mod:`trpojax.schedules`):

    q_t ~ U(0, 1),   theta^_t = q_t theta_t + (1 - q_t) theta_{t-1}
    tau_t ~ p(. | pi_{theta_t}) (n trajectories),   tau^_t ~ p(. | pi_{theta^_t}) (m trajectories)
    v_t = B_hat(tau^_t, theta^_t) (theta_t - theta_{t-1})
    d_t = (1 - eta_t) (d_{t-1} + v_t) + eta_t g_hat(tau_t, theta_t)
    theta_{t+1} = theta_t + gamma_t d_t / ||d_t||      (N-HARPG, ``normalized: true``)
    theta_{t+1} = theta_t + gamma_t d_t                (HARPG)

with theta_{-1} = theta_0 and d_0 = g_hat(tau_0, theta_0). Since E_q[hess J(theta^_t)] (theta_t - theta_{t-1})
= grad J(theta_t) - grad J(theta_{t-1}), v_t is an unbiased estimate of the gradient change and d_t a
STORM-like recursive estimate of grad J_H(theta_t) that needs no importance weights. B_hat v is the
mean over the m trajectories of B(tau, theta) v = grad Phi (grad log p(tau) . v) + hess Phi v, one
forward-over-reverse pass each, no matrix formed (:mod:`trpojax.estimators`). Paper schedules (``paper``):
N-HARPG gamma_t = gamma_0 2/(t+2), eta_t = eta_0 2/(t+2); HARPG gamma_t = gamma_0 sqrt(2/(t+2)),
eta_t = 2/(t+2) (eta_0 = 1). A non-finite gradient, Hessian-vector product or direction, or a zero
direction when normalised, leaves the whole state unchanged and counts as a rejected update, so t counts
accepted updates.
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
    mean_hessian_vector_product,
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
    """(N-)HARPG hyperparameters (the ``harpg:`` section). n = ``num_envs``, H = ``num_steps``."""

    normalized: bool = hp(False, "N-HARPG: normalised step gamma_t d_t / ||d_t|| (else HARPG: gamma_t d_t)")
    gamma0: float = hp(0.1, "step-size scale gamma_0", gt=0.0)
    eta0: float = hp(1.0, "momentum-weight scale eta_0; eta_t = eta_0 * schedule(t) must stay in (0, 1]",
                     gt=0.0, le=1.0)
    step_schedule: str = hp(
        "paper", "gamma_t = gamma_0 * schedule(t); paper = harmonic when normalized, else sqrt",
        choices=("paper", *SCHEDULES),
    )
    momentum_schedule: str = hp("harmonic", "eta_t = eta_0 * schedule(t)", choices=SCHEDULES)
    hvp_trajectories: int = hp(8, "m, trajectories at theta^_t per Hessian-vector product", ge=1)


HARPGState = RecursiveState  # (N-)HARPG's agent state: (theta_t, theta_{t-1}, d_{t-1}, t)
init = init_recursive  # theta_{-1} = theta_0, d_{-1} = 0


def step_schedule(config: Config) -> str:
    """The step-size schedule's name, with ``paper`` resolved (harmonic for N-HARPG, sqrt for HARPG)."""
    if config.step_schedule != "paper":
        return config.step_schedule
    return "harmonic" if config.normalized else "sqrt"


def interpolated_params(state: HARPGState, q: jax.Array) -> Any:
    """theta^_t = q theta_t + (1 - q) theta_{t-1} = theta_{t-1} + q (theta_t - theta_{t-1})."""
    delta = jax.tree.map(jnp.subtract, state.policy_params, state.prev_params)
    return tree_axpy(q, delta, state.prev_params)


def update(
    state: HARPGState,
    batch: EpisodeBatch,
    hvp_batch: EpisodeBatch,
    q: jax.Array,
    config: Config,
    *,
    log_prob_fn: LogProbFn,
    discount: float | jax.Array,
) -> tuple[HARPGState, dict[str, jax.Array]]:
    """One (N-)HARPG step.

    Args:
        state: (theta_t, theta_{t-1}, d_{t-1}, t).
        batch: [n, H, ...] trajectories tau_t sampled at theta_t.
        hvp_batch: [m, H, ...] trajectories tau^_t sampled at :func:`interpolated_params` ``(state, q)``.
        q: [] the interpolation weight q_t in [0, 1].
        config: hyperparameters (float fields may be traced).
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        discount: [] gamma of J_H.

    Returns:
        ``(new_state, metrics)``: ``grad_norm`` ||g_hat||, ``hvp_norm`` ||v_t||, ``direction_norm``
        ||d_t||, ``step_norm`` ||theta_{t+1} - theta_t||, ``step_size`` gamma_t, ``momentum`` eta_t,
        ``rejected_updates``.
    """
    eta = schedule_value(config.momentum_schedule, config.eta0, state.step)
    gamma_t = schedule_value(step_schedule(config), config.gamma0, state.step)
    grad = mean_policy_gradient(log_prob_fn, state.policy_params, batch, discount)
    delta = jax.tree.map(jnp.subtract, state.policy_params, state.prev_params)
    hvp = mean_hessian_vector_product(log_prob_fn, interpolated_params(state, q), hvp_batch, discount, delta)
    momentum = tree_axpy(eta, grad, tree_scale(1.0 - eta, jax.tree.map(jnp.add, state.direction, hvp)))
    direction = jax.tree.map(lambda g, m: jnp.where(state.step == 0, g, m), grad, momentum)
    norm = tree_norm(direction)
    valid = tree_all_finite(grad) & tree_all_finite(hvp) & jnp.isfinite(norm)
    if config.normalized:
        valid = valid & (norm > 0)
        step = gamma_t / jnp.where(valid, norm, 1.0)
    else:
        step = gamma_t
    proposal = HARPGState(
        policy_params=tree_axpy(step, direction, state.policy_params),
        prev_params=state.policy_params,
        direction=direction,
        step=state.step + 1,
    )
    new_state = jax.tree.map(lambda n, o: jnp.where(valid, n, o), proposal, state)
    metrics = {
        "grad_norm": tree_norm(grad),
        "hvp_norm": tree_norm(hvp),
        "direction_norm": norm,
        "step_norm": jnp.where(valid, step * norm, 0.0),
        "step_size": gamma_t,
        "momentum": eta,
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    return new_state, metrics


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind (N-)HARPG to an environment, (n + m) * H environment steps per update.

    Each update samples n = ``num_envs`` trajectories at theta_t and m = ``harpg.hvp_trajectories`` at
    theta^_t, all of horizon H = ``num_steps``.
    """
    from trpojax.algos import Learner

    policy = make_policy(config.network, spec)
    log_prob_fn = make_log_prob_fn(policy.apply)
    num_trajectories, num_hvp, horizon = config.num_envs, config.harpg.hvp_trajectories, config.num_steps

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        del run_config
        policy_key, key = jax.random.split(key)
        agent = init(policy.init(policy_key, jnp.zeros((spec.obs_dim,), jnp.float32)))
        return initial_train_state(agent, spec, key)

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        key, q_key, rollout_key, hvp_key = jax.random.split(state.key, 4)
        agent = state.agent
        q = jax.random.uniform(q_key)
        theta, theta_hat = agent.policy_params, interpolated_params(agent, q)
        batch = episodic_rollout(spec, policy.apply, theta, rollout_key, num_trajectories, horizon)
        hvp_batch = episodic_rollout(spec, policy.apply, theta_hat, hvp_key, num_hvp, horizon)
        agent, metrics = update(
            agent, batch, hvp_batch, q, run_config.harpg, log_prob_fn=log_prob_fn, discount=run_config.gamma
        )
        new_state = state._replace(agent=agent, key=key, update=state.update + 1)
        return new_state, {**episode_metrics(batch), **metrics}

    return Learner(
        init=init_state, step=step, env_steps_per_update=(num_trajectories + num_hvp) * horizon, policy=policy
    )

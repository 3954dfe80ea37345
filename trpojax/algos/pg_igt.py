"""N-PG-IGT: normalised PG with implicit gradient transport (Fatkhullin et al. 2023, Algorithm 1).

With step sizes gamma_t and momentum weights eta_t in (0, 1] (t counted from 0, :mod:`trpojax.core.schedules`):

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

``protocol: garage`` runs the authors' code (:mod:`trpojax.algos.episodic`): step-budgeted batches, the
per-step estimator with a linear baseline, and the look-ahead taken with the previous iteration's weight
eta_{t-1} (their ``NIGTOptimizer`` moves to the look-ahead point before it updates eta; no look-ahead at
t = 0), the momentum mixing with eta_t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trpojax.algos import episodic
from trpojax.algos.base import AlgorithmSpec, Learner, Networks
from trpojax.algos.episodic import DrawFn, RecursiveState, init_recursive, make_log_prob_fn, mean_policy_gradient
from trpojax.core.hparams import config_dataclass, hp
from trpojax.core.schedules import SCHEDULES, schedule_value
from trpojax.core.tree import all_finite, keep_if_valid, norm
from trpojax.envs import EnvSpec, EpisodeBatch

if TYPE_CHECKING:
    from trpojax.config import Config as RunConfig


@config_dataclass
class Config:
    """N-PG-IGT hyperparameters (the ``pg_igt:`` section). n = ``num_envs``, H = ``num_steps``."""

    gamma0: float = hp(0.1, "step-size scale gamma_0 (the normalised step has length gamma_t)", gt=0.0)
    eta0: float = hp(1.0, "momentum-weight scale eta_0; eta_t = eta_0 * schedule(t) must stay in (0, 1]",
                     gt=0.0, le=1.0)
    step_schedule: str = hp("harmonic", "gamma_t = gamma_0 * schedule(t)", choices=SCHEDULES)
    momentum_schedule: str = hp("harmonic_4_5", "eta_t = eta_0 * schedule(t)", choices=SCHEDULES)
    protocol: str = hp("paper", "paper: g(tau, theta) on num_envs trajectories; garage: the HARPG authors' code "
                       "(step-budgeted batches, linear baseline, look-ahead with eta_{t-1})",
                       choices=("paper", "garage"))


IGTState = RecursiveState  # N-PG-IGT's agent state: (theta_t, theta_{t-1}, d_{t-1}, t)
init = init_recursive  # theta_{-1} = theta_0, d_{-1} = 0


class Batch(NamedTuple):
    """N-PG-IGT's batch.

    Attributes:
        episodes: [n, H, ...] trajectories tau_t sampled at :func:`lookahead_params`.
        discount: [] gamma of J_H.
    """

    episodes: EpisodeBatch
    discount: jax.Array


def momentum_weight(state: IGTState, config: Config) -> jax.Array:
    """[] eta_t = eta_0 * momentum_schedule(t)."""
    return schedule_value(config.momentum_schedule, config.eta0, state.step)


def lookahead_params(state: IGTState, config: Config) -> Any:
    """theta~_t = theta_t + ((1 - eta_t) / eta_t) (theta_t - theta_{t-1}), where tau_t is sampled.

    With ``protocol: garage`` the weight is eta_{t-1} (eta_0 at t = 0, where theta_t = theta_{t-1}).
    """
    if config.protocol == "garage":
        eta = schedule_value(config.momentum_schedule, config.eta0, jnp.maximum(state.step - 1, 0))
    else:
        eta = momentum_weight(state, config)
    delta = jax.tree.map(jnp.subtract, state.policy_params, state.prev_params)
    return optax.tree.add_scale(state.policy_params, (1.0 - eta) / eta, delta)


def update(
    state: IGTState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    nets: Networks,
) -> tuple[IGTState, dict[str, jax.Array]]:
    """One N-PG-IGT step on n trajectories sampled at :func:`lookahead_params`.

    Args:
        state: (theta_t, theta_{t-1}, d_{t-1}, t).
        batch: the trajectories tau_t at theta~_t and the discount.
        key: unused (the step is deterministic given the batch).
        config: hyperparameters (float fields may be traced).
        nets: ``policy_apply``.

    Returns:
        ``(new_state, metrics)``: ``grad_norm`` ||g_hat||, ``direction_norm`` ||d_t||, ``step_norm``,
        ``step_size`` gamma_t, ``momentum`` eta_t, ``rejected_updates``.
    """
    del key
    log_prob_fn = make_log_prob_fn(nets.policy_apply)
    eta = momentum_weight(state, config)
    gamma_t = schedule_value(config.step_schedule, config.gamma0, state.step)
    grad = mean_policy_gradient(log_prob_fn, lookahead_params(state, config), batch.episodes, batch.discount)
    momentum = optax.tree.add_scale(optax.tree.scale(1.0 - eta, state.direction), eta, grad)
    direction = jax.tree.map(lambda g, m: jnp.where(state.step == 0, g, m), grad, momentum)
    size = norm(direction)
    valid = all_finite(grad) & jnp.isfinite(size) & (size > 0)
    step = gamma_t / jnp.where(valid, size, 1.0)
    proposal = IGTState(
        policy_params=optax.tree.add_scale(state.policy_params, step, direction),
        prev_params=state.policy_params,
        direction=direction,
        step=state.step + 1,
    )
    metrics = {
        "grad_norm": norm(grad),
        "direction_norm": size,
        "step_norm": jnp.where(valid, gamma_t, 0.0),
        "step_size": gamma_t,
        "momentum": eta,
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    return keep_if_valid(valid, proposal, state), metrics


def sample(
    agent: IGTState, key: jax.Array, config: Config, draw: DrawFn, discount: jax.Array
) -> tuple[Batch, jax.Array]:
    """n = ``num_envs`` trajectories at the look-ahead point theta~_t."""
    key, rollout_key = jax.random.split(key)
    return Batch(draw(lookahead_params(agent, config), rollout_key), discount), key


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind N-PG-IGT to an environment: n = ``num_envs`` trajectories of H = ``num_steps`` steps each."""
    return episodic.make_learner(config, spec, init=init, update=update, sample=sample)


SPEC = AlgorithmSpec(
    "pg_igt", Config, make_learner, "N-PG-IGT hyperparameters (Fatkhullin et al. 2023)", episodic=True
)

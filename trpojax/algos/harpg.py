"""HARPG and N-HARPG: Hessian-aided recursive policy gradient (Fatkhullin et al. 2023, Algorithms 2 and 3).

With step sizes gamma_t and momentum weights eta_t in (0, 1] (t counted from 0, :mod:`trpojax.core.schedules`):

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
forward-over-reverse pass each, no matrix formed (:mod:`trpojax.core.estimators`). Paper schedules (``paper``):
N-HARPG gamma_t = gamma_0 2/(t+2), eta_t = eta_0 2/(t+2); HARPG gamma_t = gamma_0 sqrt(2/(t+2)),
eta_t = 2/(t+2) (eta_0 = 1). A non-finite gradient, Hessian-vector product or direction, or a zero
direction when normalised, leaves the whole state unchanged and counts as a rejected update, so t counts
accepted updates.

``protocol: garage`` runs the authors' code (:mod:`trpojax.algos.episodic`): step-budgeted batches (the
Hessian batch holds at least ``hvp_batch_steps`` real steps, whole episodes), the per-step estimators with
a linear baseline, and B v in the ``hvp_form`` chosen (``authors``: their ``STORMHessOptimizer``'s product;
``paper``: the paper's B on the same surrogate; :mod:`trpojax.core.step_estimators`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trpojax.algos import episodic
from trpojax.algos.base import AlgorithmSpec, Learner, Networks
from trpojax.algos.episodic import (
    DrawFn,
    RecursiveState,
    init_recursive,
    make_log_prob_fn,
    mean_hessian_vector_product,
    mean_policy_gradient,
)
from trpojax.core import step_estimators
from trpojax.core.hparams import config_dataclass, hp
from trpojax.core.schedules import SCHEDULES, schedule_value
from trpojax.core.tree import all_finite, keep_if_valid, norm
from trpojax.envs import EnvSpec, EpisodeBatch

if TYPE_CHECKING:
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
    protocol: str = hp("paper", "paper: g and B on num_envs and m trajectories; garage: the HARPG authors' code "
                       "(step-budgeted batches, linear baseline)", choices=("paper", "garage"))
    hvp_batch_steps: int = hp(32, "garage protocol: real steps (whole episodes) of the Hessian batch", ge=1)
    hvp_form: str = hp("paper", "garage protocol: B v as in the paper or as the authors' code computes it",
                       choices=step_estimators.HVP_FORMS)


HARPGState = RecursiveState  # (N-)HARPG's agent state: (theta_t, theta_{t-1}, d_{t-1}, t)
init = init_recursive  # theta_{-1} = theta_0, d_{-1} = 0


class Batch(NamedTuple):
    """(N-)HARPG's batch.

    Attributes:
        episodes: [n, H, ...] trajectories tau_t sampled at theta_t.
        hvp_episodes: [m, H, ...] trajectories tau^_t sampled at :func:`interpolated_params` ``(state, q)``.
        q: [] the interpolation weight q_t in [0, 1].
        discount: [] gamma of J_H.
    """

    episodes: EpisodeBatch
    hvp_episodes: EpisodeBatch
    q: jax.Array
    discount: jax.Array


def step_schedule(config: Config) -> str:
    """The step-size schedule's name, with ``paper`` resolved (harmonic for N-HARPG, sqrt for HARPG)."""
    if config.step_schedule != "paper":
        return config.step_schedule
    return "harmonic" if config.normalized else "sqrt"


def interpolated_params(state: HARPGState, q: jax.Array) -> Any:
    """theta^_t = q theta_t + (1 - q) theta_{t-1} = theta_{t-1} + q (theta_t - theta_{t-1})."""
    delta = jax.tree.map(jnp.subtract, state.policy_params, state.prev_params)
    return optax.tree.add_scale(state.prev_params, q, delta)


def update(
    state: HARPGState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    nets: Networks,
) -> tuple[HARPGState, dict[str, jax.Array]]:
    """One (N-)HARPG step.

    Args:
        state: (theta_t, theta_{t-1}, d_{t-1}, t).
        batch: tau_t at theta_t, tau^_t at theta^_t, q_t and the discount (:class:`Batch`).
        key: unused (q_t is drawn with the batch, which is sampled where it points).
        config: hyperparameters (float fields may be traced).
        nets: ``policy_apply``.

    Returns:
        ``(new_state, metrics)``: ``grad_norm`` ||g_hat||, ``hvp_norm`` ||v_t||, ``direction_norm``
        ||d_t||, ``step_norm`` ||theta_{t+1} - theta_t||, ``step_size`` gamma_t, ``momentum`` eta_t,
        ``rejected_updates``.
    """
    del key
    log_prob_fn = make_log_prob_fn(nets.policy_apply)
    discount = batch.discount
    eta = schedule_value(config.momentum_schedule, config.eta0, state.step)
    gamma_t = schedule_value(step_schedule(config), config.gamma0, state.step)
    grad = mean_policy_gradient(log_prob_fn, state.policy_params, batch.episodes, discount)
    delta = jax.tree.map(jnp.subtract, state.policy_params, state.prev_params)
    hvp = mean_hessian_vector_product(
        log_prob_fn, interpolated_params(state, batch.q), batch.hvp_episodes, discount, delta, config.hvp_form
    )
    momentum = optax.tree.add_scale(optax.tree.scale(1.0 - eta, jax.tree.map(jnp.add, state.direction, hvp)), eta, grad)
    direction = jax.tree.map(lambda g, m: jnp.where(state.step == 0, g, m), grad, momentum)
    size = norm(direction)
    valid = all_finite(grad) & all_finite(hvp) & jnp.isfinite(size)
    if config.normalized:
        valid = valid & (size > 0)
        step = gamma_t / jnp.where(valid, size, 1.0)
    else:
        step = gamma_t
    proposal = HARPGState(
        policy_params=optax.tree.add_scale(state.policy_params, step, direction),
        prev_params=state.policy_params,
        direction=direction,
        step=state.step + 1,
    )
    metrics = {
        "grad_norm": norm(grad),
        "hvp_norm": norm(hvp),
        "direction_norm": size,
        "step_norm": jnp.where(valid, step * size, 0.0),
        "step_size": gamma_t,
        "momentum": eta,
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    return keep_if_valid(valid, proposal, state), metrics


def sample(
    agent: HARPGState, key: jax.Array, config: Config, draw: DrawFn, discount: jax.Array
) -> tuple[Batch, jax.Array]:
    """q_t ~ U(0, 1), n = ``num_envs`` trajectories at theta_t and m = ``hvp_trajectories`` at theta^_t."""
    key, q_key, rollout_key, hvp_key = jax.random.split(key, 4)
    q = jax.random.uniform(q_key)
    batch = draw(agent.policy_params, rollout_key)
    if config.protocol == "garage":
        hvp_batch = draw(interpolated_params(agent, q), hvp_key, steps=config.hvp_batch_steps)
    else:
        hvp_batch = draw(interpolated_params(agent, q), hvp_key, config.hvp_trajectories)
    return Batch(batch, hvp_batch, q, discount), key


def hvp_trajectories(config: Config) -> int:
    """m, the trajectories an update samples beyond ``num_envs`` (none with ``protocol: garage``)."""
    return 0 if config.protocol == "garage" else config.hvp_trajectories


def hvp_steps(config: Config) -> int:
    """The Hessian batch's nominal steps with ``protocol: garage`` (``hvp_batch_steps``), else 0."""
    return config.hvp_batch_steps if config.protocol == "garage" else 0


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind (N-)HARPG to an environment, (n + m) * H environment steps per update.

    Each update samples n = ``num_envs`` trajectories at theta_t and m = ``harpg.hvp_trajectories`` at
    theta^_t, all of horizon H = ``num_steps``.
    """
    return episodic.make_learner(config, spec, init=init, update=update, sample=sample)


SPEC = AlgorithmSpec(
    "harpg", Config, make_learner, "HARPG / N-HARPG hyperparameters (Fatkhullin et al. 2023)", episodic=True,
    extra_trajectories=hvp_trajectories, extra_steps=hvp_steps,
)

"""REINFORCE / GPOMDP with reward-to-go and an optional baseline (Williams 1992; Baxter & Bartlett 2001).

Each update samples n trajectories of horizon H from reset at theta_t
(:func:`trpojax.envs.episodic_rollout`) and ascends J_H(theta) = E[sum_{t<H} gamma^t r_t] along

    g_hat = (1/n) sum_i sum_t mask_t gamma^t (G_t - b(s_t)) grad log pi_theta(a_t | s_t),
    G_t = sum_{h>=t} gamma^{h-t} mask_h r_h,

with b = 0 (the plain estimator g(tau, theta) of Fatkhullin et al. 2023) or b = V_phi, a value network fitted
to G_t after the gradient is taken (Greensmith et al. 2004). The step is theta_{t+1} = theta_t + lr * u_t with
u_t = g_hat (``sgd``) or Adam's preconditioned g_hat (``adam``; Kingma & Ba 2015). A non-finite g_hat leaves
theta and the optimiser state unchanged and counts as a rejected update. The step size may decay,
lr_t = lr * step_schedule(t) (:mod:`trpojax.core.schedules`, t counting updates from 0).

``protocol: garage`` runs the HARPG authors' vanilla PG instead (:mod:`trpojax.algos.episodic`):
step-budgeted batches and the per-step estimator with a linear-feature baseline (their code's ``sgd``:
``optimizer: sgd`` with ``step_schedule: harmonic_2_3``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trpojax.algos import episodic
from trpojax.algos.base import AlgorithmSpec, Learner, Networks
from trpojax.algos.critic import fit_value, init_opt_state
from trpojax.algos.episodic import DrawFn, make_log_prob_fn, mean_policy_gradient
from trpojax.core.estimators import policy_gradient_with_baseline, reward_to_go
from trpojax.core.hparams import config_dataclass, hp
from trpojax.core.schedules import SCHEDULES, schedule_value
from trpojax.core.tree import all_finite, keep_if_valid, norm
from trpojax.envs import EnvSpec, EpisodeBatch

if TYPE_CHECKING:
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
    step_schedule: str = hp("constant", "lr_t = learning_rate * schedule(t)", choices=SCHEDULES)
    protocol: str = hp("paper", "paper: g on num_envs trajectories; garage: the HARPG authors' code "
                       "(step-budgeted batches, per-step estimator, linear baseline)", choices=("paper", "garage"))

    def conflict(self) -> str | None:
        """Why these settings cannot run together (checked by :func:`trpojax.config.validate`), or None."""
        if self.baseline and self.protocol == "garage":
            return "reinforce.baseline: the garage protocol brings its own linear baseline; set baseline: false"
        return None


class ReinforceState(NamedTuple):
    """REINFORCE's agent state.

    Attributes:
        policy_params: policy parameters theta.
        policy_opt_state: Adam moments of the policy (``optax.scale_by_adam``; ``None`` for sgd).
        value_params: baseline network parameters (``None`` without a baseline).
        value_opt_state: Adam moments of the baseline (``None`` without a baseline).
        step: [] int32 updates so far, for a decaying ``step_schedule`` (``None`` with a constant one).
    """

    policy_params: Any
    policy_opt_state: Any
    value_params: Any
    value_opt_state: Any
    step: Any = None


class Batch(NamedTuple):
    """REINFORCE's batch.

    Attributes:
        episodes: [n, H, ...] trajectories sampled at theta_t (:func:`trpojax.envs.episodic_rollout`).
        discount: [] gamma of J_H.
    """

    episodes: EpisodeBatch
    discount: jax.Array


_ADAM = optax.scale_by_adam()


def init(policy_params: Any, value_params: Any, config: Config) -> ReinforceState:
    """Fresh state; ``value_params`` is ignored (stored as None) when ``config.baseline`` is False."""
    policy_opt = _ADAM.init(policy_params) if config.optimizer == "adam" else None
    step = None if config.step_schedule == "constant" else jnp.zeros((), jnp.int32)
    if problem := config.conflict():  # trpojax.config.validate refuses this before anything runs
        raise ValueError(problem)
    if not config.baseline:
        return ReinforceState(policy_params, policy_opt, None, None, step)
    return ReinforceState(policy_params, policy_opt, value_params, init_opt_state(value_params), step)


def update(
    state: ReinforceState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    nets: Networks,
) -> tuple[ReinforceState, dict[str, jax.Array]]:
    """One REINFORCE step on n trajectories sampled at ``state.policy_params``.

    With a baseline, V is fitted after the gradient is taken by ``critic_steps`` full-batch Adam steps on
    the masked squared error to G_t (:func:`trpojax.algos.critic.fit_value`, minibatches = 1).

    Args:
        state: current state.
        batch: the trajectories at theta_t and the discount.
        key: PRNG key of the baseline fit.
        config: hyperparameters (float fields may be traced).
        nets: ``policy_apply``, and ``value_apply`` (used only with a baseline).

    Returns:
        ``(new_state, metrics)``: ``grad_norm`` ||g_hat||, ``direction_norm`` ||u_t||, ``step_norm``
        ||theta_{t+1} - theta_t||, ``rejected_updates`` (1 when g_hat was non-finite), plus ``value_loss``
        (before the fit) with a baseline.
    """
    episodes, discount = batch
    log_prob_fn = make_log_prob_fn(nets.policy_apply)
    params = state.policy_params
    metrics = {}
    value_params, value_opt = state.value_params, state.value_opt_state
    if config.baseline:
        targets = jax.vmap(reward_to_go, in_axes=(0, 0, None))(episodes.reward, episodes.mask, discount)
        baselines = jax.lax.stop_gradient(nets.value_apply(value_params, episodes.obs))
        grads = jax.vmap(policy_gradient_with_baseline, in_axes=(None, None, 0, 0, 0, 0, None, 0))(
            log_prob_fn, params, episodes.obs, episodes.action, episodes.reward, episodes.mask, discount, baselines
        )
        grad = jax.tree.map(lambda x: jnp.mean(x, axis=0), grads)
        flat = lambda x: x.reshape((-1, *x.shape[2:]))  # noqa: E731
        value_params, value_opt, losses = fit_value(
            value_params, value_opt, flat(episodes.obs), flat(targets), key,
            learning_rate=config.critic_lr, epochs=config.critic_steps, minibatches=1,
            value_apply=nets.value_apply, weights=flat(episodes.mask),
        )
        metrics["value_loss"] = losses[0, 0]
    else:
        grad = mean_policy_gradient(log_prob_fn, params, episodes, discount)
    valid = all_finite(grad)
    safe_grad = jax.tree.map(lambda x: jnp.where(valid, x, 0.0), grad)
    if config.optimizer == "adam":
        direction, new_opt = _ADAM.update(safe_grad, state.policy_opt_state)
        policy_opt = keep_if_valid(valid, new_opt, state.policy_opt_state)
    else:
        direction, policy_opt = safe_grad, state.policy_opt_state
    if state.step is None:
        learning_rate, count = config.learning_rate, None
    else:
        learning_rate = schedule_value(config.step_schedule, config.learning_rate, state.step)
        count = state.step + 1
    step = jnp.where(valid, learning_rate, 0.0)
    new_params = optax.tree.add_scale(params, step, direction)
    metrics.update(
        grad_norm=norm(grad),
        direction_norm=norm(direction),
        step_norm=step * norm(direction),
        rejected_updates=(~valid).astype(jnp.float32),
    )
    return ReinforceState(new_params, policy_opt, value_params, value_opt, count), metrics


def sample(
    agent: ReinforceState, key: jax.Array, config: Config, draw: DrawFn, discount: jax.Array
) -> tuple[Batch, jax.Array]:
    """n = ``num_envs`` trajectories at theta_t."""
    del config
    key, rollout_key = jax.random.split(key)
    return Batch(draw(agent.policy_params, rollout_key), discount), key


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind REINFORCE to an environment: n = ``num_envs`` trajectories of H = ``num_steps`` steps each."""
    return episodic.make_learner(
        config, spec, init=init, update=update, sample=sample, critic=True
    )


SPEC = AlgorithmSpec(
    "reinforce", Config, make_learner, "REINFORCE / GPOMDP hyperparameters (Williams 1992)", episodic=True
)

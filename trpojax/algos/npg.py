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

import jax
import jax.numpy as jnp
import optax

from trpojax.algos import actor_critic
from trpojax.algos.actor_critic import ActorCriticState, Batch, natural_direction
from trpojax.algos.base import AlgorithmSpec, Learner, Networks
from trpojax.core.hparams import config_dataclass, hp
from trpojax.core.tree import keep_if_valid, norm
from trpojax.envs import EnvSpec

if TYPE_CHECKING:
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


def init(policy_params: Any, value_params: Any, config: Config | None = None) -> ActorCriticState:
    """Fresh NPG state around initial networks (policy, value, critic Adam moments; as TRPO)."""
    return actor_critic.init(policy_params, value_params, config)


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
    nat = natural_direction(
        policy_params, batch, policy_apply, cg_iters=config.cg_iters, cg_tol=config.cg_tol, damping=config.cg_damping
    )
    grad, direction, shs, valid, cg_info = nat.grad, nat.direction, nat.curvature, nat.valid, nat.cg_info
    if config.step_rule == "kl":
        alpha = jnp.sqrt(2.0 * config.max_kl / jnp.where(valid, shs, 1.0))
    else:
        alpha = jnp.asarray(config.learning_rate, shs.dtype)
    alpha = jnp.where(valid, alpha, 0.0)
    new_params = keep_if_valid(valid, optax.tree.add_scale(policy_params, alpha, direction), policy_params)
    metrics = {
        "grad_norm": norm(grad),
        "direction_norm": norm(direction),
        "step_norm": alpha * norm(direction),
        "kl_quadratic": jnp.where(valid, 0.5 * alpha**2 * shs, 0.0),
        "cg_iters": cg_info.num_iters.astype(jnp.float32),
        "cg_residual": cg_info.residual_norm,
        "entropy": nat.entropy,
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    return new_params, metrics


def update(
    state: ActorCriticState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    nets: Networks,
) -> tuple[ActorCriticState, dict[str, jax.Array]]:
    """One NPG update on a flattened batch: natural-gradient policy step and critic fit.

    Args:
        state: policy, value and critic-optimiser state (TRPO's state layout).
        batch: N samples with advantages and value targets.
        key: PRNG key for critic minibatch shuffling.
        config: NPG hyperparameters (float fields may be traced, for sweeps).
        nets: ``policy_apply`` (params, obs [N, obs_dim]) -> distribution with batch shape [N], and
            ``value_apply`` (params, obs [N, obs_dim]) -> values [N].

    Returns:
        ``(new_state, metrics)`` (see :func:`policy_update`, plus ``value_loss``).
    """
    return actor_critic.update_with_critic(policy_update, state, batch, key, config, nets)


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind NPG to an environment: continuing rollouts of ``num_envs x num_steps``, GAE, :func:`update`."""
    return actor_critic.make_learner(config, spec, policy_update)


SPEC = AlgorithmSpec("npg", Config, make_learner, "natural policy gradient hyperparameters (Kakade 2001)")

"""Trust Region Policy Optimization (Schulman et al. 2015) as a pure update function.

Given a batch collected with pi_old, TRPO maximises the importance-sampled surrogate

    L(theta) = E[ pi_theta(a|s) / pi_old(a|s) * A(s, a) ]   s.t.   mean_s KL(pi_old(.|s) || pi_theta(.|s)) <= delta

(plus ``entropy_coef`` * mean_s H(pi_theta(.|s)) when an entropy bonus is configured).

Linearising L (gradient g) and taking the KL to second order (Fisher matrix F) gives
max g^T Delta s.t. 1/2 Delta^T F Delta <= delta, solved by Delta* = sqrt(2 delta / s^T F s) s with
s = F^{-1} g. s comes from conjugate gradient on Fisher-vector products (no matrix is formed); a
backtracking line search over Delta*, ratio^1 Delta*, ... accepts the first step whose exact mean KL is
<= delta and whose surrogate improves, and otherwise keeps the old parameters. The critic V is fitted to
the GAE returns by Adam on minibatches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import optax

from trpojax.algos import actor_critic
from trpojax.algos.actor_critic import ActorCriticState, Batch, init, natural_direction
from trpojax.algos.base import AlgorithmSpec, Learner, Networks
from trpojax.core.hparams import config_dataclass, hp
from trpojax.core.tree import keep_if_valid
from trpojax.envs import EnvSpec

if TYPE_CHECKING:
    from trpojax.config import Config as RunConfig

TRPOState = ActorCriticState
__all__ = ["SPEC", "Batch", "Config", "Networks", "TRPOState", "init", "make_learner", "policy_update", "update"]


@config_dataclass
class Config:
    """TRPO hyperparameters (the ``trpo:`` section of a run config)."""

    max_kl: float = hp(0.01, "trust-region radius delta on the mean KL(pi_old || pi_new)", gt=0.0)
    cg_iters: int = hp(10, "conjugate-gradient iterations for s = F^-1 g", ge=1, le=1000)
    cg_tol: float = hp(1e-10, "conjugate-gradient tolerance on the residual norm", ge=0.0)
    cg_damping: float = hp(0.1, "damping added to the Fisher matrix: (F + damping I) s = g", ge=0.0)
    backtrack_ratio: float = hp(0.8, "line-search step shrink factor", gt=0.0, lt=1.0)
    backtrack_steps: int = hp(10, "line-search trials before the update is rejected", ge=1, le=100)
    entropy_coef: float = hp(
        0.0, "entropy bonus c: the step maximises the surrogate + c * mean policy entropy (0: plain TRPO)", ge=0.0
    )
    critic_lr: float = hp(1e-3, "Adam learning rate of the value function", gt=0.0)
    critic_epochs: int = hp(5, "passes over the batch when fitting the value function", ge=0)
    critic_minibatches: int = hp(4, "minibatches per critic epoch", ge=1)


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
    nat = natural_direction(
        policy_params, batch, policy_apply, cg_iters=config.cg_iters, cg_tol=config.cg_tol,
        damping=config.cg_damping, entropy_coef=config.entropy_coef,
    )
    surr_old = nat.surrogate
    full_step_size = jnp.sqrt(2.0 * config.max_kl / jnp.where(nat.valid, nat.curvature, 1.0))

    def candidate(fraction: jax.Array) -> Any:
        return optax.tree.add_scale(policy_params, fraction * full_step_size, nat.direction)

    def cond(carry: tuple) -> jax.Array:
        trial, accepted, _, _ = carry
        return nat.valid & ~accepted & (trial < config.backtrack_steps)

    def body(carry: tuple) -> tuple:
        trial, _, _, _ = carry
        surr, kl = nat.surrogate_and_kl(candidate(config.backtrack_ratio**trial))
        ok = jnp.isfinite(surr) & jnp.isfinite(kl) & (kl <= config.max_kl) & (surr > surr_old)
        return trial + 1, ok, surr, kl

    zero = jnp.zeros((), surr_old.dtype)
    trials, accepted, surr_new, kl_new = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), jnp.array(False), surr_old, zero)
    )
    fraction = jnp.where(accepted, config.backtrack_ratio ** (trials - 1).astype(surr_old.dtype), 0.0)
    new_params = keep_if_valid(accepted, candidate(fraction), policy_params)
    step_norm = fraction * full_step_size * jnp.sqrt(optax.tree.vdot(nat.direction, nat.direction))
    metrics = {
        "surrogate_gain": jnp.where(accepted, surr_new - surr_old, zero),
        "kl": jnp.where(accepted, kl_new, zero),
        "cg_iters": nat.cg_info.num_iters.astype(jnp.float32),
        "cg_residual": nat.cg_info.residual_norm,
        "line_search_steps": trials.astype(jnp.float32),
        "accepted": accepted.astype(jnp.float32),
        "rejected_updates": (~accepted).astype(jnp.float32),
        "entropy": nat.entropy,
        "step_norm": jnp.where(accepted, step_norm, 0.0),
    }
    return new_params, metrics


def update(
    state: TRPOState,
    batch: Batch,
    key: jax.Array,
    config: Config,
    *,
    nets: Networks,
) -> tuple[TRPOState, dict[str, jax.Array]]:
    """One TRPO update on a flattened batch: policy step (see :func:`policy_update`) and critic fit.

    Args:
        state: current TRPO state.
        batch: N samples with advantages (already normalised if desired) and value targets.
        key: PRNG key for critic minibatch shuffling.
        config: TRPO hyperparameters (float fields may be traced, for sweeps).
        nets: ``policy_apply`` (params, obs [N, obs_dim]) -> distribution with batch shape [N], and
            ``value_apply`` (params, obs [N, obs_dim]) -> values [N].

    Returns:
        ``(new_state, metrics)``, metrics a dict of scalars (see :func:`policy_update`, plus
        ``value_loss``).
    """
    return actor_critic.update_with_critic(policy_update, state, batch, key, config, nets)


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind TRPO to an environment: continuing rollouts of ``num_envs x num_steps``, GAE, :func:`update`."""
    return actor_critic.make_learner(config, spec, policy_update)


SPEC = AlgorithmSpec("trpo", Config, make_learner, "TRPO hyperparameters (Schulman et al. 2015)")

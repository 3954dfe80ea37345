"""The HARPG authors' estimators on step-budgeted batches: a linear-feature baseline and per-step means.

The authors' code (Fatkhullin et al. 2023; a fork of garage, ``aabkn/Stochastic-Policy-Gradient-Methods``)
estimates the gradient from a batch of whole episodes holding N >= B steps in all as garage's VPG does:

    g_hat = (1/N) sum_t (G_t - b_t) grad log pi_theta(a_t | s_t),   G_t = sum_{h>=t} gamma^{h-t} r_h,

the sum over every step of every episode, G_t the discounted return from t within its episode (GAE with
lambda = 1 and the baseline's value after an episode's last step taken as 0, so truncation at the horizon
is treated as an end) and no advantage centring (``center_adv=False``). Unlike the paper's
g(tau, theta) there is no gamma^t weight and the sum is divided by steps, not episodes. b_t is garage's
``LinearFeatureBaseline``: a ridge regression (coefficient 1e-5) of G_t on the features

    phi(s, t) = [clip(s, -10, 10), clip(s, -10, 10)^2, t/100, (t/100)^2, (t/100)^3, 1],

t the step's index within its episode, fitted to each batch after the policy step and used on the next.

Here a batch is one sequence of L steps (:class:`trpojax.envs.step_batches.StepBatch`): ``mask`` marks the
batch's steps, ``done`` the last step of each episode and ``episode`` its index. The per-step estimator
weights w_t = mask_t (G_t - b_t) / N (:func:`baseline_weights`) carry the 1/N, so g_hat = grad Phi with
Phi(theta) = sum_t w_t log pi_theta(a_t | s_t). The Hessian-vector product of that surrogate, with
psi_t = grad log pi(a_t | s_t) and the episodes e of the batch, is

    paper:    B v = hess Phi v + sum_e (sum_{t in e} w_t psi_t) (sum_{t in e} psi_t . v),
    authors:  B v = hess Phi v - grad Phi (1/N) sum_t psi_t . v,

``paper`` being the paper's B(tau, theta) = grad Phi grad log p(tau)^T + hess Phi per episode (with a
baseline that depends on s_t and t only, its extra terms b_t (psi_t psi_t^T + hess log pi_t) have mean zero
at each step, so the baseline keeps E[B] unchanged), and ``authors`` what their ``STORMHessOptimizer``
computes: ``hvp + jac * log_probs_grad_scalar`` with ``jac`` the gradient of the loss -Phi and
``log_probs_grad_scalar`` that of -mean_t log pi . v, i.e. the score term with its sign flipped and divided
by the batch's steps instead of summed per episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

PyTree = Any
LogProbFn = Callable[[PyTree, jax.Array, jax.Array], jax.Array]

HVP_FORMS = ("paper", "authors")
OBS_CLIP = 10.0  # garage's LinearFeatureBaseline clips observations to [-10, 10]
RIDGE = 1e-5  # garage's LinearFeatureBaseline reg_coeff


def episode_reward_to_go(rewards: jax.Array, done: jax.Array, gamma: float | jax.Array) -> jax.Array:
    """G_t = r_t + gamma (1 - done_t) G_{t+1}: the discounted return from t to the end of t's episode.

    Args:
        rewards: [L] rewards (zero outside the batch).
        done: [L] bool, the last step of each episode.
        gamma: [] discount.

    Returns:
        [L] G_t in the dtype of ``rewards``.
    """
    chex.assert_rank([rewards, done], 1)
    chex.assert_equal_shape([rewards, done])
    gamma = jnp.asarray(gamma, rewards.dtype)
    keep = 1.0 - done.astype(rewards.dtype)

    def backup(future, inputs):
        reward, carry_on = inputs
        value = reward + gamma * carry_on * future
        return value, value

    _, returns = jax.lax.scan(backup, jnp.zeros((), rewards.dtype), (rewards, keep), reverse=True)
    return returns


def linear_baseline_features(obs: jax.Array, time: jax.Array) -> jax.Array:
    """garage's baseline features [clip(s), clip(s)^2, t/100, (t/100)^2, (t/100)^3, 1], shape [L, 2 d + 4].

    Args:
        obs: [L, d] observations.
        time: [L] step index within the episode.
    """
    chex.assert_rank(obs, 2)
    clipped = jnp.clip(obs, -OBS_CLIP, OBS_CLIP)
    t = (time.astype(obs.dtype) / 100.0)[:, None]
    return jnp.concatenate([clipped, clipped**2, t, t**2, t**3, jnp.ones_like(t)], axis=1)


def num_features(obs_dim: int) -> int:
    """The length of :func:`linear_baseline_features` for ``obs_dim``-dimensional observations."""
    return 2 * obs_dim + 4


def fit_linear_baseline(
    features: jax.Array, targets: jax.Array, mask: jax.Array, reg: float = RIDGE
) -> jax.Array:
    """Ridge coefficients w = argmin sum_t mask_t (phi_t . w - G_t)^2 + reg ||w||^2.

    This is garage's (F^T F + reg I) w = F^T G over the batch's steps, solved as the least-squares problem
    [F; sqrt(reg) I] w = [G; 0] (the same minimiser, better conditioned in float32). garage retries with
    a 10x larger reg when its solve returns NaN; this solve does not produce NaN for finite inputs.

    Args:
        features: [L, k] phi_t.
        targets: [L] G_t.
        mask: [L] in {0, 1}, the steps that count.
        reg: ridge coefficient.

    Returns:
        [k] coefficients.
    """
    chex.assert_rank([features, targets, mask], [2, 1, 1])
    root = jnp.sqrt(mask)
    k = features.shape[1]
    design = jnp.concatenate([features * root[:, None], jnp.sqrt(reg) * jnp.eye(k, dtype=features.dtype)])
    rhs = jnp.concatenate([targets * root, jnp.zeros((k,), features.dtype)])
    coeffs, *_ = jnp.linalg.lstsq(design, rhs)
    return coeffs


def baseline_weights(
    rewards: jax.Array, done: jax.Array, mask: jax.Array, baselines: jax.Array, gamma: float | jax.Array
) -> jax.Array:
    """[L] w_t = mask_t (G_t - b_t) / N with N = sum_t mask_t: the per-step weights of g_hat and B v."""
    returns = episode_reward_to_go(rewards, done, gamma)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    return mask * (returns - baselines) / count


def _log_probs(log_prob_fn: LogProbFn, params: PyTree, obs: jax.Array, actions: jax.Array) -> jax.Array:
    return jax.vmap(log_prob_fn, in_axes=(None, 0, 0))(params, obs, actions)


def weighted_policy_gradient(
    log_prob_fn: LogProbFn, params: PyTree, obs: jax.Array, actions: jax.Array, weights: jax.Array
) -> PyTree:
    """grad_theta sum_t w_t log pi_theta(a_t | s_t), weights held constant and zero-weight steps skipped.

    With ``weights`` from :func:`baseline_weights` this is the authors' g_hat.
    """
    weights = jax.lax.stop_gradient(weights)

    def surrogate(theta):
        log_probs = _log_probs(log_prob_fn, theta, obs, actions)
        return jnp.sum(jnp.where(weights != 0, weights * log_probs, 0.0))

    return jax.grad(surrogate)(params)


def weighted_hessian_vector_product(
    log_prob_fn: LogProbFn,
    params: PyTree,
    obs: jax.Array,
    actions: jax.Array,
    weights: jax.Array,
    mask: jax.Array,
    episode: jax.Array,
    v: PyTree,
    form: str = "paper",
) -> PyTree:
    """B v for the surrogate Phi = sum_t w_t log pi_theta(a_t | s_t) on a batch of episodes (module docstring).

    One ``jax.jvp`` of theta -> (grad Phi, [log pi_t]_t) gives hess Phi v and psi_t . v; the ``paper`` form
    adds one reverse pass for sum_e grad Phi_e (psi_e . v), the ``authors`` form rescales grad Phi.

    Args:
        log_prob_fn: ``(params, obs_t, action_t) -> []`` log pi_theta(a_t | s_t).
        params: theta.
        obs: [L, d] observations.
        actions: [L, ...] actions.
        weights: [L] w_t (zero outside the batch).
        mask: [L] the batch's steps.
        episode: [L] int32 episode index of each step, in [0, L).
        v: direction, like ``params``.
        form: ``paper`` or ``authors`` (static).

    Returns:
        B v, like ``params``.
    """
    if form not in HVP_FORMS:
        raise ValueError(f"unknown Hessian-vector-product form {form!r}; choose one of {', '.join(HVP_FORMS)}")
    chex.assert_trees_all_equal_shapes(params, v)
    weights = jax.lax.stop_gradient(weights)
    log_probs_at, pullback = jax.vjp(lambda p: _log_probs(log_prob_fn, p, obs, actions), params)

    def grad_phi_and_log_probs(theta):
        log_probs, back = jax.vjp(lambda p: _log_probs(log_prob_fn, p, obs, actions), theta)
        (grad_phi,) = back(jnp.where(weights != 0, weights, 0.0).astype(log_probs.dtype))
        return grad_phi, log_probs

    (grad_phi, _), (hess_phi_v, tangents) = jax.jvp(grad_phi_and_log_probs, (params,), (v,))
    score_dot_v = jnp.where(mask != 0, tangents, 0.0)
    if form == "authors":
        count = jnp.maximum(jnp.sum(mask), 1.0)
        return optax.tree.add_scale(hess_phi_v, -jnp.sum(score_dot_v) / count, grad_phi)
    per_episode = jax.ops.segment_sum(score_dot_v, episode, num_segments=obs.shape[0])
    (score_term,) = pullback((weights * per_episode[episode]).astype(log_probs_at.dtype))
    return jax.tree.map(jnp.add, hess_phi_v, score_term)

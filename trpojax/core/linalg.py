"""Matrix-free linear algebra on pytrees: conjugate gradient, Hessian- and Fisher-vector products.

Every operator here is a function ``matvec(v) -> A v`` on pytrees of arrays; no matrix is ever formed.
The conjugate-gradient solver is a ``lax.while_loop`` so it jits, vmaps (over seeds or swept
hyperparameters) and differentiates like any other JAX function.

References: Hestenes & Stiefel (1952) for CG; Pearlmutter (1994) for forward-over-reverse Hessian-vector
products; Schulman et al. (2015, TRPO, Appendix C) for Fisher-vector products through the Hessian of the
mean KL divergence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trpojax.core.tree import keep_if_valid

PyTree = Any


class CGInfo(NamedTuple):
    """Diagnostics of a conjugate-gradient solve.

    Attributes:
        num_iters: [] int32, iterations taken (each costs one ``matvec``).
        residual_norm: [] ||b - A x|| as tracked by the recursion at exit.
    """

    num_iters: jax.Array
    residual_norm: jax.Array


class _CGState(NamedTuple):
    x: PyTree  # current iterate, like b
    r: PyTree  # residual b - A x, like b
    p: PyTree  # search direction, like b
    rs: jax.Array  # [] r^T r
    iters: jax.Array  # [] int32
    broken: jax.Array  # [] bool, non-positive or non-finite curvature met


def conjugate_gradient(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    *,
    max_iters: int,
    tol: float | jax.Array = 1e-10,
) -> tuple[PyTree, CGInfo]:
    """Solve A x = b for symmetric positive (semi-)definite A by conjugate gradient, from x0 = 0.

    Iterates x_{k+1} = x_k + alpha_k p_k with alpha_k = r_k^T r_k / p_k^T A p_k and
    p_{k+1} = r_{k+1} + (r_{k+1}^T r_{k+1} / r_k^T r_k) p_k, stopping when ||r_k|| <= tol or after
    ``max_iters`` iterations. If a direction has p^T A p <= 0 or a non-finite value (a singular or
    indefinite operator), the solver stops and returns the last finite iterate, so the result is never
    NaN for finite inputs; with A singular and b in its range this is still the minimum-norm-style CG
    iterate.

    Args:
        matvec: v -> A v on pytrees shaped like ``b``.
        b: right-hand side, any pytree of float arrays.
        max_iters: static upper bound on iterations (matvec calls).
        tol: absolute tolerance on the residual norm ||b - A x||.

    Returns:
        ``(x, CGInfo(num_iters, residual_norm))`` with ``x`` shaped like ``b``.
    """
    x0 = jax.tree.map(jnp.zeros_like, b)
    rs0 = optax.tree.vdot(b, b)
    tol = jnp.asarray(tol, dtype=rs0.dtype)
    init = _CGState(
        x=x0, r=b, p=b, rs=rs0, iters=jnp.zeros((), jnp.int32), broken=~jnp.isfinite(rs0)
    )

    def cond(state: _CGState) -> jax.Array:
        return (state.iters < max_iters) & (jnp.sqrt(state.rs) > tol) & ~state.broken

    def body(state: _CGState) -> _CGState:
        ap = matvec(state.p)
        pap = optax.tree.vdot(state.p, ap)
        ok = jnp.isfinite(pap) & (pap > 0)
        alpha = jnp.where(ok, state.rs / jnp.where(ok, pap, 1.0), 0.0)
        x = optax.tree.add_scale(state.x, alpha, state.p)
        r = optax.tree.add_scale(state.r, -alpha, ap)
        rs = optax.tree.vdot(r, r)
        ok = ok & jnp.isfinite(rs)
        beta = jnp.where(ok, rs / jnp.where(state.rs > 0, state.rs, 1.0), 0.0)
        p = optax.tree.add_scale(r, beta, state.p)
        return _CGState(
            x=keep_if_valid(ok, x, state.x),
            r=keep_if_valid(ok, r, state.r),
            p=keep_if_valid(ok, p, state.p),
            rs=jnp.where(ok, rs, state.rs),
            iters=state.iters + ok.astype(jnp.int32),
            broken=~ok,
        )

    final = jax.lax.while_loop(cond, body, init)
    return final.x, CGInfo(num_iters=final.iters, residual_norm=jnp.sqrt(final.rs))


def hessian_vector_product(f: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
    """Return (d^2 f / d params^2) v by forward-over-reverse differentiation.

    Computes ``jax.jvp(jax.grad(f), (params,), (v,))[1]``: one forward-mode pass through the reverse-mode
    gradient, about the cost of two to three gradients, with no matrix formed (Pearlmutter 1994).

    Args:
        f: scalar function of a pytree.
        params: point at which the Hessian is taken.
        v: direction, shaped like ``params``.
    """
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def fisher_vector_product(
    kl_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    v: PyTree,
    damping: float | jax.Array = 0.0,
) -> PyTree:
    """Return (F + damping I) v, F the Hessian of the mean KL at ``params``.

    ``kl_fn(theta)`` must be the mean divergence KL(pi_old || pi_theta) with pi_old held fixed
    (stop-gradient) at pi_params; its Hessian at theta = params is the average Fisher information matrix
    of the policy (Schulman et al. 2015, Appendix C), so this equals F v without forming F.

    Args:
        kl_fn: scalar function theta -> mean KL(pi_old || pi_theta).
        params: the old policy parameters.
        v: direction, shaped like ``params``.
        damping: Tikhonov damping added to the diagonal.
    """
    return optax.tree.add_scale(hessian_vector_product(kl_fn, params, v), damping, v)


def make_fisher_vector_product(
    kl_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    damping: float | jax.Array = 0.0,
) -> Callable[[PyTree], PyTree]:
    """Build ``v -> (F + damping I) v`` for repeated use, linearising the KL gradient once.

    Same operator as :func:`fisher_vector_product`, but ``jax.linearize`` evaluates the primal pass of
    ``grad(kl_fn)`` a single time, so each product inside conjugate gradient costs only the linear
    (tangent) part: cheaper than a fresh forward-over-reverse product per iteration.
    """
    _, tangent = jax.linearize(jax.grad(kl_fn), params)
    return lambda v: optax.tree.add_scale(tangent(v), damping, v)


def make_gauss_newton_fvp(
    output_fn: Callable[[PyTree], PyTree],
    divergence: Callable[[PyTree], jax.Array],
    params: PyTree,
    damping: float | jax.Array = 0.0,
) -> Callable[[PyTree], PyTree]:
    """Build ``v -> (J^T M J + damping I) v`` for repeated use: the Fisher-vector product in factored form.

    ``output_fn(theta)`` gives the policy's distribution parameters z (logits, or mean and log-std) on the
    batch, J = dz/dtheta at ``params``, and M is the Hessian of ``divergence(z)`` = mean KL(pi_old || pi_z)
    at z_old = output_fn(params). Because the KL is minimal (zero gradient) at z_old, the Hessian of
    theta -> divergence(output_fn(theta)) at ``params`` is exactly J^T M J (the second-derivative term of the
    network is multiplied by that zero gradient): the same operator as :func:`make_fisher_vector_product`,
    computed as J v by a tangent pass of the once-linearised network, M (J v) per sample (cheap, elementwise
    in z), and J^T (M J v) by the transposed pass, without differentiating through the network twice
    (Martens 2014; Schraudolph 2002).

    Args:
        output_fn: theta -> z, a pytree of distribution parameters for the whole batch.
        divergence: z -> [] mean KL(pi_old || pi_z) with pi_old fixed at z_old.
        params: the old policy parameters theta_old.
        damping: Tikhonov damping added to the diagonal.
    """
    z_old, jvp = jax.linearize(output_fn, params)
    vjp = jax.linear_transpose(jvp, params)
    _, curvature = jax.linearize(jax.grad(divergence), z_old)

    def fvp(v: PyTree) -> PyTree:
        (jt_mjv,) = vjp(curvature(jvp(v)))
        return optax.tree.add_scale(jt_mjv, damping, v)

    return fvp

"""Exact linear-quadratic regulator (LQR) quantities: values, Q-matrices, gains and policy iteration.

The system is deterministic and linear with quadratic cost, written as a reward to maximise::

    x_{t+1} = A x_t + B u_t,        r(x, u) = -(x^T Q x + u^T R u),        0 < gamma <= 1,

with n states and m inputs: A [n, n], B [n, m], Q [n, n] symmetric positive semidefinite, R [m, m]
symmetric positive definite. A linear policy is u = -K x with gain K [m, n]; A_K = A - B K is its closed
loop. Its value and action-value are quadratic forms::

    V_K(x) = -x^T P_K x,        Q_K(x, u) = -[x; u]^T H_K [x; u],

with P_K from a Lyapunov equation (:func:`lyapunov_value`) and H_K from P_K (:func:`q_matrix`). The
optimal gain K* solves the discounted Riccati equation (:func:`riccati_gain`); exact policy iteration
(Hewer, 1971; Bradtke, Ydstie & Barto, 1994) reaches it from any stabilising gain (:func:`policy_iteration`).

Everything is ``jax.numpy`` with dense linear solves, jittable, and exact to float64 rounding under
``jax.enable_x64(True)``: the oracles that sampled policy-gradient and TRPO estimates on the LQR
environment (:mod:`trpojax.envs.lqr`) are checked against.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class LQRSystem(NamedTuple):
    """A discrete-time linear system with quadratic cost.

    Attributes:
        A: [n, n] state matrix.
        B: [n, m] input matrix.
        Q: [n, n] state cost (symmetric positive semidefinite).
        R: [m, m] input cost (symmetric positive definite).
    """

    A: jax.Array  # [n, n]
    B: jax.Array  # [n, m]
    Q: jax.Array  # [n, n]
    R: jax.Array  # [m, m]


def default_system() -> LQRSystem:
    """The 2-state, 1-input system of the ``LQR-v0`` environment.

    A = [[0.9, 0.2], [0, 0.8]] (stable, so K = 0 is a stabilising start), B = [[0], [1]], Q = I_2, R = I_1.

    Returns:
        An ``LQRSystem`` of arrays in the default float dtype (float64 under ``jax.enable_x64(True)``).
    """
    dtype = jax.dtypes.canonicalize_dtype(np.float64)  # numpy literals, transferred: nothing compiled eagerly
    return LQRSystem(
        A=jnp.asarray(np.array([[0.9, 0.2], [0.0, 0.8]], dtype)),
        B=jnp.asarray(np.array([[0.0], [1.0]], dtype)),
        Q=jnp.asarray(np.eye(2, dtype=dtype)),
        R=jnp.asarray(np.eye(1, dtype=dtype)),
    )


def _common_dtype(*arrays):
    """The arrays (and scalars) cast to their common float dtype, so loop carries keep one dtype."""
    dtype = jnp.result_type(*arrays, jnp.float32)
    return tuple(jnp.asarray(x, dtype) for x in arrays)


def closed_loop(A: jax.Array, B: jax.Array, K: jax.Array) -> jax.Array:
    """A_K = A - B K, the closed-loop state matrix [n, n] of the policy u = -K x (K [m, n])."""
    return A - B @ K


def spectral_radius(M: jax.Array) -> jax.Array:
    """max_i |lambda_i(M)| of a square matrix M [n, n] (a real scalar)."""
    return jnp.max(jnp.abs(jnp.linalg.eigvals(M)))


def closed_loop_stable(A: jax.Array, B: jax.Array, K: jax.Array, gamma: float | jax.Array) -> jax.Array:
    """Whether u = -K x has a finite discounted value: rho(sqrt(gamma) (A - B K)) < 1.

    This is the condition for the discounted cost series sum_t gamma^t x_t^T (Q + K^T R K) x_t to converge
    for every x_0 (when Q + K^T R K is positive definite, it is also necessary), i.e. for
    :func:`lyapunov_value` to return the value matrix P_K.

    Args:
        A: [n, n]. B: [n, m]. K: [m, n] gain. gamma: discount in (0, 1].

    Returns:
        A boolean scalar.
    """
    return spectral_radius(jnp.sqrt(gamma) * closed_loop(A, B, K)) < 1


def lyapunov_value(
    A: jax.Array, B: jax.Array, Q: jax.Array, R: jax.Array, K: jax.Array, gamma: float | jax.Array
) -> jax.Array:
    """The value matrix P_K of the linear policy u = -K x: V_K(x) = -x^T P_K x.

    P_K = sum_t gamma^t (A_K^T)^t (Q + K^T R K) A_K^t solves the discrete Lyapunov equation::

        P = Q + K^T R K + gamma A_K^T P A_K,        A_K = A - B K,

    computed as one Kronecker-product linear system of size n^2 (``vec`` row- or column-major alike)::

        (I - gamma (A_K^T kron A_K^T)) vec(P) = vec(Q + K^T R K),

    and then symmetrised, (P + P^T) / 2.

    The series, and so the value, is finite only when rho(sqrt(gamma) A_K) < 1 (:func:`closed_loop_stable`).
    Otherwise the result is no value (the cost diverges): when some gamma lambda_i lambda_j of A_K equals 1
    the linear system is singular (inf/nan, or huge entries after rounding); otherwise the result is the
    unique solution of the equation, and when Q + K^T R K is positive definite it is not positive
    semidefinite (a PSD solution with a positive definite right-hand side implies stability). Check
    :func:`closed_loop_stable` first where K may not stabilise.

    Args:
        A: [n, n]. B: [n, m]. Q: [n, n]. R: [m, m]. K: [m, n] gain. gamma: discount in (0, 1].

    Returns:
        P_K [n, n], symmetric.
    """
    n = A.shape[0]
    A_K = closed_loop(A, B, K)
    cost = Q + K.T @ R @ K
    # vec(A_K^T P A_K) = (A_K^T kron A_K^T) vec(P) in both column-major and row-major (reshape) vec.
    system = jnp.eye(n * n, dtype=A_K.dtype) - gamma * jnp.kron(A_K.T, A_K.T)
    P = jnp.linalg.solve(system, cost.reshape(n * n)).reshape(n, n)
    return (P + P.T) / 2


def q_matrix(
    A: jax.Array, B: jax.Array, Q: jax.Array, R: jax.Array, K: jax.Array, gamma: float | jax.Array
) -> jax.Array:
    """The action-value matrix H_K of u = -K x: Q_K(x, u) = -[x; u]^T H_K [x; u].

    From Q_K(x, u) = r(x, u) + gamma V_K(A x + B u) and V_K(x) = -x^T P_K x (:func:`lyapunov_value`)::

        H_K = [[Q + gamma A^T P_K A,    gamma A^T P_K B    ],
               [gamma B^T P_K A,        R + gamma B^T P_K B]].

    Args:
        A: [n, n]. B: [n, m]. Q: [n, n]. R: [m, m]. K: [m, n] stabilising gain. gamma: discount in (0, 1].

    Returns:
        H_K [n + m, n + m], symmetric; blocks H_xx [n, n], H_xu [n, m], H_ux [m, n], H_uu [m, m].
    """
    P = lyapunov_value(A, B, Q, R, K, gamma)
    H_xx = Q + gamma * A.T @ P @ A
    H_xu = gamma * A.T @ P @ B
    H_uu = R + gamma * B.T @ P @ B
    H = jnp.block([[H_xx, H_xu], [H_xu.T, H_uu]])
    return (H + H.T) / 2


def greedy_gain(H: jax.Array, n: int) -> jax.Array:
    """Policy improvement: the gain of argmax_u Q(x, u) = -[x; u]^T H [x; u], K = H_uu^{-1} H_ux.

    Setting the gradient in u to zero gives H_uu u + H_ux x = 0, so u = -K x with K as above.

    Args:
        H: [n + m, n + m] symmetric action-value matrix (e.g. :func:`q_matrix`), H_uu positive definite.
        n: number of states (static).

    Returns:
        K [m, n].
    """
    return jnp.linalg.solve(H[n:, n:], H[n:, :n])


def riccati_gain(
    A: jax.Array,
    B: jax.Array,
    Q: jax.Array,
    R: jax.Array,
    gamma: float | jax.Array,
    iters: int = 10_000,
    tol: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The optimal gain K* and value matrix P* by iterating the discounted Riccati recursion.

    Starting from P_0 = Q (one step of the recursion from 0), repeats (value iteration on quadratic values)::

        P <- Q + gamma A^T P A - gamma^2 A^T P B (R + gamma B^T P B)^{-1} B^T P A

    until ||P_new - P||_F <= tol ||P_new||_F or ``iters`` steps (a ``lax.while_loop``), then::

        K* = gamma (R + gamma B^T P* B)^{-1} B^T P* A,        V*(x) = -x^T P* x.

    The iteration converges when (sqrt(gamma) A, sqrt(gamma) B) is stabilisable and (A, Q^{1/2})
    detectable; it converges linearly (rate about rho(sqrt(gamma) A_{K*})^2), so a badly conditioned system
    may stop at the cap. Non-convergence is not reported: compare with :func:`lyapunov_value` of K*.

    Args:
        A: [n, n]. B: [n, m]. Q: [n, n]. R: [m, m]. gamma: discount in (0, 1].
        iters: iteration cap (a traced value is fine).
        tol: relative tolerance on the change in P; None for 10 eps of P's dtype (about 2e-15 in float64).

    Returns:
        ``(K*, P*)``: K* [m, n], P* [n, n] symmetric.
    """
    A, B, Q, R, gamma = _common_dtype(A, B, Q, R, gamma)
    if tol is None:
        tol = 10 * jnp.finfo(A.dtype).eps

    def update(P):
        PA, PB = P @ A, P @ B
        S = R + gamma * B.T @ PB
        P_new = Q + gamma * A.T @ PA - gamma**2 * (A.T @ PB) @ jnp.linalg.solve(S, PB.T @ A)
        return (P_new + P_new.T) / 2

    def cond(carry):
        i, _, change = carry
        return (i < iters) & (change > tol)

    def body(carry):
        i, P, _ = carry
        P_new = update(P)
        change = jnp.linalg.norm(P_new - P) / jnp.maximum(jnp.linalg.norm(P_new), jnp.finfo(P.dtype).tiny)
        return i + 1, P_new, change

    P0 = (Q + Q.T) / 2
    _, P, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), P0, jnp.asarray(jnp.inf, P0.dtype)))
    K = gamma * jnp.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
    return K, P


def policy_iteration(
    A: jax.Array,
    B: jax.Array,
    Q: jax.Array,
    R: jax.Array,
    K0: jax.Array,
    gamma: float | jax.Array,
    iters: int,
) -> jax.Array:
    """Exact policy iteration: K_{i+1} = greedy_gain(q_matrix(..., K_i, gamma), n).

    Each step evaluates K_i exactly (:func:`q_matrix`) and improves it greedily (:func:`greedy_gain`). From a
    stabilising K0 (:func:`closed_loop_stable`) every iterate stabilises, P_{K_i} decreases monotonically
    and K_i -> K* quadratically (Hewer, 1971); this is Newton's method on the Riccati equation.

    Args:
        A: [n, n]. B: [n, m]. Q: [n, n]. R: [m, m]. K0: [m, n] stabilising initial gain.
        gamma: discount in (0, 1]. iters: number of improvement steps (static).

    Returns:
        [iters + 1, m, n]: K0, K1, ..., K_iters.
    """
    n = A.shape[0]
    A, B, Q, R, K0, gamma = _common_dtype(A, B, Q, R, K0, gamma)  # the carry keeps the iterates' dtype

    def step(K, _):
        K_next = greedy_gain(q_matrix(A, B, Q, R, K, gamma), n)
        return K_next, K_next

    _, gains = jax.lax.scan(step, K0, None, length=iters)
    return jnp.concatenate([K0[None], gains], axis=0)

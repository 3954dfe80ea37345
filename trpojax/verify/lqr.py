"""Statements 10-12: the normalised-TD critic of the lecture notes ("Remarks on deep RL"), checked exactly.

10 is about the critic's algebra (:mod:`trpojax.core.ntd`) on random networks; 11 and 12 run the notes'
update on the exact LQR problem (:mod:`trpojax.core.lqr`), whose Q-function is the quadratic form
Q_K(x, u) = -[x; u]^T H_K [x; u], so a quadratic critic can be compared with H_K entry by entry. The dynamics
x+ = A x + B u are simulated here in float64 (the environments are a layer above). Checkers are pure
host-side functions returning :class:`~trpojax.verify.checks.Check`; the programs that produce their inputs
are jitted once and compiled at XLA:CPU's lowest optimisation level (they run once, compiling dominates).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax.core import lqr, ntd
from trpojax.core.platform import classic_emitters_available
from trpojax.verify.checks import MAX_RATIO_GROWTH, Check, _bound, _f64, _identity, _relative_error

# Statement 10: random networks (every features x activation), z in R^3, N = 4 hidden units.
NTD_NETS = tuple(ntd.QNet(3, 4, f, a) for f in ntd.FEATURES for a in ntd.ACTIVATIONS)
NTD_NEXT_ACTIONS = (1, 3)  # candidate next actions z+_k, with softmax weights
NTD_DRAWS = 4  # random (weights, z, r, z+, direction) per network and number of next actions
NTD_DISCOUNT = 0.9
NUM_STEP_SIZES = 11  # 10b: t = 1, 1/2, ..., 2^-10 along a random unit direction
LINEARISATION_NEXT_ACTIONS = 3  # 10b with K = 3 (its program is the largest part of 10's compile time)
STEP_SCALES = tuple(10.0 ** k for k in range(-3, 7))  # 10c: d_j = scale N(0, I_20), or aligned: ||d_j|| ~ scale
STEP_WINDOW = 8  # transitions per window in 10c (the last one masked out)
NORM_POWER = 2.0  # the notes' normalisation (1 + d^T d)^2

# Statements 11-12: the default LQR system, u = -K x + sigma N(0, 1), episodes from x0 ~ U[-1, 1]^2.
LQR_GAMMA = 0.9
LQR_GAIN_SCALE = 0.5  # K = 0.5 K* (stabilising) in 11
LQR_SIGMA = 1.0
LQR_TIME_LIMIT = 20  # steps per episode, then a fresh x0 (the last transition still bootstraps)
LQR_ENVS = 16  # B parallel environments
LQR_WINDOW = 4  # M: the last M transitions of each environment, J = B M = 64 per step
QUADRATIC_NET = ntd.QNet(3, 1, "quadratic", "linear")  # N = 1: Q = c^T phi2(z), c = omega2 omega1
SQUARE_NET = ntd.QNet(3, 4, "identity_bias", "square")  # N = n + m + 1: Q = y^T omega2 diag(omega1) omega2^T y
STEP_SIZES = {QUADRATIC_NET: 0.3, SQUARE_NET: 0.6}  # lambda: lambda lambda_max <= 1.3 and 1.6 (seeds 0-7)
LQR_STEPS = {QUADRATIC_NET: 1500, SQUARE_NET: 5000}  # critic steps (one per environment step) per run
DECREMENT_STEP_SIZE = 0.05  # lambda of 11b: small, so |w~|^2 stays far above round-off for all steps
PI_ITERS = 4  # 12: improvements from K0 = 0.5 K* (its evaluation is 11a's run), each evaluation warm-started
CRITIC_RTOL = 1e-8  # 11a: relative error of the critic's matrix
GAIN_RTOL = 1e-6  # 12: relative error of the learned gain
EXCITATION_RTOL = 1e-10  # 11c: lambda_min / lambda_max without noise
EXCITATION_FLOOR = 1e-6  # 11e: lambda_min / lambda_max with noise
MISS_RTOL = 1e-3  # 11d: without noise the critic stays at least this far from H_K


# Checkers (host, float64) ----------------------------------------------------------------------------------


def check_data_vector(autodiff, closed_form) -> Check:
    """10a: d = grad_{vec omega} e (autodiff) equals the notes' closed form (g; G omega1), relative error."""
    return _identity(_relative_error(autodiff, closed_form))


def check_td_linearization(step_sizes, errors, error, slope) -> Check:
    """10b: e(w + t v) - e(w) - t d^T v = O(t^2): r_k = |residual_k| / t_k^2 on halving t_k stays bounded.

    The value is max(r on the smaller half of the steps) / max(r on the larger half), at most
    MAX_RATIO_GROWTH (a wrong first-order term makes it about 2^(K - K // 2)).

    Args:
        step_sizes: [K] t_k, decreasing; errors: [K] e(w + t_k v); error: e(w); slope: d^T v.
    """
    step_sizes, errors = _f64(step_sizes, errors)
    ratios = np.abs(errors - float(error) - step_sizes * float(slope)) / step_sizes**2
    half = ratios.shape[0] // 2
    return _bound(np.max(ratios[half:]) / max(np.max(ratios[:half]), 1e-300), MAX_RATIO_GROWTH)


def check_normalized_step(direction, e, mask, power) -> Check:
    """10c: the step sum_j d_j e_j / (1 + d_j^T d_j)^p is finite and ||step|| <= c_p sum_j mask_j |e_j|."""
    direction, e, mask = _f64(direction, e, mask)
    norm = float(np.linalg.norm(direction)) if np.all(np.isfinite(direction)) else np.inf
    return _bound(norm, ntd.normalization_constant(float(power)) * np.sum(mask * np.abs(e)))


def lqr_target(H) -> np.ndarray:
    """[[-H, 0], [0, 0]]: Q_K(z) = y^T M y with y = [z, 1] (no constant, no linear terms)."""
    (H,) = _f64(H)
    target = np.zeros((H.shape[0] + 1,) * 2)
    target[:-1, :-1] = -H
    return target


def check_critic_matrix(matrix, H) -> Check:
    """11a: the critic's matrix M (:func:`ntd.quadratic_form`) equals [[-H_K, 0], [0, 0]], relative error."""
    return _identity(_relative_error(matrix, lqr_target(H)), CRITIC_RTOL)


def check_critic_misses(matrix, H) -> Check:
    """11d: the critic is NOT at H_K: MISS_RTOL <= relative error (value MISS_RTOL, bound the error)."""
    return _bound(MISS_RTOL, _relative_error(matrix, lqr_target(H)))


def quadratic_coefficients(matrix) -> np.ndarray:
    """c [q (q + 1) / 2] with c^T phi2(z) = y^T M y for ``quadratic`` features: M_ii, and 2 M_ij for i < j."""
    (matrix,) = _f64(matrix)
    rows, cols = np.triu_indices(matrix.shape[0])
    return np.where(rows == cols, 1.0, 2.0) * matrix[rows, cols]


def check_lyapunov_decrement(error, error_next, gram, step_size) -> Check:
    """11b, one step: |w~+|^2 - |w~|^2 <= -lambda (2 - lambda lambda_max) lambda_min |w~|^2.

    lambda_min, lambda_max are the extreme eigenvalues of the step's normalised Gram Dbar^T Dbar. The
    statement assumes 2 - lambda lambda_max > 0: a step that breaks it does not hold whatever the values.

    Args:
        error: [W] w~_k = w_k - w*; error_next: [W] w~_{k+1}; gram: [W, W]; step_size: lambda.
    """
    error, error_next, gram = _f64(error, error_next, gram)
    eigenvalues = np.linalg.eigvalsh(gram)
    lam, low, high = float(step_size), eigenvalues[0], eigenvalues[-1]
    check = _bound(error_next @ error_next - error @ error, -lam * (2.0 - lam * high) * low * (error @ error))
    return check._replace(holds=check.holds and lam * high < 2.0)


def excitation_ratios(excitation, grams) -> np.ndarray:
    """lambda_min / lambda_max per step: [T] :func:`ntd.excitation` values over the top eigenvalue of [T, W, W]."""
    excitation, grams = _f64(excitation, grams)
    return excitation / np.maximum(np.linalg.eigvalsh(grams)[:, -1], 1e-300)


def check_excitation_vanishes(excitation, grams) -> Check:
    """11c: without exploration the window is not exciting: max_k lambda_min / lambda_max <= EXCITATION_RTOL."""
    return _bound(np.max(excitation_ratios(excitation, grams)), EXCITATION_RTOL)


def check_excitation_persists(excitation, grams) -> Check:
    """11e: with exploration it is: EXCITATION_FLOOR <= min_k lambda_min / lambda_max (value the floor)."""
    return _bound(EXCITATION_FLOOR, np.min(excitation_ratios(excitation, grams)))


def check_gain(gain, optimal_gain) -> Check:
    """12: the gain of policy iteration with the learned critic equals the Riccati gain K*, relative error."""
    return _identity(_relative_error(gain, optimal_gain), GAIN_RTOL)


# Quantities (JAX, float64 under jax.enable_x64) ------------------------------------------------------------


def _compiler_options() -> dict | None:
    """XLA:CPU at -O0 with its classic emitters where this jaxlib has them (as ``trpojax.fastcpu.options``'s
    one-shot options): these programs run once, so compiling dominates."""
    if jax.default_backend() != "cpu":
        return None
    options: dict = {"xla_backend_optimization_level": 0}
    if classic_emitters_available():
        options["xla_cpu_use_fusion_emitters"] = False
    return options


def _jit(**kwargs):
    """``jax.jit`` with :func:`_compiler_options`, built on first call (not at import: no backend yet)."""

    def wrap(fn):
        program = functools.cache(lambda: jax.jit(fn, compiler_options=_compiler_options(), **kwargs))
        return functools.wraps(fn)(lambda *args, **kw: program()(*args, **kw))

    return wrap


def random_inputs(rng: np.random.Generator) -> tuple[dict, dict]:
    """Host-drawn inputs of :func:`ntd_quantities` (drawn in the program they would cost most of its compiling).

    Returns ({(net, K): (omega [D, W], z [D, 3], reward [D], z_next [D, K, 3], weights [D, K], v [D, W])},
    {(dtype, p): (d [S, J, 20], e [S, J], mask [S, J])}): per scale a random window and an aligned one
    (parallel d_j of nearly one length and e_j of one sign, where the bound is nearly tight).
    """
    vectors = {}
    for net in NTD_NETS:
        for k in NTD_NEXT_ACTIONS:
            w, p, d = net.num_weights, net.num_features, NTD_DRAWS
            omega = np.concatenate([rng.normal(size=(d, net.width)) / np.sqrt(net.width),
                                    rng.normal(size=(d, w - net.width)) / np.sqrt(p)], axis=1)
            weights, v = np.exp(rng.normal(size=(d, k))), rng.normal(size=(d, w))
            vectors[(net, k)] = (omega, rng.normal(size=(d, net.z_dim)), rng.normal(size=d),
                                 rng.normal(size=(d, k, net.z_dim)), weights / weights.sum(-1, keepdims=True),
                                 v / np.linalg.norm(v, axis=-1, keepdims=True))
    scales = np.asarray(STEP_SCALES)[:, None, None]
    unit = rng.normal(size=20)
    aligned = scales * np.exp(0.1 * rng.normal(size=(len(STEP_SCALES), STEP_WINDOW, 1))) * unit / np.linalg.norm(unit)
    d = np.concatenate([scales * rng.normal(size=(len(STEP_SCALES), STEP_WINDOW, 20)), aligned])
    e = rng.normal(size=d.shape[:2])
    e[len(STEP_SCALES):] = np.abs(e[len(STEP_SCALES):])
    mask = np.broadcast_to(np.arange(STEP_WINDOW) < STEP_WINDOW - 1, e.shape).astype(np.float64)  # one left out
    steps = {(dtype, p): (d, e, mask) for dtype in ("float32", "float64") for p in (1.0, 2.0)}
    return vectors, steps


class DataVectorQuantities(NamedTuple):
    """10a-b for one network and K, [D] draws: autodiff [D, W]; closed_form [D, W]; step_sizes [L];
    errors [D, L] e(w + t_l v) (None unless K = LINEARISATION_NEXT_ACTIONS); error [D] e(w); slope [D] d^T v."""

    autodiff: jax.Array
    closed_form: jax.Array
    step_sizes: jax.Array
    errors: jax.Array | None
    error: jax.Array
    slope: jax.Array


@_jit()
def ntd_quantities(vectors: dict, steps: dict) -> tuple[dict, dict]:
    """Everything of 10 in one program, from :func:`random_inputs`.

    Returns ({(net, K): DataVectorQuantities}, {(dtype, p): [S, W] normalised steps, in that dtype}).
    """
    t = 0.5 ** jnp.arange(NUM_STEP_SIZES)

    def data_vectors(net, num_next, omega, z, reward, z_next, weights, v):
        def one(w, z, r, zn, p, v):
            e, d = ntd.td_error_and_data_vector(w, w, 1.0, z, r, zn, p, NTD_DISCOUNT, net)
            closed = ntd.closed_form_data_vector(w, z, zn, p, NTD_DISCOUNT, net)
            if num_next != LINEARISATION_NEXT_ACTIONS:
                return d, closed, None, e, d @ v
            moved = jax.vmap(lambda s: ntd.td_error(w + s * v, z, r, zn, p, NTD_DISCOUNT, net))(t)
            return d, closed, moved, e, d @ v

        d, closed, moved, e, slope = jax.vmap(one)(omega, z, reward, z_next, weights, v)
        return DataVectorQuantities(d, closed, t, moved, e, slope)

    def normalized_steps(dtype, power, d, e, mask):
        d, e, mask = (x.astype(dtype) for x in (d, e, mask))
        return jax.vmap(lambda d, e, m: ntd.normalized_direction(d, e, m, jnp.asarray(power, dtype)))(d, e, mask)

    return ({key: data_vectors(*key, *args) for key, args in vectors.items()},
            {key: normalized_steps(*key, *args) for key, args in steps.items()})


class CriticRun(NamedTuple):
    """One run of the notes' critic on the LQR problem (T steps).

    Attributes:
        weights: [T + 1, W] vec(omega) before the first step and after each step.
        matrix: [q, q] :func:`ntd.quadratic_form` of the final weights.
        gram: [T, pN, pN] normalised Gram of each step's window of omega2-block data vectors (mask all ones).
        excitation: [T] :func:`ntd.excitation` of the same window (its lambda_min).
    """

    weights: jax.Array
    matrix: jax.Array
    gram: jax.Array
    excitation: jax.Array


def critic_noise(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, ...]:
    """Host-drawn randomness of :func:`critic_run` for ``steps`` steps (after LQR_WINDOW filling ones):
    (x0 [B, 2], time0 [B], exploration [M + T, B, 1] ~ N(0, 1), fresh states [M + T, B, 2] ~ U[-1, 1])."""
    total = LQR_WINDOW + steps
    return (rng.uniform(-1.0, 1.0, (LQR_ENVS, 2)), rng.integers(0, LQR_TIME_LIMIT, LQR_ENVS),
            rng.normal(size=(total, LQR_ENVS, 1)), rng.uniform(-1.0, 1.0, (total, LQR_ENVS, 2)))


@_jit(static_argnames="net")
def critic_run(noise, system, gain, gamma, sigma, step_size, omega0, output_trained, net: ntd.QNet) -> CriticRun:
    """The notes' critic on x+ = A x + B u with u = -K x + sigma N(0, I), LQR_ENVS environments.

    Every environment step, each environment adds (z, r, z+) with z = (x, u), r = -(x^T Q x + u^T R u) and
    z+ = (x+, -K x+) (the policy's deterministic next action) to its window of the last LQR_WINDOW; then
    omega <- omega - lambda sum_j d_j e_j / (1 + d_j^T d_j)^2 over all B M transitions, with the residual TD
    error e_j and data vector d_j (:func:`ntd.td_error_and_data_vector`). With ``output_trained`` 0 the
    output weights omega1 are held (their entries of d_j are zeroed, also in the normalisation): with
    omega1 = 1 a quadratic/linear N = 1 critic is then linear in its weights. Windows are filled first.
    ``noise`` is :func:`critic_noise` (its length sets the number of steps).
    """
    A, B, Q, R = system
    x0, time0, exploration, fresh = noise
    num = net.width
    mask = jnp.concatenate([jnp.full(num, output_trained), jnp.ones(net.num_weights - num)])

    def env_step(state, noise):
        (x, time), (xi, x_fresh) = state, noise
        u = -x @ gain.T + sigma * xi
        x_next = x @ A.T + u @ B.T
        reward = -(jnp.einsum("bi,ij,bj->b", x, Q, x) + jnp.einsum("bi,ij,bj->b", u, R, u))
        transition = (jnp.concatenate([x, u], -1), reward, jnp.concatenate([x_next, -x_next @ gain.T], -1))
        reset = time + 1 >= LQR_TIME_LIMIT
        return (jnp.where(reset[:, None], x_fresh, x_next), jnp.where(reset, 0, time + 1)), transition

    def td(omega, z, r, z_next):
        return ntd.td_error_and_data_vector(omega, omega, 1.0, z, r, z_next[None], jnp.ones(1), gamma, net)

    def critic_step(carry, noise):
        state, window, omega = carry
        state, transition = env_step(state, noise)
        window = jax.tree.map(lambda w, x: jnp.concatenate([w[1:], x[None]]), window, transition)
        z, r, z_next = jax.tree.map(lambda w: w.reshape((-1,) + w.shape[2:]), window)
        e, d = jax.vmap(td, (None, 0, 0, 0))(omega, z, r, z_next)
        d, ones = d * mask, jnp.ones_like(e)
        omega = omega - step_size * ntd.normalized_direction(d, e, ones, NORM_POWER)
        block = d[:, num:]
        return (state, window, omega), (omega, ntd.normalized_gram(block, ones, NORM_POWER),
                                        ntd.excitation(block, ones, NORM_POWER))

    fill = (exploration[:LQR_WINDOW], fresh[:LQR_WINDOW])
    state, window = jax.lax.scan(env_step, (x0, time0), fill)
    run = (exploration[LQR_WINDOW:], fresh[LQR_WINDOW:])
    _, (weights, gram, excitation) = jax.lax.scan(critic_step, (state, window, omega0), run)
    return CriticRun(jnp.concatenate([omega0[None], weights]), ntd.quadratic_form(weights[-1], net), gram,
                     excitation)


@_jit()
def lqr_oracles(system, gain, gamma) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(H_K, K*, whether K stabilises) from :mod:`trpojax.core.lqr`."""
    A, B, Q, R = system
    H = lqr.q_matrix(A, B, Q, R, gain, gamma)
    return H, lqr.riccati_gain(A, B, Q, R, gamma)[0], lqr.closed_loop_stable(A, B, gain, gamma)


@_jit(static_argnames="n")
def greedy_gain(H, n: int) -> jax.Array:
    """:func:`lqr.greedy_gain`, jitted."""
    return lqr.greedy_gain(H, n)


def initial_weights(rng: np.random.Generator, net: ntd.QNet) -> np.ndarray:
    """Starting weights for 11-12. Quadratic/linear: omega2 ~ N(0, 1/p), omega1 = 1 (so that holding omega1
    gives the exact linear critic). Identity_bias/square: Q0(z) = -|z|^2, omega2 = I and omega1 = (-1, .., 0):
    the bias unit starts off. (From random weights, or with all omega1 < 0, the error stalls at 0.3 to 1e-5:
    d M_qq = sum_i (v_iq^2 d omega1_i + 2 omega1_i v_iq dv_iq) vanishes where every v_iq = 0.)"""
    if net.features == "quadratic":
        omega2 = rng.normal(size=net.num_weights - net.width) / np.sqrt(net.num_features)
        return np.concatenate([np.ones(net.width), omega2])
    omega1 = np.where(np.arange(net.width) < net.z_dim, -1.0, 0.0)
    return np.concatenate([omega1, np.eye(net.z_dim + 1, net.width).T.reshape(-1)])


def run_critic(rng, system, gain, omega0, net=QUADRATIC_NET, sigma=LQR_SIGMA, step_size=None,
               output_trained=True) -> CriticRun:
    """:func:`critic_run` for LQR_STEPS[net] steps on fresh noise from ``rng``, as host arrays (float64)."""
    step_size = STEP_SIZES[net] if step_size is None else step_size
    run = critic_run(critic_noise(rng, LQR_STEPS[net]), system, gain, LQR_GAMMA, sigma, step_size,
                     np.asarray(omega0, np.float64), float(output_trained), net=net)
    return jax.tree.map(np.asarray, run)


def learned_policy_iteration(rng, system, first: CriticRun, gain, iters: int = PI_ITERS) -> list[np.ndarray]:
    """12: K_{i+1} = :func:`lqr.greedy_gain` of -M_i's z-block, M_i the quadratic/linear critic of K_i.

    ``first`` is the run that evaluated ``gain`` = K_0; each further evaluation starts from the previous
    critic's weights. Returns [K_0, ..., K_iters].
    """
    gains, run = [np.asarray(gain)], first
    for i in range(iters):
        gains.append(np.asarray(greedy_gain(-run.matrix[:-1, :-1], gains[-1].shape[1])))
        if i < iters - 1:
            run = run_critic(rng, system, gains[-1], run.weights[-1])
    return gains

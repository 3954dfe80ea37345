"""The normalised-TD critic of the deep actor-critic lecture notes ("Remarks on deep RL"), as pure functions.

The notes' transcript garbles the shapes; they are, with z = (x, u) in R^{n+m}:

- features phi2(z) in R^p: ``identity_bias`` [z, 1] (p = n + m + 1) or ``quadratic`` the monomials of
  y = [z, 1] up to degree 2, y_i y_j for i <= j (p = (n + m + 1)(n + m + 2) / 2);
- hidden weights omega2 [p, N] (column i feeds hidden unit i), pre-activations a(z) = omega2^T phi2(z) [N];
- an elementwise activation phi1: ``tanh``, ``linear`` or ``square`` (a -> a^2);
- output weights omega1 [N], and no other biases: Q(z) = omega1^T phi1(omega2^T phi2(z)).

The weights are one vector vec(omega) = (omega1; vec(omega2)) in R^{N + pN}, vec stacking the columns of
omega2 (entry N + i p + k is omega2[k, i]), which is the vector the notes' step acts on.

TD error (the notes' L_TD with a discount, gamma = 1 reproducing them):
e(z, r, z+) = Q(z) - r - gamma (1 - terminated) Q(z+), where Q(z+) may be an expectation over next actions
(a softmax policy's) given as candidate actions with weights. The data vector is d = grad_{vec omega} e,
both Q(z) and Q(z+) differentiated (a residual gradient); the notes' closed form is d = (g; G omega1) with
g = phi1(a(z)) - gamma' phi1(a(z+)) [N] and G [pN, N] block-diagonal, its block i the hidden-layer
sensitivity phi1'(a_i(z)) phi2(z) - gamma' phi1'(a_i(z+)) phi2(z+) [p] (:func:`closed_form_data_vector`).
With a target critic the z+ term is evaluated at the target weights and not differentiated (semi-gradient).

The critic step over a replay window of J transitions is
vec omega <- vec omega - lambda * sum_j d_j e_j / (1 + d_j^T d_j)^p   (:func:`normalized_direction`),
whose length is at most lambda * c_p * sum_j |e_j| whatever the data vectors (:func:`step_bound`). For a
critic that represents Q exactly and is linear in its weights, e_j = d_j^T (omega - omega*), and with
Dbar the window's rows d_j / (1 + d_j^T d_j)^{p/2} one step changes the squared error by
|w_{k+1}|^2 - |w_k|^2 <= -lambda (2 - lambda lambda_max) lambda_min |w_k|^2, lambda_min, lambda_max the
extreme eigenvalues of Dbar^T Dbar (:func:`normalized_gram`): the excitation level lambda_min must be
positive (it cannot be unless J >= N + pN).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

FEATURES = ("identity_bias", "quadratic")
ACTIVATIONS = ("tanh", "linear", "square")


class QNet(NamedTuple):
    """The static shape of a two-layer Q network.

    Attributes:
        z_dim: n + m, the length of z = (x, u) (a discrete action enters one-hot).
        width: N, hidden units.
        features: phi2, one of :data:`FEATURES`.
        activation: phi1, one of :data:`ACTIVATIONS`.
    """

    z_dim: int
    width: int
    features: str = "identity_bias"
    activation: str = "tanh"

    @property
    def num_features(self) -> int:
        """p, the length of phi2(z)."""
        q = self.z_dim + 1
        return q if self.features == "identity_bias" else q * (q + 1) // 2

    @property
    def num_weights(self) -> int:
        """N + pN, the length of vec(omega)."""
        return self.width * (1 + self.num_features)


def check_qnet(net: QNet) -> None:
    """Raise ``ValueError`` for an unknown feature map or activation, or a non-positive size."""
    if net.features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {net.features!r}")
    if net.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {net.activation!r}")
    if net.z_dim < 1 or net.width < 1:
        raise ValueError(f"z_dim and width must be >= 1, got {net.z_dim} and {net.width}")


def feature_map(z: jax.Array, features: str) -> jax.Array:
    """phi2(z) [p] of z [z_dim]: [z, 1], or the upper triangle (row-major) of y y^T with y = [z, 1]."""
    y = jnp.concatenate([z, jnp.ones((1,), z.dtype)])
    if features == "identity_bias":
        return y
    rows, cols = jnp.triu_indices(y.shape[0])
    return y[rows] * y[cols]


def activate(a: jax.Array, activation: str) -> jax.Array:
    """phi1(a), elementwise."""
    if activation == "tanh":
        return jnp.tanh(a)
    if activation == "square":
        return a * a
    return a


def activation_slope(a: jax.Array, activation: str) -> jax.Array:
    """phi1'(a), elementwise."""
    if activation == "tanh":
        return 1.0 - jnp.tanh(a) ** 2
    if activation == "square":
        return 2.0 * a
    return jnp.ones_like(a)


def unpack(omega: jax.Array, net: QNet) -> tuple[jax.Array, jax.Array]:
    """vec(omega) [N + pN] -> (omega1 [N], omega2 [p, N]) (columns of omega2 are stacked in vec)."""
    n, p = net.width, net.num_features
    return omega[:n], omega[n:].reshape(n, p).T


def pack(omega1: jax.Array, omega2: jax.Array) -> jax.Array:
    """(omega1 [N], omega2 [p, N]) -> vec(omega) [N + pN]."""
    return jnp.concatenate([omega1, omega2.T.reshape(-1)])


def init_weights(key: jax.Array, net: QNet, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """vec(omega) with omega2 ~ N(0, 1/p) and omega1 ~ N(0, 1/N) entrywise (LeCun scaling)."""
    k1, k2 = jax.random.split(key)
    omega1 = jax.random.normal(k1, (net.width,), dtype) / math.sqrt(net.width)
    omega2 = jax.random.normal(k2, (net.num_features, net.width), dtype) / math.sqrt(net.num_features)
    return pack(omega1, omega2)


def q_value(omega: jax.Array, z: jax.Array, net: QNet) -> jax.Array:
    """Q(z) = omega1^T phi1(omega2^T phi2(z)) for one z [z_dim]; a scalar."""
    omega1, omega2 = unpack(omega, net)
    return omega1 @ activate(omega2.T @ feature_map(z, net.features), net.activation)


def expected_q(omega: jax.Array, z_next: jax.Array, weights: jax.Array, net: QNet) -> jax.Array:
    """sum_k weights_k Q(z_next_k) over candidate next inputs z_next [K, z_dim] (a policy's expectation)."""
    return weights @ jax.vmap(lambda z: q_value(omega, z, net))(z_next)


def td_error(
    omega: jax.Array,
    z: jax.Array,
    reward: jax.Array,
    z_next: jax.Array,
    next_weights: jax.Array,
    discount: jax.Array,
    net: QNet,
) -> jax.Array:
    """e = Q(z) - r - discount * sum_k w_k Q(z+_k), discount = gamma (1 - terminated); a scalar."""
    return q_value(omega, z, net) - reward - discount * expected_q(omega, z_next, next_weights, net)


def td_error_and_data_vector(
    omega: jax.Array,
    target_omega: jax.Array,
    residual: jax.Array,
    z: jax.Array,
    reward: jax.Array,
    z_next: jax.Array,
    next_weights: jax.Array,
    discount: jax.Array,
    net: QNet,
) -> tuple[jax.Array, jax.Array]:
    """(e, d = grad_{vec omega} e) for one transition, by ``jax.grad``.

    With ``residual`` 1 the z+ term uses ``omega`` and is differentiated: e is :func:`td_error` and d its
    full gradient (the notes). With ``residual`` 0 it uses ``target_omega`` and is not differentiated (a
    target critic, semi-gradient TD). ``residual`` is a traced 0/1 so the choice can be swept.
    """

    def error(w: jax.Array) -> jax.Array:
        online = expected_q(w, z_next, next_weights, net)
        target = expected_q(jax.lax.stop_gradient(target_omega), z_next, next_weights, net)
        q_next = residual * online + (1.0 - residual) * target
        return q_value(w, z, net) - reward - discount * q_next

    e, d = jax.value_and_grad(error)(omega)
    return e, d


def closed_form_data_vector(
    omega: jax.Array,
    z: jax.Array,
    z_next: jax.Array,
    next_weights: jax.Array,
    discount: jax.Array,
    net: QNet,
) -> jax.Array:
    """The notes' d = (g; G omega1) [N + pN] of the residual TD error (no autodiff).

    g = phi1(a(z)) - discount sum_k w_k phi1(a(z+_k)) [N]; G [pN, N] is block-diagonal with block i
    phi1'(a_i(z)) phi2(z) - discount sum_k w_k phi1'(a_i(z+_k)) phi2(z+_k) [p].
    """
    omega1, omega2 = unpack(omega, net)
    phi_now = feature_map(z, net.features)
    phi_next = jax.vmap(lambda zn: feature_map(zn, net.features))(z_next)  # [K, p]
    a_now, a_next = omega2.T @ phi_now, phi_next @ omega2  # [N], [K, N]
    g = activate(a_now, net.activation) - discount * (next_weights @ activate(a_next, net.activation))
    slope_next = next_weights[:, None] * activation_slope(a_next, net.activation)  # [K, N]
    blocks = activation_slope(a_now, net.activation)[:, None] * phi_now - discount * (slope_next.T @ phi_next)
    n, p = net.width, net.num_features
    big_g = (jnp.eye(n)[:, None, :] * blocks[:, :, None]).reshape(n * p, n)  # column i: block i in rows ip..
    return jnp.concatenate([g, big_g @ omega1])


def _inverse_norm_factor(d: jax.Array, power: jax.Array) -> jax.Array:
    """(1 + d_j^T d_j)^(-power) [J] for d [J, W]; exp/log form so huge ||d|| underflows to 0, never NaN."""
    return jnp.exp(-power * jnp.log1p(jnp.sum(d * d, axis=-1)))


def normalized_direction(d: jax.Array, e: jax.Array, mask: jax.Array, power: jax.Array) -> jax.Array:
    """sum_j mask_j d_j e_j / (1 + d_j^T d_j)^power [W] over a window d [J, W], e [J], mask [J]."""
    return (mask * e * _inverse_norm_factor(d, power)) @ d


def normalization_constant(power: float) -> float:
    """c_p = sup_{t >= 0} t / (1 + t^2)^p: 1/2 for p = 1, 3 sqrt(3)/16 for p = 2; infinite for p <= 1/2."""
    if power <= 0.5:
        return math.inf
    t = 1.0 / math.sqrt(2.0 * power - 1.0)
    return t / (1.0 + t * t) ** power


def step_bound(e: jax.Array, mask: jax.Array, power: float) -> jax.Array:
    """c_p sum_j mask_j |e_j| >= || :func:`normalized_direction` || whatever the data vectors."""
    return normalization_constant(power) * jnp.sum(mask * jnp.abs(e))


def normalized_gram(d: jax.Array, mask: jax.Array, power: jax.Array) -> jax.Array:
    """Dbar^T Dbar = sum_j mask_j d_j d_j^T / (1 + d_j^T d_j)^power [W, W], the window's normalised Gram."""
    return (d * (mask * _inverse_norm_factor(d, power))[:, None]).T @ d


def excitation(d: jax.Array, mask: jax.Array, power: jax.Array) -> jax.Array:
    """lambda_min(Dbar^T Dbar), the window's persistence of excitation; exactly 0 when J < W (rank)."""
    num, width = d.shape
    if num < width:
        return jnp.zeros((), d.dtype)
    return jnp.maximum(jnp.linalg.eigvalsh(normalized_gram(d, mask, power))[0], 0.0)


def quadratic_form(omega: jax.Array, net: QNet) -> jax.Array:
    """M [(z_dim + 1), (z_dim + 1)] symmetric with Q(z) = y^T M y, y = [z, 1], for the quadratic critics.

    ``quadratic`` features with ``linear`` activation: Q = c^T phi2(z) with c = omega2 omega1 the
    monomials' coefficients; ``identity_bias`` with ``square``: M = omega2 diag(omega1) omega2^T.

    Raises:
        ValueError: any other combination (Q is not a quadratic form in z).
    """
    omega1, omega2 = unpack(omega, net)
    q = net.z_dim + 1
    if net.features == "quadratic" and net.activation == "linear":
        coef = omega2 @ omega1
        rows, cols = jnp.triu_indices(q)
        upper = jnp.zeros((q, q), coef.dtype).at[rows, cols].set(coef)
        return 0.5 * (upper + upper.T)
    if net.features == "identity_bias" and net.activation == "square":
        return (omega2 * omega1) @ omega2.T
    raise ValueError(f"Q is a quadratic form only for quadratic/linear or identity_bias/square, got "
                     f"{net.features}/{net.activation}")

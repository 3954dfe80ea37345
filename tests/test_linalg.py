"""Conjugate gradient, Hessian- and Fisher-vector products against dense oracles (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from trpojax.core.distributions import Categorical, DiagGaussian
from trpojax.core.linalg import (
    conjugate_gradient,
    fisher_vector_product,
    hessian_vector_product,
    make_fisher_vector_product,
    make_gauss_newton_fvp,
)


def random_spd(rng, n, cond=50.0):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = np.geomspace(1.0, cond, n)
    return (q * eig) @ q.T


@pytest.mark.parametrize("n", [3, 10, 25])
def test_cg_matches_dense_solve(x64, n):
    rng = np.random.default_rng(n)
    a, b = random_spd(rng, n), rng.normal(size=n)
    x, info = jax.jit(lambda b: conjugate_gradient(lambda v: a @ v, b, max_iters=3 * n, tol=1e-12))(b)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    assert int(info.num_iters) <= 3 * n
    assert float(info.residual_norm) <= 1e-10


def test_cg_on_pytrees(x64):
    rng = np.random.default_rng(0)
    a = random_spd(rng, 7)
    b = {"w": jnp.asarray(rng.normal(size=(2, 2))), "b": jnp.asarray(rng.normal(size=3))}
    flat = lambda t: jnp.concatenate([t["b"], t["w"].ravel()])  # noqa: E731
    unflat = lambda v: {"b": v[:3], "w": v[3:].reshape(2, 2)}  # noqa: E731
    x, _ = conjugate_gradient(lambda t: unflat(a @ flat(t)), b, max_iters=50, tol=1e-12)
    np.testing.assert_allclose(flat(x), np.linalg.solve(a, flat(b)), rtol=1e-8, atol=1e-10)


def test_cg_stops_early_at_tolerance(x64):
    rng = np.random.default_rng(1)
    a = np.diag([1.0, 1.0, 1.0, 5.0, 5.0, 5.0])  # two distinct eigenvalues: exact in 2 iterations
    b = rng.normal(size=6)
    x, info = conjugate_gradient(lambda v: a @ v, b, max_iters=50, tol=1e-9)
    assert int(info.num_iters) == 2
    np.testing.assert_allclose(x, b / np.diag(a), rtol=1e-9)
    _, info = conjugate_gradient(lambda v: random_spd(rng, 6) @ v, b, max_iters=3, tol=0.0)
    assert int(info.num_iters) == 3


@pytest.mark.parametrize(
    "op",
    [
        np.zeros((4, 4)),  # singular: p^T A p = 0 at once
        np.diag([1.0, 1.0, 0.0, 0.0]),  # singular, b partly outside the range
        np.diag([1.0, -2.0, 3.0, -4.0]),  # indefinite
        -np.eye(4),  # negative definite
        np.full((4, 4), np.nan),  # non-finite
    ],
)
def test_cg_finite_on_bad_operators(x64, op):
    b = jnp.array([1.0, 2.0, 3.0, 4.0])
    x, info = conjugate_gradient(lambda v: op @ v, b, max_iters=20, tol=1e-12)
    assert np.all(np.isfinite(x))
    assert np.isfinite(float(info.residual_norm))


def test_hvp_matches_jax_hessian(x64):
    rng = np.random.default_rng(2)
    m = rng.normal(size=(5, 5))

    def f(p):
        return jnp.sum(jnp.sin(m @ p["x"]) ** 2) + jnp.sum(p["x"] ** 4) * p["y"] ** 2

    params = {"x": jnp.asarray(rng.normal(size=5)), "y": jnp.asarray(1.3)}
    v = {"x": jnp.asarray(rng.normal(size=5)), "y": jnp.asarray(-0.7)}
    flat, unravel = ravel_pytree(params)
    dense = jax.hessian(lambda z: f(unravel(z)))(flat)
    got, _ = ravel_pytree(hessian_vector_product(f, params, v))
    np.testing.assert_allclose(got, dense @ ravel_pytree(v)[0], rtol=1e-10)


def _policy_setup(kind, rng, nonlinear=False):
    obs = jnp.asarray(rng.normal(size=(16, 3)))
    params = {"w": jnp.asarray(rng.normal(size=(3, 4))), "s": jnp.asarray(rng.normal(size=2) * 0.3)}
    if nonlinear:  # a hidden tanh layer: the network's own curvature is not zero
        params["h"] = jnp.asarray(rng.normal(size=(3, 3)))

    def dist(p, o):
        out = (jnp.tanh(o @ p["h"]) if "h" in p else o) @ p["w"]
        if kind == "categorical":
            return Categorical(logits=out)
        return DiagGaussian(mean=out[:, :2], log_std=p["s"])

    return obs, params, dist


def _explicit_fisher(kind, obs, params, dist):
    """F = mean_s J_s^T I(eta_s) J_s with I the Fisher information of the distribution's natural inputs."""
    flat, unravel = ravel_pytree(params)
    mats = []
    for i in range(obs.shape[0]):
        if kind == "categorical":
            logits_fn = lambda z: dist(unravel(z), obs[i : i + 1]).logits[0]  # noqa: B023, E731
            jac = jax.jacobian(logits_fn)(flat)
            p = jax.nn.softmax(logits_fn(flat))
            info = jnp.diag(p) - jnp.outer(p, p)
        else:
            def out_fn(z):
                d = dist(unravel(z), obs[i : i + 1])  # noqa: B023
                return jnp.concatenate([d.mean[0], d.log_std])

            jac = jax.jacobian(out_fn)(flat)
            log_std = params["s"]
            info = jnp.diag(jnp.concatenate([jnp.exp(-2 * log_std), 2.0 * jnp.ones(2)]))
        mats.append(jac.T @ info @ jac)
    return jnp.mean(jnp.stack(mats), axis=0)


@pytest.mark.parametrize("nonlinear", [False, True])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_fvp_matches_explicit_fisher(x64, kind, nonlinear):
    rng = np.random.default_rng(3)
    obs, params, dist = _policy_setup(kind, rng, nonlinear)
    old = jax.lax.stop_gradient(dist(params, obs))
    kl_fn = lambda p: jnp.mean(old.kl(dist(p, obs)))  # noqa: E731
    fisher = _explicit_fisher(kind, obs, params, dist)
    v = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    v_flat = ravel_pytree(v)[0]
    for damping in (0.0, 0.1):
        got = ravel_pytree(fisher_vector_product(kl_fn, params, v, damping))[0]
        np.testing.assert_allclose(got, fisher @ v_flat + damping * v_flat, rtol=1e-9, atol=1e-12)
        got2 = ravel_pytree(make_fisher_vector_product(kl_fn, params, damping)(v))[0]
        np.testing.assert_allclose(got2, got, rtol=1e-12, atol=1e-14)
        divergence = lambda d: jnp.mean(old.kl(d))  # noqa: E731
        gauss_newton = make_gauss_newton_fvp(lambda p: dist(p, obs), divergence, params, damping)
        got3 = ravel_pytree(gauss_newton(v))[0]
        np.testing.assert_allclose(got3, fisher @ v_flat + damping * v_flat, rtol=1e-9, atol=1e-12)


def test_gauss_newton_fvp_is_not_the_hessian_away_from_the_old_policy(x64):
    """J^T M J equals the KL Hessian only where the KL's gradient in z vanishes (at theta_old): evaluated at
    another theta with a curved network, the factored product must differ from the true Hessian."""
    rng = np.random.default_rng(5)
    obs, params, dist = _policy_setup("categorical", rng, nonlinear=True)
    old = jax.lax.stop_gradient(dist(params, obs))
    moved = jax.tree.map(lambda x: x + 0.5, params)
    kl_fn = lambda p: jnp.mean(old.kl(dist(p, obs)))  # noqa: E731
    v = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    hessian = ravel_pytree(hessian_vector_product(kl_fn, moved, v))[0]
    factored = ravel_pytree(
        make_gauss_newton_fvp(lambda p: dist(p, obs), lambda d: jnp.mean(old.kl(d)), moved)(v)
    )[0]
    assert np.linalg.norm(factored - hessian) > 1e-3 * np.linalg.norm(hessian)

"""Tests of trpojax.verify.lqr (statements 10-12): the normalised-TD critic's algebra on random networks, and
the notes' update on the exact LQR problem. Every checker holds on the right input and fails on a wrong one;
the critics' convergence to H_K and policy iteration's to K* are also checked directly."""

from types import SimpleNamespace

import jax
import numpy as np
import pytest

from trpojax import verify
from trpojax.core import lqr, ntd
from trpojax.verify import lqr as vlqr


@pytest.fixture(scope="module")
def ten():
    """Statement 10's inputs and quantities (float64 and, for 10c, float32)."""
    with jax.enable_x64(True):
        inputs = vlqr.random_inputs(np.random.default_rng(0))
        vectors, steps = jax.tree.map(np.asarray, vlqr.ntd_quantities(*inputs))
    return SimpleNamespace(vector_inputs=inputs[0], step_inputs=inputs[1], vectors=vectors, steps=steps)


@pytest.fixture(scope="module")
def runs():
    """The default LQR system, K = 0.5 K*, H_K, and the suite's four critic runs on them (host arrays)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        system = lqr.LQRSystem(*(np.asarray(x) for x in lqr.default_system()))
        optimal = np.asarray(vlqr.lqr_oracles(system, np.zeros((1, 2)), vlqr.LQR_GAMMA)[1])
        gain = vlqr.LQR_GAIN_SCALE * optimal
        H, _, stable = vlqr.lqr_oracles(system, gain, vlqr.LQR_GAMMA)
        assert stable
        linear_start = vlqr.initial_weights(rng, vlqr.QUADRATIC_NET)
        return SimpleNamespace(
            rng=rng, system=system, optimal=optimal, gain=gain, H=np.asarray(H), linear_start=linear_start,
            quadratic=vlqr.run_critic(rng, system, gain, vlqr.initial_weights(rng, vlqr.QUADRATIC_NET)),
            square=vlqr.run_critic(rng, system, gain, vlqr.initial_weights(rng, vlqr.SQUARE_NET), net=vlqr.SQUARE_NET),
            linear=vlqr.run_critic(rng, system, gain, linear_start, step_size=vlqr.DECREMENT_STEP_SIZE,
                                   output_trained=False),
            quiet=vlqr.run_critic(rng, system, gain, linear_start, sigma=0.0, output_trained=False),
        )


def _linear_errors(run, H):
    """w~_k = c_k - c* of the exact linear critic (omega1 held at 1), [T + 1, p]."""
    return run.weights[:, vlqr.QUADRATIC_NET.width:] - vlqr.quadratic_coefficients(vlqr.lqr_target(H))


def test_closed_form_data_vector_matches_autodiff_and_fails_when_garbled(ten):
    assert {(net.features, net.activation) for net, _ in ten.vectors} == {
        (f, a) for f in ntd.FEATURES for a in ntd.ACTIVATIONS
    }
    for (net, _), q in ten.vectors.items():
        for autodiff, closed in zip(q.autodiff, q.closed_form, strict=True):
            assert verify.check_data_vector(autodiff, closed).holds
            flipped = closed.copy()
            flipped[net.width:] *= -1  # -G omega1
            assert not verify.check_data_vector(autodiff, flipped).holds
            rows = closed.copy()  # vec(omega2) stacking rows instead of columns
            rows[net.width:] = closed[net.width:].reshape(net.width, -1).T.reshape(-1)
            assert not verify.check_data_vector(autodiff, rows).holds


def test_td_linearisation_is_second_order_and_fails_with_a_wrong_slope(ten):
    checked = 0
    for (_, num_next), q in ten.vectors.items():
        if num_next != vlqr.LINEARISATION_NEXT_ACTIONS:
            assert q.errors is None
            continue
        for errors, error, slope, d in zip(q.errors, q.error, q.slope, q.autodiff, strict=True):
            checked += 1
            assert verify.check_td_linearization(q.step_sizes, errors, error, slope).holds
            assert not verify.check_td_linearization(q.step_sizes, errors, error, -slope).holds
            off = slope + 1e-2 * np.linalg.norm(d)  # d^T v off by 1% of ||d|| (v is a unit vector)
            assert not verify.check_td_linearization(q.step_sizes, errors, error, off).holds
    assert checked == len(vlqr.NTD_NETS) * vlqr.NTD_DRAWS


def test_homogeneous_critics_have_a_flat_direction_so_the_full_data_vector_never_excites(ten):
    """Q is unchanged by (omega1_i, omega2_i) -> (s omega1_i, omega2_i / s) (linear activation) or
    (omega1_i / s^2, s omega2_i) (square), so d is orthogonal to that direction for every transition: the
    Gram of full data vectors is singular, which is why statement 11 measures the excitation of the omega2
    block (with omega1 held, the exact linear critic)."""
    for key, q in ten.vectors.items():
        net = key[0]
        if net.activation == "tanh":
            continue
        power = 1.0 if net.activation == "linear" else 2.0
        for omega, d in zip(ten.vector_inputs[key][0], q.autodiff, strict=True):
            omega1, omega2 = ntd.unpack(omega, net)
            d1, d2 = ntd.unpack(d, net)
            flat = power * omega1 * d1 - np.sum(omega2 * d2, axis=0)  # one per hidden unit
            np.testing.assert_allclose(flat, 0.0, atol=1e-12 * np.linalg.norm(d))


def test_normalized_step_stays_below_the_bound_at_every_scale_and_fails_unnormalised(ten):
    for (dtype, power), directions in ten.steps.items():
        d, e, mask = ten.step_inputs[(dtype, power)]
        e = e.astype(dtype)
        assert directions.dtype == np.dtype(dtype) and np.all(np.isfinite(directions))
        ratios, garbled = [], 0
        for i, (direction, d_j, e_j, m_j) in enumerate(zip(directions, d, e, mask, strict=True)):
            check = verify.check_normalized_step(direction, e_j, m_j, power)
            assert check.holds
            ratios.append(check.value / check.bound)
            unnormalised = (m_j * e_j) @ d_j
            half = ((m_j * e_j) / (1.0 + np.sum(d_j * d_j, -1)) ** (power / 2)) @ d_j  # (1 + |d|^2)^(p/2)
            aligned, length = i >= len(vlqr.STEP_SCALES), np.linalg.norm(d_j[0])
            if aligned and length > 10.0:
                assert not verify.check_normalized_step(unnormalised, e_j, m_j, power).holds
            if aligned and 0.8 < length < 1.25:  # t / (1 + t^2)^(p/2) at t = 1 is above c_p
                garbled += 1
                assert not verify.check_normalized_step(half, e_j, m_j, power).holds
        assert max(ratios) > 0.7 and garbled == 1  # the aligned windows come close to c_p sum |e|
        assert not verify.check_normalized_step(np.full_like(directions[0], np.nan), e[0], mask[0], power).holds
    for power in (1.0, 2.0):  # float32 and float64 agree
        np.testing.assert_allclose(ten.steps[("float32", power)], ten.steps[("float64", power)], rtol=1e-4,
                                   atol=1e-6 * np.abs(ten.steps[("float64", power)]).max())


def test_both_quadratic_critics_converge_to_the_lqr_q_matrix(runs, x64):
    for run, net in ((runs.quadratic, vlqr.QUADRATIC_NET), (runs.square, vlqr.SQUARE_NET)):
        assert verify.check_critic_matrix(run.matrix, runs.H).holds
        np.testing.assert_allclose(run.matrix[:-1, :-1], -runs.H, rtol=1e-8)
        np.testing.assert_allclose(run.matrix[-1], 0.0, atol=1e-8)  # no constant, no linear terms
        np.testing.assert_allclose(ntd.quadratic_form(run.weights[-1], net), run.matrix, rtol=1e-12)
    assert not verify.check_critic_matrix(runs.quadratic.matrix, -runs.H).holds
    with jax.enable_x64(True):
        other = np.asarray(vlqr.lqr_oracles(runs.system, runs.optimal, vlqr.LQR_GAMMA)[0])  # H_{K*}
    assert not verify.check_critic_matrix(runs.quadratic.matrix, other).holds


def test_lyapunov_decrement_holds_at_every_step_and_fails_on_wrong_inputs(runs, x64):
    errors, grams, lam = _linear_errors(runs.linear, runs.H), runs.linear.gram, vlqr.DECREMENT_STEP_SIZE
    checks = [verify.check_lyapunov_decrement(errors[k], errors[k + 1], g, lam) for k, g in enumerate(grams)]
    assert all(c.holds for c in checks)
    assert min(c.value / c.bound for c in checks) < 1.5  # nearly tight somewhere (both sides are negative)
    assert errors[-1] @ errors[-1] > 1e-3  # far above round-off at every step: the bound is not vacuous
    assert lam * np.linalg.eigvalsh(grams)[:, -1].max() < 0.5
    # an ascent step (a flipped sign of d): w~ + lambda G w~
    assert not any(
        verify.check_lyapunov_decrement(errors[k], 2 * errors[k] - errors[k + 1], g, lam).holds
        for k, g in enumerate(grams[:10])
    )
    # a Gram twice too large claims twice the excitation
    assert not all(verify.check_lyapunov_decrement(errors[k], errors[k + 1], 2 * g, lam).holds
                   for k, g in enumerate(grams))
    # lambda lambda_max > 2: the step overshoots and the decrement exceeds the bound
    big = 3.0 / np.linalg.eigvalsh(grams)[:, -1].max()
    run = vlqr.run_critic(runs.rng, runs.system, runs.gain, runs.linear_start, step_size=big, output_trained=False)
    errors = _linear_errors(run, runs.H)
    wrong = [verify.check_lyapunov_decrement(errors[k], errors[k + 1], g, big) for k, g in enumerate(run.gram[:50])]
    assert any(c.value > c.bound + 1e-6 for c in wrong) and not all(c.holds for c in wrong)


def test_excitation_vanishes_without_noise_and_persists_with_it(runs):
    assert verify.check_excitation_vanishes(runs.quiet.excitation, runs.quiet.gram).holds
    assert not verify.check_excitation_vanishes(runs.linear.excitation, runs.linear.gram).holds
    assert verify.check_excitation_persists(runs.linear.excitation, runs.linear.gram).holds
    assert not verify.check_excitation_persists(runs.quiet.excitation, runs.quiet.gram).holds
    for run in (runs.linear, runs.quiet):  # ntd.excitation is lambda_min of the normalised Gram
        eigenvalues = np.linalg.eigvalsh(run.gram)
        np.testing.assert_allclose(run.excitation, np.maximum(eigenvalues[:, 0], 0.0),
                                   atol=1e-12 * eigenvalues[:, -1].max())


def test_critics_without_noise_miss_the_q_matrix(runs, x64):
    assert verify.check_critic_misses(runs.quiet.matrix, runs.H).holds
    assert not verify.check_critic_misses(runs.quadratic.matrix, runs.H).holds
    # the full quadratic/linear critic too: what the data never shows (u + K x) is never learned
    full = vlqr.run_critic(runs.rng, runs.system, runs.gain, runs.linear_start, sigma=0.0)
    assert verify.check_critic_misses(full.matrix, runs.H).holds
    assert not verify.check_critic_matrix(full.matrix, runs.H).holds


def test_policy_iteration_with_the_learned_critic_reaches_the_riccati_gain(runs, x64):
    gains = vlqr.learned_policy_iteration(runs.rng, runs.system, runs.quadratic, runs.gain)
    assert len(gains) == vlqr.PI_ITERS + 1
    assert verify.check_gain(gains[-1], runs.optimal).holds
    exact = np.asarray(lqr.policy_iteration(*runs.system, runs.gain, vlqr.LQR_GAMMA, vlqr.PI_ITERS))
    np.testing.assert_allclose(np.stack(gains), exact, rtol=1e-8, atol=1e-10)  # Newton's iterates, exactly
    assert not verify.check_gain(gains[-3], runs.optimal).holds  # two improvements short
    assert not verify.check_gain(gains[-1] * (1 + 1e-5), runs.optimal).holds

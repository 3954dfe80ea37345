"""Tests of trpojax.verify: the suite holds, and every checker fails on a wrong input of its kind."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax import verify
from trpojax.core import linalg, tabular

_estimate = jax.jit(verify.estimator_quantities, static_argnums=(4, 5))


@pytest.fixture
def mdp(x64):
    return tabular.random_mdp(jax.random.PRNGKey(0), num_states=5, num_actions=3, gamma=0.9)


@pytest.fixture
def theta(mdp):
    return jax.random.normal(jax.random.PRNGKey(1), (5, 3))


@pytest.fixture
def policy(mdp, theta):
    return jax.tree.map(np.asarray, jax.jit(verify.policy_quantities)(mdp, theta))


@pytest.fixture
def pair(mdp, theta):
    theta_new = theta + 0.3 * jax.random.normal(jax.random.PRNGKey(2), theta.shape)
    return jax.tree.map(np.asarray, jax.jit(verify.pair_quantities)(mdp, theta, theta_new))


def test_suite_holds_and_cli_writes_the_same_rows(tmp_path, capsys, monkeypatch):
    out = tmp_path / "rows.json"
    # The suite runs once, inside the CLI (in this process; the module entry point is checked below): the rows
    # it returned to the CLI are recorded and compared with what the CLI printed and wrote.
    returned = []
    run_suite = verify.suite.run_suite

    def recording_run_suite(num_mdps, seed):
        returned.append(run_suite(num_mdps, seed))
        return returned[-1]

    monkeypatch.setattr(verify.suite, "run_suite", recording_run_suite)
    code = verify.main(["--mdps", "2", "--seed", "3", "--json", str(out)])
    stdout = capsys.readouterr().out
    (rows,) = returned

    assert [r.statement for r in rows] == [title for _, title, _ in verify.STATEMENTS]
    assert all(r.holds for r in rows), verify.format_table(rows)
    assert {r.statement: r.instances for r in rows}["1 policy gradient theorem"] == 4
    assert code == 0
    assert "policy gradient theorem" in stdout
    written = json.loads(out.read_text())
    assert written["mdps"] == 2 and written["seed"] == 3
    for row, saved in zip(rows, written["rows"], strict=True):
        assert saved["statement"] == row.statement and saved["holds"] is True
        np.testing.assert_allclose(saved["worst"], row.worst, rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize(
    "argv",
    [
        ["--mdps", "0", "--json", "{tmp}/rows.json"],
        ["--mdps", "abc", "--json", "{tmp}/rows.json"],
        ["--seed", "-1", "--json", "{tmp}/rows.json"],
        ["--unknown", "--json", "{tmp}/rows.json"],
        ["--json", "{tmp}/missing/rows.json"],
        ["--json", "{tmp}"],
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        verify.main([a.format(tmp=tmp_path) for a in argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_exits_1_naming_the_first_failing_statement(monkeypatch, tmp_path, capsys):
    rows = [
        verify.Row("1 policy gradient theorem", "identity", 2, 1e-15, True, None, None),
        verify.Row("6 TRPO lower bound", "bound", 2, 0.5, False, -0.1, 1.2),
        verify.Row("7 monotonic improvement", "bound", 1, 0.1, False, -0.1, None),
    ]
    monkeypatch.setattr(verify.suite, "run_suite", lambda num_mdps, seed: rows)
    assert verify.main(["--mdps", "2", "--json", str(tmp_path / "rows.json")]) == 1
    err = capsys.readouterr().err
    assert "6 TRPO lower bound" in err and "7 monotonic" not in err
    saved = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [row["holds"] for row in saved] == [True, False, False]


def test_run_suite_rejects_no_mdps():
    with pytest.raises(ValueError, match="num_mdps"):
        verify.run_suite(num_mdps=0)


def test_policy_gradient_theorem_fails_without_the_visitation_normalisation(mdp, policy):
    gamma = float(mdp.gamma)
    args = (policy.pi, policy.score, policy.q, gamma)
    assert verify.check_policy_gradient(policy.grad_eta, policy.visitation, *args).holds
    unnormalised = policy.visitation / (1.0 - gamma)  # rho_pi, missing its (1 - gamma) factor
    assert not verify.check_policy_gradient(policy.grad_eta, unnormalised, *args).holds
    wrong_gradient = policy.grad_eta + 1e-3 * np.eye(policy.grad_eta.size)[0]
    assert not verify.check_policy_gradient(wrong_gradient, policy.visitation, *args).holds


def test_compatible_critic_must_be_fitted_with_the_policy_weighting(mdp, policy):
    gamma = float(mdp.gamma)
    args = (policy.grad_eta, policy.visitation, policy.pi, policy.score, gamma)
    critic = verify.fit_compatible_critic(policy.score, policy.q, policy.visitation[:, None] * policy.pi)
    assert verify.check_compatible_approximation(*args, critic).holds
    uniform_actions = policy.visitation[:, None] * np.ones_like(policy.pi)  # d^pi(s), not d^pi(s) pi(a|s)
    wrong_critic = verify.fit_compatible_critic(policy.score, policy.q, uniform_actions)
    check = verify.check_compatible_approximation(*args, wrong_critic)
    assert not check.holds and check.value > 1e-3


def test_performance_difference_needs_the_unnormalised_visitation_and_the_full_trajectory(mdp, pair):
    gamma = float(mdp.gamma)

    def check(visitation, dists):
        return verify.check_performance_difference(
            pair.eta, pair.eta_new, pair.pi_new, pair.adv, visitation, dists, gamma
        )

    assert check(pair.visitation_new, pair.state_dists_new).holds
    assert not check((1.0 - gamma) * pair.visitation_new, pair.state_dists_new).holds
    assert not check(pair.visitation_new, pair.state_dists_new[:20]).holds  # trajectory cut at t = 20


def test_surrogate_gradient_fails_with_the_normalised_visitation(mdp, theta, policy):
    assert verify.check_surrogate_first_order(
        policy.eta, policy.surrogate_at_old, policy.grad_eta, policy.grad_surrogate
    ).holds
    pi = tabular.softmax_policy(theta)
    adv, d = tabular.advantages(mdp, pi), tabular.discounted_visitation(mdp, pi)
    eta = tabular.expected_return(mdp, pi)
    wrong = jax.grad(lambda th: eta + d @ jnp.sum(tabular.softmax_policy(th) * adv, -1))(theta)
    assert not verify.check_surrogate_first_order(
        policy.eta, policy.surrogate_at_old, policy.grad_eta, wrong.reshape(-1)
    ).holds


def test_state_distributions_match_tabular(mdp, theta):
    pi = tabular.softmax_policy(theta)
    dists = verify.state_distributions(mdp, pi, 8)
    for t in (0, 1, 7):
        np.testing.assert_allclose(dists[t], tabular.state_distribution(mdp, pi, t), rtol=1e-12)


def _coupling_mdp(gamma):
    """Start state 0 leads by action 0 to state 1 and by action 1 to state 2; both then enter an
    absorbing zero-reward state 3. Rewards r(s, .) = (1, 0) in states 0, 1, 2. Under the uniform policy
    A(s, .) = (1/2, -1/2) in states 0, 1, 2, so eps = 1/2."""
    P = np.zeros((4, 2, 4))
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    P[1:, :, 3] = 1.0
    r = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    return tabular.MDP(
        P=jnp.asarray(P), r=jnp.asarray(r), rho=jnp.array([1.0, 0.0, 0.0, 0.0]), gamma=jnp.asarray(gamma)
    )


@pytest.fixture
def coupled(x64):
    """pi uniform; pi' moves alpha towards state 2 and, there, towards the bad action; in state 1
    towards the good one. Then |Abar| = 2 alpha eps (Lemma 2.3 tight) and at t = 1 the state shift
    equals 4 alpha (1 - (1 - alpha)) eps (Lemma 2.4 tight); eta(pi') - L_pi(pi') = -2 gamma alpha^2."""
    gamma, alpha = 0.1, 0.1
    pi = np.full((4, 2), 0.5)
    pi_new = np.array(
        [[0.5 - alpha, 0.5 + alpha], [0.5 + alpha, 0.5 - alpha], [0.5 - alpha, 0.5 + alpha], [0.5, 0.5]]
    )
    mdp = _coupling_mdp(gamma)
    pair_quantities = jax.jit(verify.pair_quantities)
    q = pair_quantities(mdp, jnp.log(pi), jnp.log(pi_new))
    same = pair_quantities(mdp, jnp.log(pi), jnp.log(pi))
    return gamma, alpha, jax.tree.map(np.asarray, q), jax.tree.map(np.asarray, same)


def test_lemma_2_3_is_tight_on_the_coupling_mdp(coupled):
    _, alpha, q, _ = coupled
    np.testing.assert_allclose(np.max(np.abs(q.adv)), 0.5, rtol=1e-12)
    check = verify.check_advantage_bound(q.pi_new, q.adv, q.alpha)
    np.testing.assert_allclose([check.value, check.bound], [alpha, alpha], rtol=1e-12)
    assert check.holds
    assert not verify.check_advantage_bound(q.pi_new, q.adv, q.alpha, margin=1e-6).holds


def test_lemma_2_4_is_tight_at_t_1_on_the_coupling_mdp(coupled):
    _, alpha, q, _ = coupled
    dists_new = q.state_dists_new[: verify.SHIFT_STEPS + 1]
    check = verify.check_state_shift_bound(q.state_dists, dists_new, q.pi_new, q.adv, q.alpha)
    np.testing.assert_allclose([check.value, check.bound], [2 * alpha**2, 2 * alpha**2], rtol=1e-12)
    assert check.holds
    assert not verify.check_state_shift_bound(
        q.state_dists, dists_new, q.pi_new, q.adv, q.alpha, margin=1e-6
    ).holds
    # alpha taken as the mean instead of the max total variation over states is too small a radius
    mean_tv = np.mean(0.5 * np.sum(np.abs(q.pi_new - 0.5), axis=-1))
    assert not verify.check_state_shift_bound(q.state_dists, dists_new, q.pi_new, q.adv, mean_tv).holds


def test_lemma_2_5_and_trpo_bound_fail_with_a_margin_they_do_not_have(coupled):
    gamma, alpha, q, same = coupled
    eps = 0.5
    gap = verify.check_surrogate_gap(q.eta_new, q.surrogate_new, q.alpha, eps, gamma)
    np.testing.assert_allclose(gap.value, 2 * gamma * alpha**2, rtol=1e-10)
    np.testing.assert_allclose(gap.value / gap.bound, (1 - gamma) ** 2, rtol=1e-10)  # 0.81
    assert verify.check_surrogate_gap(q.eta_new, q.surrogate_new, q.alpha, eps, gamma, 0.15 * gap.bound).holds
    assert not verify.check_surrogate_gap(
        q.eta_new, q.surrogate_new, q.alpha, eps, gamma, 0.25 * gap.bound
    ).holds

    trpo = verify.check_trpo_lower_bound(q.eta_new, q.surrogate_new, q.kl, eps, gamma)
    assert trpo.holds and 0.35 < trpo.value / trpo.bound < 0.45  # about (1 - gamma)^2 / 2
    assert not verify.check_trpo_lower_bound(
        q.eta_new, q.surrogate_new, q.kl, eps, gamma, 0.7 * trpo.bound
    ).holds
    # at pi' = pi both sides are 0: tight, so any margin fails
    assert verify.check_trpo_lower_bound(same.eta_new, same.surrogate_new, same.kl, eps, gamma).holds
    assert not verify.check_trpo_lower_bound(
        same.eta_new, same.surrogate_new, same.kl, eps, gamma, 1e-6
    ).holds


def test_monotonic_improvement_holds_for_the_penalised_iteration_and_fails_for_descent(mdp, theta):
    etas = jax.jit(verify.improvement_path, static_argnums=(2, 3, 4))(mdp, theta, 3, 100, 0.01)
    check = verify.check_monotonic_improvement(etas)
    assert check.holds and check.value < 0.0  # every iteration strictly improved
    objective = lambda th: tabular.expected_return(mdp, tabular.softmax_policy(th))  # noqa: E731
    descent = [theta]
    for _ in range(3):
        descent.append(descent[-1] - 0.5 * jax.grad(objective)(descent[-1]))
    assert not verify.check_monotonic_improvement(np.array([objective(th) for th in descent])).holds


def test_trust_region_checks_fail_on_wrong_steps(mdp, theta):
    delta, damping = 0.01, 1e-3
    tr = jax.tree.map(
        np.asarray, jax.jit(verify.trust_region_quantities, static_argnums=(2, 3))(mdp, theta, damping, 11)
    )
    H = tr.fisher + damping * np.eye(tr.g.size)
    step = verify.trust_region_step(tr.g, H, delta)
    directions = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (128, tr.g.size)))
    assert verify.check_trust_region_kkt(tr.g, H, delta, step).holds
    assert verify.check_trust_region_optimality(tr.g, H, delta, step, directions).holds

    natural = np.linalg.solve(H, tr.g)
    plain = tr.g * np.sqrt(2 * delta / (tr.g @ H @ tr.g))  # the vanilla gradient scaled to the boundary
    unsquared = (2 * delta / (tr.g @ natural)) * natural  # sqrt forgotten: constraint not active
    assert not verify.check_trust_region_kkt(tr.g, H, delta, plain).holds
    assert not verify.check_trust_region_kkt(tr.g, H, delta, unsquared).holds
    assert not verify.check_trust_region_kkt(tr.g, H, delta, -step).holds
    assert not verify.check_trust_region_optimality(tr.g, H, delta, -step, directions).holds

    assert verify.check_conjugate_gradient(H, tr.g, tr.cg_solution).holds
    two_iterations, _ = linalg.conjugate_gradient(lambda v: H @ v, jnp.asarray(tr.g), max_iters=2)
    assert not verify.check_conjugate_gradient(H, tr.g, two_iterations).holds

    assert verify.check_kl_quadratic(tr.step_norms, tr.kl_values, tr.quadratic_values).holds
    assert not verify.check_kl_quadratic(tr.step_norms, tr.kl_values, 2 * tr.quadratic_values).holds
    damped_model = tr.quadratic_values + 0.5 * damping * tr.step_norms**2  # (F + damping I) as the model
    assert not verify.check_kl_quadratic(tr.step_norms, tr.kl_values, damped_model).holds


def test_tabular_score_norm_is_below_sqrt_2_and_approaches_it(x64):
    theta = jnp.concatenate(
        [jax.random.normal(jax.random.PRNGKey(4), (4, 3)), jnp.array([[-30.0, 30.0, 0.0]])]
    )
    norms = np.linalg.norm(np.asarray(verify.tabular_score(theta)), axis=-1)  # [S, A]
    assert norms.max() < verify.TABULAR_SCORE_BOUND
    np.testing.assert_allclose(norms[-1, 0], np.sqrt(2.0), rtol=1e-12)


def test_estimator_checks_fail_against_the_infinite_horizon_oracle(mdp, theta):
    horizon = 5
    v = jax.random.normal(jax.random.PRNGKey(5), theta.shape)
    e = jax.tree.map(np.asarray, _estimate(jax.random.PRNGKey(6), mdp, theta, v, horizon, 30000))
    assert verify.check_monte_carlo_mean(e.gradients, e.exact_gradient).holds
    assert verify.check_monte_carlo_mean(e.hessian_products, e.exact_hessian_product).holds
    assert verify.check_gradient_variance(
        e.gradients, e.exact_gradient, np.max(np.asarray(mdp.r)), verify.TABULAR_SCORE_BOUND, 0.9
    ).holds
    # grad J and hess J v of the infinite-horizon objective are not what the H-step estimators estimate
    objective = lambda th: tabular.expected_return(mdp, tabular.softmax_policy(th))  # noqa: E731
    infinite_gradient = jax.grad(objective)(theta).reshape(-1)
    infinite_hessian_v = linalg.hessian_vector_product(objective, theta, v).reshape(-1)
    assert not verify.check_monte_carlo_mean(e.gradients, infinite_gradient).holds
    assert not verify.check_monte_carlo_mean(e.hessian_products, infinite_hessian_v).holds


def test_gradient_variance_bound_fails_with_a_margin_it_does_not_have(x64):
    """Five interchangeable states (uniform transitions), three actions, reward 1 everywhere and the uniform
    policy: grad J_H = 0 and E||g||^2 = (1 - 1/A) sum_t (sum_{t<=h<H} gamma^h)^2, 0.30 of the bound
    r_max^2 M_g^2 / (1 - gamma)^3 at gamma = 0.1 (same shapes and horizon as the test above, so the
    compiled estimator is reused)."""
    gamma, shape = 0.1, (5, 3)
    mdp = tabular.MDP(
        P=jnp.full(shape + (5,), 0.2),
        r=jnp.ones(shape),
        rho=jnp.full(5, 0.2),
        gamma=jnp.asarray(gamma, jnp.float64),
    )
    theta = jnp.zeros(shape)
    e = jax.tree.map(np.asarray, _estimate(jax.random.PRNGKey(7), mdp, theta, theta, 5, 30000))
    np.testing.assert_allclose(e.exact_gradient, 0.0, atol=1e-14)
    returns_to_go = np.array([sum(gamma**h for h in range(t, 5)) for t in range(5)])
    expected = (1 - 1 / 3) * np.sum(returns_to_go**2)
    np.testing.assert_allclose(np.mean(np.sum(e.gradients**2, axis=-1)), expected, rtol=0.02)
    args = (e.gradients, e.exact_gradient, 1.0, verify.TABULAR_SCORE_BOUND, gamma)
    check = verify.check_gradient_variance(*args)
    assert check.holds and 0.29 < check.value / check.bound < 0.33
    assert verify.check_gradient_variance(*args, margin=0.6 * check.bound).holds
    assert not verify.check_gradient_variance(*args, margin=0.75 * check.bound).holds


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "trpojax.verify", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--mdps" in proc.stdout, proc.stderr

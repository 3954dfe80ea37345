"""Exact finite-MDP toolkit: values, visitation, surrogates and finite-horizon returns by linear algebra.

Everything is written in ``jax.numpy`` with linear solves and dynamic programming (no sampling except in
``sample_trajectories``), so it runs in float64 under ``jax.enable_x64(True)`` and is differentiable by
autodiff: with ``J(theta) = finite_horizon_return(mdp, softmax_policy(theta), H)``, ``jax.grad(J)`` is the
exact gradient of the finite-horizon objective and ``jax.jvp(jax.grad(J), ...)`` its exact Hessian-vector
product, the oracles the sampled estimators g(tau, theta) and B(tau, theta) v are tested against.

Shapes: S states, A actions. A policy ``pi`` is a row-stochastic ``[S, A]`` array. Notation follows
Sutton et al. (2000) and Kakade & Langford (2002) for values and visitation, Schulman et al. (2015, TRPO)
for the surrogate and the divergence maxima, and Fatkhullin et al. (2023) for the finite-horizon objective
J_H(theta) = E[sum_{t<H} gamma^t r(s_t, a_t)].
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class MDP(NamedTuple):
    """A finite discounted MDP (S, A, P, r, rho, gamma).

    Attributes:
        P: [S, A, S] transition probabilities P(s' | s, a); each P[s, a] sums to one.
        r: [S, A] expected reward r(s, a) of taking a in s.
        rho: [S] initial-state distribution.
        gamma: [] discount factor in [0, 1).
    """

    P: jax.Array  # [S, A, S]
    r: jax.Array  # [S, A]
    rho: jax.Array  # [S]
    gamma: jax.Array  # []


def _check_mdp(mdp: MDP) -> None:
    chex.assert_rank([mdp.P, mdp.r, mdp.rho, mdp.gamma], [3, 2, 1, 0])
    num_states, num_actions = mdp.r.shape
    chex.assert_shape(mdp.P, (num_states, num_actions, num_states))
    chex.assert_shape(mdp.rho, (num_states,))


def _check_policy(mdp: MDP, pi: jax.Array) -> None:
    _check_mdp(mdp)
    chex.assert_shape(pi, mdp.r.shape)


def random_mdp(key: jax.Array, num_states: int, num_actions: int, gamma: float = 0.9) -> MDP:
    """Sample a random finite MDP.

    Each next-state distribution P[s, a] and the initial distribution rho are uniform on the probability
    simplex (Dirichlet(1, ..., 1), drawn as normalised Exponential(1) variables, which compiles much
    faster than a Gamma sampler); rewards are Uniform[0, 1], so r_max = 1.

    Args:
        key: PRNG key.
        num_states: S.
        num_actions: A.
        gamma: discount factor.

    Returns:
        An ``MDP`` with P [S, A, S], r [S, A], rho [S] in the default float dtype.
    """
    key_p, key_r, key_rho = jax.random.split(key, 3)
    dtype = jnp.zeros(()).dtype
    weights = jax.random.exponential(key_p, (num_states, num_actions, num_states), dtype)
    initial = jax.random.exponential(key_rho, (num_states,), dtype)
    return MDP(
        P=weights / jnp.sum(weights, axis=-1, keepdims=True),
        r=jax.random.uniform(key_r, (num_states, num_actions), dtype),
        rho=initial / jnp.sum(initial),
        gamma=jnp.asarray(gamma, dtype),
    )


@functools.partial(jax.jit, static_argnames=("map_name", "is_slippery"))
def frozen_lake_mdp(gamma: float = 0.95, map_name: str = "4x4", is_slippery: bool = True) -> MDP:
    """The exact MDP of gymnax's ``FrozenLake-misc`` environment.

    The map, the moves and the rewards come from gymnax itself: every (state, executed move) pair is
    stepped once through a non-slippery ``FrozenLake`` with the same map, and a slippery env executes the
    intended move with probability ``success_rate`` and each perpendicular move ((a -/+ 1) mod 4) with
    probability (1 - success_rate) / 2, as in its ``_transition_action``. Holes and the goal, where the
    gymnax episode terminates, become absorbing zero-reward states; the reward 1 for entering the goal is
    the expected reward r(s, a) = sum_{s'} P(s' | s, a) R(s'). Episodes start on the 'S' tile.

    Args:
        gamma: discount factor.
        map_name: "4x4" or "8x8".
        is_slippery: whether moves slip as in Gymnasium.

    Jitted with ``map_name`` and ``is_slippery`` static.

    Returns:
        An ``MDP`` with S = rows * cols states (row-major positions, the env's observations) and A = 4
        actions (left, down, right, up).
    """
    from gymnax.environments.misc import frozen_lake  # here, not at import: gymnax.environments.misc is slow

    env = frozen_lake.FrozenLake(map_name=map_name, is_slippery=False)
    params = env.default_params
    num_states, num_actions = env.n_states, env.num_actions
    dtype = jnp.zeros(()).dtype

    def step(position, move):
        state = frozen_lake.EnvState(position=position, time=0)
        _, next_state, reward, _, _ = env.step_env(jax.random.PRNGKey(0), state, move, params)
        return next_state.position, reward

    positions = jnp.arange(num_states)
    moves = jnp.arange(num_actions)
    next_position, reward = jax.vmap(jax.vmap(step, (None, 0)), (0, None))(positions, moves)  # [S, A]
    landing = jax.nn.one_hot(next_position, num_states, dtype=dtype)  # [S, move, S]

    if is_slippery:
        success_rate = frozen_lake.FrozenLake(map_name=map_name).success_rate
        slip = (1.0 - success_rate) / 2.0
        intended = jnp.eye(num_actions, dtype=dtype)
        move_probs = (
            success_rate * intended
            + slip * jnp.roll(intended, -1, axis=1)
            + slip * jnp.roll(intended, 1, axis=1)
        )  # [action, move]
    else:
        move_probs = jnp.eye(num_actions, dtype=dtype)

    tiles = env.desc.reshape(-1)
    absorbing = jnp.logical_or(tiles == frozen_lake.HOLE, tiles == frozen_lake.GOAL)  # [S]
    P = jnp.einsum("am,smt->sat", move_probs, landing)
    r = jnp.einsum("am,sm->sa", move_probs, reward.astype(dtype))
    stay = jnp.broadcast_to(jnp.eye(num_states, dtype=dtype)[:, None, :], P.shape)
    P = jnp.where(absorbing[:, None, None], stay, P)
    r = jnp.where(absorbing[:, None], 0.0, r)
    rho = (tiles == frozen_lake.START).astype(dtype)
    return MDP(P=P, r=r, rho=rho, gamma=jnp.asarray(gamma, dtype))


def softmax_policy(theta: jax.Array) -> jax.Array:
    """Tabular softmax policy pi(a|s) = exp(theta[s, a]) / sum_b exp(theta[s, b]); [S, A] -> [S, A]."""
    chex.assert_rank(theta, 2)
    return jax.nn.softmax(theta, axis=-1)


def policy_transition(mdp: MDP, pi: jax.Array) -> jax.Array:
    """State-to-state kernel P_pi(s' | s) = sum_a pi(a|s) P(s' | s, a); returns [S, S]."""
    _check_policy(mdp, pi)
    return jnp.einsum("sa,sat->st", pi, mdp.P)


def policy_reward(mdp: MDP, pi: jax.Array) -> jax.Array:
    """Expected one-step reward r_pi(s) = sum_a pi(a|s) r(s, a); returns [S]."""
    _check_policy(mdp, pi)
    return jnp.sum(pi * mdp.r, axis=-1)


def state_values(mdp: MDP, pi: jax.Array) -> jax.Array:
    """V_pi = (I - gamma P_pi)^{-1} r_pi, the infinite-horizon discounted value; returns [S]."""
    P_pi = policy_transition(mdp, pi)
    eye = jnp.eye(P_pi.shape[0], dtype=P_pi.dtype)
    return jnp.linalg.solve(eye - mdp.gamma * P_pi, policy_reward(mdp, pi))


def action_values(mdp: MDP, pi: jax.Array) -> jax.Array:
    """Q_pi(s, a) = r(s, a) + gamma sum_{s'} P(s' | s, a) V_pi(s'); returns [S, A]."""
    return mdp.r + mdp.gamma * jnp.einsum("sat,t->sa", mdp.P, state_values(mdp, pi))


def advantages(mdp: MDP, pi: jax.Array) -> jax.Array:
    """A_pi(s, a) = Q_pi(s, a) - V_pi(s); returns [S, A]."""
    return action_values(mdp, pi) - state_values(mdp, pi)[:, None]


def unnormalized_visitation(mdp: MDP, pi: jax.Array) -> jax.Array:
    """rho_pi(s) = sum_{t>=0} gamma^t P(s_t = s), s_0 ~ rho; solves rho_pi^T (I - gamma P_pi) = rho^T.

    Returns:
        [S], summing to 1 / (1 - gamma).
    """
    P_pi = policy_transition(mdp, pi)
    eye = jnp.eye(P_pi.shape[0], dtype=P_pi.dtype)
    return jnp.linalg.solve((eye - mdp.gamma * P_pi).T, mdp.rho)


def discounted_visitation(mdp: MDP, pi: jax.Array) -> jax.Array:
    """d_rho^pi(s) = (1 - gamma) sum_t gamma^t P(s_t = s), a probability distribution; returns [S]."""
    return (1.0 - mdp.gamma) * unnormalized_visitation(mdp, pi)


def state_distribution(mdp: MDP, pi: jax.Array, t: int) -> jax.Array:
    """P(s_t = s) = (rho^T P_pi^t)(s) under pi from s_0 ~ rho; ``t`` is a Python int; returns [S]."""
    P_pi = policy_transition(mdp, pi)
    dist = mdp.rho
    for _ in range(t):
        dist = dist @ P_pi
    return dist


def expected_return(mdp: MDP, pi: jax.Array) -> jax.Array:
    """eta(pi) = E[sum_{t>=0} gamma^t r(s_t, a_t)] = rho . V_pi; returns []."""
    return mdp.rho @ state_values(mdp, pi)


def surrogate(mdp: MDP, pi: jax.Array, pi_new: jax.Array) -> jax.Array:
    """TRPO's local approximation L_pi(pi_new) = eta(pi) + sum_s rho_pi(s) sum_a pi_new(a|s) A_pi(s, a).

    It matches eta to first order at pi_new = pi (Kakade & Langford 2002; Schulman et al. 2015, eq. 3).

    Args:
        mdp: the MDP.
        pi: [S, A] current policy (visitation and advantages are taken under it).
        pi_new: [S, A] candidate policy.

    Returns:
        [] surrogate value.
    """
    chex.assert_equal_shape([pi, pi_new])
    weighted = jnp.sum(pi_new * advantages(mdp, pi), axis=-1)
    return expected_return(mdp, pi) + unnormalized_visitation(mdp, pi) @ weighted


def tv_max(pi: jax.Array, pi_new: jax.Array) -> jax.Array:
    """D_TV^max(pi, pi_new) = max_s 0.5 sum_a |pi(a|s) - pi_new(a|s)|; [S, A] x [S, A] -> []."""
    chex.assert_rank(pi, 2)
    chex.assert_equal_shape([pi, pi_new])
    return jnp.max(0.5 * jnp.sum(jnp.abs(pi - pi_new), axis=-1))


def kl_max(pi: jax.Array, pi_new: jax.Array) -> jax.Array:
    """D_KL^max(pi, pi_new) = max_s sum_a pi(a|s) log(pi(a|s) / pi_new(a|s)) (0 log 0 = 0); returns []."""
    chex.assert_rank(pi, 2)
    chex.assert_equal_shape([pi, pi_new])
    return jnp.max(jnp.sum(jax.scipy.special.rel_entr(pi, pi_new), axis=-1))


def finite_horizon_return(mdp: MDP, pi: jax.Array, horizon: int) -> jax.Array:
    """J_H(pi) = E[sum_{t=0}^{H-1} gamma^t r(s_t, a_t)], s_0 ~ rho, by backward dynamic programming.

    V_H = 0, V_t = r_pi + gamma P_pi V_{t+1} for t = H-1, ..., 0, and J_H = rho . V_0 (Fatkhullin et al.
    2023, the objective whose gradient g(tau, theta) and Hessian B(tau, theta) estimate).

    Args:
        mdp: the MDP.
        pi: [S, A] policy.
        horizon: H, a Python int.

    Returns:
        [] the finite-horizon discounted return.
    """
    P_pi = policy_transition(mdp, pi)
    r_pi = policy_reward(mdp, pi)

    def backup(values, _):
        return r_pi + mdp.gamma * P_pi @ values, None

    values, _ = jax.lax.scan(backup, jnp.zeros_like(r_pi), None, length=horizon)
    return mdp.rho @ values


@functools.partial(jax.jit, static_argnames=("horizon", "num"))
def sample_trajectories(
    key: jax.Array, mdp: MDP, theta: jax.Array, horizon: int, num: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Sample ``num`` independent trajectories of length H under the softmax policy of ``theta``.

    s_0 ~ rho, a_t ~ softmax(theta[s_t]), s_{t+1} ~ P(. | s_t, a_t), reward r(s_t, a_t). Absorbing
    states simply keep going, so every step is valid and the mask is all ones; the mean of
    sum_t gamma^t rewards[:, t] estimates ``finite_horizon_return``. Jitted with ``horizon`` and ``num``
    static.

    Args:
        key: PRNG key.
        mdp: the MDP.
        theta: [S, A] softmax logits.
        horizon: H, a Python int.
        num: number of trajectories N, a Python int.

    Returns:
        (states [N, H] int32, actions [N, H] int32, rewards [N, H], mask [N, H]).
    """
    _check_policy(mdp, theta)
    log_P = jnp.log(mdp.P)

    def one(key):
        key_init, key_steps = jax.random.split(key)
        s0 = jax.random.categorical(key_init, jnp.log(mdp.rho)).astype(jnp.int32)

        def step(s, key):
            key_action, key_next = jax.random.split(key)
            a = jax.random.categorical(key_action, theta[s]).astype(jnp.int32)
            s_next = jax.random.categorical(key_next, log_P[s, a]).astype(jnp.int32)
            return s_next, (s, a, mdp.r[s, a])

        _, (states, actions, rewards) = jax.lax.scan(step, s0, jax.random.split(key_steps, horizon))
        return states, actions, rewards

    states, actions, rewards = jax.vmap(one)(jax.random.split(key, num))
    return states, actions, rewards, jnp.ones_like(rewards)

"""Normalised-TD actor-critic: the deep actor-critic of the lecture notes "Remarks on deep RL".

Critic: the two-layer Q network of :mod:`trpojax.core.ntd`, Q(z) = omega1^T phi1(omega2^T phi2(z)) with
z = (x, u) (a discrete action one-hot, a continuous one the clipped action applied). After every
environment step each of the B environments writes its transition into a ring buffer of its last M
(the replay window), and the critic takes the notes' normalised step over all M B of them:

    vec omega <- vec omega - lambda sum_j d_j e_j / (1 + d_j^T d_j)^p,
    e_j = Q(z_j) - s r_j - gamma (1 - terminated_j) Q(z+_j),   d_j = grad_{vec omega} e_j,

s the ``reward_scale``. z+_j is the next state with the policy's action there (the expectation over pi for
a softmax policy) or with the action taken next (``target_action: taken``); after a time limit the
episode's final observation, after termination no target term. With ``target_tau`` 0 (the notes) Q(z+) is
the online critic and d its full residual gradient; with ``target_tau`` > 0 Q(z+) is a Polyak-averaged
target critic (omega_bar <- omega_bar + tau (omega - omega_bar)) and d = grad Q(z) (semi-gradient). With
``critic_optimizer: adam`` the normalised direction is fed to Adam instead of being stepped on directly.

Actor, after every critic step once ``warmup_steps`` (of uniformly random actions) have passed: continuous
actions use a deterministic policy mu_theta(x) = centre + half tanh(MLP_theta(x))
(:class:`trpojax.networks.DeterministicPolicy`, explored with Gaussian noise of std
``exploration_noise * half``) and ascend mean_j Q(x_j, mu_theta(x_j));
discrete actions use a softmax policy (explored by a uniformly random action with probability
``exploration_noise``: the notes' critic converges only under persistent excitation) and ascend
mean_j sum_a pi_theta(a|x_j) Q(x_j, a), over the window's states, by Adam (or plain gradient ascent,
``actor_optimizer: sgd``) with ``actor_lr``. Evaluations act with mu (the Gaussian's mode) or the argmax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trpojax.algos.base import AlgorithmSpec, Learner, TrainState
from trpojax.core import ntd
from trpojax.core.hparams import config_dataclass, hp
from trpojax.core.tree import all_finite, keep_if_valid
from trpojax.envs import EnvSpec, env_action, flatten_obs, init_running_stats, reset_envs
from trpojax.envs.rollout import close_episodes, count_episodes
from trpojax.networks import DeterministicPolicy, make_policy

if TYPE_CHECKING:
    from trpojax.config import Config as RunConfig

__all__ = ["SPEC", "Config", "NTDACState", "Nets", "Step", "Window", "init", "init_window", "make_learner",
           "update", "window_excitation"]

ADAM = optax.scale_by_adam()


@config_dataclass
class Config:
    """Normalised-TD actor-critic hyperparameters (the ``ntdac:`` section); defaults are the notes' method."""

    width: int = hp(64, "N, hidden units of the Q network", ge=1, le=4096)
    features: str = hp("identity_bias", "phi2: [z, 1] or the monomials of [z, 1] up to degree 2",
                       choices=ntd.FEATURES)
    activation: str = hp("tanh", "phi1, the hidden activation of the Q network", choices=ntd.ACTIVATIONS)
    window: int = hp(64, "M, transitions per environment in the replay window", ge=1)
    critic_lr: float = hp(0.1, "lambda, the critic step size (the Adam learning rate with critic_optimizer adam)",
                          gt=0.0)
    norm_power: float = hp(2.0, "p in the normaliser (1 + d^T d)^p (the notes: 2)", gt=0.5, le=4.0)
    critic_optimizer: str = hp("sgd", "sgd: the notes' plain step; adam: Adam on the normalised direction",
                               choices=("sgd", "adam"))
    target_tau: float = hp(0.0, "Polyak rate of a target critic for Q(z+); 0: none, residual gradient (the notes)",
                           ge=0.0, le=1.0)
    target_action: str = hp("policy", "the action in z+: the policy's at the next state, or the one taken next",
                            choices=("policy", "taken"))
    reward_scale: float = hp(1.0, "s, rewards enter the TD error as s r", gt=0.0)
    actor_lr: float = hp(1e-3, "learning rate of the actor", gt=0.0)
    actor_optimizer: str = hp("adam", "adam, or sgd: plain gradient ascent on the critic's value",
                              choices=("adam", "sgd"))
    exploration_noise: float = hp(0.1, "exploration: continuous, the Gaussian noise std as a fraction of the action "
                                       "box's half-width; discrete, the probability of a uniformly random action",
                                  ge=0.0, le=1.0)
    warmup_steps: int = hp(0, "environment steps (per environment) of uniformly random actions before the actor "
                              "starts", ge=0)
    excitation_every: int = hp(0, "report lambda_min of the window's normalised Gram matrix every this many "
                                  "updates (0: never; an eigendecomposition of size N + pN)", ge=0)


class Step(NamedTuple):
    """One environment step of B environments, the batch :func:`update` takes.

    Attributes:
        obs: [B, obs_dim]; action: [B, a] (encoded as in z); reward: [B]; discount: [B] gamma (1 - terminated);
        truncated: [B] bool; next_obs: [B, obs_dim] (the final observation after an episode's end).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    truncated: jax.Array
    next_obs: jax.Array


class Window(NamedTuple):
    """The replay window: each environment's last M transitions, a ring buffer ``[B, M, ...]``.

    Attributes:
        transitions: the :class:`Step` fields, each ``[B, M, ...]`` (slot j of environment b).
        next_action: [B, M, a] the action taken at x+_j (``target_action: taken``).
        has_next: [B, M] bool, ``next_action`` is known (the episode went on and its next step was taken).
        filled: [B, M] bool, the slot holds a transition.
        pos: [] int32, the slot the next transition goes to.
    """

    transitions: Step
    next_action: jax.Array
    has_next: jax.Array
    filled: jax.Array
    pos: jax.Array


class NTDACState(NamedTuple):
    """The agent state.

    Attributes:
        policy_params: the actor's parameters theta.
        actor_opt_state: Adam moments of the actor (``actor_optimizer: adam``; kept either way).
        critic: [N + pN] vec(omega).
        target_critic: [N + pN] omega_bar (equal to ``critic`` until a ``target_tau`` > 0 moves it).
        critic_opt_state: Adam moments of the critic (``critic_optimizer: adam``; kept either way).
        window: the replay window.
        env_steps: [] int32, environment steps taken per environment.
        excitation: [] the latest lambda_min(Dbar^T Dbar) (NaN before the first).
    """

    policy_params: Any
    actor_opt_state: Any
    critic: jax.Array
    target_critic: jax.Array
    critic_opt_state: Any
    window: Window
    env_steps: jax.Array
    excitation: jax.Array


class Nets(NamedTuple):
    """What :func:`update` applies.

    Attributes:
        policy_apply: (theta, obs [J, obs_dim]) -> Categorical or DiagGaussian with batch [J].
        qnet: the Q network's static shape.
        num_actions: the number of actions (discrete), 0 for continuous actions.
    """

    policy_apply: Any
    qnet: ntd.QNet
    num_actions: int


def init_window(num_envs: int, size: int, obs_dim: int, action_width: int) -> Window:
    """An empty window of ``size`` slots per environment."""
    z = lambda *shape: jnp.zeros((num_envs, size, *shape), jnp.float32)  # noqa: E731
    no = jnp.zeros((num_envs, size), bool)
    return Window(Step(z(obs_dim), z(action_width), z(), z(), no, z(obs_dim)), z(action_width), no, no,
                  jnp.zeros((), jnp.int32))


def init(policy_params: Any, value_params: jax.Array, config: Config, *, window: Window) -> NTDACState:
    """Fresh state around the actor's parameters and the critic's weights ``value_params`` (vec omega)."""
    del config
    return NTDACState(
        policy_params=policy_params,
        actor_opt_state=ADAM.init(policy_params),
        critic=value_params,
        target_critic=value_params,
        critic_opt_state=ADAM.init(value_params),
        window=window,
        env_steps=jnp.zeros((), jnp.int32),
        excitation=jnp.asarray(jnp.nan, jnp.float32),
    )


def _write(window: Window, step: Step, link_taken: bool) -> Window:
    """The window with ``step`` in slot ``pos``; with ``link_taken`` the previous slot learns its next action."""
    pos, size = window.pos, window.filled.shape[1]
    prev = (pos - 1) % size
    next_action, has_next = window.next_action, window.has_next.at[:, pos].set(False)
    if link_taken:
        last = window.transitions
        went_on = window.filled[:, prev] & (last.discount[:, prev] > 0) & ~last.truncated[:, prev]
        keep = lambda new, old: jnp.where(went_on.reshape(-1, *([1] * (old.ndim - 1))), new, old)  # noqa: E731
        next_action = next_action.at[:, prev].set(keep(step.action, next_action[:, prev]))
        has_next = has_next.at[:, prev].set(went_on)
    return Window(
        transitions=jax.tree.map(lambda buf, x: buf.at[:, pos].set(x), window.transitions, step),
        next_action=next_action,
        has_next=has_next,
        filled=window.filled.at[:, pos].set(True),
        pos=(pos + 1) % size,
    )


def _flat(window: Window) -> tuple[Step, Window]:
    """(transitions, window) with every ``[B, M, ...]`` array flattened to ``[B M, ...]``."""
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]) if x.ndim >= 2 else x, window)
    return flat.transitions, flat


def _window_terms(state: NTDACState, window: Window, config: Config, nets: Nets) -> tuple:
    """(e [J], d [J, W], mask [J]) over the flattened window (J = B M)."""
    t, w = _flat(window)
    dist = nets.policy_apply(state.policy_params, t.next_obs)
    taken = config.target_action == "taken"
    if nets.num_actions:
        choices = jnp.eye(nets.num_actions, dtype=jnp.float32)  # [K, K]: every action, one-hot
        weights = jax.nn.softmax(dist.logits, axis=-1)
        if taken:
            weights = jnp.where(w.has_next[:, None], w.next_action, weights)
        actions = jnp.broadcast_to(choices, (t.obs.shape[0], *choices.shape))
    else:
        actions = dist.mode()
        if taken:
            actions = jnp.where(w.has_next[:, None], w.next_action, actions)
        actions, weights = actions[:, None, :], jnp.ones((t.obs.shape[0], 1), jnp.float32)
    next_obs = jnp.broadcast_to(t.next_obs[:, None, :], (*actions.shape[:2], t.next_obs.shape[-1]))
    z_next = jnp.concatenate([next_obs, actions], axis=-1)
    z = jnp.concatenate([t.obs, t.action], axis=-1)
    residual = jnp.where(jnp.asarray(config.target_tau) == 0.0, 1.0, 0.0)
    terms = jax.vmap(ntd.td_error_and_data_vector, in_axes=(None, None, None, 0, 0, 0, 0, 0, None))
    e, d = terms(state.critic, state.target_critic, residual, z, config.reward_scale * t.reward, z_next,
                 weights, t.discount, nets.qnet)
    mask = w.filled
    if taken:
        mask = mask & (w.has_next | (t.discount == 0) | t.truncated)
    return e, d, mask.astype(jnp.float32)


def window_excitation(state: NTDACState, config: Config, nets: Nets) -> jax.Array:
    """lambda_min of the window's normalised Gram matrix (:func:`trpojax.core.ntd.excitation`)."""
    _, d, mask = _window_terms(state, state.window, config, nets)
    return ntd.excitation(d, mask, config.norm_power)


def _actor_objective(theta: Any, critic: jax.Array, obs: jax.Array, mask: jax.Array, nets: Nets) -> jax.Array:
    """mean_j Q(x_j, mu_theta(x_j)), or mean_j sum_a pi_theta(a|x_j) Q(x_j, a), over the masked states."""
    dist = nets.policy_apply(theta, obs)
    q = jax.vmap(lambda z: ntd.q_value(critic, z, nets.qnet))
    if nets.num_actions:
        k = nets.num_actions
        z = jnp.concatenate([jnp.repeat(obs[:, None, :], k, axis=1),
                             jnp.broadcast_to(jnp.eye(k, dtype=obs.dtype), (obs.shape[0], k, k))], axis=-1)
        values = jnp.sum(jax.nn.softmax(dist.logits, axis=-1) * q(z.reshape(-1, z.shape[-1])).reshape(-1, k), -1)
    else:
        values = q(jnp.concatenate([obs, dist.mode()], axis=-1))
    return jnp.sum(mask * values) / jnp.maximum(jnp.sum(mask), 1.0)


def update(
    state: NTDACState, batch: Step, key: jax.Array, config: Config, *, nets: Nets, warmup_steps: int = 0
) -> tuple[NTDACState, dict[str, jax.Array]]:
    """One environment step's update: write ``batch`` into the window, the critic step, the actor step.

    Args:
        state: the agent state.
        batch: the B environments' latest transitions.
        key: unused (the update is deterministic); kept for the common interface.
        config: the ``ntdac`` section (floats may be traced).
        nets: the actor's apply function and the critic's shape.
        warmup_steps: the actor steps only once ``state.env_steps`` (after this step) exceeds this.

    Returns:
        ``(state, metrics)`` with ``td_rms`` (root mean square e over the window, before the step),
        ``critic_step_norm``, ``output_weight_abs_mean`` (mean |omega1|), ``actor_objective``,
        ``rejected_updates`` (1 when the critic step was not finite and was skipped).
    """
    del key
    window = _write(state.window, batch, config.target_action == "taken")
    e, d, mask = _window_terms(state, window, config, nets)
    direction = ntd.normalized_direction(d, e, mask, config.norm_power)
    critic_opt = state.critic_opt_state
    if config.critic_optimizer == "adam":
        direction, critic_opt = ADAM.update(direction, critic_opt)
    critic = state.critic - config.critic_lr * direction
    valid = all_finite(critic)
    critic, critic_opt = keep_if_valid(valid, (critic, critic_opt), (state.critic, state.critic_opt_state))
    target = state.target_critic + config.target_tau * (critic - state.target_critic)

    t, w = _flat(window)
    objective, grad = jax.value_and_grad(_actor_objective)(state.policy_params, critic, t.obs, w.filled, nets)
    if config.actor_optimizer == "adam":
        grad, actor_opt = ADAM.update(grad, state.actor_opt_state)
    else:
        actor_opt = state.actor_opt_state
    theta = optax.tree.add_scale(state.policy_params, config.actor_lr, grad)  # ascent
    env_steps = state.env_steps + 1
    active = (env_steps > warmup_steps) & all_finite(theta)
    theta, actor_opt = keep_if_valid(active, (theta, actor_opt), (state.policy_params, state.actor_opt_state))

    count = jnp.maximum(jnp.sum(mask), 1.0)
    metrics = {
        "td_rms": jnp.sqrt(jnp.sum(mask * e * e) / count),
        "critic_step_norm": jnp.linalg.norm(critic - state.critic),
        "output_weight_abs_mean": jnp.mean(jnp.abs(ntd.unpack(critic, nets.qnet)[0])),
        "actor_objective": objective,
        "rejected_updates": (~valid).astype(jnp.float32),
    }
    new = state._replace(policy_params=theta, actor_opt_state=actor_opt, critic=critic, target_critic=target,
                         critic_opt_state=critic_opt, window=window, env_steps=env_steps)
    return new, metrics


def _policy(config: RunConfig, spec: EnvSpec) -> Any:
    if spec.discrete:
        return make_policy(config.network, spec)
    return DeterministicPolicy(spec.action_low, spec.action_high, config.network.policy_hidden,
                               config.network.activation)


def make_learner(config: RunConfig, spec: EnvSpec) -> Learner:
    """Bind the actor-critic to an environment: ``num_envs`` continuing environments, ``num_steps``
    environment steps per update, each followed by :func:`update`."""
    section = config.algo_section
    policy = _policy(config, spec)
    action_width = spec.action_dim
    qnet = ntd.QNet(spec.obs_dim + action_width, section.width, section.features, section.activation)
    nets = Nets(policy.apply, qnet, spec.action_dim if spec.discrete else 0)
    num_envs, num_steps, warmup = config.num_envs, config.num_steps, section.warmup_steps
    every = section.excitation_every
    # host constants (no device op while building the learner)
    low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
    half = (high - low) / 2.0

    def init_state(key: jax.Array, run_config: RunConfig) -> TrainState:
        policy_key, critic_key, env_key, key = jax.random.split(key, 4)
        params = policy.init(policy_key, jnp.zeros((spec.obs_dim,), jnp.float32))
        if not spec.discrete:  # the exploration noise: log(noise * half-width), never trained
            noise = jnp.maximum(run_config.algo_section.exploration_noise * half, 1e-12)
            params = {"params": {**params["params"], "log_std": jnp.log(noise).astype(jnp.float32)}}
        window = init_window(num_envs, section.window, spec.obs_dim, action_width)
        agent = init(params, ntd.init_weights(critic_key, qnet), run_config.algo_section, window=window)
        return TrainState(agent, init_running_stats(spec.obs_dim), reset_envs(spec, env_key, num_envs), key,
                          jnp.zeros((), jnp.int32))

    def encode(action: jax.Array) -> jax.Array:
        if spec.discrete:
            return jax.nn.one_hot(action, spec.action_dim, dtype=jnp.float32)
        return env_action(spec, action).astype(jnp.float32)

    def env_step(carry: tuple, step_key: jax.Array, run_config: RunConfig) -> tuple[tuple, tuple]:
        agent, env_state, obs, ep_ret, ep_len = carry
        act_key, env_key = jax.random.split(step_key)
        action = policy.apply(agent.policy_params, obs).sample(act_key)
        coin_key, uniform_key = jax.random.split(jax.random.fold_in(act_key, 1))
        warming = agent.env_steps < warmup  # uniformly random actions until the actor starts
        if spec.discrete:  # epsilon-exploration: a uniformly random action with probability exploration_noise
            coin = jax.random.uniform(coin_key, (num_envs,))
            explore = warming | (coin < run_config.algo_section.exploration_noise)
            action = jnp.where(explore, jax.random.randint(uniform_key, (num_envs,), 0, spec.action_dim), action)
        elif warmup:
            uniform = jax.random.uniform(uniform_key, action.shape, minval=low, maxval=high)
            action = jnp.where(warming, uniform, action)
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(spec.step)(
            jax.random.split(env_key, num_envs), env_state, env_action(spec, action)
        )
        reward = reward.astype(jnp.float32)
        terminated = terminated.astype(bool)
        truncated = truncated.astype(bool) & ~terminated
        batch = Step(obs, encode(action), reward, run_config.gamma * (1.0 - terminated.astype(jnp.float32)),
                     truncated, flatten_obs(spec, info["final_observation"]))
        agent, metrics = update(agent, batch, act_key, run_config.algo_section, nets=nets, warmup_steps=warmup)
        ep_ret, ep_len, finished = count_episodes(ep_ret, ep_len, reward, terminated | truncated)
        return (agent, env_state, flatten_obs(spec, next_obs), ep_ret, ep_len), (metrics, finished)

    def step(state: TrainState, run_config: RunConfig) -> tuple[TrainState, dict[str, jax.Array]]:
        key, steps_key = jax.random.split(state.key)
        runner = state.runner
        carry = (state.agent, runner.env_state, runner.obs, runner.episodes.episode_return,
                 runner.episodes.episode_length)
        carry, (metrics, finished) = jax.lax.scan(
            lambda c, k: env_step(c, k, run_config), carry, jax.random.split(steps_key, num_steps)
        )
        agent, env_state, obs, ep_ret, ep_len = carry
        update_count = state.update + 1
        if every:
            agent = agent._replace(excitation=jax.lax.cond(
                update_count % every == 0,
                lambda a: window_excitation(a, run_config.algo_section, nets).astype(jnp.float32),
                lambda a: a.excitation,
                agent,
            ))
        episodes = close_episodes(runner.episodes, ep_ret, ep_len, finished)
        out = {
            "episode_return_mean": episodes.last_return_mean,
            "episode_length_mean": episodes.last_length_mean,
            **{name: jnp.mean(value) for name, value in metrics.items() if name != "rejected_updates"},
            "rejected_updates": jnp.sum(metrics["rejected_updates"]),
        }
        if every:
            out["excitation"] = agent.excitation
        runner = runner._replace(env_state=env_state, obs=obs, episodes=episodes)
        return TrainState(agent, state.obs_stats, runner, key, update_count), out

    return Learner(init=init_state, step=step, env_steps_per_update=config.steps_per_update, policy=policy)


SPEC = AlgorithmSpec(
    "ntdac",
    Config,
    make_learner,
    "normalised-TD actor-critic hyperparameters (the deep actor-critic lecture notes)",
    fixed_inputs="its replay window and Q features would mix observations normalised with different statistics",
)

"""A run as pure, jittable functions: ``make_train(config) -> train(key)`` and the seed-vmapped trainer.

The whole run is one function: ``lax.scan`` over updates of ``learner.step`` (rollout -> advantages ->
pure update -> metrics). Seeds are a leading ``vmap`` axis; stacking run configs that differ only in
float leaves sweeps hyperparameters inside the same program. :func:`make_trainer` gives the pieces a host
loop drives (init, a chunk of updates, the final evaluation), and :func:`compile_programs` compiles them
plainly (ahead of time, one after the other): the path every backend can take
(:mod:`trpojax.fastcpu` has a faster one for XLA:CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trpojax.algos import REGISTRY, Learner, TrainState
from trpojax.config import Config
from trpojax.core.hparams import static_view
from trpojax.envs import EnvSpec, evaluate_policy, make_env, normalize_obs

EVAL_KEY_SALT = 0x5EED


def seed_keys(config: Config) -> jax.Array:
    """PRNG keys of the run's seeds, [num_seeds]: seed i uses fold_in(PRNGKey(config.seed), i)."""
    base = jax.random.PRNGKey(config.seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(config.num_seeds))


def eval_keys(config: Config) -> jax.Array:
    """Evaluation keys [num_seeds]: fold_in(seed key, EVAL_KEY_SALT), disjoint from training keys."""
    return jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SALT))(seed_keys(config))


def make_learner(config: Config) -> tuple[EnvSpec, Learner]:
    """Build the environment and bind the configured algorithm to it.

    The learner is built from a static view of ``config`` (:func:`trpojax.core.hparams.static_view`): its
    float hyperparameters can only be read from the run config passed to ``init`` and ``step``, where a
    sweep may have stacked them.
    """
    spec = make_env(config.env, episode_length=config.episode_length, action_repeat=config.action_repeat)
    return spec, REGISTRY[config.algo].make_learner(static_view(config), spec)


def make_train(config: Config) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """Return ``train(key, run_config=config) -> (final_state, metrics)`` for one seed.

    ``metrics[name]`` has shape ``[num_updates]``. ``train`` is pure and jittable; vmap it over keys for
    seeds, and over a stacked ``run_config`` (same static fields, different float leaves) to sweep
    hyperparameters inside one compiled program.
    """
    _, learner = make_learner(config)
    num_updates = config.num_updates

    def train(key: jax.Array, run_config: Config = config) -> tuple[TrainState, dict[str, jax.Array]]:
        state = learner.init(key, run_config)
        return jax.lax.scan(lambda s, _: learner.step(s, run_config), state, None, length=num_updates)

    return train


class Trainer(NamedTuple):
    """The pieces a host loop drives, each jitted and vmapped over seeds (leading axis of ``states``).

    Attributes:
        spec: the environment.
        learner: the algorithm bound to it.
        init: (keys [S], run_config) -> states.
        run_chunk: (states, run_config, length) -> (states, metrics {name: [S, length]}), ``length`` static.
        evaluate: (states, keys [S]) -> returns [S, eval_episodes] with the policy's mode.
    """

    spec: EnvSpec
    learner: Learner
    init: Callable[..., TrainState]
    run_chunk: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    evaluate: Callable[..., jax.Array]


def make_trainer(config: Config) -> Trainer:
    """Jitted, seed-vmapped init / chunk / evaluate functions for ``config``."""
    spec, learner = make_learner(config)

    def init(key: jax.Array, run_config: Config) -> TrainState:
        return strong_types(learner.init(key, run_config))

    def chunk(state: TrainState, run_config: Config, length: int) -> tuple[TrainState, dict[str, jax.Array]]:
        return jax.lax.scan(lambda s, _: learner.step(s, run_config), state, None, length=length)

    return Trainer(
        spec=spec,
        learner=learner,
        init=jax.jit(jax.vmap(init, in_axes=(0, None))),
        run_chunk=jax.jit(jax.vmap(chunk, in_axes=(0, None, None)), static_argnums=2),
        evaluate=make_evaluate(config, spec, learner, config.eval_episodes),
    )


def strong_types(tree: Any) -> Any:
    """``tree`` with weakly typed leaves (e.g. gymnax's ``time=0``) cast to their strong dtype.

    A state restored from a checkpoint has only strong types, so the trainer's init drops weak types too:
    fresh and resumed runs then trace, compile and compute exactly the same program.
    """
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree)


def evaluation_fn(
    config: Config, spec: EnvSpec, learner: Learner, num_episodes: int, deterministic: bool = True
) -> Callable[[TrainState, jax.Array], jax.Array]:
    """(state, key) -> returns [num_episodes] of fresh episodes for one seed (pure; jit and vmap it).

    Actions are the policy's mode when ``deterministic``, samples otherwise; observations are normalised
    with the seed's statistics when ``config.normalize_obs``.
    """

    def evaluate(state: TrainState, key: jax.Array) -> jax.Array:
        norm = lambda obs: normalize_obs(state.obs_stats, obs, config.normalize_obs)  # noqa: E731
        returns, _ = evaluate_policy(
            spec, learner.policy.apply, state.agent.policy_params, key, num_episodes, norm, deterministic
        )
        return returns

    return evaluate


def make_evaluate(
    config: Config, spec: EnvSpec, learner: Learner, num_episodes: int, deterministic: bool = True
) -> Callable[[TrainState, jax.Array], jax.Array]:
    """Jitted, seed-vmapped (states, keys [S]) -> returns [S, num_episodes]; see :func:`evaluation_fn`."""
    return jax.jit(jax.vmap(evaluation_fn(config, spec, learner, num_episodes, deterministic)))


def state_template(config: Config) -> TrainState:
    """Shapes and dtypes (``jax.ShapeDtypeStruct``) of the seed-stacked train state; nothing is computed."""
    _, learner = make_learner(config)
    keys = jax.eval_shape(lambda: seed_keys(config))
    return jax.eval_shape(jax.vmap(learner.init, in_axes=(0, None)), keys, config)


class Programs(NamedTuple):
    """A run's compiled programs, as a host loop calls them.

    Attributes:
        init: (keys [S], config) -> states.
        chunks: {length: (states, config) -> (states, metrics)} for every length the run needs.
        run_chunk: (states, config, length) -> (states, metrics) for any length (compiled on first use).
        evaluate: (states, keys [S]) -> returns [S, eval_episodes].
        metric_names: the keys of a chunk's metrics (empty when there are no chunks).
        compile_s: wall-clock seconds spent tracing, compiling or loading before training can start.
        cached: how many of them were loaded instead of compiled (the fast path's executable cache).
        in_flight: chunks a host loop may dispatch ahead of the one it waits for (2 for compiled scans,
            which run asynchronously; 1 for a runner that returns when its chunk is done).
        close: releases what the programs hold (threads); called once the loop is done.
    """

    init: Any
    chunks: dict[int, Any]
    run_chunk: Any
    evaluate: Any
    metric_names: list[str]
    compile_s: float
    cached: int = 0
    in_flight: int = 2
    close: Callable[[], None] = lambda: None


class PlainPath:
    """How a run gets its keys and programs on any backend: ``jax.random`` keys, ahead-of-time compiles.

    The host loop (:func:`trpojax.train.run`) asks this, or :class:`trpojax.fastcpu.FastPath` on CPU, for
    :meth:`keys` and :meth:`compile`.
    """

    def keys(self, config: Config) -> tuple[jax.Array, jax.Array]:
        """``(seed_keys, eval_keys)`` of the run."""
        return seed_keys(config), eval_keys(config)

    def compile(
        self, trainer: Trainer, config: Config, keys: jax.Array, keys_eval: jax.Array, lengths: Sequence[int]
    ) -> Programs:
        """Compile init, one chunk program per distinct length in ``lengths``, and evaluate."""
        t0 = time.perf_counter()
        init = trainer.init.lower(keys, config).compile()
        states = init.out_info
        chunks = {n: trainer.run_chunk.lower(states, config, n).compile() for n in sorted(set(lengths))}
        names = sorted(next(iter(chunks.values())).out_info[1]) if chunks else []
        evaluate = trainer.evaluate.lower(states, keys_eval).compile()
        return Programs(init, chunks, trainer.run_chunk, evaluate, names, time.perf_counter() - t0)

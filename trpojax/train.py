"""Training: ``make_train(config) -> train(key)`` and the CLI ``python -m trpojax.train``.

The whole run is one jittable function: ``lax.scan`` over updates of ``learner.step`` (rollout ->
advantages -> pure update -> metrics). Seeds are a leading ``vmap`` axis. The CLI runs the scan in chunks
so the host can show progress, append metrics and write checkpoints between chunks; chunking does not
change the numbers, so a run resumed from a checkpoint ends bitwise equal to an uninterrupted one.

Usage::

    python -m trpojax.train --config configs/trpo_cartpole.yaml [--set trpo.max_kl=0.02 ...] [--out DIR]
    python -m trpojax.train --resume DIR

This module holds the pure, jittable pieces (``make_train``, ``make_trainer``, seeds, chunking);
:mod:`trpojax.runner` drives them from the host: outputs, progress, checkpoints, Ctrl-C, resume
(docs/durability.md).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax.algos import Learner, TrainState, registry
from trpojax.config import Config
from trpojax.envs import EnvSpec, make_env, normalize_obs
from trpojax.rollout import evaluate_policy

EVAL_KEY_SALT = 0x5EED

# XLA:CPU options for the trainer's programs (numbers: benchmarks/RESULTS.md, "Compile latency").
# LLVM at -O1 instead of XLA's default compiles the TRPO chunk program about 1.5x faster and runs it as fast.
# XLA's classic fusion emitters instead of its newer MLIR ones compile it about 2x faster again, and run a
# one-seed program as fast, but a vmapped 8-seed program about 30% slower; so the classic emitters are used
# for short runs ("fast"), and for programs that run once (init, the final evaluation, also at -O0).
CPU_OPTIMIZED_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 1}
CPU_FAST_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}
CPU_ONE_SHOT_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}
FAST_COMPILE_MAX_STEPS = 250_000  # compile_mode "auto": fast up to this many env steps over all seeds


def compiler_options(config: Config | None = None, one_shot: bool = False) -> dict[str, Any] | None:
    """XLA compile options for a trainer program of ``config`` on the default backend; None (XLA's
    defaults) off CPU.

    On CPU: :data:`CPU_ONE_SHOT_OPTIONS` for programs run once (``one_shot``), else per
    ``config.compile_mode``: :data:`CPU_FAST_OPTIONS` ("fast", or "auto" for runs of at most
    :data:`FAST_COMPILE_MAX_STEPS` env steps over all seeds) or :data:`CPU_OPTIMIZED_OPTIONS`. Pass them to
    ``jitted.lower(...).compile(options)``: a ``jax.jit(..., compiler_options=...)`` could no longer be
    called inside another jit, and the trainer's functions are meant to compose.
    """
    if jax.default_backend() != "cpu":
        return None
    if one_shot:
        return dict(CPU_ONE_SHOT_OPTIONS)
    mode = config.compile_mode if config is not None else "optimized"
    if mode == "auto":
        mode = "fast" if config.total_env_steps * config.num_seeds <= FAST_COMPILE_MAX_STEPS else "optimized"
    return dict(CPU_FAST_OPTIONS if mode == "fast" else CPU_OPTIMIZED_OPTIONS)


def use_split(config: Config) -> bool:
    """Whether the CLI runs ``config``'s updates as split stage programs (:class:`SplitPrograms`).

    ``execution: split`` always (validation admits it only for TRPO and NPG), ``scan`` never, ``auto`` on
    CPU for TRPO and NPG: XLA:CPU runs a program's operations one after another and leaves a second core
    mostly idle during their small matrix products, so the critic fit gains a core of its own
    (benchmarks/RESULTS.md: 1.4-1.8x faster training from 1 to 8 seeds on 2 cores). Elsewhere (GPU, TPU)
    one scanned program per chunk keeps the host out of the loop.
    """
    if config.execution != "auto":
        return config.execution == "split"
    return jax.default_backend() == "cpu" and registry()[config.algo].splittable


def seed_keys(config: Config) -> jax.Array:
    """PRNG keys of the run's seeds, [num_seeds]: seed i uses fold_in(PRNGKey(config.seed), i).

    Computed on the host (:func:`threefry_fold_in`) when JAX's default PRNG is threefry, which saves a run
    the compilation of small device programs (about 0.07 s each on CPU); otherwise with ``jax.random``.
    """
    if not _host_keys(config.seed):
        base = jax.random.PRNGKey(config.seed)
        return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(config.num_seeds))
    return jax.device_put(_host_seed_keys(config))  # jnp.asarray would compile a copy program


def _host_keys(seed: int) -> bool:
    return jax.config.jax_default_prng_impl == "threefry2x32" and 0 <= seed < 2**31


def _host_seed_keys(config: Config) -> np.ndarray:
    base = np.array([0, config.seed], np.uint32)  # PRNGKey(seed) for 0 <= seed < 2**31
    return np.stack([threefry_fold_in(base, i) for i in range(config.num_seeds)])


def threefry_fold_in(key: np.ndarray, data: int) -> np.ndarray:
    """``jax.random.fold_in(key, data)`` for a raw threefry key ``uint32 [2]``, in NumPy on the host.

    fold_in hashes the counter pair (0, data) with Threefry-2x32 under ``key`` (Salmon et al. 2011, 20
    rounds); tests/test_programs.py checks it against ``jax.random.fold_in``.
    """
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x = [np.uint32(0), np.uint32(data)]
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    with np.errstate(over="ignore"):
        x[0], x[1] = x[0] + ks[0], x[1] + ks[1]
        for block in range(5):
            for r in rotations[block % 2]:
                x[0] = x[0] + x[1]
                x[1] = np.uint32((int(x[1]) << r | int(x[1]) >> (32 - r)) & 0xFFFFFFFF) ^ x[0]
            x[0] = x[0] + ks[(block + 1) % 3]
            x[1] = x[1] + ks[(block + 2) % 3] + np.uint32(block + 1)
    return np.array(x, np.uint32)


def make_learner(config: Config) -> tuple[EnvSpec, Learner]:
    """Build the environment and bind the configured algorithm to it."""
    spec = make_env(config.env)
    return spec, registry()[config.algo].make_learner(config, spec)


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


class SplitPrograms(NamedTuple):
    """The stages of :class:`trpojax.algos.actor_critic.SplitStep`, each jitted and vmapped over seeds.

    Attributes:
        collect: (states, run_config) -> collected.
        prepare: (value_params, obs_stats, transitions, run_config) -> batch.
        policy: (policy_params, batch, run_config) -> (policy_params, metrics).
        critic: (value_params, value_opt_state, batch, update_keys, run_config) -> (value_params,
            value_opt_state, metrics).
    """

    collect: Callable[..., Any]
    prepare: Callable[..., Any]
    policy: Callable[..., Any]
    critic: Callable[..., Any]


class Trainer(NamedTuple):
    """The pieces the CLI drives, each vmapped over seeds (leading axis of ``states``).

    Attributes:
        spec: the environment.
        learner: the algorithm bound to it.
        init: (keys [S], run_config) -> states.
        run_chunk: (states, run_config, length) -> (states, metrics {name: [S, length]}), ``length`` static.
        evaluate: (states, keys [S]) -> returns [S, eval_episodes] with the policy's mode.
        split: the learner's update as stage programs (TRPO, NPG), or None.
    """

    spec: EnvSpec
    learner: Learner
    init: Callable[..., TrainState]
    run_chunk: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    evaluate: Callable[..., jax.Array]
    split: SplitPrograms | None = None


def make_trainer(config: Config) -> Trainer:
    """Jitted, seed-vmapped init / chunk / evaluate functions for ``config``."""
    spec, learner = make_learner(config)

    def init(key: jax.Array, run_config: Config) -> TrainState:
        return strong_types(learner.init(key, run_config))

    def chunk(state: TrainState, run_config: Config, length: int) -> tuple[TrainState, dict[str, jax.Array]]:
        return jax.lax.scan(lambda s, _: learner.step(s, run_config), state, None, length=length)

    split = None
    if learner.split is not None:
        stages = learner.split
        split = SplitPrograms(
            collect=jax.jit(jax.vmap(stages.collect, in_axes=(0, None))),
            prepare=jax.jit(jax.vmap(stages.prepare, in_axes=(0, 0, 0, None))),
            policy=jax.jit(jax.vmap(stages.policy, in_axes=(0, 0, None))),
            critic=jax.jit(jax.vmap(stages.critic, in_axes=(0, 0, 0, 0, None))),
        )
    return Trainer(
        spec=spec,
        learner=learner,
        init=jax.jit(jax.vmap(init, in_axes=(0, None))),
        run_chunk=jax.jit(jax.vmap(chunk, in_axes=(0, None, None)), static_argnums=2),
        evaluate=make_evaluate(config, spec, learner, config.eval_episodes),
        split=split,
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


def eval_keys(config: Config) -> jax.Array:
    """Evaluation keys [num_seeds]: fold_in(seed key, EVAL_KEY_SALT), disjoint from training keys."""
    if not _host_keys(config.seed):
        return jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SALT))(seed_keys(config))
    return jax.device_put(np.stack([threefry_fold_in(k, EVAL_KEY_SALT) for k in _host_seed_keys(config)]))


def state_template(config: Config) -> TrainState:
    """Shapes and dtypes (``jax.ShapeDtypeStruct``) of the seed-stacked train state; nothing is computed."""
    _, learner = make_learner(config)
    return jax.eval_shape(jax.vmap(learner.init, in_axes=(0, None)), seed_keys(config), config)


def chunk_lengths(num_updates: int, num_chunks: int) -> list[int]:
    """Split ``num_updates`` into about ``num_chunks`` chunks, preferring equal lengths (one compilation).

    With target ``ceil(num_updates / num_chunks)``, uses the divisor of ``num_updates`` closest to the target
    (in ratio) among those within a factor 2 of it, so every chunk has the same length and one program is
    compiled; when there is none, equal chunks of the target plus one shorter remainder.
    """
    target = max(1, math.ceil(num_updates / num_chunks))
    near = [d for d in range(1, min(num_updates, 2 * target) + 1) if num_updates % d == 0 and 2 * d >= target]
    if near:
        divisor = min(near, key=lambda d: abs(math.log(d / target)))
        return [divisor] * (num_updates // divisor)
    lengths = [target] * (num_updates // target)
    return lengths + ([num_updates % target] if num_updates % target else [])


def chunk_schedule(config: Config) -> list[int]:
    """Chunk lengths of a run: :func:`chunk_lengths`, with every ``checkpoint_every``-th update a boundary.

    Each span of ``checkpoint_every`` updates (and the shorter last one) is split into its share of the
    ``num_chunks`` chunks, so a run needs few distinct chunk lengths (one compilation each).
    """
    n, every = config.num_updates, config.checkpoint_every
    if every == 0 or every >= n:
        return chunk_lengths(n, config.num_chunks)
    spans = [every] * (n // every) + ([n % every] if n % every else [])
    return [
        length
        for span in spans
        for length in chunk_lengths(span, max(1, round(config.num_chunks * span / n)))
    ]


def remaining_lengths(lengths: Sequence[int], done: int) -> list[int]:
    """The chunks of ``lengths`` still to run after ``done`` updates (the first one cut at ``done``)."""
    remaining, end = [], 0
    for length in lengths:
        end += length
        if end > done:
            remaining.append(min(length, end - done))
    return remaining


def default_cache_dir() -> Path:
    """``$TRPOJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/trpojax/jax``, else ``~/.cache/trpojax/jax``."""
    if os.environ.get("TRPOJAX_CACHE_DIR"):
        return Path(os.environ["TRPOJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trpojax" / "jax"


def enable_compilation_cache(enabled: bool) -> Path | None:
    """Turn on JAX's persistent compilation cache in :func:`default_cache_dir` when ``enabled``.

    JAX's own thresholds apply (programs that took at least a second to compile are cached): the run's
    own programs, small ones included, are in trpojax's executable cache (:mod:`trpojax.programs`), and
    writing every small eager op's program too cost cold runs about 0.15 s.
    """
    if not enabled:
        return None
    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    return cache


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point ``python -m trpojax.train``; the run loop and CLI live in :mod:`trpojax.runner`."""
    from trpojax import runner

    return runner.main(argv)


if __name__ == "__main__":
    code = main()
    # Every output is written and closed: skip the interpreter's teardown of JAX and XLA, 0.2-0.4 s.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

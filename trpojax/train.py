"""Training: ``make_train(config) -> train(key)`` and the CLI ``python -m trpojax.train``.

The whole run is one jittable function: ``lax.scan`` over updates of ``learner.step`` (rollout ->
advantages -> pure update -> metrics). Seeds are a leading ``vmap`` axis. The CLI runs the scan in chunks
so the host can show progress and append metrics between chunks; chunking does not change the numbers.

Usage::

    python -m trpojax.train --config configs/trpo_cartpole.yaml [--set trpo.max_kl=0.02 ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax import config as config_lib
from trpojax.algos import Learner, TrainState, registry
from trpojax.config import Config, ConfigError
from trpojax.envs import EnvSpec, make_env, normalize_obs
from trpojax.rollout import evaluate_policy

EVAL_KEY_SALT = 0x5EED
LEADING_METRICS = ("episode_return_mean", "episode_length_mean", "kl", "surrogate_gain", "cg_iters", "value_loss")


def metric_order(names: Sequence[str]) -> list[str]:
    """Column order for metrics.csv: the common metrics first, then the rest alphabetically."""
    lead = [n for n in LEADING_METRICS if n in names]
    return lead + sorted(n for n in names if n not in lead)


def seed_keys(config: Config) -> jax.Array:
    """PRNG keys of the run's seeds, [num_seeds]: seed i uses fold_in(PRNGKey(config.seed), i)."""
    base = jax.random.PRNGKey(config.seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(config.num_seeds))


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


class Trainer(NamedTuple):
    """The pieces the CLI drives, each vmapped over seeds (leading axis of ``states``).

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

    def chunk(state: TrainState, run_config: Config, length: int) -> tuple[TrainState, dict[str, jax.Array]]:
        return jax.lax.scan(lambda s, _: learner.step(s, run_config), state, None, length=length)

    def evaluate(state: TrainState, key: jax.Array) -> jax.Array:
        norm = lambda obs: normalize_obs(state.obs_stats, obs, config.normalize_obs)  # noqa: E731
        returns, _ = evaluate_policy(
            spec, learner.policy.apply, state.agent.policy_params, key, config.eval_episodes, norm
        )
        return returns

    return Trainer(
        spec=spec,
        learner=learner,
        init=jax.jit(jax.vmap(learner.init, in_axes=(0, None))),
        run_chunk=jax.jit(jax.vmap(chunk, in_axes=(0, None, None)), static_argnums=2),
        evaluate=jax.jit(jax.vmap(evaluate)),
    )


def chunk_lengths(num_updates: int, num_chunks: int) -> list[int]:
    """Split ``num_updates`` into about ``num_chunks`` chunks, preferring equal lengths (one compilation).

    Uses the largest divisor of ``num_updates`` not above ``ceil(num_updates / num_chunks)`` when it is at
    least half that target; otherwise equal chunks of the target plus one shorter remainder.
    """
    target = max(1, math.ceil(num_updates / num_chunks))
    divisor = max(d for d in range(1, target + 1) if num_updates % d == 0)
    if 2 * divisor >= target:
        return [divisor] * (num_updates // divisor)
    lengths = [target] * (num_updates // target)
    return lengths + ([num_updates % target] if num_updates % target else [])


def default_cache_dir() -> Path:
    """``$TRPOJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/trpojax/jax``, else ``~/.cache/trpojax/jax``."""
    if os.environ.get("TRPOJAX_CACHE_DIR"):
        return Path(os.environ["TRPOJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trpojax" / "jax"


def enable_compilation_cache(enabled: bool) -> Path | None:
    """Turn on JAX's persistent compilation cache (every compiled program is cached) when ``enabled``."""
    if not enabled:
        return None
    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache


class RunResult(NamedTuple):
    """What :func:`run` produced: final states, the summary dict and the output directory."""

    states: TrainState
    summary: dict[str, Any]
    out_dir: Path


def _host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def run(config: Config, out_dir: str | Path, *, progress: bool = True, start_time: float | None = None) -> RunResult:
    """Train every seed of ``config``, writing config.yaml, metrics.csv, summary.json, learning_curve.png.

    ``out_dir`` must not already hold a run. Metrics are appended after each chunk; the summary and plot
    are written (atomically) at the end, after the final deterministic evaluation of each seed.
    """
    from trpojax import report

    start_time = time.time() if start_time is None else start_time
    out_dir = Path(out_dir)
    trainer = make_trainer(config)
    keys = seed_keys(config)

    compile_s = 0.0
    t0 = time.perf_counter()
    init = trainer.init.lower(keys, config).compile()
    compile_s += time.perf_counter() - t0
    states = init(keys, config)
    lengths = chunk_lengths(config.num_updates, config.num_chunks)
    compiled: dict[int, Any] = {}
    for length in sorted(set(lengths)):
        t0 = time.perf_counter()
        compiled[length] = trainer.run_chunk.lower(states, config, length).compile()
        compile_s += time.perf_counter() - t0
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SALT))(keys)
    t0 = time.perf_counter()
    evaluate = trainer.evaluate.lower(states, eval_keys).compile()
    compile_s += time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_text_atomic(out_dir / "config.yaml", config_lib.dump(config))
    steps_per_update = trainer.learner.env_steps_per_update
    total_steps = config.num_updates * steps_per_update
    bar = report.Progress(total_steps * config.num_seeds, enabled=progress, desc=f"{config.algo} {config.env}")
    writer = None
    train_s = 0.0
    done_updates = 0
    last_return = float("nan")
    try:
        for length in lengths:
            t0 = time.perf_counter()
            states, metrics = compiled[length](states, config)
            metrics = _host(metrics)
            dt = time.perf_counter() - t0
            train_s += dt
            if writer is None:
                writer = report.MetricsWriter(out_dir / "metrics.csv", metric_order(list(metrics)))
            writer.write_chunk(done_updates + 1, steps_per_update, metrics)
            done_updates += length
            with np.errstate(all="ignore"):
                finite = metrics["episode_return_mean"][:, -1]
                finite = finite[np.isfinite(finite)]
                last_return = float(finite.mean()) if finite.size else last_return
            chunk_steps = length * steps_per_update * config.num_seeds
            bar.update(chunk_steps, chunk_steps / max(dt, 1e-9), last_return)
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    eval_returns = np.asarray(evaluate(states, eval_keys))
    per_seed = eval_returns.mean(axis=1)
    summary = {
        "algo": config.algo,
        "env": config.env,
        "num_seeds": config.num_seeds,
        "seed": config.seed,
        "num_updates": config.num_updates,
        "env_steps": total_steps,
        "eval_episodes": config.eval_episodes,
        "eval_return_mean": float(per_seed.mean()),
        "eval_return_std": float(per_seed.std()),
        "eval_return_per_seed": per_seed.tolist(),
        "train_return_final": last_return,
        "wall_clock_s": time.time() - start_time,
        "compile_s": compile_s,
        "train_s": train_s,
        "env_steps_per_s": total_steps * config.num_seeds / max(train_s, 1e-9),
        "devices": [str(d) for d in jax.devices()],
    }
    report.write_json_atomic(out_dir / "summary.json", summary)
    report.plot_learning_curve(
        out_dir / "metrics.csv", out_dir / "learning_curve.png", f"{config.algo.upper()} on {config.env}"
    )
    return RunResult(states=states, summary=summary, out_dir=out_dir)


def default_out_dir(config: Config) -> Path:
    """``runs/<algo>_<env>_<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.algo}_{config.env}_{stamp}"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {str(out_dir)!r} is not empty; choose a new directory")
    probe = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--out {str(out_dir)!r} is not writable")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(prog="python -m trpojax.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML run config, e.g. configs/trpo_cartpole.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set trpo.max_kl=0.02 (repeatable)",
    )
    parser.add_argument("--out", help="output directory (default runs/<algo>_<env>_<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input, with one line on stderr)."""
    start = time.time()
    args = parse_args(argv)
    try:
        config = config_lib.load(args.config, args.overrides)
        out_dir = Path(args.out) if args.out else default_out_dir(config)
        _check_out_dir(out_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    enable_compilation_cache(config.compilation_cache)
    result = run(config, out_dir, progress=not args.quiet, start_time=start)
    s = result.summary
    print(
        f"{s['algo']} {s['env']}: eval return {s['eval_return_mean']:.1f} +- {s['eval_return_std']:.1f} "
        f"over {s['num_seeds']} seeds after {s['env_steps']} env steps; "
        f"{s['env_steps_per_s']:,.0f} env steps/s, compile {s['compile_s']:.1f} s, "
        f"wall {s['wall_clock_s']:.1f} s -> {result.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

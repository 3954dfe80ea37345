"""Training: ``make_train(config) -> train(key)`` and the CLI ``python -m trpojax.train``.

The whole run is one jittable function: ``lax.scan`` over updates of ``learner.step`` (rollout ->
advantages -> pure update -> metrics). Seeds are a leading ``vmap`` axis. The CLI runs the scan in chunks
so the host can show progress, append metrics and write checkpoints between chunks; chunking does not
change the numbers, so a run resumed from a checkpoint ends bitwise equal to an uninterrupted one.

Usage::

    python -m trpojax.train --config configs/trpo_cartpole.yaml [--set trpo.max_kl=0.02 ...] [--out DIR]
    python -m trpojax.train --resume DIR

Ctrl-C saves a checkpoint at the next chunk boundary and exits with code 130 (a second Ctrl-C quits at
once); a diverging value function stops the run (exit 1) after checkpointing its last finite state.
See docs/durability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trpojax import checkpoint
from trpojax import config as config_lib
from trpojax.algos import Learner, TrainState, registry
from trpojax.config import Config, ConfigError
from trpojax.envs import EnvSpec, make_env, normalize_obs
from trpojax.rollout import evaluate_policy

EVAL_KEY_SALT = 0x5EED
LEADING_METRICS = (
    "episode_return_mean", "episode_length_mean", "kl", "surrogate_gain", "cg_iters", "value_loss"
)


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


def make_evaluate(
    config: Config, spec: EnvSpec, learner: Learner, num_episodes: int, deterministic: bool = True
) -> Callable[[TrainState, jax.Array], jax.Array]:
    """Jitted, seed-vmapped (states, keys [S]) -> returns [S, num_episodes] of fresh episodes.

    Actions are the policy's mode when ``deterministic``, samples otherwise; observations are normalised
    with each seed's statistics when ``config.normalize_obs``.
    """

    def evaluate(state: TrainState, key: jax.Array) -> jax.Array:
        norm = lambda obs: normalize_obs(state.obs_stats, obs, config.normalize_obs)  # noqa: E731
        returns, _ = evaluate_policy(
            spec, learner.policy.apply, state.agent.policy_params, key, num_episodes, norm, deterministic
        )
        return returns

    return jax.jit(jax.vmap(evaluate))


def eval_keys(config: Config) -> jax.Array:
    """Evaluation keys [num_seeds]: fold_in(seed key, EVAL_KEY_SALT), disjoint from training keys."""
    return jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SALT))(seed_keys(config))


def state_template(config: Config) -> TrainState:
    """Shapes and dtypes (``jax.ShapeDtypeStruct``) of the seed-stacked train state; nothing is computed."""
    _, learner = make_learner(config)
    return jax.eval_shape(jax.vmap(learner.init, in_axes=(0, None)), seed_keys(config), config)


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


class RunInterrupted(Exception):
    """Training stopped at a chunk boundary because a stop was requested (Ctrl-C); the state is saved.

    Attributes:
        update: updates done.
        path: the checkpoint holding the state after ``update`` updates.
    """

    def __init__(self, update: int, path: Path):
        super().__init__(f"stopped after update {update}; checkpoint {path}")
        self.update = update
        self.path = path


class ValueDiverged(RuntimeError):
    """The value loss of a seed became non-finite; the last finite state was checkpointed.

    Attributes:
        update: the first update (1-based, as in metrics.csv) with a non-finite value loss.
        seed: the first seed index that diverged at that update.
        path: the checkpoint of the state after ``update - 1`` updates.
    """

    def __init__(self, update: int, seed: int, path: Path):
        super().__init__(
            f"value function diverged: non-finite value loss at update {update} of seed {seed}; "
            f"the last finite state (update {update - 1}) is saved in {path}"
        )
        self.update = update
        self.seed = seed
        self.path = path


def _host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _wait(tree: Any) -> None:
    """Block until every array of ``tree`` is computed, waking often so signal handlers run promptly."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array)]
    while not all(leaf.is_ready() for leaf in leaves):
        time.sleep(0.01)


def first_divergence(metrics: dict[str, np.ndarray], first_update: int) -> tuple[int, int] | None:
    """``(update, seed)`` of the first non-finite ``value_loss [S, n]`` of a chunk, or None if all finite."""
    if "value_loss" not in metrics:
        return None
    bad = ~np.isfinite(metrics["value_loss"])
    if not bad.any():
        return None
    j = int(np.argmax(bad.any(axis=0)))
    return first_update + j, int(np.argmax(bad[:, j]))


def final_train_return(metrics_csv: Path) -> float:
    """Mean over seeds of ``episode_return_mean`` at the last update where some seed's value is finite."""
    from trpojax import report

    data = report.read_metrics(metrics_csv)
    values = data["episode_return_mean"]
    finite = np.isfinite(values)
    if not finite.any():
        return float("nan")
    last = data["update"][finite].max()
    return float(values[finite & (data["update"] == last)].mean())


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    start_time: float | None = None,
    resume: checkpoint.Restored | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Train every seed of ``config``, writing config.yaml, metrics.csv, checkpoints/, summary.json and
    learning_curve.png.

    Metrics are appended (and fsynced) after each chunk; a checkpoint is saved every
    ``config.checkpoint_every`` updates and at the end (keeping ``config.keep_checkpoints``); the summary
    and plot are written (atomically) at the end, after the final deterministic evaluation of each seed.

    Args:
        config: the run config.
        out_dir: a new or empty directory, or, with ``resume``, the run's own directory.
        progress: show a progress bar.
        start_time: ``time.time()`` when the command started (for ``wall_clock_s``).
        resume: a checkpoint of this run (:func:`trpojax.checkpoint.prepare_resume`); its newer
            checkpoints and the metrics rows after its update are discarded and training continues from it.
        stop_requested: polled at each chunk boundary; when it returns True the state is checkpointed and
            :class:`RunInterrupted` is raised.

    Raises:
        RunInterrupted: ``stop_requested()`` became true.
        ValueDiverged: a seed's value loss became non-finite.
    """
    from trpojax import report

    start_time = time.time() if start_time is None else start_time
    out_dir = Path(out_dir)
    trainer = make_trainer(config)
    keys = seed_keys(config)
    done = resume.update if resume is not None else 0
    config_text = config_lib.dump(config)

    compile_s = 0.0
    t0 = time.perf_counter()
    init = trainer.init.lower(keys, config).compile()
    compile_s += time.perf_counter() - t0
    states = init(keys, config) if resume is None else resume.state
    lengths = remaining_lengths(chunk_schedule(config), done)
    compiled: dict[int, Any] = {}
    for length in sorted(set(lengths)):
        t0 = time.perf_counter()
        lowered = trainer.run_chunk.lower(states, config, length)
        compiled[length] = lowered.compile()
        compile_s += time.perf_counter() - t0
    metric_names = metric_order(list(lowered.out_info[1])) if lengths else []
    keys_eval = eval_keys(config)
    t0 = time.perf_counter()
    evaluate = trainer.evaluate.lower(states, keys_eval).compile()
    compile_s += time.perf_counter() - t0

    steps_per_update = trainer.learner.env_steps_per_update
    total_steps = config.num_updates * steps_per_update
    train_s = resume.train_s if resume is not None else 0.0
    saved_at = done if resume is not None else -1
    checkpoint_updates = {config.num_updates}
    if config.checkpoint_every:
        checkpoint_updates.update(range(config.checkpoint_every, config.num_updates, config.checkpoint_every))

    def save(state: TrainState, update: int) -> Path:
        nonlocal saved_at
        if saved_at != update:
            keep = config.keep_checkpoints
            checkpoint.save(out_dir, state, config_text, update=update, keep=keep, train_s=train_s)
            saved_at = update
        return checkpoint.checkpoints_dir(out_dir) / str(update)

    metrics_path = out_dir / "metrics.csv"
    if resume is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        report.write_text_atomic(out_dir / "config.yaml", config_text)
    else:
        checkpoint.discard_after(out_dir, done)
        if metrics_path.exists():
            checkpoint.truncate_metrics(metrics_path, done)
    writer = None
    if lengths:
        writer = report.MetricsWriter(metrics_path, metric_names, append=metrics_path.exists())
    bar = report.Progress(
        (config.num_updates - done) * steps_per_update * config.num_seeds,
        enabled=progress,
        desc=f"{config.algo} {config.env}",
    )
    last_return = float("nan")
    try:
        for length in lengths:
            if stop_requested():
                raise RunInterrupted(done, save(states, done))
            t0 = time.perf_counter()
            previous = states
            states, metrics = compiled[length](states, config)
            _wait((states, metrics))
            metrics = _host(metrics)
            dt = time.perf_counter() - t0
            train_s += dt
            diverged = first_divergence(metrics, done + 1)
            if diverged is not None:
                update, seed = diverged
                upto = {name: values[:, : update - done] for name, values in metrics.items()}
                writer.write_chunk(done + 1, steps_per_update, upto)
                finite_updates = update - 1 - done
                if finite_updates:
                    previous, _ = trainer.run_chunk(previous, config, finite_updates)
                raise ValueDiverged(update, seed, save(previous, update - 1))
            writer.write_chunk(done + 1, steps_per_update, metrics)
            done += length
            if done in checkpoint_updates:
                save(states, done)
            with np.errstate(all="ignore"):
                finite = metrics["episode_return_mean"][:, -1]
                finite = finite[np.isfinite(finite)]
                last_return = float(finite.mean()) if finite.size else last_return
            chunk_steps = length * steps_per_update * config.num_seeds
            bar.update(chunk_steps, chunk_steps / max(dt, 1e-9), last_return)
        if stop_requested():
            raise RunInterrupted(done, save(states, done))
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    eval_returns = np.asarray(evaluate(states, keys_eval))
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
        "train_return_final": final_train_return(metrics_path),
        "wall_clock_s": time.time() - start_time,
        "compile_s": compile_s,
        "train_s": train_s,
        "env_steps_per_s": total_steps * config.num_seeds / max(train_s, 1e-9),
        "devices": [str(d) for d in jax.devices()],
    }
    report.write_json_atomic(out_dir / "summary.json", summary)
    title = f"{config.algo.upper()} on {config.env}"
    report.plot_learning_curve(metrics_path, out_dir / "learning_curve.png", title)
    return RunResult(states=states, summary=summary, out_dir=out_dir)


def default_out_dir(config: Config) -> Path:
    """``runs/<algo>_<env>_<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.algo}_{config.env}_{stamp}"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {str(out_dir)!r} is not empty; choose a new directory (or --resume it)")
    probe = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--out {str(out_dir)!r} is not writable")


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[Callable[[], bool]]:
    """While active, a first SIGINT asks for a stop (the yielded predicate turns true); a second kills.

    The first Ctrl-C only sets a flag, which :func:`run` polls at chunk boundaries, and restores the
    default SIGINT action, so a second Ctrl-C terminates the process at once. Main thread only.
    """
    requested = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal requested
        requested = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        message = "\ninterrupt: saving a checkpoint at the next chunk boundary (Ctrl-C again quits at once)\n"
        os.write(sys.stderr.fileno(), message.encode())

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(prog="python -m trpojax.train", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML run config, e.g. configs/trpo_cartpole.yaml")
    source.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last complete checkpoint"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set trpo.max_kl=0.02 (repeatable)",
    )
    parser.add_argument("--out", help="output directory (default runs/<algo>_<env>_<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _prepare(args: argparse.Namespace) -> tuple[Config, Path, checkpoint.Restored | None]:
    """Validate the CLI input (raising ConfigError / CheckpointError) without writing anything."""
    if args.resume is None:
        config = config_lib.load(args.config, args.overrides)
        out_dir = Path(args.out) if args.out else default_out_dir(config)
        _check_out_dir(out_dir)
        return config, out_dir, None
    if args.overrides or args.out:
        raise ConfigError("--resume DIR continues DIR with its own config.yaml; --set and --out do not apply")
    config, restored, notes = checkpoint.prepare_resume(args.resume, state_template)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return config, Path(args.resume), restored


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code.

    0 on success; 2 on bad input (one line on stderr, nothing written); 130 when stopped by Ctrl-C after
    checkpointing; 1 when the value function diverged (after checkpointing the last finite state).
    """
    start = time.time()
    args = parse_args(argv)
    try:
        config, out_dir, restored = _prepare(args)
    except (ConfigError, checkpoint.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    enable_compilation_cache(config.compilation_cache)
    try:
        with stop_on_sigint() as stop_requested:
            result = run(
                config, out_dir, progress=not args.quiet, start_time=start, resume=restored,
                stop_requested=stop_requested,
            )
    except RunInterrupted as err:
        print(
            f"interrupted after update {err.update} of {config.num_updates}; checkpoint {err.path}; "
            f"continue with: python -m trpojax.train --resume {out_dir}",
            file=sys.stderr,
        )
        return 130
    except ValueDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
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

"""The host-side run loop and the CLI of ``python -m trpojax.train``.

:func:`run` compiles the seed-vmapped trainer of :mod:`trpojax.train`, runs it chunk by chunk, appends
metrics.csv rows, saves checkpoints on chunk boundaries, stops cleanly on Ctrl-C and on a diverging value
function, and ends with the deterministic evaluation, summary.json and learning_curve.png. :func:`main`
validates the command line (exit 2 and one line on bad input, before anything is written) and calls it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from trpojax import checkpoint
from trpojax import config as config_lib
from trpojax.algos import TrainState
from trpojax.config import Config, ConfigError
from trpojax.programs import EXECUTABLES_SUBDIR, ExecutableCache, compile_programs
from trpojax.train import (
    chunk_schedule,
    enable_compilation_cache,
    eval_keys,
    make_trainer,
    remaining_lengths,
    seed_keys,
    state_template,
    use_split,
)

LEADING_METRICS = (
    "episode_return_mean", "episode_length_mean", "kl", "surrogate_gain", "cg_iters", "value_loss"
)


def metric_order(names: Sequence[str]) -> list[str]:
    """Column order for metrics.csv: the common metrics first, then the rest alphabetically."""
    lead = [n for n in LEADING_METRICS if n in names]
    return lead + sorted(n for n in names if n not in lead)


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
    """Block until every array of ``tree`` is computed, returning the moment it is.

    A helper thread blocks on the arrays; this (main) thread waits on an event, which a signal interrupts,
    so the SIGINT handler runs promptly even during a long chunk. An error computing the arrays is raised
    here.
    """
    done = threading.Event()
    errors: list[BaseException] = []

    def block() -> None:
        try:
            jax.block_until_ready(tree)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)
        finally:
            done.set()

    threading.Thread(target=block, name="trpojax-wait", daemon=True).start()
    while not done.wait(0.1):
        pass
    if errors:
        raise errors[0]


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
    executable_cache: ExecutableCache | None = None,
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
        executable_cache: where to load compiled programs from and store them (none by default).

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

    lengths = remaining_lengths(chunk_schedule(config), done)
    keys_eval = eval_keys(config)
    # matplotlib (for learning_curve.png) is imported while the programs compile, or when they all came from
    # the executable cache, on a background thread while the run trains.
    programs = compile_programs(trainer, config, keys, keys_eval, lengths, executable_cache, report.pyplot)
    if "matplotlib.pyplot" not in sys.modules:
        report.preload_pyplot()
    compiled, evaluate, compile_s = programs.chunks, programs.evaluate, programs.compile_s
    metric_names = metric_order(programs.metric_names)
    states = programs.init(keys, config) if resume is None else resume.state

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
    # Up to two compiled chunks are in flight: the next one is dispatched before the host reads the current
    # one's metrics, writes them and checkpoints, so the device never waits for the host. A split chunk
    # (pipeline.SplitRunner) runs on the host threads themselves and returns when done.
    in_flight = 1 if use_split(config) else 2
    queue: deque[tuple[int, TrainState, TrainState, dict[str, Any]]] = deque()
    launched, tail = 0, states
    ready_at = time.perf_counter()
    try:
        while True:
            while launched < len(lengths) and len(queue) < in_flight and not stop_requested():
                out = compiled[lengths[launched]](tail, config)
                queue.append((lengths[launched], tail, *out))
                launched, tail = launched + 1, out[0]
            if not queue:
                break
            length, previous, states, metrics = queue.popleft()
            _wait((states, metrics))
            metrics = _host(metrics)
            dt, ready_at = time.perf_counter() - ready_at, time.perf_counter()
            train_s += dt
            diverged = first_divergence(metrics, done + 1)
            if diverged is not None:
                update, seed = diverged
                upto = {name: values[:, : update - done] for name, values in metrics.items()}
                writer.write_chunk(done + 1, steps_per_update, upto)
                finite_updates = update - 1 - done
                if finite_updates:
                    previous, _ = programs.run_chunk(previous, config, finite_updates)
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
        if hasattr(programs.run_chunk, "close"):
            programs.run_chunk.close()

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
        "programs_from_cache": programs.cached + int(evaluate.from_cache),
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


def check_out_dir(out_dir: Path, hint: str = "") -> None:
    """Raise ConfigError unless ``out_dir`` is new or an empty directory whose nearest existing parent is
    writable; ``hint`` is appended to the not-empty message."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {str(out_dir)!r} is not empty; choose a new directory{hint}")
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
    parser = argparse.ArgumentParser(
        prog="python -m trpojax.train", description="Train a policy on a gymnax environment."
    )
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
        check_out_dir(out_dir, " (or --resume it)")
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
    cache_dir = enable_compilation_cache(config.compilation_cache)
    executables = ExecutableCache(cache_dir / EXECUTABLES_SUBDIR) if cache_dir is not None else None
    try:
        with stop_on_sigint() as stop_requested:
            result = run(
                config, out_dir, progress=not args.quiet, start_time=start, resume=restored,
                stop_requested=stop_requested, executable_cache=executables,
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

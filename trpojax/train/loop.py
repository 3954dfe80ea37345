"""The host-side run loop: compile a run's programs, run them chunk by chunk, write what each chunk gives.

:func:`run` takes the run's keys and programs from a path (:class:`trpojax.trainer.PlainPath`, or on CPU
:class:`trpojax.fastcpu.FastPath`), then loops over chunks: dispatch, wait, append the metrics rows, stop
on a diverging value function, checkpoint on schedule (every ``checkpoint_every`` updates and at the first
chunk boundary ``checkpoint_interval_s`` seconds after the last checkpoint), advance the progress bar, call
``progress_fn`` and the experiment trackers (:mod:`~trpojax.train.trackers`); it ends with the deterministic
evaluation, summary.json and learning_curve.png. A requested stop (Ctrl-C, SIGTERM, SIGUSR1) is honoured at
the next chunk boundary: a chunk dispatched ahead is abandoned, the state after the last finished chunk is
checkpointed and :class:`RunInterrupted` raised.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from trpojax import config as config_lib
from trpojax.algos import TrainState
from trpojax.config import Config
from trpojax.train import checkpoint, outputs, trackers
from trpojax.trainer import PlainPath, Programs, Trainer, chunk_schedule, make_trainer, remaining_lengths

SLOW_CHUNK_S = 60.0  # a chunk longer than this delays a requested stop by as much: warn once

LEADING_METRICS = (
    "episode_return_mean", "episode_length_mean", "kl", "surrogate_gain", "cg_iters", "value_loss"
)


class ProgramPath(Protocol):
    """Where a run's keys and programs come from (:class:`trpojax.trainer.PlainPath`,
    :class:`trpojax.fastcpu.FastPath`)."""

    def keys(self, config: Config) -> tuple[jax.Array, jax.Array]: ...

    def compile(
        self, trainer: Trainer, config: Config, keys: jax.Array, keys_eval: jax.Array, lengths: Sequence[int]
    ) -> Programs: ...


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
    data = outputs.read_metrics(metrics_csv)
    values = data["episode_return_mean"]
    finite = np.isfinite(values)
    if not finite.any():
        return float("nan")
    last = data["update"][finite].max()
    return float(values[finite & (data["update"] == last)].mean())


class Chunk(NamedTuple):
    """One finished chunk: its length, the states before and after it, its host metrics and wall time."""

    length: int
    before: TrainState
    after: TrainState
    metrics: dict[str, np.ndarray]
    seconds: float


def run_chunks(
    programs: Programs,
    config: Config,
    states: TrainState,
    lengths: Sequence[int],
    stop_requested: Callable[[], bool],
    in_flight: int,
) -> Iterator[Chunk]:
    """Run the chunks of ``lengths`` from ``states``, yielding each as it finishes, until done or stopped.

    Up to ``in_flight`` compiled chunks are dispatched ahead, so the device never waits while the host
    writes the previous chunk's outputs (a split chunk runs on the host threads and returns when done).
    No new chunk is dispatched once ``stop_requested()``, and after the chunk that was running when the
    stop came is yielded the generator returns without waiting for the chunk dispatched behind it (its
    result is dropped), so a stop waits for at most the chunk that is running.
    """
    queue: deque[tuple[int, TrainState, Any]] = deque()
    launched, tail = 0, states
    ready_at = time.perf_counter()
    while True:
        while launched < len(lengths) and len(queue) < in_flight and not stop_requested():
            out = programs.chunks[lengths[launched]](tail, config)
            queue.append((lengths[launched], tail, out))
            launched, tail = launched + 1, out[0]
        if not queue:
            return
        length, before, (after, metrics) = queue.popleft()
        _wait((after, metrics))
        metrics = _host(metrics)
        seconds, ready_at = time.perf_counter() - ready_at, time.perf_counter()
        yield Chunk(length, before, after, metrics, seconds)
        if stop_requested():
            return  # chunks dispatched behind this one are abandoned


class RunOutputs:
    """The run directory while a run writes it: metrics.csv, checkpoints, the progress bar.

    Args:
        config: the run config.
        out_dir: the run directory.
        metric_names: the metrics a chunk returns.
        steps_per_update: environment steps per update and seed.
        resume: the checkpoint being resumed, if any.
        to_run: how many chunks this run still has (no metrics file is opened for none).
        progress: show the progress bar.
    """

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        metric_names: Sequence[str],
        steps_per_update: int,
        resume: checkpoint.Restored | None,
        to_run: int,
        progress: bool,
    ):
        self.config, self.out_dir, self.steps_per_update = config, out_dir, steps_per_update
        self.config_text = config_lib.dump(config)
        self.done = resume.update if resume is not None else 0
        self.saved_at = self.done if resume is not None else -1
        self.train_s = resume.train_s if resume is not None else 0.0
        self.saved_clock = time.monotonic()  # for checkpoint_interval_s: the run's start counts as a save
        self.warned_slow = False
        self.last_return = float("nan")
        self.metrics_path = out_dir / "metrics.csv"
        self.checkpoint_updates = {config.num_updates}
        if config.checkpoint_every:
            self.checkpoint_updates.update(range(config.checkpoint_every, config.num_updates, config.checkpoint_every))
        if resume is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            outputs.write_text_atomic(out_dir / "config.yaml", self.config_text)
        else:
            checkpoint.discard_after(out_dir, self.done)
            if self.metrics_path.exists():
                checkpoint.truncate_metrics(self.metrics_path, self.done)
        self.writer = None
        if to_run:
            names = metric_order(metric_names)
            self.writer = outputs.MetricsWriter(self.metrics_path, names, append=self.metrics_path.exists())
        total = (config.num_updates - self.done) * steps_per_update * config.num_seeds
        self.bar = outputs.Progress(total, enabled=progress, desc=f"{config.algo} {config.env}")

    def save(self, state: TrainState, update: int) -> Path:
        """Checkpoint ``state`` as of ``update`` (once per update) and return its directory."""
        if self.saved_at != update:
            checkpoint.save(self.out_dir, state, self.config_text, update=update, keep=self.config.keep_checkpoints,
                            train_s=self.train_s)
            self.saved_at = update
            self.saved_clock = time.monotonic()
        return checkpoint.checkpoints_dir(self.out_dir) / str(update)

    def checkpoint_due(self) -> bool:
        """True at a scheduled update (``checkpoint_every``, the last) or once ``checkpoint_interval_s``
        seconds have passed since the last checkpoint (or the run's start)."""
        interval = self.config.checkpoint_interval_s
        overdue = interval > 0 and time.monotonic() - self.saved_clock >= interval
        return self.done in self.checkpoint_updates or overdue

    def write_chunk(self, chunk: Chunk) -> None:
        """Append the chunk's rows, checkpoint if a scheduled update was reached or the checkpoint interval
        has passed, advance the bar."""
        self.train_s += chunk.seconds
        self.writer.write_chunk(self.done + 1, self.steps_per_update, chunk.metrics)
        self.done += chunk.length
        if self.checkpoint_due():
            self.save(chunk.after, self.done)
        if chunk.seconds > SLOW_CHUNK_S and not self.warned_slow:
            self.warned_slow = True
            print(
                f"\nnote: a chunk took {chunk.seconds:.0f} s; a stop signal (Ctrl-C, SIGTERM, SIGUSR1) waits for "
                "the running chunk, so raise num_chunks if the job must stop faster",
                file=sys.stderr,
            )
        with np.errstate(all="ignore"):
            last = chunk.metrics["episode_return_mean"][:, -1]
            last = last[np.isfinite(last)]
        self.last_return = float(last.mean()) if last.size else self.last_return
        steps = chunk.length * self.steps_per_update * self.config.num_seeds
        self.bar.update(steps, steps / max(chunk.seconds, 1e-9), self.last_return)

    def diverged(
        self, chunk: Chunk, update: int, seed: int, programs: Programs, hooks: trackers.Hooks
    ) -> ValueDiverged:
        """Write the chunk's rows up to ``update`` (and hand them to ``hooks``), checkpoint the state before
        it; the error to raise."""
        self.train_s += chunk.seconds
        upto = {name: values[:, : update - self.done] for name, values in chunk.metrics.items()}
        self.writer.write_chunk(self.done + 1, self.steps_per_update, upto)
        hooks(update, update * self.steps_per_update, upto)
        state, finite_updates = chunk.before, update - 1 - self.done
        if finite_updates:
            state, _ = programs.run_chunk(state, self.config, finite_updates)
        return ValueDiverged(update, seed, self.save(state, update - 1))

    def close(self) -> None:
        """Close the bar and the metrics file."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    start_time: float | None = None,
    resume: checkpoint.Restored | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    path: ProgramPath | None = None,
    progress_fn: trackers.ProgressFn | None = None,
) -> RunResult:
    """Train every seed of ``config``, writing config.yaml, metrics.csv, checkpoints/, summary.json and
    learning_curve.png.

    Metrics are appended (and fsynced) after each chunk; a checkpoint is saved every
    ``config.checkpoint_every`` updates, at the first chunk boundary ``config.checkpoint_interval_s``
    seconds after the previous checkpoint, and at the end (keeping ``config.keep_checkpoints``); the summary
    and plot are written (atomically) at the end, after the final deterministic evaluation of each seed.
    The trackers of ``config.loggers`` are started first, before anything else is written or compiled, and
    closed on every way out (:mod:`trpojax.train.trackers`).

    Args:
        config: the run config.
        out_dir: a new or empty directory, or, with ``resume``, the run's own directory.
        progress: show a progress bar.
        start_time: ``time.time()`` when the command started (for ``wall_clock_s``).
        resume: a checkpoint of this run (:func:`trpojax.train.checkpoint.prepare_resume`); its newer
            checkpoints and the metrics rows after its update are discarded and training continues from it.
        stop_requested: polled at each chunk boundary; when it returns True the state is checkpointed and
            :class:`RunInterrupted` is raised.
        path: where keys and programs come from (default :class:`trpojax.trainer.PlainPath`).
        progress_fn: ``progress_fn(update, env_steps, metrics)``, called on this thread after each chunk's
            rows are in metrics.csv (and its checkpoint, if one was due, is saved): ``update`` is the number
            of updates done, ``env_steps`` the environment steps done per seed (``update *
            steps_per_update``), ``metrics`` maps each metrics.csv column after ``seed`` to a numpy array
            ``[num_seeds, n]`` of the chunk's ``n`` updates ``update - n + 1 .. update`` (after a value
            divergence, the rows up to it). On a resume the first call covers the first update after the
            checkpoint. Its return value is ignored; if it raises, one warning line goes to stderr and it is
            not called again while training goes on (to stop a run, use ``stop_requested``).

    Raises:
        RunInterrupted: ``stop_requested()`` became true.
        ValueDiverged: a seed's value loss became non-finite.
        trackers.TrackerError: a tracker of ``config.loggers`` could not start (nothing was written).
    """
    start_time = time.time() if start_time is None else start_time
    out_dir, path = Path(out_dir), path or PlainPath()
    hooks = trackers.start(config, out_dir, resume.update if resume is not None else 0, progress_fn)
    with hooks:  # closed as finished after the final evaluation, as failed on an error or a stop
        result = _train(config, out_dir, start_time, resume, stop_requested, path, hooks, progress)
        hooks.finish(result.summary)
    return result


def _train(
    config: Config, out_dir: Path, start_time: float, resume: checkpoint.Restored | None,
    stop_requested: Callable[[], bool], path: ProgramPath, hooks: trackers.Hooks, progress: bool,
) -> RunResult:
    """:func:`run` after its trackers started: compile, train chunk by chunk, evaluate."""
    trainer = make_trainer(config)
    keys, keys_eval = path.keys(config)
    lengths = remaining_lengths(chunk_schedule(config), resume.update if resume is not None else 0)
    programs = path.compile(trainer, config, keys, keys_eval, lengths)
    if "matplotlib.pyplot" not in sys.modules:
        outputs.preload_pyplot()  # for learning_curve.png, on a background thread while the run trains
    states = programs.init(keys, config) if resume is None else resume.state
    steps_per_update = trainer.learner.env_steps_per_update
    out = RunOutputs(config, out_dir, programs.metric_names, steps_per_update, resume, len(lengths), progress)
    try:
        for chunk in run_chunks(programs, config, states, lengths, stop_requested, programs.in_flight):
            diverged = first_divergence(chunk.metrics, out.done + 1)
            if diverged is not None:
                raise out.diverged(chunk, *diverged, programs, hooks)
            out.write_chunk(chunk)
            hooks(out.done, out.done * steps_per_update, chunk.metrics)
            states = chunk.after
        if stop_requested():
            raise RunInterrupted(out.done, out.save(states, out.done))
    finally:
        out.close()
        programs.close()
    return _finish(config, out_dir, states, programs, keys_eval, out.train_s, start_time, steps_per_update)


def _finish(
    config: Config, out_dir: Path, states: TrainState, programs: Programs, keys_eval: jax.Array,
    train_s: float, start_time: float, steps_per_update: int,
) -> RunResult:
    """Evaluate each seed's final policy, write summary.json and learning_curve.png."""
    eval_returns = np.asarray(programs.evaluate(states, keys_eval))
    per_seed = eval_returns.mean(axis=1)
    total_steps = config.num_updates * steps_per_update
    metrics_path = out_dir / "metrics.csv"
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
        "compile_s": programs.compile_s,
        "programs_from_cache": programs.cached + int(getattr(programs.evaluate, "from_cache", False)),
        "train_s": train_s,
        "env_steps_per_s": total_steps * config.num_seeds / max(train_s, 1e-9),
        "devices": [str(d) for d in jax.devices()],
    }
    outputs.write_json_atomic(out_dir / "summary.json", summary)
    title = f"{config.algo.upper()} on {config.env}"
    outputs.plot_learning_curve(metrics_path, out_dir / "learning_curve.png", title)
    return RunResult(states=states, summary=summary, out_dir=out_dir)

"""Experiment trackers (TensorBoard, Weights & Biases) and the run loop's ``progress_fn`` hooks.

A run config's ``loggers:`` names the trackers (:data:`trpojax.config.LOGGERS`; metrics.csv is always
written, so ``csv`` may be listed or not). :func:`start` starts them before training: one that cannot
start (its package missing, no credentials) raises :class:`TrackerError`, a :class:`~trpojax.config.ConfigError`
(exit code 2 in the CLI), after removing whatever the trackers had written. Between chunks, on the host,
:class:`Hooks` hands each chunk's metrics to the caller's ``progress_fn`` and to each tracker: per update, the
mean over seeds as ``train/<metric>`` and each seed's value as ``seed_<i>/<metric>``, at step = environment
steps per seed. The resolved config goes in as hyperparameters at the start, the final evaluation
(``eval/return_mean``, ``eval/return_std``, ``seed_<i>/eval_return``) at the end. A hook that raises is
warned about once on stderr and not called again; training, metrics.csv and checkpoints go on.
See docs/tracking.md.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trpojax import config as config_lib
from trpojax.config import Config, ConfigError
from trpojax.train import outputs

ProgressFn = Callable[[int, int, Mapping[str, np.ndarray]], Any]


class TrackerError(ConfigError):
    """A tracker named in ``loggers:`` could not start; the message is one line naming it."""


class Tracker(Protocol):
    """What :class:`Hooks` calls: a tracker, or the caller's ``progress_fn`` (:class:`Callback`)."""

    name: str

    def log(self, update: int, env_steps: int, metrics: Mapping[str, np.ndarray]) -> None: ...

    def finish(self, summary: Mapping[str, Any]) -> None: ...

    def close(self, ok: bool) -> None: ...


def per_update(
    update: int, env_steps: int, metrics: Mapping[str, np.ndarray]
) -> Iterator[tuple[int, dict[str, float]]]:
    """``(env_steps, scalars)`` of each update of a chunk, oldest first.

    Args:
        update: updates done after the chunk (its last update).
        env_steps: environment steps per seed done after the chunk (``update * steps_per_update``).
        metrics: name -> ``[num_seeds, n]`` values of the chunk's ``n`` updates.

    Yields:
        For update ``u`` of the chunk: ``u * steps_per_update`` and ``{"train/<name>": mean over seeds,
        "seed_<i>/<name>": seed i's value}`` (NaN where metrics.csv has nan).
    """
    steps_per_update = env_steps // update
    n = next(iter(metrics.values())).shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an update where no seed finished an episode: NaN
        means = {name: np.nanmean(values, axis=0) for name, values in metrics.items()}
    for j in range(n):
        scalars = {f"train/{name}": float(mean[j]) for name, mean in means.items()}
        for name, values in metrics.items():
            scalars.update({f"seed_{i}/{name}": float(v) for i, v in enumerate(values[:, j])})
        yield (update - n + 1 + j) * steps_per_update, scalars


def evaluation(summary: Mapping[str, Any]) -> dict[str, float]:
    """The final evaluation of a run's summary.json as tracker scalars: ``eval/return_mean``,
    ``eval/return_std`` and ``seed_<i>/eval_return``."""
    scalars = {"eval/return_mean": summary["eval_return_mean"], "eval/return_std": summary["eval_return_std"]}
    scalars.update({f"seed_{i}/eval_return": v for i, v in enumerate(summary["eval_return_per_seed"])})
    return {key: float(value) for key, value in scalars.items()}


def hyperparameters(config: Config) -> dict[str, Any]:
    """The resolved config flattened to ``{"trpo.max_kl": 0.01, ...}``; lists become strings."""
    flat: dict[str, Any] = {}

    def walk(data: Mapping[str, Any], prefix: str) -> None:
        for key, value in data.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = str(value) if isinstance(value, list) else value

    walk(config_lib.to_dict(config), "")
    return flat


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


class TensorBoardTracker:
    """TensorBoard event files in ``DIR/tensorboard`` through tensorboardX's ``SummaryWriter``.

    A fresh run writes the config as hyperparameters (the HParams dashboard, its metric ``eval/return_mean``)
    and as text; a resumed one purges the steps after its checkpoint (``purge_step``), which an earlier
    segment may have logged before it was killed. The writer is flushed after each chunk.
    """

    name = "tensorboard"
    subdir = "tensorboard"

    def __init__(self, config: Config, out_dir: Path, resume_update: int):
        try:
            from tensorboardX import SummaryWriter
            from tensorboardX.summary import hparams
        except ImportError as err:
            raise TrackerError(f"loggers: tensorboard needs tensorboardX ({err}); "
                               "pip install -e '.[tensorboard]'") from None
        try:
            purge_step = resume_update * config.steps_per_update + 1  # events of later steps: superseded
            suffix = f".resumed-{resume_update:09d}" if resume_update else ""  # sorts after the segments before
            self.writer = SummaryWriter(str(out_dir / self.subdir), purge_step=purge_step, filename_suffix=suffix)
        except Exception as err:  # an unwritable directory
            raise TrackerError(f"loggers: tensorboard cannot start: {_one_line(err)}") from None
        self.end = None
        if resume_update == 0:
            experiment, start, self.end = hparams(hyperparameters(config), {"eval/return_mean": 0.0})
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(start)
            text = "".join(f"    {line}\n" for line in config_lib.dump(config).splitlines())
            self.writer.add_text("config", text)
            self.writer.flush()

    def log(self, update: int, env_steps: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Add each update's scalars at step = its environment steps per seed, then flush."""
        for step, scalars in per_update(update, env_steps, metrics):
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Add the final evaluation at the run's last step and mark the hyperparameter session done."""
        for tag, value in evaluation(summary).items():
            self.writer.add_scalar(tag, value, summary["env_steps"])
        if self.end is not None:
            self.writer.file_writer.add_summary(self.end)

    def close(self, ok: bool) -> None:
        """Flush and close the event file."""
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run with its files in ``DIR/wandb`` (offline under ``WANDB_MODE=offline``).

    The project is ``$WANDB_PROJECT`` or ``trpojax``, the run's name the run directory's, its group
    ``<algo>-<env>``, its config the resolved run config. The run id is kept in ``DIR/wandb/run_id``; a
    resumed run continues the same wandb run (``resume="allow"``). The final evaluation goes to the run's
    summary; the run is finished with exit code 0, or 1 after an error or a stop.
    """

    name = "wandb"
    subdir = "wandb"

    def __init__(self, config: Config, out_dir: Path, resume_update: int):
        try:
            import wandb
        except ImportError as err:
            raise TrackerError(f"loggers: wandb needs the wandb package ({err}); pip install -e '.[wandb]'") from None
        id_file = out_dir / self.subdir / "run_id"
        run_id = id_file.read_text().strip() if resume_update and id_file.is_file() else None
        (out_dir / self.subdir).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "trpojax"), dir=str(out_dir), name=out_dir.name,
                group=f"{config.algo}-{config.env}", config=config_lib.to_dict(config), id=run_id,
                resume="allow" if run_id else None,
                mode=os.environ.get("WANDB_MODE"),  # as set now: wandb reads its environment once per process
            )
        except Exception as err:  # no API key, an unreachable server, a bad setting
            raise TrackerError(f"loggers: wandb cannot start: {_one_line(err)}") from None
        outputs.write_text_atomic(id_file, f"{self.run.id}\n")

    def log(self, update: int, env_steps: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Log each update's scalars at step = its environment steps per seed."""
        for step, scalars in per_update(update, env_steps, metrics):
            self.run.log(scalars, step=step)

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Put the final evaluation in the run's summary."""
        self.run.summary.update(evaluation(summary))

    def close(self, ok: bool) -> None:
        """Finish the wandb run (exit code 0 when ``ok``, else 1) and, unless the process has another wandb run
        open, wait for wandb's service to write it out (``wandb.teardown``: ``finish`` returns before the
        offline run file is complete)."""
        import wandb

        self.run.finish(exit_code=0 if ok else 1)
        if wandb.run is None:
            wandb.teardown()


TRACKERS: dict[str, type] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}


class Callback:
    """The caller's ``progress_fn(update, env_steps, metrics)`` as a :class:`Tracker` (logs only)."""

    name = "progress_fn"

    def __init__(self, progress_fn: ProgressFn):
        self.progress_fn = progress_fn

    def log(self, update: int, env_steps: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Call ``progress_fn``."""
        self.progress_fn(update, env_steps, metrics)

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Nothing: ``progress_fn`` sees only training metrics."""

    def close(self, ok: bool) -> None:
        """Nothing to close."""


class Hooks:
    """What the run loop calls between chunks: the caller's ``progress_fn`` and the started trackers.

    Each is guarded: the first exception one raises is printed as one warning line on stderr, and that one
    is closed and not called again, while the others and the run go on. Used as a context manager, it closes
    them all on exit (``ok`` unless an exception is leaving).

    Args:
        hooks: the trackers (and :class:`Callback`) in calling order.
    """

    def __init__(self, hooks: Sequence[Tracker]):
        self.active = list(hooks)

    def _each(self, method: str, update: int | None, *args: Any) -> None:
        for hook in list(self.active):
            try:
                getattr(hook, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker's failure must not stop training
                self.active.remove(hook)
                where = f"at update {update}" if update is not None else "after training"
                print(f"warning: {hook.name} failed {where} ({_one_line(err)}); it is off for the rest of the "
                      "run, metrics.csv and checkpoints go on", file=sys.stderr)
                try:
                    hook.close(False)
                except Exception:  # noqa: BLE001 - already reported as failed
                    pass

    def __call__(self, update: int, env_steps: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Hand one chunk's metrics (name -> ``[num_seeds, n]``, its last update ``update``) to each hook."""
        self._each("log", update, update, env_steps, metrics)

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Hand the run's summary (the final evaluation) to each hook."""
        self._each("finish", None, summary)

    def close(self, ok: bool) -> None:
        """Close each hook; ``ok`` says whether the run finished."""
        self._each("close", None, ok)
        self.active = []

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(exc_type is None)


def start(
    config: Config, out_dir: str | Path, resume_update: int = 0, progress_fn: ProgressFn | None = None
) -> Hooks:
    """Start the trackers of ``config.loggers`` (before training) and return them, after ``progress_fn``.

    Args:
        config: the run config.
        out_dir: the run directory (created if need be; the trackers write in their own folders inside it).
        resume_update: the update training continues from (0 for a fresh run).
        progress_fn: the caller's hook, called first.

    Raises:
        TrackerError: a tracker could not start; the ones already started are closed and every file and
            folder the trackers created is removed again (the run directory too if it was new).
    """
    out_dir = Path(out_dir)
    kinds = [TRACKERS[name] for name in config.loggers if name != "csv"]
    folders = [out_dir / kind.subdir for kind in kinds]
    out_existed = out_dir.exists()
    before = {folder: set(folder.rglob("*")) if folder.exists() else None for folder in folders}
    started: list[Tracker] = [Callback(progress_fn)] if progress_fn is not None else []
    try:
        for kind in kinds:
            started.append(kind(config, out_dir, resume_update))
    except TrackerError:
        Hooks(started).close(False)
        _remove_new(out_dir, out_existed, before)
        raise
    return Hooks(started)


def _remove_new(out_dir: Path, out_existed: bool, before: Mapping[Path, set[Path] | None]) -> None:
    """Remove what appeared in the trackers' folders (all of ``out_dir`` if it did not exist)."""
    if not out_existed:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for folder, had in before.items():
        if had is None:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for path in sorted(set(folder.rglob("*")) - had, reverse=True):  # a folder's files before it
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

"""Run outputs: metrics CSV, atomic JSON/YAML writes, the progress display and learning-curve plots."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask), not the
    temporary file's private 0600, so run directories stay readable on shared cluster file systems.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON (NaN/inf become null)."""
    write_text_atomic(path, json.dumps(_json_safe(data), indent=2) + "\n")


class MetricsWriter:
    """Append per-update, per-seed metric rows to a CSV file, flushing after each chunk.

    Columns: ``update, env_steps, seed`` then the metric names in the order first given. With ``append``
    the rows go after those of an existing file (a resumed run), whose header must name the same columns.
    """

    def __init__(self, path: str | Path, metric_names: Sequence[str], append: bool = False):
        self.path = Path(path)
        self.columns = ["update", "env_steps", "seed", *metric_names]
        if append:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header != self.columns:
                raise ValueError(f"{self.path} has columns {header}, expected {self.columns}")
        self._file = open(self.path, "a" if append else "w", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._file)
        if not append:
            self._writer.writerow(self.columns)

    def write_chunk(
        self, first_update: int, steps_per_update: int, metrics: Mapping[str, np.ndarray]
    ) -> None:
        """Write ``metrics[name] [num_seeds, n]`` of updates ``first_update ..`` ``+ n - 1``, then fsync."""
        names = self.columns[3:]
        num_seeds, n = np.shape(metrics[names[0]])
        for j in range(n):
            update = first_update + j
            for seed in range(num_seeds):
                row = [update, update * steps_per_update, seed]
                row += [_fmt(metrics[name][seed, j]) for name in names]
                self._writer.writerow(row)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


def _fmt(value: Any) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.6g}"


def read_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """Read a metrics CSV into columns of float arrays."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def preload_pyplot() -> threading.Thread:
    """Import :func:`pyplot` on a background thread (0.2-0.3 s), e.g. while a run trains; returns the thread.

    A later :func:`pyplot` call waits for this import (Python's import lock) instead of repeating it.
    """
    thread = threading.Thread(target=pyplot, name="trpojax-import-pyplot", daemon=True)
    thread.start()
    return thread


def plot_learning_curve(
    metrics_csv: str | Path,
    out_png: str | Path,
    title: str,
    column: str = "episode_return_mean",
) -> None:
    """Plot ``column`` against env steps: the mean over seeds, a min-max band and a +-1 std band."""
    plt = pyplot()

    data = read_metrics(metrics_csv)
    steps = np.unique(data["env_steps"])
    num_seeds = int(data["seed"].max()) + 1
    values = np.full((num_seeds, steps.size), np.nan)
    index = np.searchsorted(steps, data["env_steps"])
    values[data["seed"].astype(int), index] = data[column]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    ax.fill_between(steps, lo, hi, alpha=0.15, color="C0", label=f"min-max over {num_seeds} seeds")
    band_lo, band_hi = np.maximum(mean - std, lo), np.minimum(mean + std, hi)  # never outside the seeds' range
    ax.fill_between(steps, band_lo, band_hi, alpha=0.3, color="C0", label="mean +- std (within min-max)")
    ax.plot(steps, mean, color="C0", lw=2, label="mean")
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel(column.replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    tmp = Path(out_png).with_name(f".{Path(out_png).name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)


class Progress:
    """Progress bar over environment steps (tqdm on stderr), showing steps/s and the mean return."""

    def __init__(self, total_steps: int, enabled: bool = True, desc: str = "train"):
        from tqdm import tqdm

        self._bar = tqdm(
            total=total_steps,
            unit="step",
            unit_scale=True,
            desc=desc,
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def update(self, steps: int, steps_per_s: float, mean_return: float) -> None:
        """Advance by ``steps`` and show the current throughput and return."""
        self._bar.set_postfix_str(f"{steps_per_s:,.0f} steps/s, return {mean_return:.1f}", refresh=False)
        self._bar.update(steps)

    def close(self) -> None:
        """Finish the bar."""
        self._bar.close()

"""Compare runs and sweeps: learning curves on one figure and a table of final evaluation returns.

Usage::

    python -m trpojax.compare DIR... [--out FILE.png] [--metric NAME]

Each ``DIR`` is a finished run (``config.yaml``, ``metrics.csv``, ``summary.json``, written by
``python -m trpojax.train``) or a sweep (``sweep.yaml``, ``results.csv``, ``curves.csv``, written by
``python -m trpojax.sweep``), where every config is one curve labelled by its swept values. Every curve is
the mean over seeds of ``NAME`` (a ``metrics.csv`` column, default ``episode_return_mean``; sweeps record
only that one) against environment steps per seed, with a 95% stratified-bootstrap band over seeds
(:func:`trpojax.core.stats.curve_band`). The figure goes to ``FILE.png`` (default ``compare.png`` in the
working directory) and a Markdown table of each curve's final evaluation return (mean deterministic return
per seed, as in ``summary.json`` / ``results.csv``: IQM and mean over seeds with 95% bootstrap intervals,
:func:`trpojax.core.stats.config_stats`) is printed.

Bad input exits with code 2 and one line naming it, before anything is written: a directory that is
neither a run nor a sweep, an unfinished run (no ``summary.json``: its final evaluation is what the table
compares), a metric a directory does not record, or directories of different environments or different
environment-step budgets per seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from trpojax.config import ConfigError
from trpojax.core import stats
from trpojax.train import outputs

DEFAULT_METRIC = "episode_return_mean"
RUN_FILES = ("config.yaml", "metrics.csv")
SWEEP_FILES = ("sweep.yaml", "results.csv", "curves.csv")
BAND_REPS = 500  # bootstrap resamples per point of a curve's band (the table's intervals use stats' 2000)


class Curve(NamedTuple):
    """One learning curve over seeds and the final evaluation of those seeds.

    Attributes:
        label: the run directory's name, or ``sweep-dir: path=value, ...`` for a sweep config.
        env: the environment id.
        env_steps: [U] environment steps per seed after each update.
        values: [num_seeds, U] the metric after each update (NaN where not recorded).
        eval_return: [num_seeds] final mean deterministic evaluation return of each seed.
    """

    label: str
    env: str
    env_steps: np.ndarray
    values: np.ndarray
    eval_return: np.ndarray


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _float(text: str) -> float:
    return float(text) if text else np.nan


def _grid(rows: list[dict[str, str]], key: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [U], values [S, U])`` from rows with ``key`` (seed), ``update``, ``env_steps``, ``metric``."""
    seeds = sorted({int(r[key]) for r in rows})
    updates = sorted({int(r["update"]) for r in rows})
    values = np.full((len(seeds), len(updates)), np.nan)
    steps = np.zeros(len(updates), dtype=np.int64)
    seed_index, update_index = {s: i for i, s in enumerate(seeds)}, {u: i for i, u in enumerate(updates)}
    for r in rows:
        u = update_index[int(r["update"])]
        values[seed_index[int(r[key])], u] = _float(r[metric])
        steps[u] = int(r["env_steps"])
    return steps, values


def load_run(run_dir: Path, metric: str) -> Curve:
    """The curve of a finished run directory.

    Raises:
        ConfigError: ``summary.json`` is missing (unfinished run) or ``metrics.csv`` has no column ``metric``.
    """
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is an unfinished run (no summary.json): nothing to compare yet")
    summary = json.loads(summary_path.read_text())
    columns, rows = _rows(run_dir / "metrics.csv")
    if metric not in columns:
        names = ", ".join(c for c in columns if c not in ("update", "env_steps", "seed"))
        raise ConfigError(f"--metric {metric!r}: not recorded in {str(run_dir / 'metrics.csv')!r} (it has {names})")
    steps, values = _grid(rows, "seed", metric)
    eval_return = np.asarray(summary["eval_return_per_seed"], dtype=np.float64)
    if steps.size == 0 or int(steps[-1]) != int(summary["env_steps"]):
        raise ConfigError(f"{str(run_dir)!r}: metrics.csv does not reach summary.json's {summary['env_steps']} "
                          "env steps")
    return Curve(run_dir.name or str(run_dir), summary["env"], steps, values, eval_return)


def _short(value: str) -> str:
    """A swept value for a label: floats to 4 significant digits (results.csv keeps them exactly)."""
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value else value
    except ValueError:
        return value


def load_sweep(sweep_dir: Path, metric: str) -> list[Curve]:
    """One curve per config of a sweep directory, labelled by the config's swept values.

    Raises:
        ConfigError: ``metric`` is not ``episode_return_mean`` (the only metric a sweep records).
    """
    if metric != DEFAULT_METRIC:
        raise ConfigError(f"--metric {metric!r}: sweep {str(sweep_dir)!r} records only {DEFAULT_METRIC}")
    env = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["base_config"]["env"]
    columns, results = _rows(sweep_dir / "results.csv")
    swept = columns[columns.index("config") + 1 : columns.index("seed")]
    _, curve_rows = _rows(sweep_dir / "curves.csv")
    curves = []
    for config in sorted({int(r["config"]) for r in results}):
        mine = [r for r in results if int(r["config"]) == config]
        values = ", ".join(f"{p}={_short(mine[0][p])}" for p in swept) or "base"
        steps, grid = _grid([r for r in curve_rows if int(r["config"]) == config], "seed", metric)
        eval_return = np.array([_float(r["eval_return"]) for r in sorted(mine, key=lambda r: int(r["seed"]))])
        curves.append(Curve(f"{sweep_dir.name}: {values}", env, steps, grid, eval_return))
    return curves


def load(dirs: Sequence[str | Path], metric: str = DEFAULT_METRIC) -> list[Curve]:
    """Every curve of ``dirs`` (runs and sweeps), checked to be comparable.

    Raises:
        ConfigError: a directory is neither a finished run nor a sweep, does not record ``metric``, or the
            curves mix environments or environment-step budgets per seed.
    """
    curves: list[Curve] = []
    for d in map(Path, dirs):
        try:
            if d.is_dir() and all((d / f).is_file() for f in SWEEP_FILES):
                curves += load_sweep(d, metric)
            elif d.is_dir() and all((d / f).is_file() for f in RUN_FILES):
                curves.append(load_run(d, metric))
            else:
                raise ConfigError(f"{str(d)!r} is neither a run directory ({', '.join(RUN_FILES)}) nor a sweep "
                                  f"directory ({', '.join(SWEEP_FILES)})")
        except ConfigError:
            raise
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:  # a damaged file
            raise ConfigError(f"{str(d)!r}: unreadable outputs ({type(err).__name__}: {err})") from None
    envs = sorted({c.env for c in curves})
    if len(envs) > 1:
        raise ConfigError(f"cannot compare runs of different environments: {', '.join(envs)}")
    budgets = sorted({int(c.env_steps[-1]) for c in curves})
    if len(budgets) > 1:
        raise ConfigError(f"cannot compare runs of different env-step budgets: {', '.join(map(str, budgets))}")
    return curves


def table(curves: Sequence[Curve]) -> str:
    """Markdown: label, seeds, final eval IQM [95% CI], mean [95% CI], env steps (per seed)."""
    lines = ["| run | seeds | final eval IQM [95% CI] | mean [95% CI] | env steps |", "|---|---|---|---|---|"]
    for c in curves:
        s = stats.config_stats(c.eval_return)
        seeds = f"{s.num_seeds}" + (f" (+{s.non_finite} non-finite)" if s.non_finite else "")
        lines.append(f"| {c.label} | {seeds} | {s.iqm.estimate:.2f} [{s.iqm.low:.2f}, {s.iqm.high:.2f}] | "
                     f"{s.mean.estimate:.2f} [{s.mean.low:.2f}, {s.mean.high:.2f}] | {int(c.env_steps[-1])} |")
    return "\n".join(lines)


def plot(curves: Sequence[Curve], metric: str, out: Path) -> None:
    """Every curve's mean over seeds and its 95% bootstrap band against env steps, saved to ``out``."""
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in curves:
        band = stats.curve_band(c.values, reps=BAND_REPS)
        (line,) = ax.plot(c.env_steps, band.estimate, label=f"{c.label} ({c.values.shape[0]} seeds)")
        ax.fill_between(c.env_steps, band.low, band.high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel(metric)
    ax.set_title(f"{curves[0].env}: mean and 95% bootstrap band over seeds")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(prog="python -m trpojax.compare", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or sweep directories")
    parser.add_argument("--out", default="compare.png", metavar="FILE.png", help="the figure (default compare.png)")
    parser.add_argument("--metric", default=DEFAULT_METRIC, metavar="NAME",
                        help=f"a metrics.csv column to plot (default {DEFAULT_METRIC})")
    return parser.parse_intermixed_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 on bad input (one line on stderr, nothing written)."""
    args = parse_args(argv)
    out = Path(args.out)
    try:
        if out.suffix.lower() != ".png":
            raise ConfigError(f"--out {args.out!r}: the figure is written as .png")
        if not out.parent.is_dir():
            raise ConfigError(f"--out {args.out!r}: directory {str(out.parent)!r} does not exist")
        curves = load(args.dirs, args.metric)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plot(curves, args.metric, out)
    print(table(curves))
    print(f"\n{args.metric} curves of {len(curves)} run(s) on {curves[0].env} -> {out}")
    return 0


def entry_point() -> None:
    """``trpojax-compare``: :func:`main` as the process's exit code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()

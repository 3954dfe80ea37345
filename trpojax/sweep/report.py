"""Sweep outputs: results.csv, curves.csv, the ranked summary.md and curves.png.

``results.csv`` has one row per (config, seed) run: the config index, every swept value, the seed index,
``eval_return`` (the mean deterministic return over the config's ``eval_episodes`` after training),
``train_return_final`` (the mean return of the episodes finished in the last update's rollout) and
``env_steps``. ``curves.csv`` has one row per run and update. ``summary.md`` ranks the configs by the
interquartile mean of ``eval_return`` over seeds with 95% stratified-bootstrap intervals
(:mod:`trpojax.core.stats`); ``curves.png`` plots the best configs' mean return against environment steps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from trpojax.core import stats
from trpojax.sweep.spec import Sweep
from trpojax.train import outputs

if TYPE_CHECKING:
    from trpojax.sweep.program import Program


class SweepResult(NamedTuple):
    """Every run's outputs, by config.

    Attributes:
        eval_return: [num_configs, num_seeds] mean deterministic evaluation return after training.
        curves: per config, [num_seeds, num_updates] ``episode_return_mean`` after each update.
        steps_per_update: per config, environment steps of one update of one run.
        stats: per config, mean and IQM of ``eval_return`` over seeds with bootstrap intervals.
        order: config indices best first (by IQM).
    """

    eval_return: np.ndarray
    curves: list[np.ndarray]
    steps_per_update: list[int]
    stats: list[stats.ConfigStats]
    order: list[int]


def fmt(value: Any) -> str:
    """Swept Python floats exactly (shortest round-trip form), float32 results to 9 significant digits."""
    if isinstance(value, np.floating):
        return "nan" if np.isnan(value) else f"{float(value):.9g}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def describe(sweep: Sweep, c: int) -> str:
    """``path=value, ...`` of config ``c``."""
    return ", ".join(f"{p}={fmt(v)}" for p, v in zip(sweep.paths, sweep.points[c], strict=True))


def write_csvs(out_dir: Path, sweep: Sweep, result: SweepResult) -> None:
    """``results.csv`` (one row per config x seed) and ``curves.csv`` (one row per run x update)."""
    head = ["config", *sweep.paths, "seed"]
    rows = [",".join([*head, "eval_return", "train_return_final", "env_steps"])]
    curve_rows = [",".join(["config", "seed", "update", "env_steps", "episode_return_mean"])]
    for c, point in enumerate(sweep.points):
        values = [str(c), *(f'"{fmt(v)}"' if isinstance(v, tuple) else fmt(v) for v in point)]
        curves, steps = result.curves[c], result.steps_per_update[c]
        for s in range(sweep.num_seeds):
            env_steps = curves.shape[1] * steps
            rows.append(",".join([*values, str(s), fmt(result.eval_return[c, s]), fmt(curves[s, -1]),
                                  str(env_steps)]))
            curve_rows += [f"{c},{s},{u + 1},{(u + 1) * steps},{fmt(x)}" for u, x in enumerate(curves[s])]
    outputs.write_text_atomic(out_dir / "results.csv", "\n".join(rows) + "\n")
    outputs.write_text_atomic(out_dir / "curves.csv", "\n".join(curve_rows) + "\n")


def _round(value: Any) -> str:
    return fmt(round(float(value), 2))


def _ties(result: SweepResult) -> str:
    best = result.stats[result.order[0]]
    key = (best.iqm.estimate, best.mean.estimate)
    ties = sum((s.iqm.estimate, s.mean.estimate) == key for s in result.stats)
    return f" {ties} configs tie with it on IQM and mean; it is the first in sweep order." if ties > 1 else ""


def interval(ci: stats.Interval) -> str:
    """``[low, high]`` rounded to 2 decimals."""
    return f"[{_round(ci.low)}, {_round(ci.high)}]"


def summary_markdown(sweep: Sweep, result: SweepResult, programs: list[Program], train_s: list[float]) -> str:
    """The ranked per-config table, the best config and the programs that ran, as Markdown."""
    best = result.order[0]
    b = result.stats[best]
    devices = jax.devices()
    num_configs = len(sweep.configs)
    lines = [
        f"# Sweep `{sweep.name}`",
        "",
        f"Base config `{sweep.base_path}` ({sweep.base.algo} on {sweep.base.env}); {num_configs} configs x "
        f"{sweep.num_seeds} seeds = {num_configs * sweep.num_seeds} runs in {len(programs)} program(s) on "
        f"{len(devices)} {devices[0].platform} device(s) ({jax.process_count()} process(es)).",
        "",
        "Score: `eval_return`, each seed's mean deterministic return over its evaluation episodes after "
        "training. Ranked by the interquartile mean (IQM) over seeds; intervals are 95% percentile-bootstrap "
        "intervals (2000 resamples of the seeds, stratified by config).",
        "",
        f"**Best config: #{best}** ({describe(sweep, best) or 'the base'}): IQM {_round(b.iqm.estimate)} "
        f"{interval(b.iqm)}, mean {_round(b.mean.estimate)} {interval(b.mean)}." + _ties(result),
        "",
        "| rank | config | " + " | ".join(f"`{p}`" for p in sweep.paths)
        + " | seeds | IQM | IQM 95% CI | mean | mean 95% CI |",
        "|" + "---|" * (len(sweep.paths) + 7),
    ]
    for position, c in enumerate(result.order):
        s = result.stats[c]
        seeds = f"{s.num_seeds}" + (f" ({s.non_finite} non-finite)" if s.non_finite else "")
        cells = [str(position + 1), str(c), *map(fmt, sweep.points[c]), seeds,
                 _round(s.iqm.estimate), interval(s.iqm), _round(s.mean.estimate), interval(s.mean)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Programs", "",
              "| program | static settings | runs (padded) | updates | compile s | train s | env steps/s | "
              "memory per device |", "|---|---|---|---|---|---|---|---|"]
    for g, (program, seconds) in enumerate(zip(programs, train_s, strict=True)):
        updates = sum(program.lengths)
        rate = program.runs * updates * program.env_steps_per_update / max(seconds, 1e-9)
        memory = program.memory_bytes / 2**20
        lines.append(
            f"| {g + 1} | {program.group.label or '-'} | {program.runs} ({program.padded}) | {updates} | "
            f"{program.compile_s:.1f} | {seconds:.1f} | {rate:,.0f} | {memory:.1f} MiB |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, sweep: Sweep, result: SweepResult, top: int = 8) -> None:
    """Mean return against env steps with a 95% bootstrap band, for the ``top`` best configs."""
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for k, c in enumerate(result.order[:top]):
        band = stats.curve_band(result.curves[c])
        steps = np.arange(1, band.estimate.size + 1) * result.steps_per_update[c]
        label = f"#{c} {describe(sweep, c)}" if sweep.paths else f"#{c}"
        ax.plot(steps, band.estimate, color=f"C{k}", lw=1.8, label=label)
        ax.fill_between(steps, band.low, band.high, color=f"C{k}", alpha=0.2)
    shown = min(top, len(sweep.configs))
    ax.set_title(f"{sweep.name}: best {shown} of {len(sweep.configs)} configs, mean and 95% CI "
                 f"over {sweep.num_seeds} seeds")
    ax.set_xlabel("environment steps per run")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)

"""The command line of ``python -m trpojax.sweep`` (and ``trpojax-sweep``).

Usage::

    python -m trpojax.sweep --config configs/sweeps/trpo_cartpole_maxkl_lambda.yaml [--out DIR] [--quiet]

Writes ``results.csv``, ``curves.csv``, ``summary.md``, ``curves.png`` and ``sweep.yaml`` (the resolved
sweep) into DIR; see docs/sweeps.md. Bad input exits with code 2 and one line, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import yaml

from trpojax.config import ConfigError
from trpojax.sweep.program import build_programs, collect, make_mesh, run_program
from trpojax.sweep.report import describe, interval, plot_curves, summary_markdown, write_csvs
from trpojax.sweep.spec import load_sweep
from trpojax.train import check_out_dir, enable_compilation_cache, outputs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m trpojax.sweep",
        description="Run a sweep of seeds x hyperparameters as vmapped, sharded programs.",
    )
    parser.add_argument(
        "--config", required=True, help="sweep file, e.g. configs/sweeps/trpo_cartpole_maxkl_lambda.yaml"
    )
    parser.add_argument("--out", help="output directory (default runs/sweep_<name>_<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input, with one line on stderr, nothing written)."""
    args = parse_args(argv)
    try:
        sweep = load_sweep(args.config)
        out_dir = Path(args.out or Path("runs") / f"sweep_{sweep.name}_{time.strftime('%Y%m%d-%H%M%S')}")
        check_out_dir(out_dir)
        enable_compilation_cache(sweep.base.compilation_cache)
        mesh = make_mesh()
        programs = build_programs(sweep, mesh)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    writer = jax.process_index() == 0
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_text_atomic(out_dir / "sweep.yaml", yaml.safe_dump(sweep.resolved, sort_keys=False))
    results = []
    for g, program in enumerate(programs):
        total = program.runs * sum(program.lengths) * program.env_steps_per_update
        label = f" ({program.group.label})" if program.group.label else ""
        desc = f"program {g + 1}/{len(programs)}{label}"
        bar = outputs.Progress(total, enabled=writer and not args.quiet, desc=desc)
        try:
            results.append(run_program(program, bar))
        finally:
            bar.close()
    result = collect(sweep, programs, results)
    if writer:
        write_csvs(out_dir, sweep, result)
        summary = summary_markdown(sweep, result, programs, [r.train_s for r in results])
        outputs.write_text_atomic(out_dir / "summary.md", summary)
        plot_curves(out_dir / "curves.png", sweep, result)
        best = result.order[0]
        print(f"sweep {sweep.name}: {len(sweep.configs)} configs x {sweep.num_seeds} seeds on {mesh.size} "
              f"device(s); best #{best} ({describe(sweep, best) or 'the base'}) IQM eval return "
              f"{float(result.stats[best].iqm.estimate):.1f} {interval(result.stats[best].iqm)} -> {out_dir}")
    return 0


def entry_point() -> None:
    """``trpojax-sweep``: :func:`main` as the process's exit code."""
    sys.exit(main())

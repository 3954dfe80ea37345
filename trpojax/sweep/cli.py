"""The command line of ``python -m trpojax.sweep`` (and ``trpojax-sweep``).

Usage::

    python -m trpojax.sweep --config configs/sweeps/trpo_cartpole_maxkl_lambda.yaml [--out DIR] [--quiet]
    python -m trpojax.sweep --resume DIR [--quiet]

Writes ``results.csv``, ``curves.csv``, ``summary.md``, ``curves.png`` and ``sweep.yaml`` (the resolved
sweep) into DIR, and each program's checkpoints into ``DIR/groups/<g>/checkpoints`` (:mod:`.durable`);
see docs/sweeps.md and docs/durability.md. Bad input exits with code 2 and one line, before anything is
written. SIGINT, SIGTERM and SIGUSR1 checkpoint the running program at the next chunk boundary and exit
with 128 + the signal number; ``--resume DIR`` continues, and ends with the outputs of an uninterrupted
sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import yaml

from trpojax.config import ConfigError
from trpojax.sweep import durable
from trpojax.sweep.program import (
    Program,
    ProgramResult,
    build_programs,
    collect,
    group_configs,
    make_mesh,
    run_program,
    use_every_core,
)
from trpojax.sweep.report import describe, interval, plot_curves, summary_markdown, write_csvs
from trpojax.sweep.spec import Sweep, load_sweep
from trpojax.train import check_out_dir, enable_compilation_cache, outputs, stop_on_signals
from trpojax.train.checkpoint import CheckpointError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m trpojax.sweep",
        description="Run a sweep of seeds x hyperparameters as vmapped, sharded programs.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="sweep file, e.g. configs/sweeps/trpo_cartpole_maxkl_lambda.yaml")
    source.add_argument(
        "--resume", metavar="DIR", help="continue the sweep in DIR from its programs' last complete checkpoints"
    )
    parser.add_argument("--out", help="output directory (default runs/sweep_<name>_<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def _first_difference(saved: object, wanted: object, where: str = "") -> str:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in list(saved) + [k for k in wanted if k not in saved]:
            if saved.get(key) != wanted.get(key):
                return _first_difference(saved.get(key), wanted.get(key), f"{where}.{key}" if where else str(key))
    return f"{where or 'the sweep'} is {saved!r} there, {wanted!r} now"


def load_resumable(out_dir: Path) -> Sweep:
    """The sweep of ``out_dir``, re-read from its sweep file, which must still resolve to ``sweep.yaml``.

    Raises:
        ConfigError: ``out_dir`` or its sweep.yaml is missing, the sweep file is gone or invalid, or it now
            resolves to another sweep (an edited sweep or base config).
    """
    saved_path = out_dir / "sweep.yaml"
    if not out_dir.is_dir():
        raise ConfigError(f"--resume {str(out_dir)!r} is not a directory")
    if not saved_path.is_file():
        raise ConfigError(f"--resume {str(out_dir)!r} holds no sweep.yaml: not a sweep directory")
    saved = yaml.safe_load(saved_path.read_text())
    sweep_file = saved.get("sweep_file") if isinstance(saved, dict) else None
    if not isinstance(sweep_file, str):
        raise ConfigError(f"{saved_path} names no sweep_file")
    sweep = load_sweep(sweep_file)
    wanted = yaml.safe_load(yaml.safe_dump(sweep.resolved, sort_keys=False))
    if wanted != saved:
        raise ConfigError(
            f"the sweep changed since {out_dir} was started: {_first_difference(saved, wanted)}; "
            "restore it or start a new sweep"
        )
    invocation = out_dir / durable.GROUPS_DIR / INVOCATION_FILE
    if invocation.is_file():  # the base config's path as the first session wrote it in summary.md
        sweep = dataclasses.replace(sweep, base_path=Path(json.loads(invocation.read_text())["base_path"]))
    return sweep


INVOCATION_FILE = "invocation.json"


def finished(out_dir: Path) -> bool:
    """True when the sweep in ``out_dir`` wrote its last output (curves.png, written after everything else)."""
    return (out_dir / "curves.png").is_file()


def _run(sweep: Sweep, programs: list[Program], out_dir: Path, resuming: bool, quiet: bool,
         stop: Callable[[], bool]) -> list[ProgramResult]:
    """Run (or restore) every program, checkpointing each; raises SweepInterrupted when stopped."""
    writer = jax.process_index() == 0
    results = []
    for g, program in enumerate(programs):
        restored = durable.restore(out_dir, sweep, program, g) if resuming else None
        if writer and restored is not None:
            for note in restored.notes:
                print(f"warning: {note}", file=sys.stderr)
        if restored is not None and restored.result is not None:
            results.append(restored.result)  # finished before: not run again
            continue
        if durable.agree_any(stop()):
            raise durable.SweepInterrupted(g + 1, restored.resume.update if restored is not None else 0)
        total = program.runs * sum(program.lengths) * program.env_steps_per_update
        label = f" ({program.group.label})" if program.group.label else ""
        desc = f"program {g + 1}/{len(programs)}{label}"
        bar = outputs.Progress(total, enabled=writer and not quiet, desc=desc)
        resume = restored.resume if restored is not None else None
        if resume is not None:
            bar.update(program.runs * resume.update * program.env_steps_per_update, 0.0, float("nan"))
        saver = durable.GroupCheckpointer(out_dir, sweep, program, g, stop)
        try:
            result = run_program(program, bar, resume, saver)
        finally:
            bar.close()
        saver.finish(result, resume.states if resume is not None else None)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code.

    0 on success, and for ``--resume`` of a finished sweep (nothing is changed); 2 on bad input (one line
    on stderr, nothing written); 128 + the signal number after a stop signal (130 SIGINT, 143 SIGTERM,
    138 SIGUSR1), the running program checkpointed; 1 when a write fails (a full disk).
    """
    args = parse_args(argv)
    use_every_core()
    resuming = args.resume is not None
    try:
        if resuming:
            if args.out:
                raise ConfigError("--resume DIR continues the sweep in DIR; --out does not apply")
            out_dir = Path(args.resume)
            sweep = load_resumable(out_dir)
        else:
            sweep = load_sweep(args.config)
            out_dir = Path(args.out or Path("runs") / f"sweep_{sweep.name}_{time.strftime('%Y%m%d-%H%M%S')}")
            check_out_dir(out_dir, " (or --resume it)")
        if resuming:
            for g, group in enumerate(group_configs(sweep)):
                durable.check_group(out_dir, sweep, group, g)
            if finished(out_dir):
                print(f"sweep {out_dir} is already finished (summary.md and curves.png written); nothing to do")
                return 0
        enable_compilation_cache(sweep.base.compilation_cache)
        mesh = make_mesh()
        programs = build_programs(sweep, mesh)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    writer = jax.process_index() == 0
    try:
        if writer and not resuming:
            out_dir.mkdir(parents=True, exist_ok=True)
            outputs.write_text_atomic(out_dir / "sweep.yaml", yaml.safe_dump(sweep.resolved, sort_keys=False))
            (out_dir / durable.GROUPS_DIR).mkdir()
            outputs.write_json_atomic(out_dir / durable.GROUPS_DIR / INVOCATION_FILE,
                                      {"base_path": str(sweep.base_path)})
        with stop_on_signals() as stop:
            try:
                results = _run(sweep, programs, out_dir, resuming, args.quiet, stop)
            except durable.SweepInterrupted as err:
                print(f"stopped by {stop.name} in program {err.group}/{len(programs)} after update {err.update}; "
                      f"checkpoints in {out_dir / durable.GROUPS_DIR}; continue with: "
                      f"python -m trpojax.sweep --resume {out_dir}", file=sys.stderr)
                return stop.exit_code
        result = collect(sweep, programs, results)
        if writer:
            write_csvs(out_dir, sweep, result)
            summary = summary_markdown(sweep, result, programs, [r.train_s for r in results])
            outputs.write_text_atomic(out_dir / "summary.md", summary)
            plot_curves(out_dir / "curves.png", sweep, result)
    except OSError as err:
        print(f"error: cannot write the sweep's files: {err}; the last complete checkpoints in {out_dir} "
              "stay usable with --resume", file=sys.stderr)
        return 1
    if writer:
        best = result.order[0]
        print(f"sweep {sweep.name}: {len(sweep.configs)} configs x {sweep.num_seeds} seeds on {mesh.size} "
              f"device(s); best #{best} ({describe(sweep, best) or 'the base'}) IQM eval return "
              f"{float(result.stats[best].iqm.estimate):.1f} {interval(result.stats[best].iqm)} -> {out_dir}")
    return 0


def entry_point() -> None:
    """``trpojax-sweep``: :func:`main` as the process's exit code."""
    sys.exit(main())

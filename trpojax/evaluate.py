"""Evaluate a saved run from its checkpoint.

Usage::

    python -m trpojax.evaluate DIR [--episodes N] [--stochastic] [--checkpoint UPDATE]

Loads the newest complete checkpoint of the run in ``DIR`` (or the one saved after ``UPDATE`` updates),
runs ``N`` fresh episodes per seed with the policy's mode (or sampled actions with ``--stochastic``),
prints each seed's mean +- std return and writes ``DIR/eval.json``. With the defaults on the final
checkpoint it reproduces the evaluation in ``summary.json`` (same episodes, same keys).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trpojax import config as config_lib
from trpojax import fastcpu
from trpojax.config import ConfigError
from trpojax.train import checkpoint, outputs
from trpojax.trainer import eval_keys, make_evaluate, make_learner, state_template


def evaluate_run(
    run_dir: str | Path,
    *,
    episodes: int | None = None,
    stochastic: bool = False,
    update: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Evaluate the policy of every seed of a saved run.

    Args:
        run_dir: the run directory.
        episodes: fresh episodes per seed (default: the run's ``eval_episodes``).
        stochastic: sample actions instead of taking the distribution's mode.
        update: evaluate the checkpoint saved after this many updates (default: the newest complete one).

    Returns:
        ``(results, notes)``: results as written to eval.json (``checkpoint``, ``episodes``, ``stochastic``,
        ``return_mean`` / ``return_std`` over the seeds' means, and ``per_seed`` entries with ``seed``,
        ``return_mean``, ``return_std``, ``returns``); notes name skipped incomplete checkpoints.

    Raises:
        ConfigError: ``run_dir`` is not a directory or ``episodes`` < 1.
        CheckpointError: no usable checkpoint, or its state does not fit its config.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory")
    if episodes is not None and episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {episodes}")
    if update is None:
        path, manifest, skipped = checkpoint.latest(run_dir)
    else:
        (path, manifest), skipped = checkpoint.find(run_dir, update), []
    config = config_lib.load(path / checkpoint.CONFIG_FILE)
    states = checkpoint.load_state(path, state_template(config))
    episodes = config.eval_episodes if episodes is None else episodes
    spec, learner = make_learner(config)
    evaluate = make_evaluate(config, spec, learner, episodes, deterministic=not stochastic)
    keys = eval_keys(config)
    options = fastcpu.compiler_options(config, one_shot=True) if fastcpu.applies(config) else None
    returns = np.asarray(evaluate.lower(states, keys).compile(options)(states, keys))
    means = returns.mean(axis=1)
    results = {
        "run_dir": str(run_dir),
        "checkpoint": manifest["update"],
        "algo": config.algo,
        "env": config.env,
        "episodes": episodes,
        "stochastic": stochastic,
        "return_mean": float(means.mean()),
        "return_std": float(means.std()),
        "per_seed": [
            {"seed": i, "return_mean": float(r.mean()), "return_std": float(r.std()), "returns": r.tolist()}
            for i, r in enumerate(returns)
        ],
    }
    notes = [f"skipping checkpoint {reason}; evaluating {path}" for reason in skipped]
    return results, notes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(prog="python -m trpojax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", metavar="DIR", help="a run directory written by python -m trpojax.train")
    parser.add_argument("--episodes", type=int, help="episodes per seed (default: the run's eval_episodes)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument(
        "--checkpoint", type=int, metavar="UPDATE", help="evaluate this checkpoint (default: the newest)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 on bad input (one line on stderr, nothing written)."""
    args = parse_args(argv)
    try:
        results, notes = evaluate_run(
            args.run_dir, episodes=args.episodes, stochastic=args.stochastic, update=args.checkpoint
        )
    except (ConfigError, checkpoint.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    mode = "stochastic" if results["stochastic"] else "deterministic"
    print(
        f"{results['algo']} {results['env']}, checkpoint {results['checkpoint']}, "
        f"{results['episodes']} {mode} episodes per seed:"
    )
    for seed in results["per_seed"]:
        print(f"  seed {seed['seed']}: {seed['return_mean']:.1f} +- {seed['return_std']:.1f}")
    print(f"  all seeds: {results['return_mean']:.1f} +- {results['return_std']:.1f} (std over seeds)")
    outputs.write_json_atomic(Path(args.run_dir) / "eval.json", results)
    return 0


def entry_point() -> None:
    """``trpojax-evaluate``: :func:`main` as the process's exit code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()

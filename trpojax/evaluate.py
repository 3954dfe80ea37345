"""Evaluate a saved run from its checkpoint.

Usage::

    python -m trpojax.evaluate DIR [--episodes N] [--stochastic] [--checkpoint UPDATE] [--video FILE.gif [--seed I]]

Loads the newest complete checkpoint of the run in ``DIR`` (or the one saved after ``UPDATE`` updates),
runs ``N`` fresh episodes per seed with the policy's mode (or sampled actions with ``--stochastic``),
prints each seed's mean +- std return and writes ``DIR/eval.json``. With the defaults on the final
checkpoint it reproduces the evaluation in ``summary.json`` (same episodes, same keys).

With ``--video FILE.gif`` it instead records the first of those evaluation episodes of seed ``I`` (default 0),
with the same keys, so its return is that episode's return in ``eval.json``, and writes it as a GIF: one
frame per step (the state the step's action was taken in; :mod:`trpojax.envs.render`), 200x150 pixels, at
the environment's real-time frame rate. The gymnax classic-control environments are drawn with Pillow; the
physics families use MuJoCo's renderer headless (``MUJOCO_GL``, set to ``egl`` here when unset).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image

from trpojax import config as config_lib
from trpojax import fastcpu
from trpojax.config import ConfigError
from trpojax.envs import normalize_obs, render
from trpojax.train import checkpoint, outputs
from trpojax.trainer import eval_keys, make_evaluate, make_learner, state_template

VIDEO_SIZE = (200, 150)  # width, height


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


def record_video(
    run_dir: str | Path,
    video: str | Path,
    *,
    seed: int = 0,
    episodes: int | None = None,
    stochastic: bool = False,
    update: int | None = None,
) -> dict[str, Any]:
    """Render the first evaluation episode of seed ``seed`` of a saved run to the GIF ``video``.

    The episode is the first of the ``episodes`` that :func:`evaluate_run` runs for that seed, with the same
    key (:func:`trpojax.envs.render.record_episode`): its return equals ``per_seed[seed]["returns"][0]``.
    Everything is checked (the file suffix, the run, the seed, whether the environment can be drawn here)
    before anything is compiled or written.

    Args:
        run_dir: the run directory.
        video: the GIF to write (suffix ``.gif``).
        seed: the seed index, in ``[0, num_seeds)``.
        episodes: the evaluation's episodes per seed (default: the run's ``eval_episodes``).
        stochastic: sample actions instead of taking the distribution's mode.
        update: the checkpoint saved after this many updates (default: the newest complete one).

    Returns:
        ``{"video", "checkpoint", "env", "seed", "return", "steps", "frames", "fps", "notes"}``; ``frames`` ==
        ``steps``.

    Raises:
        ConfigError: bad ``video`` suffix, ``run_dir``, ``seed`` or ``episodes``.
        CheckpointError: no usable checkpoint, or its state does not fit its config.
        NoRenderer: the environment cannot be drawn here (one line saying what is missing).
    """
    run_dir, video = Path(run_dir), Path(video)
    if video.suffix.lower() != ".gif":
        raise ConfigError(f"--video {str(video)!r}: videos are written as .gif")
    if not video.parent.is_dir():
        raise ConfigError(f"--video {str(video)!r}: directory {str(video.parent)!r} does not exist")
    if not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory")
    if episodes is not None and episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {episodes}")
    # MuJoCo reads MUJOCO_GL when first imported, which loading a physics family's config does.
    os.environ.setdefault("MUJOCO_GL", "egl")
    if update is None:
        path, manifest, skipped = checkpoint.latest(run_dir)
    else:
        (path, manifest), skipped = checkpoint.find(run_dir, update), []
    config = config_lib.load(path / checkpoint.CONFIG_FILE)
    if not 0 <= seed < config.num_seeds:
        raise ConfigError(f"--seed: must be in [0, {config.num_seeds}) for this run, got {seed}")
    render.check_renderable(config.env)
    states = checkpoint.load_state(path, state_template(config))
    state = jax.tree.map(lambda x: x[seed], states)
    spec, learner = make_learner(config)
    episodes = config.eval_episodes if episodes is None else episodes

    def record(state: Any, key: jax.Array) -> render.Recording:
        norm = lambda obs: normalize_obs(state.obs_stats, obs, config.normalize_obs)  # noqa: E731
        return render.record_episode(spec, learner.policy.apply, state.agent.policy_params, key, episodes,
                                     norm, deterministic=not stochastic)

    key = eval_keys(config)[seed]
    # Compiled as evaluate_run compiles the evaluation: other compiler options round differently, and a
    # chaotic episode can then take another path.
    options = fastcpu.compiler_options(config, one_shot=True) if fastcpu.applies(config) else None
    recording = jax.jit(record).lower(state, key).compile(options)(state, key)
    steps = int(np.asarray(recording.mask).sum())
    frames = render.draw_frames(spec, recording.states, steps, VIDEO_SIZE)
    # GIF delays are whole centiseconds, and viewers slow down delays under 20 ms: at most 50 fps.
    duration_ms = max(20, 10 * round(100 / render.frames_per_second(spec, config.action_repeat)))
    fps = 1000 / duration_ms
    images = [Image.fromarray(frame) for frame in frames]
    tmp = video.with_name(f".{video.name}.tmp.gif")  # written whole, then renamed: never half a GIF
    try:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        os.replace(tmp, video)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "video": str(video),
        "checkpoint": manifest["update"],
        "env": config.env,
        "seed": seed,
        "return": float(np.asarray(recording.reward, np.float64).sum()),
        "steps": steps,
        "frames": len(frames),
        "fps": fps,
        "notes": [f"skipping checkpoint {reason}; evaluating {path}" for reason in skipped],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(prog="python -m trpojax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", metavar="DIR", help="a run directory written by python -m trpojax.train")
    parser.add_argument("--episodes", type=int, help="episodes per seed (default: the run's eval_episodes)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument(
        "--checkpoint", type=int, metavar="UPDATE", help="evaluate this checkpoint (default: the newest)"
    )
    parser.add_argument("--video", metavar="FILE", help="render seed I's first evaluation episode to FILE (.gif)")
    parser.add_argument("--seed", type=int, metavar="I", help="the seed index of --video (default 0)")
    return parser.parse_args(argv)


def video_main(args: argparse.Namespace) -> int:
    """``--video``: render, print one line and return 0, or 2 on bad input (one line on stderr)."""
    try:
        result = record_video(args.run_dir, args.video, seed=args.seed or 0, episodes=args.episodes,
                              stochastic=args.stochastic, update=args.checkpoint)
    except (ConfigError, checkpoint.CheckpointError, render.NoRenderer) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in result["notes"]:
        print(f"warning: {note}", file=sys.stderr)
    print(f"{result['env']}, checkpoint {result['checkpoint']}, seed {result['seed']}: episode return "
          f"{result['return']:.1f} in {result['steps']} steps; {result['frames']} frames at {result['fps']:g} fps "
          f"-> {result['video']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 on bad input (one line on stderr, nothing written)."""
    args = parse_args(argv)
    if args.video is not None:
        return video_main(args)
    if args.seed is not None:
        print("error: --seed applies to --video only", file=sys.stderr)
        return 2
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

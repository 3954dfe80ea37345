"""The learned LQR controller against the Riccati-optimal one, on the same evaluation episodes.

Usage (after training, e.g. ``python -m trpojax.train --config configs/ntdac_lqr.yaml --out runs/lqr``)::

    python -m benchmarks.ntdac_lqr runs/lqr [--json PATH]

Loads the run's final checkpoint and evaluates, per seed, the learned deterministic policy and the optimal
linear controller u = -K* x on the very same episodes (the run's evaluation keys, so the same start states;
``LQR-v0`` has no dynamics noise by default). K* solves the undiscounted discrete Riccati equation
(:func:`trpojax.core.lqr.riccati_gain` with gamma = 1): evaluation returns are undiscounted sums over the time
limit. Prints each seed's return, the optimal return and the relative gap (learned - optimal) / |optimal|; the
target is a gap within 5% for every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from trpojax import config as config_lib
from trpojax.config import ConfigError
from trpojax.core.distributions import DiagGaussian
from trpojax.core.lqr import riccati_gain
from trpojax.envs import evaluate_policy
from trpojax.train import checkpoint
from trpojax.train.checkpoint import CheckpointError
from trpojax.trainer import eval_keys, make_evaluate, make_learner, state_template


def compare(run_dir: str | Path) -> dict:
    """Per-seed eval returns of the run's final policy and of u = -K* x on the same episodes."""
    path, manifest, _ = checkpoint.latest(Path(run_dir))
    config = config_lib.load(path / checkpoint.CONFIG_FILE)
    spec, learner = make_learner(config)
    if spec.params is None or not hasattr(spec.params, "system"):
        raise ConfigError(f"{config.env!r} is not an LQR environment")
    states = checkpoint.load_state(path, state_template(config))
    keys = eval_keys(config)
    learned = np.asarray(make_evaluate(config, spec, learner, config.eval_episodes)(states, keys))
    system = spec.params.system
    gain, _ = riccati_gain(*(jnp.asarray(m, jnp.float32) for m in system), 1.0)

    def linear_policy(k: jax.Array, obs: jax.Array) -> DiagGaussian:
        return DiagGaussian(mean=-obs @ k.T, log_std=jnp.zeros(k.shape[0]))

    def optimal_returns(key: jax.Array) -> jax.Array:
        return evaluate_policy(spec, linear_policy, gain, key, config.eval_episodes)[0]

    optimal = np.asarray(jax.jit(jax.vmap(optimal_returns))(keys))
    gaps = (learned.mean(axis=1) - optimal.mean(axis=1)) / np.abs(optimal.mean(axis=1))
    return {
        "run_dir": str(run_dir),
        "update": manifest["update"],
        "env_steps": manifest["update"] * config.steps_per_update,
        "gain": np.asarray(gain).tolist(),
        "learned_per_seed": learned.mean(axis=1).tolist(),
        "optimal_per_seed": optimal.mean(axis=1).tolist(),
        "gap_per_seed": gaps.tolist(),
        "worst_gap": float(gaps.min()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}, jax {jax.__version__}",
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the comparison, exit 0 when every seed is within 5% of the optimum, 1 when not,
    2 (one line) for a directory without a usable checkpoint or a run of another environment."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        result = compare(args.run_dir)
    except (CheckpointError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"K* = {result['gain']}  ({result['env_steps']} env steps per seed; {result['machine']})")
    print("seed  learned    optimal    gap")
    for i, (a, b, g) in enumerate(zip(result["learned_per_seed"], result["optimal_per_seed"], result["gap_per_seed"],
                                      strict=True)):
        print(f"{i:4d}  {a:9.4f}  {b:9.4f}  {100 * g:+.2f}%")
    print(f"worst gap {100 * result['worst_gap']:+.2f}% (target: within -5%)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["worst_gap"] >= -0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())

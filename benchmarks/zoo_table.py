"""rl-baselines3-zoo's TRPO benchmark rows, reproduced at the zoo's budgets: trpojax and sb3-contrib side by side.

For each row (CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCar-v0, MountainCarContinuous-v0):

- trpojax trains ``configs/zoo/trpo_<env>.yaml`` (8 seeds in one vmapped program) once per base seed
  (0, 100, 200 by default) through the real CLI, each a fresh process (``python -m trpojax.train``); the
  first base seed of a row compiles, the others find JAX's persistent cache warm, as a user's reruns would;
- sb3-contrib's TRPO trains with the zoo's own hyperparameters (``hyperparams/trpo.yml``: ``n_envs``,
  ``n_steps``, ``gamma``, ``gae_lambda``, ``cg_damping``, ``learning_rate``, ``n_critic_updates``,
  ``VecNormalize`` where the zoo says ``normalize``, gSDE with ``sde_sample_freq: 4`` where it says
  ``use_sde``; SB3's defaults elsewhere) for ``--sb3-seeds`` seeds, one after another in one fresh process,
  on gymnasium's environments, when the ``bench`` extra is installed (``pip install -e ".[bench]"``), with
  torch on one thread (``OMP_NUM_THREADS=1``: faster for these small MLPs, and no OpenMP spin-waiting when the
  CPU is shared).

Both evaluate as the zoo does: deterministic actions, whole episodes to the environment's own time limit
(gymnasium's and gymnax's limits are the same for these five), ``--eval-episodes`` per seed (default 32),
and, where observations are normalised, the training statistics frozen. The table has, per row: the budget,
the zoo's published number (one run), sb3-contrib measured here (mean and per seed), trpojax's 8-seed mean
per base seed, whether every base seed's mean reaches the zoo's number (CartPole: 475), and each side's
wall clock for the row (trpojax: all base seeds, 8 seeds each; sb3: all its seeds). Each row is printed as
soon as it is measured; ``--json FILE`` keeps everything, per-seed returns included, rewritten after every
row.

    python -m benchmarks.zoo_table [--rows cartpole,acrobot] [--base-seeds 0,100,200] [--sb3-seeds 3]
                                   [--no-sb3] [--eval-episodes 32] [--json zoo_table.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks._cli import ROOT, package_version, train_cli


@dataclass(frozen=True)
class Row:
    """One zoo benchmark row: the environment, the zoo's budget and number, and its sb3 hyperparameters."""

    key: str
    env: str
    budget: int
    zoo_mean: float
    zoo_std: float
    target: float
    sb3: dict[str, Any] = field(default_factory=dict)  # TRPO(...) keyword arguments from the zoo
    normalize: bool = False  # the zoo's ``normalize: true`` (VecNormalize over observations and rewards)


ROWS = (
    Row("cartpole", "CartPole-v1", 100_000, 500.0, 0.0, 475.0,
        dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, gamma=0.99, learning_rate=1e-3,
             n_critic_updates=20)),
    Row("acrobot", "Acrobot-v1", 100_000, -83.1, 18.6, -83.1, dict(n_steps=1024), normalize=True),
    Row("pendulum", "Pendulum-v1", 100_000, -174.6, 127.6, -174.6,
        dict(n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True, sde_sample_freq=4)),
    Row("mountaincar", "MountainCar-v0", 100_000, -107.3, 13.2, -107.3,
        dict(n_steps=1024, n_critic_updates=20), normalize=True),
    Row("mountaincar_continuous", "MountainCarContinuous-v0", 50_000, 92.5, 0.4, 92.5,
        dict(use_sde=True, sde_sample_freq=4), normalize=True),
)

# One sb3-contrib process per row: trains argv's seeds one after another, prints one JSON line of returns.
SB3_SCRIPT = """
import json, sys
import numpy as np
import torch
torch.set_num_threads(1)
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize
spec = json.loads(sys.argv[1])
returns = []
for seed in spec["seeds"]:
    env = make_vec_env(spec["env"], n_envs=2, seed=seed)
    if spec["normalize"]:
        env = VecNormalize(env, gamma=spec["kwargs"].get("gamma", 0.99))
    model = TRPO("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **spec["kwargs"])
    model.learn(total_timesteps=spec["budget"])
    eval_env = make_vec_env(spec["env"], n_envs=1, seed=seed + 10_000)
    if spec["normalize"]:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = env.obs_rms
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["episodes"], deterministic=True)
    returns.append(float(mean))
print(json.dumps({"returns": returns}))
"""


def run_trpojax(row: Row, base_seeds: list[int], episodes: int) -> dict[str, Any]:
    """Train the row's config once per base seed through the CLI; per base seed the 8-seed mean and returns."""
    per_base, wall = {}, 0.0
    for base in base_seeds:
        summary, _, secs = train_cli(f"configs/zoo/trpo_{row.key}.yaml", {"seed": base, "eval_episodes": episodes},
                                      "zoo_table_", cold=False)
        if summary["env_steps"] > row.budget:
            sys.exit(f"configs/zoo/trpo_{row.key}.yaml trains {summary['env_steps']} env steps, over the zoo's "
                     f"{row.budget}")
        per_base[base] = {"mean": summary["eval_return_mean"], "per_seed": summary["eval_return_per_seed"],
                          "env_steps": summary["env_steps"], "wall_s": secs}
        wall += secs
        print(f"  trpojax {row.env} base seed {base}: {summary['eval_return_mean']:.1f} ({secs:.0f} s)", flush=True)
    return {"per_base_seed": per_base, "wall_s": wall,
            "met": all(v["mean"] >= row.target for v in per_base.values())}


def run_sb3(row: Row, seeds: int, episodes: int) -> dict[str, Any]:
    """Train sb3-contrib TRPO with the zoo's hyperparameters on ``seeds`` seeds in one fresh process."""
    spec = {"env": row.env, "budget": row.budget, "kwargs": row.sb3, "normalize": row.normalize,
            "seeds": list(range(seeds)), "episodes": episodes}
    t0 = time.perf_counter()
    # torch on one thread: faster for these 64x64 MLPs, and no OpenMP spin-waiting on a shared CPU.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SB3_SCRIPT, json.dumps(spec)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"sb3-contrib TRPO on {row.env} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    returns = json.loads(proc.stdout.strip().splitlines()[-1])["returns"]
    print(f"  sb3-contrib {row.env}: {sum(returns) / len(returns):.1f} ({secs:.0f} s)", flush=True)
    return {"returns": returns, "mean": sum(returns) / len(returns), "wall_s": secs}


def table(results: list[dict[str, Any]], base_seeds: list[int]) -> str:
    """The markdown table of all rows."""
    bases = " | ".join(f"trpojax seed {b}" for b in base_seeds)
    lines = [f"| env | budget | zoo TRPO (published) | sb3-contrib here: mean (per seed) | {bases} | "
             "reaches the zoo | wall trpojax (s) | wall sb3 (s) |",
             "|---" * (7 + len(base_seeds)) + "|"]
    for r in results:
        row, ours, sb3 = r["row"], r["trpojax"], r.get("sb3")
        sb3_cell = (f"{sb3['mean']:.1f} ({', '.join(f'{x:.1f}' for x in sb3['returns'])})" if sb3 else "not run")
        cells = " | ".join(f"{ours['per_base_seed'][b]['mean']:.1f}" for b in base_seeds)
        target = f" (>= {row.target:g})" if row.target != row.zoo_mean else ""
        sb3_wall = f"{sb3['wall_s']:.0f}" if sb3 else "-"
        lines.append(f"| {row.env} | {row.budget // 1000}k | {row.zoo_mean:.1f} +- {row.zoo_std:.1f}{target} | "
                     f"{sb3_cell} | {cells} | {'yes' if ours['met'] else '**no**'} | {ours['wall_s']:.0f} | "
                     f"{sb3_wall} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(r.key for r in ROWS), help="comma-separated row keys")
    parser.add_argument("--base-seeds", default="0,100,200", help="trpojax base seeds (8 seeds each)")
    parser.add_argument("--sb3-seeds", type=int, default=3, help="sb3-contrib seeds per row")
    parser.add_argument("--no-sb3", action="store_true", help="trpojax only")
    parser.add_argument("--eval-episodes", type=int, default=32, help="deterministic episodes per seed")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    by_key = {r.key: r for r in ROWS}
    keys = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        parser.exit(2, f"zoo_table: unknown row {unknown[0]!r}; rows: {', '.join(by_key)}\n")
    try:
        base_seeds = [int(s) for s in args.base_seeds.split(",")]
    except ValueError:
        parser.exit(2, f"zoo_table: --base-seeds must be comma-separated integers, got {args.base_seeds!r}\n")
    sb3 = not args.no_sb3 and package_version("sb3-contrib") is not None
    if not args.no_sb3 and not sb3:
        print("sb3-contrib is not installed (pip install -e \".[bench]\"): trpojax only", file=sys.stderr)

    from benchmarks._timing import machine

    versions = {p: package_version(p) for p in ("jax", "gymnax", "sb3-contrib", "torch", "gymnasium")}
    results = []
    for key in keys:
        row = by_key[key]
        print(f"{row.env} ({row.budget} env steps):", flush=True)
        result: dict[str, Any] = {"row": row, "trpojax": run_trpojax(row, base_seeds, args.eval_episodes)}
        if sb3:
            result["sb3"] = run_sb3(row, args.sb3_seeds, args.eval_episodes)
        results.append(result)
        print(table([result], base_seeds).splitlines()[-1], flush=True)  # the row, as soon as it is measured
        if args.json:  # rewritten after every row: an interrupted run keeps what it measured
            data = [{**r, "row": r["row"].__dict__} for r in results]
            with open(args.json, "w") as f:
                json.dump({"machine": machine(), "versions": versions, "rows": data}, f, indent=1)
    print(f"\nmachine: {machine()}; versions: {versions}")
    print(f"trpojax: configs/zoo/, 8 seeds per base seed, {args.eval_episodes} deterministic episodes per seed; "
          f"sb3-contrib: the zoo's hyperparameters, {args.sb3_seeds} seeds\n")
    print(table(results, base_seeds))


if __name__ == "__main__":
    main()

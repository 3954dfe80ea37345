"""trpojax vs sb3-contrib TRPO on CartPole-v1, side by side, whole-process wall clock.

Both run rl-baselines3-zoo's tuned TRPO hyperparameters for CartPole-v1 (2 envs x 512 steps, 100k steps,
gamma 0.99, GAE lambda 0.98, CG damping 1e-3, critic lr 1e-3, 20 critic epochs of minibatch 128, target KL
0.01, 15 CG iterations, 10 line-search steps of ratio 0.8, 64x64 tanh MLPs, normalised advantages), one seed
each by default, and end with a 32-episode deterministic evaluation. Each is timed as a fresh Python process,
imports, compilation and evaluation included: trpojax first with a cold (empty) persistent compilation
cache, then again with that cache warm. With ``--seeds N`` trpojax trains N seeds as one vmapped program and
sb3 trains them one after another in one process (imports paid once). Requires the ``bench`` extra:
``pip install -e ".[bench]"``.

    python -m benchmarks.compare_sb3 [--seed 0] [--seeds 1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRPOJAX_CONFIG = {
    "algo": "trpo",
    "env": "CartPole-v1",
    "num_seeds": 1,
    "total_env_steps": 100_352,  # 98 updates of 2 x 512 (SB3 also rounds up to whole rollouts: 98 x 1024)
    "num_envs": 2,
    "num_steps": 512,
    "gamma": 0.99,
    "gae_lambda": 0.98,
    "normalize_advantages": True,
    "eval_episodes": 32,
    "network": {"policy_hidden": [64, 64], "value_hidden": [64, 64], "activation": "tanh"},
    "trpo": {
        "max_kl": 0.01,
        "cg_iters": 15,
        "cg_damping": 0.001,
        "backtrack_ratio": 0.8,
        "backtrack_steps": 10,
        "critic_lr": 0.001,
        "critic_epochs": 20,
        "critic_minibatches": 8,
    },
}

SB3_SCRIPT = """
import sys, json, numpy as np
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
returns = []
for seed in range(int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2])):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=seed)
    model = TRPO("MlpPolicy", env, n_steps=512, batch_size=128, gamma=0.99, gae_lambda=0.98, cg_damping=1e-3,
                 learning_rate=1e-3, n_critic_updates=20, target_kl=0.01, cg_max_steps=15,
                 line_search_max_iter=10, line_search_shrinking_factor=0.8, normalize_advantage=True, seed=seed,
                 verbose=0, device="cpu")
    model.learn(total_timesteps=100_000)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000)
    returns.append(evaluate_policy(model, eval_env, n_eval_episodes=32, deterministic=True)[0])
print(json.dumps({"eval_return_mean": float(np.mean(returns))}))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd`` as a fresh process; return its wall-clock seconds and the finished process."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-2000:]}")
    return elapsed, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per side (trpojax: one vmapped program)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per row; the median is reported")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float]]] = {
        "trpojax, cold cache": [], "trpojax, warm cache": [], "sb3-contrib TRPO": []
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "trpo_cartpole_zoo.yaml"
        cfg.write_text(yaml.safe_dump({**TRPOJAX_CONFIG, "seed": args.seed, "num_seeds": args.seeds}))
        for repeat in range(args.repeats):
            env = {**os.environ, "TRPOJAX_CACHE_DIR": str(tmp / f"cache{repeat}")}  # empty: cold
            for label in ("trpojax, cold cache", "trpojax, warm cache"):
                out = tmp / f"{label.replace(' ', '').replace(',', '_')}{repeat}"
                secs, _ = timed([sys.executable, "-m", "trpojax.train", "--config", str(cfg), "--out", str(out),
                                 "--quiet"], env)
                summary = json.loads((out / "summary.json").read_text())
                runs[label].append((secs, summary["eval_return_mean"], summary["compile_s"]))
            secs, proc = timed([sys.executable, "-c", SB3_SCRIPT, str(args.seed), str(args.seeds)], dict(os.environ))
            sb3_return = json.loads(proc.stdout.strip().splitlines()[-1])["eval_return_mean"]
            runs["sb3-contrib TRPO"].append((secs, sb3_return, 0.0))

    from benchmarks._timing import machine

    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    sb3_runs = [r[0] for r in runs["sb3-contrib TRPO"]]
    sb3 = median(sb3_runs)
    print(f"machine: {machine()}")
    print(f"CartPole-v1, rl-zoo TRPO hyperparameters, 100k env steps, {args.seeds} seed(s), whole process "
          f"incl. imports; median of {args.repeats} run(s) per row")
    print("sb3 / this: ratio of the medians; paired: median (and range) of each repeat's own ratio, sb3's run "
          "next to this row's run of the same repeat, which cancels the machine's slow and fast minutes")
    print(f"{'run':<22}{'wall clock (s)':>16}{'range (s)':>14}{'compile (s)':>13}{'eval return':>13}"
          f"{'sb3 / this':>12}{'paired':>9}{'paired range':>15}")
    for label, rows in runs.items():
        secs = [r[0] for r in rows]
        paired = [theirs / ours for theirs, ours in zip(sb3_runs, secs, strict=True)]
        spread = f"{min(secs):.1f}-{max(secs):.1f}"
        print(f"{label:<22}{median(secs):>16.1f}{spread:>14}{median([r[2] for r in rows]):>13.1f}"
              f"{median([r[1] for r in rows]):>13.1f}{sb3 / median(secs):>12.1f}{median(paired):>9.1f}"
              f"{f'{min(paired):.1f}-{max(paired):.1f}':>15}")

if __name__ == "__main__":
    main()

"""A search generation as one batched program against the same trials as sequential train processes.

16 trials of TRPO on CartPole-v1 (``configs/trpo_cartpole.yaml``, its 100k env steps per seed; 2 seeds per
trial; ``trpo.max_kl`` and ``gae_lambda`` drawn by Optuna's random sampler) run

* batched: one ``python -m trpojax.search`` process, the 16 trials x 2 seeds as one vmapped program (on CPU one
  XLA device per core);
* sequential: 16 ``python -m trpojax.train --set num_seeds=2 --set trpo.max_kl=... --set gae_lambda=...``
  processes one after another, as rl-zoo runs Optuna trials (one training per trial).

Each side starts from an empty compilation cache of its own (the sequential processes share theirs, so the
second to the 16th reuse the first one's compiled programs). Wall clock of the processes, side by side, in one
run; the trials' mean eval returns are printed too (the train CLI's CPU fast path splits each update into
stage programs, so its numbers are not bit-equal to the batched program's).

    python -m benchmarks.search_speed [--trials 16] [--seeds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._cli import ROOT, package_version

CONFIG = "configs/trpo_cartpole.yaml"
SEARCH = """\
name: speed
base: {base}
space:
  trpo.max_kl: {{low: 0.005, high: 0.05, log: true}}
  gae_lambda: {{low: 0.9, high: 0.99}}
seeds_per_trial: {seeds}
batch_size: {trials}
trials: {trials}
sampler: {{name: random, seed: 0}}
"""


def run(cmd: list[str], cache: Path) -> float:
    """Run ``cmd`` in the repository root with ``cache`` as the compilation cache; its wall seconds."""
    env = {**os.environ, "TRPOJAX_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="search_speed_") as tmp:
        tmp = Path(tmp)
        search_file = tmp / "speed.yaml"
        search_file.write_text(SEARCH.format(base=ROOT / CONFIG, seeds=args.seeds, trials=args.trials))
        out = tmp / "search"
        batched_s = run([sys.executable, "-m", "trpojax.search", "--config", str(search_file), "--out", str(out),
                         "--quiet"], tmp / "cache_batched")
        with open(out / "trials.csv") as f:
            trials = list(csv.DictReader(f))
        print(f"batched: {len(trials)} trials x {args.seeds} seeds in one process: {batched_s:.1f} s", flush=True)
        sequential_s, returns = [], []
        for t in trials:
            run_dir = tmp / f"trial_{t['trial']}"
            cmd = [sys.executable, "-m", "trpojax.train", "--config", CONFIG, "--out", str(run_dir), "--quiet",
                   "--set", f"num_seeds={args.seeds}", "--set", f"trpo.max_kl={t['trpo.max_kl']}",
                   "--set", f"gae_lambda={t['gae_lambda']}"]
            sequential_s.append(run(cmd, tmp / "cache_sequential"))
            returns.append(json.loads((run_dir / "summary.json").read_text())["eval_return_mean"])
            print(f"  sequential trial {t['trial']}: {sequential_s[-1]:.1f} s", flush=True)
    total = sum(sequential_s)
    batched_mean = sum(float(t["iqm"]) for t in trials) / len(trials)  # 2 seeds: IQM = mean
    result = {
        "trials": len(trials), "seeds_per_trial": args.seeds, "config": CONFIG,
        "batched_s": batched_s, "sequential_s": total, "sequential_per_trial_s": sequential_s,
        "speedup": total / batched_s,
        "batched_mean_eval_return": batched_mean, "sequential_mean_eval_return": sum(returns) / len(returns),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "jax": package_version("jax"), "optuna": package_version("optuna"),
    }
    print()
    print("| trials x seeds | batched search (1 process) | sequential train processes | speedup |")
    print("|---|---|---|---|")
    print(f"| {len(trials)} x {args.seeds} | {batched_s:.1f} s | {total:.1f} s ({total / len(trials):.1f} s each) "
          f"| {total / batched_s:.2f}x |")
    sequential_mean = result["sequential_mean_eval_return"]
    print(f"mean eval return over trials: batched {batched_mean:.1f}, sequential {sequential_mean:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

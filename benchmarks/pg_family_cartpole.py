"""The policy-gradient family on CartPole-v1 at equal environment-step budgets, seeds vmapped.

Runs REINFORCE, NPG, N-PG-IGT, HARPG, N-HARPG and TRPO from their ``configs/<method>_cartpole.yaml`` with
``total_env_steps`` set to the common budget (plus the paper's vanilla PG: the REINFORCE config with plain
SGD), and evaluates every seed's deterministic policy (the mode of
pi_theta, fresh episodes to the 500-step limit) at evenly spaced points of training. Every simulated step
counts: for the episodic methods that is n * H per gradient (plus m * H per Hessian-vector product for
HARPG), masked steps after an episode's end included. Prints a markdown table and writes a plot of
eval return against env steps (mean over seeds, shaded +- one standard error).

    python -m benchmarks.pg_family_cartpole [--seeds 16] [--budget 500000] [--points 10] [--methods ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._timing import machine
from trpojax import config as config_lib
from trpojax.trainer import chunk_lengths, eval_keys, make_evaluate, make_trainer, seed_keys

ROOT = Path(__file__).resolve().parent.parent
# method -> (label, config stem, overrides); vanilla_pg is the paper's plain PG: REINFORCE with SGD.
METHODS = {
    "vanilla_pg": ("vanilla PG (REINFORCE, SGD lr 1e-4)", "reinforce",
                   ["reinforce.optimizer=sgd", "reinforce.learning_rate=0.0001"]),
    "reinforce": ("REINFORCE (Adam)", "reinforce", []),
    "npg": ("NPG", "npg", []),
    "pg_igt": ("N-PG-IGT", "pg_igt", []),
    "harpg": ("HARPG", "harpg", []),
    "nharpg": ("N-HARPG", "nharpg", []),
    "trpo": ("TRPO", "trpo", []),
}


def run_method(method: str, seeds: int, budget: int, points: int, episodes: int) -> dict:
    """Train ``seeds`` seeds of a method's CartPole config for ``budget`` env steps, evaluating as it goes.

    Returns:
        ``{"steps": [P], "returns": [P, seeds], "wall_s": float}``, ``returns`` the mean deterministic eval
        return of each seed after ``steps`` env steps.
    """
    _, stem, overrides = METHODS[method]
    config = config_lib.load(
        ROOT / "configs" / f"{stem}_cartpole.yaml",
        [*overrides, f"total_env_steps={budget}", f"num_seeds={seeds}", "compilation_cache=false"],
    )
    trainer = make_trainer(config)
    evaluate = make_evaluate(config, trainer.spec, trainer.learner, episodes)
    keys, ekeys = seed_keys(config), eval_keys(config)
    start = time.perf_counter()
    states = trainer.init(keys, config)
    steps, returns, done = [], [], 0
    for length in chunk_lengths(config.num_updates, points):
        states, _ = trainer.run_chunk(states, config, length)
        done += length
        steps.append(done * trainer.learner.env_steps_per_update)
        returns.append(np.asarray(evaluate(states, ekeys)).mean(axis=1))
    return {"steps": np.array(steps), "returns": np.stack(returns), "wall_s": time.perf_counter() - start}


def first_reaching(steps: np.ndarray, mean: np.ndarray, level: float) -> str:
    """Env steps at the first evaluation whose seed-mean return is >= ``level`` ("-" if none)."""
    hit = np.nonzero(mean >= level)[0]
    return f"{steps[hit[0]] / 1e3:.0f}k" if hit.size else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=16, help="seeds per method, vmapped (16 in the full run)")
    parser.add_argument("--budget", type=int, default=500_000, help="env steps per seed")
    parser.add_argument("--points", type=int, default=10, help="evaluations along training")
    parser.add_argument("--episodes", type=int, default=16, help="eval episodes per seed and point")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "pg_family_cartpole.png"))
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"CartPole-v1, {args.budget} env steps per seed, {args.seeds} seeds, "
          f"{args.episodes} deterministic eval episodes per seed and point\n")
    results = {}
    for method in args.methods:
        results[method] = run_method(method, args.seeds, args.budget, args.points, args.episodes)
    print("| method | env steps | eval return (mean +- std over seeds) | seeds >= 400 | at 1/5 budget "
          "| at 1/2 budget | first mean >= 400 | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for method, res in results.items():
        steps, returns = res["steps"], res["returns"]
        mean = returns.mean(axis=1)
        fifth, half = (mean[np.searchsorted(steps, frac * args.budget)] for frac in (0.2, 0.5))
        final = returns[-1]
        print(f"| {METHODS[method][0]} | {steps[-1]} | {final.mean():.1f} +- {final.std():.1f} "
              f"| {int((final >= 400).sum())}/{final.size} | {fifth:.1f} | {half:.1f} "
              f"| {first_reaching(steps, mean, 400)} | {res['wall_s']:.0f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, res in results.items():
        mean = res["returns"].mean(axis=1)
        err = res["returns"].std(axis=1) / np.sqrt(res["returns"].shape[1])
        ax.plot(res["steps"], mean, marker="o", ms=3, label=METHODS[method][0])
        ax.fill_between(res["steps"], mean - err, mean + err, alpha=0.2)
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("deterministic eval return")
    ax.set_title(f"CartPole-v1, {args.seeds} seeds (mean +- s.e.)")
    ax.axhline(400, color="grey", lw=0.8, ls="--")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()

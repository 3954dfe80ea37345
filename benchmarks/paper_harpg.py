"""The HARPG paper's comparison run the way its authors ran it (issue 15): four methods, two environments.

Runs ``configs/paper/{reinforce,pg_igt,nharpg,harpg}_{cartpole,acrobot}.yaml`` (vanilla PG, N-PG-IGT,
N-HARPG, HARPG under the authors' garage protocol: 1000-step batches of whole episodes, a linear-feature
baseline, their step-size schedules with gamma_0 = 0.1 and eta_0 = 1) at an equal budget of nominal
environment steps (1000 per gradient batch, plus 32 per Hessian batch for (N-)HARPG), seeds vmapped in one
program per method and environment. Every ``--every`` steps each seed's policy is evaluated on
``--episodes`` fresh deterministic episodes (the mode of pi_theta, the environment's own time limit: 500
steps for both). Prints a markdown table of the mean eval return with a 95% stratified-bootstrap interval
over seeds (:mod:`trpojax.core.stats`) at 250k, 500k and 1M steps (linear interpolation between evaluation
points), plus the real steps sampled (garage batches overshoot their budget by up to one episode and the
Hessian batch holds whole episodes), and writes the learning curves with their 95% bootstrap bands.

    python -m benchmarks.paper_harpg [--seeds 8] [--budget 1000000] [--envs cartpole acrobot]
        [--methods vanilla_pg pg_igt nharpg harpg] [--set harpg.hvp_form=paper] [--plot PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._timing import machine
from trpojax import config as config_lib
from trpojax.core.stats import curve_band, stratified_bootstrap_ci
from trpojax.core.stats import mean as stat_mean
from trpojax.trainer import eval_keys, make_evaluate, make_trainer, seed_keys

ROOT = Path(__file__).resolve().parent.parent
METHODS = {  # name -> (label, config stem, extra overrides)
    "vanilla_pg": ("vanilla PG", "reinforce", []),
    "pg_igt": ("N-PG-IGT", "pg_igt", []),
    "nharpg": ("N-HARPG", "nharpg", []),
    "harpg": ("HARPG", "harpg", []),
    "nharpg_paper_hvp": ("N-HARPG, paper's B v", "nharpg", ["harpg.hvp_form=paper"]),
    "harpg_paper_hvp": ("HARPG, paper's B v", "harpg", ["harpg.hvp_form=paper"]),
}
ENVS = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1"}
TABLE_STEPS = (250_000, 500_000, 1_000_000)


def run(method: str, env: str, seeds: int, budget: int, every: int, episodes: int, extra: list[str]) -> dict:
    """Train ``seeds`` seeds of one method on one environment, evaluating every ~``every`` env steps.

    Returns:
        ``steps [P]`` nominal env steps at each evaluation, ``eval [seeds, P]`` mean deterministic eval
        return per seed, ``train [seeds, P]`` mean return of the last chunk's training episodes,
        ``real_steps [seeds]`` real env steps sampled in all, and ``wall_s``.
    """
    _, stem, overrides = METHODS[method]
    config = config_lib.load(
        ROOT / "configs" / "paper" / f"{stem}_{env}.yaml",
        [*overrides, *extra, f"total_env_steps={budget}", f"num_seeds={seeds}", "compilation_cache=false"],
    )
    trainer = make_trainer(config)
    evaluate = make_evaluate(config, trainer.spec, trainer.learner, episodes)
    per_update = trainer.learner.env_steps_per_update
    chunk = max(1, round(every / per_update))
    lengths = [chunk] * (config.num_updates // chunk)
    if config.num_updates % chunk:
        lengths.append(config.num_updates % chunk)
    start = time.perf_counter()
    states = trainer.init(seed_keys(config), config)
    steps, evals, trains, real = [], [], [], np.zeros(seeds)
    done = 0
    for length in lengths:
        states, metrics = trainer.run_chunk(states, config, length)
        done += length
        steps.append(done * per_update)
        evals.append(np.asarray(evaluate(states, eval_keys(config))).mean(axis=1))
        trains.append(np.asarray(metrics["episode_return_mean"]).mean(axis=1))
        real += np.asarray(metrics["real_env_steps"]).sum(axis=1)
    return {
        "steps": np.array(steps), "eval": np.stack(evals, axis=1), "train": np.stack(trains, axis=1),
        "real_steps": real, "updates": config.num_updates, "wall_s": time.perf_counter() - start,
    }


def at_steps(steps: np.ndarray, curves: np.ndarray, targets: tuple[int, ...]) -> np.ndarray:
    """``curves [seeds, P]`` linearly interpolated (per seed) at ``targets`` env steps, [seeds, len(targets)]."""
    return np.stack([np.interp(targets, steps, c) for c in curves])


def ci(values: np.ndarray) -> str:
    """``mean [low, high]``: the mean over seeds with its 95% percentile-bootstrap interval."""
    band = stratified_bootstrap_ci([values], stat_mean, reps=2000)
    return f"{float(band.estimate):.1f} [{float(band.low):.1f}, {float(band.high):.1f}]"


def main() -> None:
    """Run the comparison, print the table, write the plot (and the raw curves as JSON next to it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per method and env, vmapped")
    parser.add_argument("--budget", type=int, default=1_000_000, help="nominal env steps per seed")
    parser.add_argument("--every", type=int, default=25_000, help="env steps between evaluations")
    parser.add_argument("--episodes", type=int, default=20, help="eval episodes per seed and point (the authors': 20)")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--methods", nargs="+", default=["vanilla_pg", "pg_igt", "nharpg", "harpg"], choices=METHODS)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra config override")
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "paper_harpg.png"))
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"{args.seeds} seeds, {args.budget} nominal env steps each, {args.episodes} deterministic eval episodes "
          f"per seed every ~{args.every} steps; overrides {args.extra or 'none'}\n")
    results: dict[str, dict[str, dict]] = {}
    for env in args.envs:
        for method in args.methods:
            res = run(method, env, args.seeds, args.budget, args.every, args.episodes, args.extra)
            results.setdefault(env, {})[method] = res
            print(f"  {env} {method}: {res['updates']} updates, {res['wall_s']:.0f} s, final eval "
                  f"{res['eval'][:, -1].mean():.1f}", flush=True)
    targets = tuple(t for t in TABLE_STEPS if t <= args.budget)
    print("\n| env | method | " + " | ".join(f"eval at {t // 1000}k" for t in targets)
          + " | training return, last 25k | real env steps (M) | wall s |")
    print("|---|---|" + "---|" * len(targets) + "---|---|---|")
    for env, by_method in results.items():
        for method, res in by_method.items():
            cells = at_steps(res["steps"], res["eval"], targets)
            print(f"| {ENVS[env]} | {METHODS[method][0]} | " + " | ".join(ci(cells[:, i]) for i in range(len(targets)))
                  + f" | {ci(res['train'][:, -1])} | {res['real_steps'].mean() / 1e6:.2f} | {res['wall_s']:.0f} |")

    plot_curves(results, args.plot, args.seeds)
    raw = {env: {m: {k: np.asarray(v).tolist() for k, v in r.items()} for m, r in by.items()}
           for env, by in results.items()}
    Path(args.plot).with_suffix(".json").write_text(json.dumps(raw))
    print(f"\nplot: {args.plot}")


def plot_curves(results: dict, path: str, seeds: int) -> None:
    """Eval return against env steps per environment: mean over seeds with a 95% bootstrap band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, (env, by_method) in zip(axes[0], results.items(), strict=True):
        for method, res in by_method.items():
            band = curve_band(res["eval"])
            ax.plot(res["steps"], band.estimate, label=METHODS[method][0])
            ax.fill_between(res["steps"], band.low, band.high, alpha=0.2)
        ax.set_xlabel("environment steps per seed (nominal: 1000 per batch, +32 per Hessian batch)")
        ax.set_ylabel("deterministic eval return")
        ax.set_title(f"{ENVS[env]}, authors' protocol, {seeds} seeds (mean, 95% bootstrap band)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

"""trpojax NTDAC vs rejax TD3 on gymnax Pendulum-v1, side by side: compile time, training env steps/s, return.

Both sides train the same number of environment steps per seed (``--steps``, default 200,000) for
``--seeds`` seeds (default 2) vmapped into one program, then evaluate each seed's final deterministic policy
on ``--eval-episodes`` episodes (default 32). Compilation, training and evaluation are timed separately;
env steps/s is (env steps per seed x seeds) / training seconds, compilation and evaluation excluded.

trpojax side: ``python -m trpojax.train --config CONFIG --set total_env_steps=STEPS --set num_seeds=SEEDS
--set seed=SEED --set eval_episodes=E --out TMP --quiet`` in a fresh process with an empty persistent
compilation cache (``TRPOJAX_CACHE_DIR`` pointed at a new temporary folder, so compile_s is a cold
compile); the numbers are those of the run's ``summary.json`` (``env_steps``, ``compile_s``, ``train_s``,
``eval_return_per_seed``). ``--config`` defaults to ``configs/ntdac_pendulum.yaml``; any trpojax config can
stand in (e.g. ``configs/trpo_pendulum.yaml``).

TD3 side: rejax (https://github.com/keraJLi/rejax) 0.1.3, which needs gymnax 0.0.x (gymnax 1.0 changed
``env.step`` to return six values; rejax 0.1.3 unpacks five), while trpojax needs gymnax >= 1.0. So rejax
runs in a virtual environment of its own, with its python in a subprocess: ``--rejax-venv PATH``, else
``$TRPOJAX_REJAX_VENV``, else ``~/.cache/trpojax/rejax-venv``. When that venv does not exist (or lacks
rejax), this script creates it (``python -m venv``) and runs ``pip install rejax==0.1.3 gymnax==0.0.9
jax==J jaxlib==J`` in it, J being this venv's jax version so that both sides use the same XLA (falling back
to whatever jax pip resolves if J is unavailable); it says so on stderr. This needs the package index once.
The driver builds ``TD3.create(env="Pendulum-v1", **hparams)``, compiles ``jax.jit(jax.vmap(algo.train))``
for the seeds' keys (``jax.random.split(PRNGKey(SEED), SEEDS)``) with ``.lower().compile()``, then times one
call. ``eval_freq = total_timesteps = STEPS`` and ``skip_initial_evaluation=True``, and the in-training
evaluation callback is replaced (rejax's documented ``algo.replace(eval_callback=...)``) by a no-op, so
training time holds no evaluation; the final state is then evaluated with ``rejax.evaluate.evaluate`` (the
function rejax's default callback uses, deterministic actor) on ``--eval-episodes`` episodes per seed.
Env steps per seed are read back from the final state's ``global_step``; rejax rounds ``STEPS`` up to a
multiple of ``num_envs x policy_delay`` (2 here).

TD3 hyperparameters: rejax's own tuned ones for Pendulum-v1 (``td3:`` in the rejax repository's
``configs/gymnax/pendulum.yaml``), ``total_timesteps``/``eval_freq`` replaced as above: num_envs 1,
buffer_size 10,000, fill_buffer 1,000 (uniform random actions and no updates before), batch_size 100,
learning_rate 1e-3 (Adam, actor and critics), num_epochs 1 (one critic gradient step per env step),
policy_delay 2 (one actor step and one Polyak target update every 2 env steps), gamma 0.99, polyak 0.95,
max_grad_norm 100, exploration_noise 0.3, target_noise 0.2, target_noise_clip 0.5, normalize_observations
true, swish 64x64 MLPs for the actor and the two critics.

    python -m benchmarks.ntdac_speed [--steps 200000] [--seeds 2] [--seed 0] [--eval-episodes 32]
        [--config configs/ntdac_pendulum.yaml] [--rejax-venv PATH] [--order td3-first|trpojax-first]
        [--only td3|trpojax] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks._cli import ROOT, package_version, train_cli

REJAX_VERSION = "0.1.3"
GYMNAX_FOR_REJAX = "0.0.9"  # rejax 0.1.3 breaks on gymnax 1.x (six-value env.step)
RESULT_TAG = "TD3_RESULT "

# rejax's configs/gymnax/pendulum.yaml, td3 section (total_timesteps and eval_freq are set per run).
TD3_HPARAMS = {
    "actor_kwargs": {"activation": "swish"},
    "critic_kwargs": {"activation": "swish"},
    "num_envs": 1,
    "buffer_size": 10_000,
    "fill_buffer": 1_000,
    "batch_size": 100,
    "learning_rate": 0.001,
    "num_epochs": 1,
    "gamma": 0.99,
    "polyak": 0.95,
    "max_grad_norm": 100,
    "exploration_noise": 0.3,
    "target_noise": 0.2,
    "target_noise_clip": 0.5,
    "policy_delay": 2,
    "normalize_observations": True,
}

# Runs with the rejax venv's python: python -c TD3_DRIVER '<json args>'; prints one RESULT_TAG JSON line.
TD3_DRIVER = r'''
import json, sys, time
from importlib.metadata import version

args = json.loads(sys.argv[1])
t_import = time.perf_counter()
import jax
import numpy as np
from rejax import TD3
from rejax.evaluate import evaluate
import_s = time.perf_counter() - t_import

steps, seeds, episodes = args["steps"], args["seeds"], args["eval_episodes"]
algo = TD3.create(env="Pendulum-v1", total_timesteps=steps, eval_freq=steps, skip_initial_evaluation=True,
                  **args["hparams"])
algo = algo.replace(eval_callback=lambda algo, ts, rng: ())  # no evaluation inside the timed training
keys = jax.random.split(jax.random.PRNGKey(args["seed"]), seeds)

t0 = time.perf_counter()
train = jax.jit(jax.vmap(algo.train)).lower(keys).compile()
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
ts, _ = train(keys)
jax.block_until_ready(ts)
train_s = time.perf_counter() - t0

max_steps = int(algo.env_params.max_steps_in_episode)

def eval_seed(ts, rng):
    return evaluate(algo.make_act(ts), rng, algo.env, algo.env_params, episodes, max_steps)[1]

eval_keys = jax.random.split(jax.random.PRNGKey(args["seed"] + 10_000), seeds)
t0 = time.perf_counter()
returns = np.asarray(jax.jit(jax.vmap(eval_seed))(ts, eval_keys))  # [seeds, episodes]
eval_s = time.perf_counter() - t0

env_steps = np.asarray(ts.global_step).reshape(-1)
per_seed = returns.mean(axis=1)
print("TD3_RESULT " + json.dumps({
    "env_steps_per_seed": [int(s) for s in env_steps],
    "import_s": import_s, "compile_s": compile_s, "train_s": train_s, "eval_s": eval_s,
    "env_steps_per_s": float(env_steps.sum()) / train_s,
    "eval_return_mean": float(per_seed.mean()), "eval_return_per_seed": [float(r) for r in per_seed],
    "versions": {p: version(p) for p in ("rejax", "jax", "jaxlib", "flax", "optax", "gymnax")},
    "devices": [str(d) for d in jax.devices()],
}), flush=True)
'''


def default_rejax_venv() -> Path:
    """``$TRPOJAX_REJAX_VENV``, else ``~/.cache/trpojax/rejax-venv``."""
    env = os.environ.get("TRPOJAX_REJAX_VENV")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trpojax" / "rejax-venv"


def venv_python(venv: Path) -> Path:
    """The venv's interpreter."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_rejax(python: Path) -> str | None:
    """The rejax version importable by ``python``, or None."""
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import rejax; from importlib.metadata import version; print(version('rejax'))"],
        capture_output=True, text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_rejax_venv(venv: Path) -> Path:
    """The python of ``venv``, after creating it and installing rejax there if it has no rejax."""
    python = venv_python(venv)
    found = installed_rejax(python)
    if found is not None:
        if found != REJAX_VERSION:
            print(f"note: {venv} has rejax {found}; this benchmark was written for {REJAX_VERSION}", file=sys.stderr)
        return python
    if not python.exists():
        print(f"creating the rejax virtual environment {venv}", file=sys.stderr)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    base = [f"rejax=={REJAX_VERSION}", f"gymnax=={GYMNAX_FOR_REJAX}"]
    jax_pins = []
    try:
        jax_pins = [f"jax=={version('jax')}", f"jaxlib=={version('jaxlib')}"]
    except PackageNotFoundError:
        pass
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    print(f"installing {' '.join(base + jax_pins)} into {venv} (once)", file=sys.stderr)
    if subprocess.run(pip + base + jax_pins).returncode != 0:
        if not jax_pins:
            sys.exit(f"pip install {' '.join(base)} failed in {venv}")
        print("that failed; retrying without pinning jax", file=sys.stderr)
        subprocess.run(pip + base, check=True)
    if installed_rejax(python) is None:
        sys.exit(f"rejax still does not import in {venv}")
    return python


def run_td3(python: Path, steps: int, seeds: int, seed: int, eval_episodes: int) -> dict:
    """Train and evaluate rejax TD3 in a subprocess of the rejax venv; its result row."""
    payload = json.dumps(
        {"steps": steps, "seeds": seeds, "seed": seed, "eval_episodes": eval_episodes, "hparams": TD3_HPARAMS}
    )
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), "-c", TD3_DRIVER, payload], capture_output=True, text=True, cwd=ROOT)
    wall_s = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"rejax TD3 failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}{proc.stdout[-1000:]}")
    res = json.loads(lines[-1][len(RESULT_TAG):])
    return {
        "method": f"rejax {res['versions']['rejax']} TD3",
        "seeds": seeds,
        "env_steps_per_seed": res["env_steps_per_seed"][0],
        "compile_s": res["compile_s"],
        "train_s": res["train_s"],
        "eval_s": res["eval_s"],
        "wall_s": wall_s,
        "env_steps_per_s": res["env_steps_per_s"],
        "eval_return_mean": res["eval_return_mean"],
        "eval_return_per_seed": res["eval_return_per_seed"],
        "eval_episodes": eval_episodes,
        "versions": res["versions"],
        "devices": res["devices"],
    }


def run_trpojax(config: str, steps: int, seeds: int, seed: int, eval_episodes: int) -> dict:
    """Train with ``python -m trpojax.train`` (cold compilation cache) in a subprocess; its result row."""
    s, _, wall_s = train_cli(
        config, {"total_env_steps": steps, "num_seeds": seeds, "seed": seed, "eval_episodes": eval_episodes},
        "ntdac_speed_",
    )
    return {
        "method": f"trpojax {s['algo']}",
        "seeds": s["num_seeds"],
        "env_steps_per_seed": s["env_steps"],
        "compile_s": s["compile_s"],
        "train_s": s["train_s"],
        "eval_s": None,
        "wall_s": wall_s,
        "env_steps_per_s": s["env_steps"] * s["num_seeds"] / max(s["train_s"], 1e-9),
        "eval_return_mean": s["eval_return_mean"],
        "eval_return_per_seed": s["eval_return_per_seed"],
        "eval_episodes": s["eval_episodes"],
        "config": config,
        "versions": {p: package_version(p) for p in ("trpojax", "jax", "jaxlib", "flax", "optax", "gymnax")},
        "devices": s["devices"],
    }


def print_table(rows: list[dict], machine: str) -> None:
    """The side-by-side table and, with both sides, the throughput ratio."""
    print(f"machine: {machine}")
    for row in rows:
        v = row["versions"]
        print(f"  {row['method']}: jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, gymnax {v['gymnax']}, "
              f"devices {', '.join(row['devices'])}")
    print("Pendulum-v1; env steps/s = env steps per seed x seeds / train s (compile and final evaluation "
          f"excluded); eval return: mean over seeds of each seed's {rows[0]['eval_episodes']}-episode mean")
    head = f"{'method':<22}{'seeds':>6}{'steps/seed':>12}{'compile s':>11}{'train s':>10}{'wall s':>9}" \
           f"{'env steps/s':>13}  eval return (per seed)"
    print(head)
    print("-" * len(head))
    for r in rows:
        per_seed = ", ".join(f"{x:.1f}" for x in r["eval_return_per_seed"])
        print(f"{r['method']:<22}{r['seeds']:>6}{r['env_steps_per_seed']:>12,}{r['compile_s']:>11.1f}"
              f"{r['train_s']:>10.1f}{r['wall_s']:>9.1f}{r['env_steps_per_s']:>13,.0f}  "
              f"{r['eval_return_mean']:.1f} ({per_seed})")
    td3 = [r for r in rows if "TD3" in r["method"]]
    ours = [r for r in rows if r["method"].startswith("trpojax")]
    if td3 and ours:
        ratio = ours[0]["env_steps_per_s"] / td3[0]["env_steps_per_s"]
        print(f"{ours[0]['method']} steps/s / TD3 steps/s = {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per seed, both sides")
    parser.add_argument("--seeds", type=int, default=2, help="seeds, vmapped into one program on both sides")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--eval-episodes", type=int, default=32, help="final evaluation episodes per seed")
    parser.add_argument("--config", default="configs/ntdac_pendulum.yaml", help="trpojax run config")
    parser.add_argument("--rejax-venv", type=Path, default=None,
                        help="rejax's venv (default $TRPOJAX_REJAX_VENV or ~/.cache/trpojax/rejax-venv)")
    parser.add_argument("--order", choices=("td3-first", "trpojax-first"), default="td3-first")
    parser.add_argument("--only", choices=("td3", "trpojax"), default=None, help="run one side only")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and machine here")
    args = parser.parse_args()

    sides = ["td3", "trpojax"] if args.order == "td3-first" else ["trpojax", "td3"]
    if args.only:
        sides = [args.only]
    if "trpojax" in sides:
        if Path(args.config).exists():
            args.config = str(Path(args.config).resolve())  # the run's subprocess works in ROOT
        elif not (ROOT / args.config).exists():
            sys.exit(f"no trpojax config {args.config}")
    python = ensure_rejax_venv(args.rejax_venv or default_rejax_venv()) if "td3" in sides else None

    rows = []
    for side in sides:
        print(f"running {side} ...", file=sys.stderr, flush=True)
        if side == "td3":
            rows.append(run_td3(python, args.steps, args.seeds, args.seed, args.eval_episodes))
        else:
            rows.append(run_trpojax(args.config, args.steps, args.seeds, args.seed, args.eval_episodes))
    machine = f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print_table(rows, machine)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""One accelerator session: TRPO training throughput and one GPU-scale learning run, all within a time budget.

Meant to run once on a GPU machine, in one go (``--budget-s``, default 480 s, compilation included):

(a) aggregate TRPO training env steps/s on gymnax ``CartPole-v1`` (``configs/trpo_cartpole.yaml``) for
    num_envs x num_seeds from 64 x 1 up to 4096 x 8, 128 steps per env per update;
(b) TRPO training env steps/s on ``playground:CheetahRun`` and ``brax:halfcheetah`` with 2048 envs x 1 seed
    (their ``configs/gpu/`` configs, 64 steps per env per update);
(c) a learning run of one GPU-scale config (``configs/gpu/trpo_brax_halfcheetah.yaml``, ``--learning-config``)
    through the real CLI (``python -m trpojax.train``) in a subprocess, with ``total_env_steps`` cut to what
    the time left allows (estimated from (b)'s time per update on the same environment, with a margin), and
    its final evaluation return.

Each throughput item compiles ``trainer.run_chunk`` for its updates ahead of time (compile seconds recorded
on their own), runs it once as a warm-up and times a second run; env steps/s counts every seed's steps.
Before each item the time left is checked against an estimate of its cost (compile and runs, from the
items measured before it), and an item that would not fit in its part's share of the budget (parts (a) and
(b) end by 25% and 55% of it) is recorded as skipped, with the reason. The JSON (``--out``) is rewritten
after every item, so an interrupted session keeps what it measured; it holds the machine, JAX version,
devices, and per item its config and overrides, compile s, run s, env steps/s or the reason it was skipped.
The learning run's own outputs (metrics.csv, summary.json, learning curve) go to ``--learning-out``
(default: the JSON's path without its suffix plus ``_run``).

On the CPU backend, or with ``--tiny``, everything runs at tiny sizes, so that a test keeps the script
working: (a) 8 x 1 and 16 x 2 envs x seeds, 32 steps, 2 updates; (b) ``playground:CartpoleBalance`` and
``brax:inverted_pendulum`` (cheaper to compile than the cheetahs) with the same GPU configs' hyperparameters,
8 envs x 1 seed, 16 steps, 2 updates; (c) ``configs/trpo_cartpole.yaml`` (unless ``--learning-config`` is
given) with 8 envs x 32 steps x 2 seeds and ``execution: scan`` (the program a GPU runs), at most 4096 env
steps per seed. A physics item takes 30-45 s to compile on a 2-core CPU and is budgeted at 60 s there, so a
budget under about 170 s skips part (b) (as recorded skips); ``--tiny --budget-s 300`` on a CPU runs all.

    python -m benchmarks.accelerator [--out accelerator.json] [--budget-s 480] [--tiny]
"""

# ruff: noqa: E402  (the environment variable below must be set before JAX is imported)

from __future__ import annotations

import os
import time

START = time.perf_counter()  # the budget counts the imports below (JAX, and later the simulators) too

# Before JAX starts its backend: the parent process and the learning-run subprocess share one accelerator,
# so neither may grab 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import yaml

from benchmarks._timing import machine
from trpojax import config as config_lib
from trpojax.fastcpu import compiler_options
from trpojax.trainer import make_trainer, seed_keys

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE_CONFIG = "configs/trpo_cartpole.yaml"
LEARNING_CONFIG = "configs/gpu/trpo_brax_halfcheetah.yaml"
TINY_LEARNING_CONFIG = "configs/trpo_cartpole.yaml"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one session.

    Attributes:
        cartpole_shapes: (num_envs, num_seeds) of part (a), in order.
        cartpole_steps: steps per env per update in part (a).
        physics: (config path, env override or None) of part (b).
        physics_shape: (num_envs, num_seeds) of part (b).
        physics_steps: steps per env per update in part (b).
        updates: updates per timed run (parts (a) and (b)).
        learning_overrides: ``--set`` overrides of the learning run besides ``total_env_steps``.
        learning_max_steps: cap on the learning run's env steps per seed (None: the config's own).
        min_learning_updates: fewer affordable updates than this skips the learning run.
        guess_compile_s: setup and compile seconds assumed for a family ("cartpole", "physics") before one is
            measured.
        startup_s: seconds a CLI subprocess spends before compiling (interpreter, imports, backend).
        part_ends: fractions of the budget by which parts (a) and (b) must end.
    """

    cartpole_shapes: tuple[tuple[int, int], ...]
    cartpole_steps: int
    physics: tuple[tuple[str, str | None], ...]
    physics_shape: tuple[int, int]
    physics_steps: int
    updates: int
    learning_overrides: tuple[str, ...]
    learning_max_steps: int | None
    min_learning_updates: int
    guess_compile_s: dict[str, float]
    startup_s: float
    part_ends: tuple[float, float] = (0.25, 0.55)


FULL = Plan(
    cartpole_shapes=((64, 1), (512, 8), (4096, 1), (4096, 8)),
    cartpole_steps=128,
    physics=(("configs/gpu/trpo_playground_cheetah_run.yaml", None), ("configs/gpu/trpo_brax_halfcheetah.yaml", None)),
    physics_shape=(2048, 1),
    physics_steps=64,
    updates=4,
    learning_overrides=(),
    learning_max_steps=None,
    min_learning_updates=10,
    guess_compile_s={"cartpole": 20.0, "physics": 60.0},
    startup_s=20.0,
)

TINY = Plan(
    cartpole_shapes=((8, 1), (16, 2)),
    cartpole_steps=32,
    physics=(
        ("configs/gpu/trpo_playground_cheetah_run.yaml", "playground:CartpoleBalance"),
        ("configs/gpu/trpo_brax_halfcheetah.yaml", "brax:inverted_pendulum"),
    ),
    physics_shape=(8, 1),
    physics_steps=16,
    updates=2,
    learning_overrides=("num_envs=8", "num_steps=32", "num_seeds=2", "eval_episodes=4", "execution=scan"),
    learning_max_steps=4096,
    min_learning_updates=1,
    guess_compile_s={"cartpole": 5.0, "physics": 60.0},
    startup_s=5.0,
)


def resolve(config_path: str) -> Path:
    """``config_path`` as given when it exists from the working directory, else under the repository root."""
    path = Path(config_path)
    return path.resolve() if path.exists() else ROOT / path


class Clock:
    """Seconds since the session started, against its budget."""

    def __init__(self, budget_s: float, start: float):
        self.start = start
        self.budget_s = budget_s

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start

    def left(self, until: float | None = None) -> float:
        """Seconds left until ``until`` (seconds after the start; default the whole budget)."""
        return (self.budget_s if until is None else until) - self.elapsed()


def throughput_item(part: str, config_path: str, env: str | None, shape: tuple[int, int], num_steps: int,
                    updates: int, family: str) -> dict[str, Any]:
    """The record of one throughput item before it runs: its config, overrides, shape and env steps.

    The config is only validated when the item runs (validating a physics config imports its simulator).
    """
    num_envs, num_seeds = shape
    env = env or yaml.safe_load(resolve(config_path).read_text())["env"]
    overrides = [f"env={env}", f"num_envs={num_envs}", f"num_seeds={num_seeds}", f"num_steps={num_steps}",
                 f"total_env_steps={num_envs * num_steps * updates}"]
    return {
        "part": part,
        "name": f"{env} {num_envs}x{num_seeds}",
        "family": family,
        "env": env,
        "config": config_path,
        "overrides": overrides,
        "num_envs": num_envs,
        "num_seeds": num_seeds,
        "num_steps": num_steps,
        "updates": updates,
        "env_steps": num_envs * num_steps * updates * num_seeds,
        "status": "pending",
        "reason": None,
        "setup_s": None,
        "compile_s": None,
        "first_run_s": None,
        "run_s": None,
        "env_steps_per_s": None,
    }


def measure(item: dict[str, Any]) -> None:
    """Compile ``item``'s training chunk, run it once as a warm-up and time a second run (fills ``item``).

    ``setup_s`` is loading the config (which builds the environment, importing its simulator); ``compile_s``
    is building the trainer, initialising every seed's state and compiling the chunk of ``updates`` updates.
    """
    t0 = time.perf_counter()
    cfg = config_lib.load(resolve(item["config"]), item["overrides"])
    item["setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer = make_trainer(cfg)
    states = trainer.init(seed_keys(cfg), cfg)
    run = trainer.run_chunk.lower(states, cfg, item["updates"]).compile(compiler_options(cfg))
    jax.block_until_ready(states)
    item["compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(run(states, cfg))
    item["first_run_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(run(states, cfg))
    item["run_s"] = time.perf_counter() - t0
    item["env_steps_per_s"] = item["env_steps"] / item["run_s"]
    item["status"] = "ok"


def estimate_cost(item: dict[str, Any], done: list[dict[str, Any]], plan: Plan) -> float:
    """Seconds ``item`` is expected to take: the slowest setup and compile measured in its family so far (or
    the plan's guess), x1.2, plus two runs at the family's slowest measured time per env step."""
    same = [d for d in done if d["status"] == "ok" and d["family"] == item["family"]]
    compile_s = max((d["setup_s"] + d["compile_s"] for d in same), default=plan.guess_compile_s[item["family"]])
    compile_s *= 1.2
    per_step = max((d["first_run_s"] / d["env_steps"] for d in same), default=0.0)
    return compile_s + 2 * per_step * item["env_steps"]


def run_throughput(items: list[dict[str, Any]], clock: Clock, part_end: float, plan: Plan, done: list[dict[str, Any]],
                   save: Any) -> None:
    """Measure ``items`` in order, each only if its estimated cost fits before ``part_end``."""
    for item in items:
        need, left = estimate_cost(item, done, plan), clock.left(part_end)
        if need > left:
            item["status"] = "skipped"
            item["reason"] = f"needs ~{need:.0f} s (estimated), {max(left, 0):.0f} s left for part ({item['part']})"
        else:
            try:
                measure(item)
            except Exception as err:  # an out-of-memory shape must not end the session
                item["status"] = "failed"
                item["reason"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
        done.append(item)
        save()
        print_row(item)


def learning_source(env: str, done: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The measured item to estimate the learning run's speed from: the slowest per update on its environment,
    else the slowest per update of any."""
    ok = [d for d in done if d["status"] == "ok"]
    pool = [d for d in ok if d["env"] == env] or ok
    return max(pool, key=lambda d: d["run_s"] / d["updates"], default=None)


def plan_learning(cfg: Any, source: dict[str, Any] | None, left: float, plan: Plan) -> dict[str, Any]:
    """How many updates of ``cfg`` fit in ``left`` seconds.

    The time per update is the source item's, scaled up when the learning run's batch per update (all seeds)
    or its rollout length is larger (an accelerator is latency-bound well below saturation, so a smaller
    batch is assumed no faster); the compile time is the source's setup plus twice its compile (init, chunk
    and evaluation programs), and the subprocess start-up comes on top. 80% of what remains after those goes
    to training.
    """
    if source is None:
        per_update, compile_s, basis = 2.0, 2 * plan.guess_compile_s["physics"], "no measured item; guessed"
    else:
        batch = cfg.num_envs * cfg.num_steps * cfg.num_seeds
        source_batch = source["num_envs"] * source["num_steps"] * source["num_seeds"]
        scale = max(1.0, batch / source_batch, cfg.num_steps / source["num_steps"])
        per_update = source["run_s"] / source["updates"] * scale
        compile_s, basis = source["setup_s"] + 2 * source["compile_s"], source["name"]
    train_s = 0.8 * (left - compile_s - plan.startup_s)
    updates = max(0, math.floor(train_s / per_update))
    updates = min(updates, cfg.num_updates)
    if plan.learning_max_steps is not None:
        updates = min(updates, plan.learning_max_steps // cfg.steps_per_update)
    if updates >= cfg.num_chunks:  # equal chunks: one compiled chunk program
        updates -= updates % cfg.num_chunks
    return {
        "basis": basis,
        "per_update_s": per_update,
        "compile_s": compile_s,
        "startup_s": plan.startup_s,
        "time_left_s": left,
        "updates": updates,
    }


def run_learning(item: dict[str, Any], clock: Clock, margin_s: float, plan: Plan, done: list[dict[str, Any]],
                 run_dir: Path) -> None:
    """Size the learning run to the time left, run the CLI on it and read its summary (fills ``item``)."""
    base = config_lib.load(resolve(item["config"]), list(plan.learning_overrides))
    left = clock.left() - margin_s
    estimate = plan_learning(base, learning_source(base.env, done), left, plan)
    item["estimate"] = estimate
    if estimate["updates"] < plan.min_learning_updates:
        item["status"] = "skipped"
        item["reason"] = (f"{estimate['updates']} updates fit in {max(left, 0):.0f} s left "
                          f"(fewer than {plan.min_learning_updates})")
        return
    total = estimate["updates"] * base.steps_per_update
    overrides = [*plan.learning_overrides, f"total_env_steps={total}"]
    item.update(overrides=overrides, total_env_steps=total, run_dir=str(run_dir))
    command = [sys.executable, "-m", "trpojax.train", "--config", str(resolve(item["config"]))]
    for override in overrides:
        command += ["--set", override]
    command += ["--out", str(run_dir), "--quiet"]
    timeout = max(1.0, clock.left() - 0.5 * margin_s)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        item["status"] = "failed"
        item["reason"] = f"timed out after {timeout:.0f} s"
        item["wall_s"] = time.perf_counter() - t0
        return
    item["wall_s"] = time.perf_counter() - t0
    if proc.returncode != 0:
        item["status"] = "failed"
        item["reason"] = f"exit code {proc.returncode}: {proc.stderr.strip()[-300:]}"
        return
    summary = json.loads((run_dir / "summary.json").read_text())
    item["summary"] = summary
    item.update(
        status="ok",
        compile_s=summary["compile_s"],
        run_s=summary["train_s"],
        env_steps=summary["env_steps"] * summary["num_seeds"],
        env_steps_per_s=summary["env_steps_per_s"],
        eval_return_mean=summary["eval_return_mean"],
        eval_return_per_seed=summary["eval_return_per_seed"],
        wall_clock_s=summary["wall_clock_s"],
    )


def learning_item(config_path: str, plan: Plan) -> dict[str, Any]:
    """The record of the learning run before it is sized."""
    cfg = config_lib.load(resolve(config_path), list(plan.learning_overrides))
    return {
        "part": "c",
        "name": f"learn {cfg.env} {cfg.num_envs}x{cfg.num_seeds}",
        "family": "learning",
        "env": cfg.env,
        "config": config_path,
        "overrides": list(plan.learning_overrides),
        "num_envs": cfg.num_envs,
        "num_seeds": cfg.num_seeds,
        "num_steps": cfg.num_steps,
        "status": "pending",
        "reason": None,
        "compile_s": None,
        "run_s": None,
        "env_steps": None,
        "env_steps_per_s": None,
        "eval_return_mean": None,
    }


HEADER = f"{'part':<5}{'item':<36}{'compile s':>10}{'run s':>9}{'env steps/s':>14}  notes"


def print_row(item: dict[str, Any]) -> None:
    """One table row for ``item``."""

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    if item["status"] == "ok":
        notes = f"eval return {item['eval_return_mean']:.1f}" if item["part"] == "c" else ""
    else:
        notes = f"{item['status']}: {item['reason']}"
    print(f"{item['part']:<5}{item['name']:<36}{num(item['compile_s'], '.1f'):>10}{num(item['run_s'], '.2f'):>9}"
          f"{num(item['env_steps_per_s'], ',.0f'):>14}  {notes}", flush=True)


def default_run_dir(out: Path) -> Path:
    """``<out without suffix>_run``, or that with a time stamp when it already holds something."""
    run_dir = out.with_name(out.stem + "_run")
    if run_dir.exists() and any(run_dir.iterdir()):
        run_dir = out.with_name(f"{out.stem}_run_{time.strftime('%Y%m%d-%H%M%S')}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """Run the session; returns the exit code (0 even when items were skipped or failed: see the JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="accelerator.json", help="JSON results file")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget, compilation included")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (always on the CPU backend)")
    parser.add_argument("--learning-config", default=None,
                        help=f"config of the learning run (default {LEARNING_CONFIG}; tiny: {TINY_LEARNING_CONFIG})")
    parser.add_argument("--learning-out", default=None, help="output directory of the learning run")
    args = parser.parse_args(argv)
    clock = Clock(args.budget_s, START)
    tiny = args.tiny or jax.default_backend() == "cpu"
    plan = TINY if tiny else FULL
    out = Path(args.out)
    run_dir = Path(args.learning_out) if args.learning_out else default_run_dir(out)
    learning_config = args.learning_config or (TINY_LEARNING_CONFIG if tiny else LEARNING_CONFIG)
    margin_s = max(5.0, 0.05 * args.budget_s)
    done: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "machine": machine(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "tiny": tiny,
        "budget_s": args.budget_s,
        "plan": dataclasses.asdict(plan),
        "items": done,
        "wall_s": None,
    }

    def save() -> None:
        result["wall_s"] = clock.elapsed()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)

    print(f"machine: {result['machine']}; devices: {', '.join(result['devices'])}")
    print(f"budget {args.budget_s:.0f} s{' (tiny sizes)' if tiny else ''}; results -> {out}")
    print(HEADER, flush=True)
    part_a, part_b = (frac * args.budget_s for frac in plan.part_ends)
    cartpole = [throughput_item("a", CARTPOLE_CONFIG, None, shape, plan.cartpole_steps, plan.updates, "cartpole")
                for shape in plan.cartpole_shapes]
    run_throughput(cartpole, clock, part_a, plan, done, save)
    physics = [throughput_item("b", path, env, plan.physics_shape, plan.physics_steps, plan.updates, "physics")
               for path, env in plan.physics]
    run_throughput(physics, clock, part_b, plan, done, save)
    learning = learning_item(learning_config, plan)
    run_learning(learning, clock, margin_s, plan, done, run_dir)
    done.append(learning)
    save()
    print_row(learning)
    print(f"wall {clock.elapsed():.1f} s of {args.budget_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

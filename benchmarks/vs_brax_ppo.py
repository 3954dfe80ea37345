"""trpojax TRPO vs Brax PPO (MuJoCo Playground's own recipe) on Playground's Cartpole tasks, at equal env steps.

For each environment of ``--envs`` (default ``CartpoleBalance CartpoleSwingup``) and a budget of ``--steps``
env steps per seed (default 1,000,000), both frameworks train ``--seeds`` seeds (default 2) and report their
final evaluation return, whole wall clock, compile time and training env steps/s; the table ends each
environment with the ratios TRPO/PPO of the mean return and of the throughput.

Brax PPO side (in this process): the environment is ``mujoco_playground.registry.load(name, config=cfg)`` with
``cfg = registry.get_default_config(name)`` and ``cfg.impl = "jax"`` (MJX's JAX implementation; the default
``warp`` needs a GPU), trained by ``brax.training.agents.ppo.train.train(environment=env,
wrap_env_fn=mujoco_playground.wrapper.wrap_for_brax_training, progress_fn=..., **params)`` as Playground's
training notebooks do, ``params`` being ``mujoco_playground.config.dm_control_suite_params.brax_ppo_config(name)``
(its ``network_factory``, if any, turned into ``functools.partial(make_ppo_networks, ...)``) with these changes,
all printed with the table:

- ``num_timesteps`` is the budget.
- ``num_envs`` and ``batch_size`` are divided by the same power of two (``num_minibatches``, ``unroll_length``
  and ``num_updates_per_batch`` kept, so each update still takes ``batch_size x num_minibatches / num_envs``
  unrolls per env and as many SGD steps): the recipe's 2048 envs and 983,040 env steps per update are made
  for GPUs and 60M-step budgets. They are halved while the backend is a CPU and ``num_envs`` exceeds
  ``--ppo-cpu-envs`` (64), or while the budget holds fewer than 20 updates, down to 8 envs.
  ``--ppo-num-envs`` sets ``num_envs`` directly (``batch_size`` following in the recipe's ratio).
- ``num_evals = 1``: one evaluation, at the end (Brax skips its step-0 evaluation when ``num_evals`` is 1).
- ``num_resets_per_eval`` = the number of updates that fit the budget (``ceil(steps / env steps per update)``),
  so each training epoch is one update followed by a reset of every env, as in the recipe at its own budget
  (60M steps / (9 evals x 10 resets x 983,040 steps per update) -> one update per epoch); Brax then trains
  exactly that many updates. A recipe without resets keeps 0 (one epoch of all the updates).
- ``seed`` is ``--seed`` + i for the i-th seed; seeds run one after another (Brax trains one seed per call).

The evaluation is Brax's own: ``eval/episode_reward`` of the final ``progress_fn`` call, the mean over
``num_eval_envs`` (the recipe leaves Brax's default, 128) full episodes of the policy's mode
(``deterministic_eval`` True; the recipe leaves it False, but trpojax evaluates deterministically, so both
columns measure the same thing). Times: wall s is the ``train`` call (environment wrapping, compilation,
training and evaluation; imports and ``registry.load`` excluded), summed over seeds. Compile s is the union of
the time spans of JAX's compile events (``/jax/core/compile/*``: tracing, lowering to MLIR, XLA compilation)
during the call, every program included (init, reset, the training epoch, the evaluation), summed over seeds
(each call builds new closures, so each seed compiles again). Env steps/s is the env steps trained over
Brax's ``training/walltime`` less the compile spans that fell inside calls of the ``training_epoch`` program
(timed by wrapping ``jax.pmap`` for that function, in this process, during the call), over all seeds.

Brax 0.14's PPO calls ``jax.device_put_replicated``, which JAX 0.10 removed: this script installs a shim in
this process only (``jax.device_put_replicated(x, devices)``: every leaf stacked ``len(devices)`` times on a
new leading axis, sharded one slice per device; the layout ``jax.pmap`` and Brax's ``_unpmap`` expect).

trpojax side (a subprocess): ``python -m trpojax.train --config CONFIG --set env=playground:NAME --set
total_env_steps=STEPS --set num_seeds=SEEDS --set seed=SEED --out TMP --quiet`` with an empty persistent
compilation cache (``TRPOJAX_CACHE_DIR`` in a new temporary folder, so compile s is a cold compile). CONFIG is
``--trpo-config-balance`` (``configs/trpo_playground_cartpole_balance.yaml``) for ``CartpoleBalance`` and
``--trpo-config-swingup`` (``configs/trpo_playground_cartpole_swingup.yaml``) for ``CartpoleSwingup``. The
numbers are the run's ``summary.json``: ``eval_return_mean`` / ``eval_return_per_seed`` (the config's
``eval_episodes`` deterministic episodes per seed), ``wall_clock_s``, ``compile_s``, ``env_steps_per_s``
(all seeds, trained as one vmapped program, over the training seconds) and ``env_steps`` (whole updates:
the budget rounded to a multiple of ``num_envs x num_steps``).

    python -m benchmarks.vs_brax_ppo [--envs CartpoleBalance CartpoleSwingup] [--steps 1000000] [--seeds 2]
        [--seed 0] [--json out.json] [--ppo-num-envs N] [--ppo-cpu-envs 64] [--only ppo|trpo]
        [--trpo-config-balance PATH] [--trpo-config-swingup PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._cli import ROOT, package_version, train_cli
from benchmarks._timing import machine

DEFAULT_TRPO_CONFIGS = {
    "CartpoleBalance": "configs/trpo_playground_cartpole_balance.yaml",
    "CartpoleSwingup": "configs/trpo_playground_cartpole_swingup.yaml",
}
MIN_UPDATES = 20  # halve the PPO batch until the budget holds at least this many updates
MIN_PPO_ENVS = 8
COMPILE_EVENT_PREFIX = "/jax/core/compile/"
PPO_KEYS = ("num_timesteps", "num_envs", "batch_size", "num_minibatches", "unroll_length", "num_updates_per_batch",
            "num_evals", "num_resets_per_eval", "num_eval_envs", "episode_length", "action_repeat", "discounting",
            "learning_rate", "entropy_cost", "reward_scaling", "normalize_observations")


def install_jax_shims() -> list[str]:
    """Give JAX back the APIs Brax's PPO still calls and JAX 0.10 removed; the names installed.

    ``jax.device_put_replicated(x, devices)`` returned every leaf of ``x`` with a new leading axis of size
    ``len(devices)``, slice i on ``devices[i]``: the layout ``jax.pmap`` consumes and Brax's ``_unpmap`` reads
    back (``x.addressable_shards[0].data.squeeze(0)``). Only this process is patched.
    """
    installed = []
    if not hasattr(jax, "device_put_replicated"):

        def device_put_replicated(x: Any, devices: list[Any]) -> Any:
            mesh = jax.sharding.Mesh(np.array(devices), ("devices",))
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
            return jax.tree.map(lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), x)

        jax.device_put_replicated = device_put_replicated
        installed.append("jax.device_put_replicated")
    return installed


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``spans`` as disjoint, sorted spans."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class CompileSpans:
    """Records the ``time.time()`` spans of JAX's compile events (tracing, lowering, XLA compilation) while
    active."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def _listener(self, event: str, start: float, end: float, **kwargs: Any) -> None:
        if event.startswith(COMPILE_EVENT_PREFIX):
            self.spans.append((start, end))

    def __enter__(self) -> CompileSpans:
        jax.monitoring.register_event_time_span_listener(self._listener)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._listener)

    def seconds(self, within: list[tuple[float, float]] | None = None) -> float:
        """Length of the union of the recorded spans (nested events counted once); with ``within``, only the
        part inside those spans."""
        spans = _merged(self.spans)
        if within is None:
            return sum(end - start for start, end in spans)
        return sum(max(0.0, min(e, we) - max(s, ws)) for s, e in spans for ws, we in _merged(within))


class PmapCalls:
    """While active, ``jax.pmap`` of a function named ``name`` returns a wrapper that records the
    ``time.time()`` span of each call (Brax's ``training_epoch``: compilation happens inside its first call)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.windows: list[tuple[float, float]] = []
        self._pmap: Any = None

    def __enter__(self) -> PmapCalls:
        self._pmap = original = jax.pmap

        def pmap(fun: Any, *args: Any, **kwargs: Any) -> Any:
            mapped = original(fun, *args, **kwargs)
            if getattr(fun, "__name__", None) != self.name:
                return mapped

            def timed(*call_args: Any, **call_kwargs: Any) -> Any:
                start = time.time()
                out = mapped(*call_args, **call_kwargs)
                self.windows.append((start, time.time()))
                return out

            return timed

        jax.pmap = pmap
        return self

    def __exit__(self, *exc: object) -> None:
        jax.pmap = self._pmap


def ppo_params(name: str, steps: int, num_envs: int | None, cpu_envs: int) -> tuple[dict, dict, list[str]]:
    """Playground's Brax PPO recipe for ``name`` and the parameters used here at a budget of ``steps``.

    Args:
        name: a DM Control Suite environment of Playground's registry.
        steps: env steps per seed.
        num_envs: ``num_envs`` to use (``batch_size`` scaled in the recipe's ratio); None to choose (see the
            module docstring).
        cpu_envs: on a CPU backend, the most envs chosen automatically.

    Returns:
        (recipe, used, notes): the recipe as a dict (``network_factory`` left as given), the keyword arguments
        for ``ppo.train`` (``network_factory`` resolved), and one line per change.
    """
    from brax.training.agents.ppo import networks as ppo_networks
    from mujoco_playground.config import dm_control_suite_params

    recipe = dm_control_suite_params.brax_ppo_config(name).to_dict()
    used = dict(recipe)
    notes = [f"num_timesteps {recipe['num_timesteps']:,} -> {steps:,} (the budget)"]
    used["num_timesteps"] = steps
    ratio = recipe["batch_size"] / recipe["num_envs"]

    def per_update(n_envs: int) -> int:
        return int(n_envs * ratio) * recipe["num_minibatches"] * recipe["unroll_length"] * recipe["action_repeat"]

    if num_envs is None:
        num_envs = recipe["num_envs"]
        on_cpu = jax.default_backend() == "cpu"
        while num_envs > MIN_PPO_ENVS and ((on_cpu and num_envs > cpu_envs) or steps < MIN_UPDATES * per_update(
                num_envs)):
            num_envs //= 2
    batch_size = max(int(num_envs * ratio), 1)
    if batch_size * recipe["num_minibatches"] % num_envs:
        sys.exit(f"--ppo-num-envs {num_envs}: batch_size x num_minibatches ({batch_size} x "
                 f"{recipe['num_minibatches']}) must be a multiple of num_envs")
    if num_envs != recipe["num_envs"]:
        why = "2-core-class CPU and/or small budget" if jax.default_backend() == "cpu" else "small budget"
        notes.append(f"num_envs {recipe['num_envs']} -> {num_envs}, batch_size {recipe['batch_size']} -> "
                     f"{batch_size} (scaled down: {why}; num_minibatches, unroll_length, num_updates_per_batch kept)")
    used["num_envs"], used["batch_size"] = num_envs, batch_size
    step_per_update = batch_size * recipe["num_minibatches"] * recipe["unroll_length"] * recipe["action_repeat"]
    updates = math.ceil(steps / step_per_update)
    used["num_evals"] = 1
    notes.append(f"num_evals {recipe['num_evals']} -> 1 (one evaluation, after training)")
    if recipe.get("num_resets_per_eval", 0) > 0:
        used["num_resets_per_eval"] = updates
        notes.append(f"num_resets_per_eval {recipe['num_resets_per_eval']} -> {updates} (one update per epoch, "
                     f"then a reset, as the recipe at its budget; {updates} updates x {step_per_update:,} steps)")
    used.setdefault("num_eval_envs", 128)  # Brax's default, which the recipe leaves
    used["deterministic_eval"] = True
    notes.append("deterministic_eval False -> True (the policy's mode, as trpojax evaluates)")
    factory = used.pop("network_factory", None)
    used["network_factory"] = (functools.partial(ppo_networks.make_ppo_networks, **factory) if factory
                               else ppo_networks.make_ppo_networks)
    return recipe, used, notes


def run_ppo(name: str, params: dict, seed: int) -> dict:
    """Train and evaluate one seed of Brax PPO on Playground's ``name``; its numbers."""
    from brax.training.agents.ppo import train as ppo_train
    from mujoco_playground import registry, wrapper

    cfg = registry.get_default_config(name)
    cfg.impl = "jax"
    env = registry.load(name, config=cfg)
    calls: list[tuple[int, dict]] = []

    def progress(step: int, metrics: dict) -> None:
        calls.append((int(step), {k: float(v) for k, v in metrics.items()}))

    with CompileSpans() as spans, PmapCalls("training_epoch") as epochs:
        t0 = time.perf_counter()
        ppo_train.train(environment=env, wrap_env_fn=wrapper.wrap_for_brax_training, progress_fn=progress,
                        seed=seed, **params)
        wall_s = time.perf_counter() - t0
    if not calls:
        sys.exit(f"brax PPO on {name} made no progress_fn call (no evaluation)")
    steps, metrics = calls[-1]
    if not epochs.windows:
        sys.exit("brax PPO's training_epoch was not seen through jax.pmap; cannot separate its compile time")
    train_s = metrics["training/walltime"] - spans.seconds(within=epochs.windows)
    return {
        "seed": seed,
        "env_steps": steps,
        "eval_return": metrics["eval/episode_reward"],
        "eval_return_std": metrics.get("eval/episode_reward_std"),
        "wall_s": wall_s,
        "compile_s": spans.seconds(),
        "training_walltime_s": metrics["training/walltime"],
        "training_compile_s": spans.seconds(within=epochs.windows),
        "training_epochs": len(epochs.windows),
        "train_s": train_s,
        "eval_s": metrics.get("eval/walltime"),
    }


def ppo_row(name: str, steps: int, seeds: int, seed: int, num_envs: int | None, cpu_envs: int) -> dict:
    """All seeds of Brax PPO on ``name``, one after another; the table row."""
    recipe, used, notes = ppo_params(name, steps, num_envs, cpu_envs)
    runs = []
    for i in range(seeds):
        print(f"  brax PPO {name} seed {seed + i} ...", file=sys.stderr, flush=True)
        runs.append(run_ppo(name, used, seed + i))
    per_seed = [r["eval_return"] for r in runs]
    train_s = sum(r["train_s"] for r in runs)
    shown = {k: used[k] for k in PPO_KEYS if k in used}
    shown["network_factory"] = recipe.get("network_factory") or "make_ppo_networks defaults"
    return {
        "env": name,
        "framework": f"brax {package_version('brax')} PPO",
        "seeds": seeds,
        "env_steps_per_seed": runs[0]["env_steps"],
        "eval_return_mean": float(np.mean(per_seed)),
        "eval_return_per_seed": per_seed,
        "eval": f"{used['num_eval_envs']} deterministic episodes per seed (brax eval/episode_reward)",
        "wall_s": sum(r["wall_s"] for r in runs),
        "compile_s": sum(r["compile_s"] for r in runs),
        "env_steps_per_s": sum(r["env_steps"] for r in runs) / max(train_s, 1e-9),
        "runs": runs,
        "recipe": {k: v for k, v in recipe.items() if k != "network_factory"} | (
            {"network_factory": recipe["network_factory"]} if recipe.get("network_factory") else {}),
        "params_used": shown,
        "param_changes": notes,
    }


def trpo_row(name: str, config: str, steps: int, seeds: int, seed: int) -> dict:
    """trpojax TRPO on ``playground:name`` via its CLI in a subprocess (cold compilation cache); the table row."""
    print(f"  trpojax TRPO {name} ...", file=sys.stderr, flush=True)
    s, cmd, process_s = train_cli(
        config, {"env": f"playground:{name}", "total_env_steps": steps, "num_seeds": seeds, "seed": seed},
        "vs_brax_ppo_",
    )
    return {
        "env": name,
        "framework": f"trpojax {s['algo'].upper()}",
        "seeds": s["num_seeds"],
        "env_steps_per_seed": s["env_steps"],
        "eval_return_mean": s["eval_return_mean"],
        "eval_return_per_seed": s["eval_return_per_seed"],
        "eval": f"{s['eval_episodes']} deterministic episodes per seed",
        "wall_s": s["wall_clock_s"],
        "compile_s": s["compile_s"],
        "env_steps_per_s": s["env_steps_per_s"],
        "process_s": process_s,
        "config": config,
        "command": cmd,
    }


def print_table(rows: list[dict], budget: int, where: str) -> None:
    """The side-by-side table, the ratios per environment, and the PPO parameters used."""
    print(f"machine: {where}")
    print(f"budget: {budget:,} env steps per seed; wall s and compile s summed over seeds (PPO seeds run one "
          "after another, TRPO seeds as one vmapped program); env steps/s = all seeds' env steps / training s")
    head = (f"{'env':<17}{'framework':<20}{'seeds':>6}{'steps/seed':>12}{'wall s':>9}{'compile s':>11}"
            f"{'env steps/s':>13}  final return mean (per seed)")
    print(head)
    print("-" * len(head))
    for r in rows:
        per_seed = ", ".join(f"{x:.1f}" for x in r["eval_return_per_seed"])
        print(f"{r['env']:<17}{r['framework']:<20}{r['seeds']:>6}{r['env_steps_per_seed']:>12,}{r['wall_s']:>9.1f}"
              f"{r['compile_s']:>11.1f}{r['env_steps_per_s']:>13,.0f}  {r['eval_return_mean']:.1f} ({per_seed})")
    for name, ratio in ratios(rows).items():
        ret = "n/a" if ratio["return"] is None else f"{ratio['return']:.2f}"
        print(f"{name}: TRPO/PPO return ratio {ret}, throughput ratio {ratio['throughput']:.2f}")
    for r in rows:
        if "params_used" in r:
            print(f"{r['env']} brax PPO evaluation: {r['eval']}; parameters used: "
                  + ", ".join(f"{k}={v}" for k, v in r["params_used"].items()))
            for note in r["param_changes"]:
                print(f"  changed from Playground's recipe: {note}")
        else:
            print(f"{r['env']} trpojax evaluation: {r['eval']}; config {r['config']}")


def ratios(rows: list[dict]) -> dict[str, dict]:
    """TRPO/PPO ratios of mean final return and of env steps/s, per environment with both rows."""
    out = {}
    for name in dict.fromkeys(r["env"] for r in rows):
        ppo = [r for r in rows if r["env"] == name and "PPO" in r["framework"]]
        trpo = [r for r in rows if r["env"] == name and "TRPO" in r["framework"]]
        if ppo and trpo:
            p, t = ppo[0], trpo[0]
            out[name] = {
                "return": t["eval_return_mean"] / p["eval_return_mean"] if p["eval_return_mean"] else None,
                "throughput": t["env_steps_per_s"] / p["env_steps_per_s"],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["CartpoleBalance", "CartpoleSwingup"],
                        help="Playground environments")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per seed, both frameworks")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per framework")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and ratios here")
    parser.add_argument("--ppo-num-envs", type=int, default=None,
                        help="PPO num_envs (batch_size follows in the recipe's ratio); default: chosen")
    parser.add_argument("--ppo-cpu-envs", type=int, default=64, help="most PPO envs chosen on a CPU backend")
    parser.add_argument("--trpo-config-balance", default=DEFAULT_TRPO_CONFIGS["CartpoleBalance"])
    parser.add_argument("--trpo-config-swingup", default=DEFAULT_TRPO_CONFIGS["CartpoleSwingup"])
    parser.add_argument("--only", choices=("ppo", "trpo"), default=None, help="run one framework only")
    args = parser.parse_args()

    configs = {"CartpoleBalance": args.trpo_config_balance, "CartpoleSwingup": args.trpo_config_swingup}
    if args.only != "ppo":
        for name in args.envs:
            if name not in configs:
                sys.exit(f"no trpojax config for {name}; this benchmark knows {', '.join(configs)}")
            path = Path(configs[name])
            path = path if path.is_absolute() else (Path.cwd() / path if path.exists() else ROOT / path)
            if not path.exists():
                sys.exit(f"no trpojax config {configs[name]} for {name}")
            configs[name] = str(path.resolve())  # the subprocess works in ROOT
    shims = install_jax_shims() if args.only != "trpo" else []

    rows = []
    for name in args.envs:
        print(f"{name}:", file=sys.stderr, flush=True)
        if args.only != "trpo":
            rows.append(ppo_row(name, args.steps, args.seeds, args.seed, args.ppo_num_envs, args.ppo_cpu_envs))
        if args.only != "ppo":
            rows.append(trpo_row(name, configs[name], args.steps, args.seeds, args.seed))
    where = machine()
    print_table(rows, args.steps, where)
    if shims:
        print(f"shims installed in this process for brax: {', '.join(shims)}")
    if args.json:
        versions = {p: package_version(p)
                    for p in ("trpojax", "brax", "playground", "mujoco", "mujoco-mjx", "jax", "jaxlib")}
        payload = {"machine": where, "budget": args.steps, "versions": versions, "shims": shims, "rows": rows,
                   "ratios": ratios(rows)}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

"""What each piece of the XLA:CPU fast path (``trpojax/fastcpu/``) buys, measured in fresh processes.

The run is compare_sb3's: rl-baselines3-zoo's TRPO on CartPole-v1, 100k steps, one seed, whole-process wall
clock of ``python -m trpojax.train`` (imports, compilation, training, evaluation, outputs). Variants, each
with a cold (empty) and then a warm compilation cache:

- ``fast``: the default on CPU (:class:`trpojax.fastcpu.FastPath`: parallel compile, executable cache, host
  keys, XLA:CPU options, split execution);
- ``fast, execution=scan``: the fast path without split execution;
- ``plain``: ``TRPOJAX_FASTCPU=0``, the path GPUs and TPUs take (JAX's persistent cache only when warm);
- ``fast, JAX cache only``: a warm run whose executable cache was emptied (what the executable cache adds).

Then two start-up pieces in isolation: the seed and evaluation keys by ``jax.random`` (compiling its small
programs) against :func:`trpojax.fastcpu.keys.run_keys`, and ``make_env`` of CartPole with and without the
rest of gymnax imported (the light classic-control import of ``trpojax/envs/gymnax.py``).

    python -m benchmarks.fastcpu_pieces [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.compare_sb3 import TRPOJAX_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of a fresh process (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - t0


def cli_times(work: Path, label: str, extra_env: dict[str, str], args: list[str], empty_executables: bool) -> tuple:
    """(cold, warm) seconds of the train CLI with a fresh cache directory."""
    cache = work / f"cache-{label}"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "TRPOJAX_CACHE_DIR": str(cache), **extra_env}
    config = work / "zoo_cartpole.yaml"

    def once(tag: str) -> float:
        out = work / f"{label}-{tag}-{time.monotonic_ns()}"
        return timed([sys.executable, "-m", "trpojax.train", "--config", str(config), *args, "--out", str(out),
                      "--quiet"], env)

    cold = once("cold")
    if empty_executables:
        shutil.rmtree(cache / "trpojax-executables", ignore_errors=True)
    return cold, once("warm")


KEYS_SNIPPET = """
import time, sys
from trpojax import config as c
cfg = c.default("trpo", num_seeds=8)
t0 = time.perf_counter()
if sys.argv[1] == "host":
    from trpojax.fastcpu.keys import run_keys
    keys = run_keys(cfg)
else:
    from trpojax.trainer import eval_keys, seed_keys
    keys = seed_keys(cfg), eval_keys(cfg)
import jax
jax.block_until_ready(keys)
print(time.perf_counter() - t0)
"""

ENV_SNIPPET = """
import sys, time
if sys.argv[1] == "full":
    import gymnax  # the whole package, as a plain gymnax.make would import it
t0 = time.perf_counter()
from trpojax.envs import make_env
make_env("CartPole-v1")
print(time.perf_counter() - t0 + (0 if sys.argv[1] == "light" else float(sys.argv[2])))
"""

GYMNAX_IMPORT = "import time; t0 = time.perf_counter(); import gymnax; print(time.perf_counter() - t0)"


def snippet(code: str, *args: str) -> float:
    """The number a Python snippet prints, run in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    variants = [
        ("fast", {}, [], False),
        ("fast, execution=scan", {}, ["--set", "execution=scan"], False),
        ("plain (TRPOJAX_FASTCPU=0)", {"TRPOJAX_FASTCPU": "0"}, [], False),
        ("fast, JAX cache only", {}, [], True),
    ]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in variants}
    keys: dict[str, list[float]] = {"jax.random": [], "host (run_keys)": []}
    envs: dict[str, list[float]] = {"light": [], "full gymnax": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "zoo_cartpole.yaml").write_text(yaml.safe_dump(TRPOJAX_CONFIG))
        for _ in range(args.repeats):  # interleaved, so slow and fast minutes of a shared machine hit all alike
            for i, (name, env, extra, empty) in enumerate(variants):
                results[name].append(cli_times(work, str(i), env, extra, empty))
            keys["jax.random"].append(snippet(KEYS_SNIPPET, "jax"))
            keys["host (run_keys)"].append(snippet(KEYS_SNIPPET, "host"))
            gymnax_import = snippet(GYMNAX_IMPORT)
            envs["light"].append(snippet(ENV_SNIPPET, "light", "0"))
            envs["full gymnax"].append(snippet(ENV_SNIPPET, "full", str(gymnax_import)))
    print(f"train CLI, rl-zoo CartPole TRPO, 1 seed, 100k steps; medians of {args.repeats}:")
    print(f"{'variant':30s} {'cold s':>8s} {'warm s':>8s}")
    for name, times in results.items():
        cold = statistics.median(t[0] for t in times)
        warm = statistics.median(t[1] for t in times)
        print(f"{name:30s} {cold:8.2f} {warm:8.2f}")
    print("start-up pieces (s, medians):")
    for name, values in {**keys, **{f"make_env CartPole, {k}": v for k, v in envs.items()}}.items():
        print(f"  {name:36s} {statistics.median(values):6.3f}")


if __name__ == "__main__":
    main()

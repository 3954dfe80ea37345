"""Sweep scaling: aggregate TRPO env steps/s against the number of vmapped runs and the device count.

Builds the same sharded program ``python -m trpojax.sweep`` runs (one config of
``configs/trpo_cartpole.yaml`` x R seeds on one run axis over a device mesh), compiles it, runs one warm-up
chunk of ``--updates`` updates and times a second one. Prints one Markdown row per point: runs, devices,
per-device runs, compile seconds, aggregate env steps/s and the compiled per-device memory footprint.

With ``--device-counts`` the run count ``--device-runs`` is repeated on meshes over the first d devices.
On a CPU, ``--forced-cpu-devices`` instead re-runs this script in subprocesses with
``XLA_FLAGS=--xla_force_host_platform_device_count=d``: such "devices" share the same cores, so that row
shows the sharding's overhead, not a speed-up.

    python -m benchmarks.scaling [--max-runs 1024] [--updates 2] [--device-counts 1 2 4 8]
    python -m benchmarks.scaling --max-runs 0 --forced-cpu-devices 1 2 4 --device-runs 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks._timing import machine
from trpojax import config as config_lib
from trpojax.sweep import Group, build_program, make_mesh
from trpojax.sweep.spec import Sweep

CONFIG = Path(__file__).parent.parent / "configs" / "trpo_cartpole.yaml"
RUNS = (1, 4, 16, 64, 256, 1024)


def measure(runs: int, num_devices: int, updates: int) -> dict:
    """Compile the sweep program for ``runs`` seeds on the first ``num_devices`` devices and time it."""
    base = config_lib.load(CONFIG, [f"num_seeds={runs}", "num_chunks=1", "compilation_cache=false"])
    base = dataclasses.replace(base, total_env_steps=updates * base.steps_per_update)
    sweep = Sweep(name="scaling", base_path=CONFIG, base=base, num_seeds=runs, paths=(), points=((),),
                  configs=(base,), memory_limit_bytes=None, resolved={})
    mesh = make_mesh(jax.devices()[:num_devices])
    program = build_program(sweep, Group((0,), ""), mesh)
    chunk = program.chunks[updates]
    states = program.init(program.keys, program.run_configs)
    states, returns = chunk(states, program.run_configs)
    jax.block_until_ready(returns)
    t0 = time.perf_counter()
    states, returns = chunk(states, program.run_configs)
    jax.block_until_ready(returns)
    seconds = time.perf_counter() - t0
    return {
        "runs": runs,
        "devices": num_devices,
        "per_device": program.padded // num_devices,
        "compile_s": program.compile_s,
        "env_steps_per_s": runs * updates * program.env_steps_per_update / seconds,
        "memory_mib": program.memory_bytes / 2**20,
        "finite": bool(np.isfinite(np.asarray(returns)).any()),
    }


def row(result: dict, label: str) -> str:
    """One Markdown table row."""
    return (f"| {result['runs']} | {result['devices']}{label} | {result['per_device']} | "
            f"{result['compile_s']:.1f} | {result['env_steps_per_s']:,.0f} | {result['memory_mib']:.1f} |")


def main() -> None:
    """Parse the arguments, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-runs", type=int, default=1024, help="largest run count measured (0: none)")
    parser.add_argument("--updates", type=int, default=2, help="TRPO updates per timed chunk")
    parser.add_argument("--device-counts", type=int, nargs="*", default=[], help="mesh sizes (real devices)")
    parser.add_argument("--forced-cpu-devices", type=int, nargs="*", default=[],
                        help="forced host device counts, each measured in a fresh subprocess")
    parser.add_argument("--device-runs", type=int, default=64, help="runs for the device-count rows")
    parser.add_argument("--json", action="store_true", help="print JSON results (subprocess use)")
    args = parser.parse_args()

    points = [(r, len(jax.devices()), "") for r in RUNS if r <= args.max_runs]
    points += [(args.device_runs, d, "") for d in args.device_counts]
    results = []
    for runs, devices, label in points:
        result = measure(runs, devices, args.updates)
        results.append((result, label))
        if args.json:
            print(json.dumps(result), flush=True)
    for d in args.forced_cpu_devices:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}"}
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--max-runs", "0", "--updates", str(args.updates),
               "--device-counts", str(d), "--device-runs", str(args.device_runs), "--json"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        results.append((json.loads(out.strip().splitlines()[-1]), " (forced host devices)"))
    if args.json:
        return
    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}; TRPO CartPole-v1, configs/trpo_cartpole.yaml, "
          f"{args.updates} updates timed after one warm-up chunk")
    print()
    print("| runs | devices | runs per device | compile (s) | env steps/s | memory per device (MiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for result, label in results:
        print(row(result, label))


if __name__ == "__main__":
    main()

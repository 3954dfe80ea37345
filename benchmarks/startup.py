"""Where a short run's fixed costs go: XLA compile time and run time with and without trpojax's options.

For the rl-zoo CartPole TRPO config of ``benchmarks.compare_sb3`` (1 seed, chunks of 7 updates), compiles
the init, chunk and evaluation programs with XLA's default options and with
``trpojax.fastcpu.compiler_options`` (one after the other, nothing in parallel, no cache), then times the chunk
program of each (best of ``--repeats`` runs of 4 chunks, alternating) and prints both side by side, with the
time to load the three programs from the executable cache.

    python -m benchmarks.startup [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax

from benchmarks._timing import machine
from benchmarks.compare_sb3 import TRPOJAX_CONFIG
from trpojax import config as config_lib
from trpojax.fastcpu.cache import ExecutableCache
from trpojax.fastcpu.compile import compile_programs
from trpojax.fastcpu.options import compiler_options
from trpojax.trainer import eval_keys, make_trainer, seed_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = config_lib.from_dict({**TRPOJAX_CONFIG, "num_chunks": 14})
    trainer = make_trainer(config)
    keys, keys_eval = seed_keys(config), eval_keys(config)
    states_like = jax.eval_shape(trainer.init, keys, config)
    lowered = {
        "init": trainer.init.lower(keys, config),
        "chunk (7 updates)": trainer.run_chunk.lower(states_like, config, 7),
        "evaluate": trainer.evaluate.lower(states_like, keys_eval),
    }
    variants = {"XLA defaults": lambda one_shot: None, "trpojax options": lambda o: compiler_options(config, o)}
    compile_s: dict[tuple[str, str], float] = {}
    chunk = {}
    for variant, options in variants.items():
        for name, low in lowered.items():
            t0 = time.perf_counter()
            compiled = low.compile(options(name != "chunk (7 updates)"))
            compile_s[variant, name] = time.perf_counter() - t0
            if name.startswith("chunk"):
                chunk[variant] = compiled
    start = trainer.init(keys, config)
    for compiled in chunk.values():
        jax.block_until_ready(compiled(start, config))
    per_update = {variant: float("inf") for variant in chunk}
    for _ in range(args.repeats):
        for variant, compiled in chunk.items():
            states = start
            t0 = time.perf_counter()
            for _ in range(4):
                states, _ = compiled(states, config)
            jax.block_until_ready(states)
            per_update[variant] = min(per_update[variant], (time.perf_counter() - t0) / 28)
    with tempfile.TemporaryDirectory() as tmp:
        cache = ExecutableCache(tmp)
        programs = compile_programs(trainer, config, keys, keys_eval, [7], cache)
        programs.evaluate(start, keys_eval)
        cache.flush()
        t0 = time.perf_counter()
        warm = compile_programs(trainer, config, keys, keys_eval, [7], cache)
        load_s = time.perf_counter() - t0
        warm.evaluate(start, keys_eval)

    print(f"machine: {machine()}")
    print("CartPole-v1, rl-zoo TRPO config, 1 seed; compile times are single runs, one program at a time")
    print(f"{'program':<22}" + "".join(f"{v + ' (s)':>24}" for v in variants))
    for name in lowered:
        print(f"{'compile ' + name:<22}" + "".join(f"{compile_s[v, name]:>24.2f}" for v in variants))
    total = {v: sum(compile_s[v, n] for n in lowered) for v in variants}
    print(f"{'compile, all three':<22}" + "".join(f"{total[v]:>24.2f}" for v in variants))
    print(f"{'run, ms per update':<22}" + "".join(f"{per_update[v] * 1e3:>24.2f}" for v in variants))
    print(f"load init + chunk from the executable cache, evaluate in the background: {load_s:.2f} s")


if __name__ == "__main__":
    main()

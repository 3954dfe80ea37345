"""TRPO training throughput (env steps/s) against a rollout-only baseline with the same policy network.

For num_envs in {1, 8, 64, 512} x num_seeds in {1, 8}, times whole TRPO updates (rollout, GAE, CG natural
step with line search, critic fit) compiled as one scan, and the same rollouts alone, and prints env steps
per second for both and the fraction of rollout speed that training keeps. Training programs are compiled
with ``compile_mode: optimized`` (the run-time-first XLA:CPU options).

    python -m benchmarks.throughput [--env CartPole-v1] [--num-steps 128] [--updates 4] [--envs 1 8 64 512]
"""

from __future__ import annotations

import argparse
import time

import jax

from benchmarks._timing import machine
from trpojax import config as config_lib
from trpojax.envs.rollout import reset_envs, rollout
from trpojax.fastcpu import compiler_options
from trpojax.trainer import make_trainer, seed_keys


def time_training(cfg, updates: int) -> float:
    """Seconds for ``updates`` TRPO updates of every seed, compiled beforehand."""
    trainer = make_trainer(cfg)
    keys = seed_keys(cfg)
    states = trainer.init(keys, cfg)
    run = trainer.run_chunk.lower(states, cfg, updates).compile(compiler_options(cfg))
    jax.block_until_ready(run(states, cfg))
    t0 = time.perf_counter()
    jax.block_until_ready(run(states, cfg))
    return time.perf_counter() - t0


def time_rollouts(cfg, updates: int) -> float:
    """Seconds for the same number of env steps collected by rollouts alone (same policy network)."""
    trainer = make_trainer(cfg)
    spec, policy = trainer.spec, trainer.learner.policy
    keys = seed_keys(cfg)
    params = jax.vmap(lambda k: trainer.learner.init(k, cfg).agent.policy_params)(keys)

    def one_seed(p, key):
        runner = reset_envs(spec, key, cfg.num_envs)

        def body(runner, k):
            runner, tr = rollout(spec, policy.apply, p, runner, k, cfg.num_steps)
            return runner, tr.reward.sum()

        return jax.lax.scan(body, runner, jax.random.split(key, updates))[1]

    fn = jax.jit(jax.vmap(one_seed)).lower(params, keys).compile()
    jax.block_until_ready(fn(params, keys))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(params, keys))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"TRPO on {args.env}, num_steps {args.num_steps}, {args.updates} updates timed after compilation")
    print(f"{'num_envs':>9}{'num_seeds':>10}{'train steps/s':>16}{'rollout steps/s':>17}{'train/rollout':>15}")
    for num_envs in args.envs:
        for num_seeds in args.seeds:
            steps = num_envs * args.num_steps * args.updates * num_seeds
            cfg = config_lib.load(
                "configs/trpo_cartpole.yaml",
                [f"env={args.env}", f"num_envs={num_envs}", f"num_steps={args.num_steps}", f"num_seeds={num_seeds}",
                 f"total_env_steps={num_envs * args.num_steps * args.updates}", "compile_mode=optimized"],
            )
            train_sps = steps / time_training(cfg, args.updates)
            roll_sps = steps / time_rollouts(cfg, args.updates)
            print(f"{num_envs:>9}{num_seeds:>10}{train_sps:>16,.0f}{roll_sps:>17,.0f}{train_sps / roll_sps:>15.2f}",
                  flush=True)


if __name__ == "__main__":
    main()

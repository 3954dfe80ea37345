"""TRPO training throughput (env steps/s) against a rollout-only baseline with the same policy network.

For num_envs in {1, 8, 64, 512} x num_seeds in {1, 8}, times whole TRPO updates (rollout, GAE, CG natural
step with line search, critic fit) compiled as one scan, and the same rollouts alone, and prints env steps
per second for both and the fraction of rollout speed that training keeps. Training programs are compiled
with ``compile_mode: optimized`` (the run-time-first XLA:CPU options).

    python -m benchmarks.throughput [--env CartPole-v1] [--num-steps 128] [--updates 4] [--envs 1 8 64 512]

With ``--physics`` it instead times the physics families (``playground:CartpoleBalance``,
``playground:CheetahRun``, ``brax:inverted_pendulum``, ``brax:halfcheetah`` by default, ``--physics-envs``) at
one batch shape (``--physics-shape`` num_envs num_steps, default 64 128) and checks the budget of issue 14: a
TRPO update's wall time against the environment alone (the family's own ``step`` vmapped and scanned over the
same batch, random actions, no adapter, no resets) plus a TRPO update on a gymnax batch of the same size
(Pendulum-v1, a continuous-action environment whose physics costs next to nothing), target ratio <= 1.25.

    python -m benchmarks.throughput --physics [--physics-envs playground:CheetahRun ...] [--physics-shape 64 128]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

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


def time_physics_only(spec, num_envs: int, num_steps: int, updates: int) -> float:
    """Seconds for ``updates`` batches of ``num_envs x num_steps`` steps of the family's own environment
    (``spec.env.step`` vmapped, scanned, uniformly random actions in the box): no policy, no adapter, no
    resets."""
    env = spec.env
    low, high = jnp.array(spec.action_low), jnp.array(spec.action_high)

    def run(key):
        state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def body(state, k):
            action = jax.random.uniform(k, (num_envs, spec.action_dim), minval=low, maxval=high)
            state = jax.vmap(env.step)(state, action)
            # The observation too: a constant reward (inverted_pendulum's 1 per step) would let XLA drop the physics.
            return state, state.reward.sum() + jax.tree.leaves(state.obs)[0].sum()

        return jax.lax.scan(body, state, jax.random.split(key, num_steps * updates))[1].sum()

    key = jax.random.PRNGKey(0)
    fn = jax.jit(run).lower(key).compile(compiler_options(None))
    jax.block_until_ready(fn(key))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(key))
    return time.perf_counter() - t0


def physics_rows(envs: list[str], num_envs: int, num_steps: int, updates: int) -> None:
    """Print, per physics env: seconds per TRPO update, per environment-only batch, per gymnax TRPO update of
    the same batch size, and the ratio of the first to the sum of the other two (target <= 1.25)."""
    base = [f"num_envs={num_envs}", f"num_steps={num_steps}", "num_seeds=1",
            f"total_env_steps={num_envs * num_steps * updates}", "compile_mode=optimized"]
    gymnax_cfg = config_lib.load("configs/trpo_pendulum.yaml", [*base, "env=Pendulum-v1"])
    gymnax_update = time_training(gymnax_cfg, updates) / updates
    print(f"TRPO update on Pendulum-v1 ({num_envs} x {num_steps}): {gymnax_update * 1e3:.1f} ms")
    print(f"{'env':>28}{'TRPO update ms':>16}{'env-only ms':>13}{'budget ms':>11}{'ratio':>8}{'train steps/s':>15}")
    for env in envs:
        cfg = config_lib.load("configs/trpo_pendulum.yaml", [*base, f"env={env}"])
        update = time_training(cfg, updates) / updates
        env_only = time_physics_only(make_trainer(cfg).spec, num_envs, num_steps, updates) / updates
        budget = env_only + gymnax_update
        print(f"{env:>28}{update * 1e3:>16.1f}{env_only * 1e3:>13.1f}{budget * 1e3:>11.1f}{update / budget:>8.2f}"
              f"{num_envs * num_steps / update:>15,.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--physics", action="store_true", help="time the physics families instead (see above)")
    parser.add_argument("--physics-envs", nargs="+", default=[
        "playground:CartpoleBalance", "playground:CheetahRun", "brax:inverted_pendulum", "brax:halfcheetah"])
    parser.add_argument("--physics-shape", type=int, nargs=2, default=[64, 128], metavar=("NUM_ENVS", "NUM_STEPS"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.physics:
        physics_rows(args.physics_envs, *args.physics_shape, args.updates)
        return
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

"""Small but real learning runs: TRPO solves CartPole-v1 (mean eval return of 4 vmapped seeds >= 475)."""

import jax
import numpy as np

from trpojax import config as config_lib
from trpojax.fastcpu import compiler_options
from trpojax.trainer import EVAL_KEY_SALT, make_trainer, seed_keys


def test_trpo_solves_cartpole():
    cfg = config_lib.load(
        "configs/trpo_cartpole.yaml", ["num_seeds=4", "total_env_steps=61440", "seed=3", "eval_episodes=16"]
    )
    trainer = make_trainer(cfg)
    keys = seed_keys(cfg)
    states = trainer.init(keys, cfg)
    # Compiled as the CLI compiles a training program (the suite's default -O0 would run it ~2x slower).
    chunk = trainer.run_chunk.lower(states, cfg, cfg.num_updates).compile(compiler_options(cfg))
    states, metrics = chunk(states, cfg)
    returns = np.asarray(trainer.evaluate(states, jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SALT))(keys)))
    assert returns.shape == (4, 16)
    first = np.nanmean(np.asarray(metrics["episode_return_mean"])[:, :3])
    assert first < 100  # it starts from a near-random policy
    assert returns.mean() >= 475, returns.mean(axis=1)


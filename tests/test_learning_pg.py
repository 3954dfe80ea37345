"""Short real learning runs on CartPole-v1: every PG-family method clearly beats the random policy (~22)."""

import jax
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax.trainer import make_train, seed_keys

SMALL = ["env=CartPole-v1", "num_seeds=2", "network.policy_hidden=[32,32]", "num_steps=200"]
CASES = {
    "reinforce": ["algo=reinforce", "num_envs=8", "total_env_steps=48000", "reinforce.learning_rate=0.01"],
    "reinforce_baseline": [
        "algo=reinforce", "num_envs=8", "total_env_steps=48000", "reinforce.optimizer=sgd",
        "reinforce.learning_rate=0.002", "reinforce.baseline=true", "reinforce.critic_lr=0.003",
    ],
    "npg": ["algo=npg", "num_envs=8", "num_steps=128", "total_env_steps=40960", "npg.max_kl=0.02"],
    "pg_igt": [
        "algo=pg_igt", "num_envs=4", "total_env_steps=64000", "pg_igt.gamma0=0.03", "pg_igt.eta0=0.2",
        "pg_igt.step_schedule=constant", "pg_igt.momentum_schedule=constant",
    ],
    "harpg": [
        "algo=harpg", "num_envs=2", "total_env_steps=64000", "harpg.hvp_trajectories=2", "harpg.gamma0=0.001",
    ],
    "nharpg": [
        "algo=harpg", "num_envs=2", "total_env_steps=64000", "harpg.hvp_trajectories=2", "harpg.normalized=true",
        "harpg.gamma0=0.03", "harpg.eta0=0.2", "harpg.step_schedule=constant", "harpg.momentum_schedule=constant",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_short_run_beats_random_policy(name):
    config = config_lib.from_dict({}, [*SMALL, *CASES[name]])
    _, metrics = jax.jit(jax.vmap(make_train(config)))(seed_keys(config))
    returns = np.asarray(metrics["episode_return_mean"])
    late = returns[:, -5:].mean()
    assert late > 60.0, f"{name}: mean episode return over the last 5 updates {late:.1f}"
    assert late > 2 * returns[:, 0].mean()
    assert float(np.asarray(metrics["rejected_updates"]).sum()) == 0.0

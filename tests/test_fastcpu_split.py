"""Split execution (``execution: split``): the stage programs run on two threads compute what the scanned
chunk computes; chunks compose; errors reach the caller; who runs split."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax.algos import REGISTRY
from trpojax.config import ConfigError
from trpojax.fastcpu.options import use_split
from trpojax.fastcpu.split import SplitRunner, split_programs
from trpojax.trainer import make_trainer, seed_keys

SMALL = {
    "algo": "trpo", "env": "CartPole-v1", "num_seeds": 2, "num_envs": 4, "num_steps": 32,
    "total_env_steps": 4 * 32 * 6,
    "network": {"policy_hidden": [16], "value_hidden": [16]},
    "trpo": {"critic_epochs": 3, "critic_minibatches": 2, "cg_iters": 5},
}


@functools.cache
def _setup(algo="trpo"):
    """Config, trainer, initial states and the jitted split stages, shared by the tests (one compilation)."""
    data = {k: v for k, v in SMALL.items() if k != "trpo"}
    config = config_lib.from_dict({**data, "algo": algo, algo: SMALL["trpo"]})
    trainer = make_trainer(config)
    return config, trainer, trainer.init(seed_keys(config), config), split_programs(trainer.learner)


def _assert_trees_close(a, b, rtol=1e-4, atol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_split_chunk_matches_the_scanned_chunk(algo):
    config, trainer, states, stages = _setup(algo)
    runner = SplitRunner(stages)
    try:
        split_states, split_metrics = runner(states, config, 3)
    finally:
        runner.close()
    scan_states, scan_metrics = trainer.run_chunk(states, config, 3)
    assert split_metrics.keys() == scan_metrics.keys()
    for name in scan_metrics:
        assert split_metrics[name].shape == (2, 3)
        np.testing.assert_allclose(split_metrics[name], np.asarray(scan_metrics[name]), rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    _assert_trees_close(split_states, scan_states)
    np.testing.assert_array_equal(np.asarray(split_states.update), [3, 3])
    np.testing.assert_array_equal(np.asarray(split_states.key), np.asarray(scan_states.key))


def test_split_chunks_compose_bitwise():
    config, trainer, states, stages = _setup()
    runner = SplitRunner(stages)
    try:
        whole, whole_metrics = runner(states, config, 5)
        runner.close()
        first, first_metrics = runner(states, config, 2)
        # The next call starts from the returned states, so the rollout prefetched at the end is reused...
        second, second_metrics = runner(first, config, 3)
        # ... and a call from any other state collects its own.
        again, again_metrics = runner(states, config, 2)
    finally:
        runner.close()
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in whole_metrics:
        joined = np.concatenate([first_metrics[name], second_metrics[name]], axis=1)
        np.testing.assert_array_equal(whole_metrics[name], joined, err_msg=name)
        np.testing.assert_array_equal(again_metrics[name], first_metrics[name], err_msg=name)


def test_a_failing_critic_reaches_the_caller():
    config, trainer, states, stages = _setup()

    def broken_critic(*args):
        raise FloatingPointError("critic exploded")

    runner = SplitRunner(stages._replace(critic=broken_critic))
    try:
        with pytest.raises(FloatingPointError, match="critic exploded"):
            runner(states, config, 2)
    finally:
        runner.close()


def test_who_runs_split():
    assert jax.default_backend() == "cpu"
    trpo = config_lib.from_dict(SMALL)
    has_split = make_trainer(trpo).learner.split is not None
    assert has_split and use_split(trpo, has_split)
    assert not use_split(dataclasses.replace(trpo, execution="scan"), has_split)
    assert use_split(dataclasses.replace(trpo, execution="split"), has_split)
    npg = config_lib.from_dict({"algo": "npg", "env": "CartPole-v1", "num_seeds": 8})
    assert use_split(npg, make_trainer(npg).learner.split is not None)
    for algo, spec in REGISTRY.items():
        if spec.episodic:
            episodic = config_lib.from_dict({"algo": algo, "env": "CartPole-v1", "num_envs": 4, "num_steps": 32})
            assert make_trainer(episodic).learner.split is None
            assert not use_split(episodic, False)
            with pytest.raises(ConfigError, match="execution: 'split' needs an actor-critic algo"):
                config_lib.from_dict({"algo": algo, "env": "CartPole-v1", "execution": "split"})

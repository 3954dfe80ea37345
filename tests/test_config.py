"""Config loading and validation: every shipped config validates; each kind of bad input names the key."""

import dataclasses
from pathlib import Path

import jax
import pytest

from trpojax import config as config_lib
from trpojax.config import Config, ConfigError

# The top-level configs, configs/gpu/ (GPU-scale runs, not run on CPU: they load and validate here),
# configs/paper/ (issue 15's reproduction of the HARPG authors' runs) and configs/zoo/ (rl-zoo's TRPO rows).
CONFIG_DIRS = ("", "gpu", "paper", "zoo")
CONFIGS = [p for d in CONFIG_DIRS for p in sorted((Path(__file__).parent.parent / "configs" / d).glob("*.yaml"))]
# rl-baselines3-zoo's TRPO benchmark budgets (configs/zoo/ must train exactly these).
ZOO_BUDGETS = {"CartPole-v1": 100_000, "Acrobot-v1": 100_000, "Pendulum-v1": 100_000, "MountainCar-v0": 100_000,
               "MountainCarContinuous-v0": 50_000}


def test_there_are_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_validates(path):
    cfg = config_lib.load(path)
    assert cfg.num_updates >= 1
    if path.parent.name == "gpu":  # rl-zoo's MuJoCo TRPO settings, 1M steps
        assert cfg.total_env_steps == 1_000_000 and cfg.num_envs * cfg.num_steps == 1024 and cfg.normalize_obs
        assert (cfg.trpo.cg_iters, cfg.trpo.cg_damping, cfg.trpo.critic_epochs) == (25, 0.1, 20)
    if path.parent.name == "paper":  # the HARPG authors' run_PG.py: 1000-step garage batches, 32x32 tanh
        section = cfg.algo_section
        assert section.protocol == "garage" and cfg.num_envs * cfg.num_steps == 1000 and cfg.num_seeds >= 8
        assert cfg.total_env_steps == 1_000_000 and cfg.network.policy_hidden == (32, 32) and cfg.gamma == 0.99
        assert cfg.num_steps == {"CartPole-v1": 200, "Acrobot-v1": 500}[cfg.env]
    if path.parent.name == "zoo":  # at most the zoo's budget, within one update of it, 8 seeds
        budget = ZOO_BUDGETS[cfg.env]
        assert cfg.algo == "trpo" and cfg.num_seeds == 8 and cfg.total_env_steps == budget
        assert budget - cfg.steps_per_update < cfg.num_updates * cfg.steps_per_update <= budget
    # the resolved config round-trips through YAML
    assert config_lib.from_dict(config_lib.to_dict(cfg)) == cfg


def test_overrides_apply_and_do_not_mutate_input():
    data = {"env": "CartPole-v1", "trpo": {"max_kl": 0.01}}
    cfg = config_lib.from_dict(data, ["trpo.max_kl=0.02", "network.policy_hidden=[32,32]", "gamma=1"])
    assert cfg.trpo.max_kl == 0.02 and cfg.network.policy_hidden == (32, 32) and cfg.gamma == 1.0
    assert data == {"env": "CartPole-v1", "trpo": {"max_kl": 0.01}}


def test_floats_are_traced_leaves_and_the_rest_static():
    cfg = config_lib.default("trpo")
    leaves = jax.tree.leaves(cfg)
    assert cfg.gamma in leaves and cfg.trpo.max_kl in leaves
    assert all(isinstance(x, float) for x in leaves)
    # Only the chosen algorithm's section is in the run config: its leaves are the top-level floats plus
    # trpo's, never another algorithm's.
    assert not hasattr(cfg, "npg") and isinstance(cfg, Config)
    npg = config_lib.default("npg")
    assert len(leaves) - len(jax.tree.leaves(cfg.trpo)) == len(jax.tree.leaves(npg)) - len(jax.tree.leaves(npg.npg))
    other = dataclasses.replace(cfg, num_envs=3)
    assert jax.tree.structure(other) != jax.tree.structure(cfg)  # static field: a different program


@pytest.mark.parametrize(
    "data, overrides, message",
    [
        ({"trpo": {"max_kll": 0.1}}, [], "unknown config key 'trpo.max_kll' (did you mean 'max_kl'?)"),
        ({"gamme": 0.9}, [], "unknown config key 'gamme' (did you mean 'gamma'?)"),
        ({}, ["trpo.max_kl=0"], "trpo.max_kl: must be > 0.0, got 0.0"),
        ({}, ["trpo.max_kl=-1"], "trpo.max_kl: must be > 0.0"),
        ({}, ["num_envs=0"], "num_envs: must be >= 1, got 0"),
        ({"num_envs": "eight"}, [], "num_envs: expected int, got str 'eight'"),
        ({"num_envs": 8.5}, [], "num_envs: expected int, got float"),
        ({"gamma": True}, [], "gamma: expected a number, got bool"),
        ({"gamma": 1.5}, [], "gamma: must be <= 1.0"),
        ({"normalize_obs": "yes"}, [], "normalize_obs: expected bool"),
        ({"env": "CartPole-v2"}, [], "env: unknown environment 'CartPole-v2'; did you mean 'CartPole-v1'"),
        ({"algo": "trpp"}, [], "algo: unknown algorithm 'trpp' (did you mean 'trpo'?)"),
        ({"network": {"activation": "sigmoid"}}, [], "network.activation: must be one of"),
        ({"network": {"policy_hidden": []}}, [], "network.policy_hidden: expected a non-empty list of int"),
        ({"network": {"policy_hidden": [64, 0]}}, [], "network.policy_hidden[1]: must be >= 1"),
        ({"trpo": 3}, [], "trpo: expected a mapping"),
        ({"total_env_steps": 10}, [], "total_env_steps: 10 is less than one update"),
        ({}, ["trpo.max_kl"], "expected key.sub=value"),
        ({}, ["gamma.x=1"], "gamma: expected a number, got dict"),
        ({}, ["trpo.max_kl=.nan"], "trpo.max_kl: must be a finite number"),
        ({}, ["trpo.max_kl=nan"], "trpo.max_kl: expected a number, got str 'nan'"),
        ({"algo": "reinforce", "reinforce": {"baseline": True, "protocol": "garage"}}, [],
         "reinforce.baseline: the garage protocol brings its own linear baseline"),
    ],
)
def test_bad_input_raises_one_line_naming_the_key(data, overrides, message):
    with pytest.raises(ConfigError) as err:
        config_lib.from_dict(data, overrides)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        config_lib.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: trpo\n  env: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config_lib.load(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        config_lib.load(top)


def test_exponent_floats_without_a_decimal_point_are_numbers():
    """YAML 1.1 reads ``1e-10`` as a string; float fields accept it (from files and --set) as the number."""
    cfg = config_lib.from_dict({"trpo": {"cg_tol": "1e-10"}}, ["trpo.max_kl=2E-2", "gamma=9.9e-1"])
    assert cfg.trpo.cg_tol == 1e-10 and cfg.trpo.max_kl == 0.02 and cfg.gamma == 0.99
    with pytest.raises(ConfigError, match="trpo.cg_tol: expected a number, got str '1e-x'"):
        config_lib.from_dict({}, ["trpo.cg_tol=1e-x"])

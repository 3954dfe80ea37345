"""Every traced float hyperparameter can be swept: two values in one vmapped program give different runs.

A learner is built from the config it is given, but its float hyperparameters are pytree leaves that a sweep
stacks: they must be read from the run config passed to ``init``/``step``. A float read from the closed-over
config instead would run the same value in every lane of a sweep, silently. Here every traced float field of
every algorithm's run config (its section, the ``network`` section, ``gamma``, ``gae_lambda``) is swept over
two values, pairs of configs differing in that one field stacked into ONE program per algorithm, and the two
runs of each pair must end with different policy parameters.

The fields come from the config classes, so a new float field is swept automatically, and the test fails
until it has a pair of values in :data:`PAIRS`.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections import defaultdict
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax.algos import REGISTRY
from trpojax.core.hparams import is_config_class, static_view, traced_fields
from trpojax.fastcpu import compiler_options
from trpojax.trainer import make_learner, make_train, seed_keys

# A tiny run: 3 updates (momentum, critic and line-search effects need more than one), small networks.
BASE = {
    "env": "CartPole-v1",
    "num_envs": 2,
    "num_steps": 16,
    "network": {"policy_hidden": [8], "value_hidden": [8]},
    "eval_episodes": 1,
}
NUM_UPDATES = 3
# Static (and small) settings of each algorithm's section for every run here.
SECTION = {
    "trpo": {"cg_iters": 3, "backtrack_steps": 3, "critic_epochs": 1, "critic_minibatches": 1},
    "npg": {"cg_iters": 3, "critic_epochs": 1, "critic_minibatches": 1},
    "reinforce": {"critic_steps": 1},
    "pg_igt": {},
    "harpg": {"hvp_trajectories": 1},
    "ntdac": {"window": 4, "width": 8},
}
# Environments other than BASE's: ntdac's exploration noise exists only for continuous actions.
ENV = {"ntdac": "Pendulum-v1"}

# Two values per traced float field ("gamma", "<section>.<field>"), chosen so that they must change the run.
PAIRS: dict[str, tuple[float, float]] = {
    "gamma": (0.99, 0.5),
    "gae_lambda": (0.95, 0.3),
    "trpo.max_kl": (0.01, 0.05),
    "trpo.cg_tol": (1e-10, 10.0),  # 10 stops CG before its first step: no direction, the update is rejected
    "trpo.cg_damping": (0.1, 10.0),
    "trpo.backtrack_ratio": (0.8, 0.3),  # see CONTEXT: only matters when the first trial step is rejected
    "trpo.entropy_coef": (0.0, 1.0),  # a large bonus pulls the step towards higher entropy
    "trpo.critic_lr": (1e-3, 0.1),  # reaches the policy through the next updates' advantages
    "npg.max_kl": (0.01, 0.05),
    "npg.learning_rate": (0.1, 0.5),
    "npg.cg_tol": (1e-10, 10.0),
    "npg.cg_damping": (0.1, 10.0),
    "npg.critic_lr": (1e-3, 0.1),
    "reinforce.learning_rate": (0.01, 0.1),
    "reinforce.critic_lr": (1e-3, 0.1),
    "pg_igt.gamma0": (0.1, 0.5),
    "pg_igt.eta0": (1.0, 0.5),  # must stay in (0, 1]; used from the second update on
    "harpg.gamma0": (0.1, 0.5),
    "harpg.eta0": (1.0, 0.5),
    "ntdac.critic_lr": (0.1, 0.01),
    "ntdac.norm_power": (2.0, 1.0),
    "ntdac.target_tau": (0.0, 0.5),  # 0: residual gradient; > 0: a target critic and semi-gradient
    "ntdac.reward_scale": (1.0, 0.1),
    "ntdac.actor_lr": (1e-3, 1e-2),
    "ntdac.exploration_noise": (0.1, 0.5),
}
# Code paths a field matters on (static settings, so each distinct one is one more compiled program).
STATIC = {
    "npg.learning_rate": {"step_rule": "fixed"},  # the kl rule (default) steps by max_kl instead
    "reinforce.critic_lr": {"baseline": True},  # no critic without a baseline
}
# Other traced values that both runs of a pair share: with damping 0 TRPO's full step overshoots the trust
# region in this run and the line search backtracks, where the ratio shows.
CONTEXT = {"trpo.backtrack_ratio": {"trpo.cg_damping": 0.0}}


def float_paths(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of the traced float fields of config class ``cls``, nested sections included."""
    hints = typing.get_type_hints(cls)
    paths = []
    for name in traced_fields(cls):
        if is_config_class(hints[name]):
            paths += float_paths(hints[name], f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def swept_paths(algo: str) -> list[str]:
    """The fields of ``algo``'s run config to sweep."""
    paths = float_paths(config_lib.RUN_CONFIGS[algo])
    if REGISTRY[algo].episodic or algo == "ntdac":
        # Episodic algorithms (REINFORCE, N-PG-IGT, (N-)HARPG) estimate returns from whole trajectories
        # and ntdac bootstraps one step with its Q critic: no GAE, so gae_lambda is not theirs to use.
        paths.remove("gae_lambda")
    return paths


def groups() -> dict[tuple[str, tuple], list[str]]:
    """(algo, static settings) -> the fields swept in that one program."""
    out = defaultdict(list)
    for algo in REGISTRY:
        for path in swept_paths(algo):
            out[(algo, tuple(sorted(STATIC.get(path, {}).items())))].append(path)
    return dict(out)


def base_data(algo: str, static: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), "env": ENV.get(algo, BASE["env"]), "algo": algo, "total_env_steps": 10**6,
            algo: {**SECTION[algo], **(static or {})}}


def base_config(algo: str, static: dict[str, Any] | None = None) -> Any:
    """A validated run config of ``algo`` with :data:`NUM_UPDATES` updates."""
    config = config_lib.from_dict(base_data(algo, static))
    return dataclasses.replace(config, total_env_steps=NUM_UPDATES * config.steps_per_update)


def replace_path(config: Any, path: str, value: float) -> Any:
    """``config`` with the field at dotted ``path`` replaced (``dataclasses.replace`` down the sections)."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: replace_path(getattr(config, head), rest, value)})


def set_path(data: dict[str, Any], path: str, value: float) -> None:
    """Set dotted ``path`` in the config mapping ``data`` (the input of ``config_lib.from_dict``)."""
    *sections, name = path.split(".")
    for section in sections:
        data = data.setdefault(section, {})
    data[name] = value


def pair(config: Any, path: str) -> tuple[Any, Any]:
    """The two configs of ``path``'s sweep: its two values of :data:`PAIRS`, in :data:`CONTEXT`."""
    for other, value in CONTEXT.get(path, {}).items():
        config = replace_path(config, other, value)
    a, b = PAIRS[path]
    return replace_path(config, path, a), replace_path(config, path, b)


def test_every_traced_float_has_two_valid_values():
    all_paths = {path for algo in REGISTRY for path in float_paths(config_lib.RUN_CONFIGS[algo])}
    for algo in REGISTRY:  # every section's own traced floats are among them
        section = {f"{algo}.{name}" for name in traced_fields(REGISTRY[algo].config_cls)}
        assert section <= all_paths
    missing = sorted(all_paths - set(PAIRS))
    assert not missing, f"traced float fields with no pair of sweep values in PAIRS: {missing}"
    stale = sorted((set(PAIRS) | set(STATIC) | set(CONTEXT)) - all_paths)
    assert not stale, f"entries for fields that are not traced floats (static now? renamed?): {stale}"
    for path, (a, b) in PAIRS.items():
        assert a != b, path
        algo = path.split(".")[0] if path.split(".")[0] in REGISTRY else "trpo"
        static = STATIC.get(path, {})
        for value in (a, b):  # in range: a ConfigError here names the field and what is allowed
            data = base_data(algo, static)
            for where, v in [*CONTEXT.get(path, {}).items(), (path, value)]:
                set_path(data, where, v)
            config = config_lib.from_dict(data)
            assert replace_path(config, path, value) == config


@pytest.mark.parametrize(
    ("algo", "static"), list(groups()), ids=[f"{a}{''.join(f'-{k}={v}' for k, v in s)}" for a, s in groups()]
)
def test_sweeping_a_float_changes_the_run(algo, static):
    paths = groups()[(algo, static)]
    missing = [path for path in paths if path not in PAIRS]
    if missing:
        pytest.fail(f"{algo}: no sweep values in PAIRS for traced float field(s) {missing}")
    config = base_config(algo, dict(static))
    # First pair: the same config twice, which must give the same run (a difference is then the field's).
    configs = [config, config]
    for path in paths:
        configs += pair(config, path)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *configs)
    sweep = jax.jit(jax.vmap(make_train(config), in_axes=(None, 0)))
    key = seed_keys(config)[0]
    # The program runs once and is tiny: XLA's one-shot CPU options compile it ~3x faster (they change how
    # it is compiled, not what is traced).
    compiled = sweep.lower(key, stacked).compile(compiler_options(one_shot=True))
    state, _ = compiled(key, stacked)
    params = [np.asarray(leaf) for leaf in jax.tree.leaves(state.agent.policy_params)]
    assert all(np.isfinite(p).all() for p in params)

    def change(i: int) -> float:
        return max(float(np.max(np.abs(p[2 * i] - p[2 * i + 1]))) for p in params)

    assert change(0) <= 1e-6, f"{algo}: two runs of the same config differ by {change(0)}"
    changes = {path: change(i) for i, path in enumerate(paths, start=1)}
    same = {path: changes[path] for path in paths if changes[path] <= 1e-4}
    assert not same, (
        f"{algo}{dict(static) or ''}: sweeping {list(same)} over {[PAIRS[p] for p in same]} in one vmapped "
        f"program left the policy (nearly) unchanged (max |difference| {same}): is the value read from the config "
        "the learner was built with, not the run config passed to init/step? Or do these values not matter in "
        f"this tiny run (see PAIRS/CONTEXT)? All changes: {changes}"
    )


def test_static_view_refuses_traced_floats():
    config = base_config("trpo")
    make_learner(config)  # building a learner reads only static fields
    view = static_view(config)
    with pytest.raises(TypeError, match=r"trpo\.max_kl"):
        view.trpo.max_kl * 2.0  # noqa: B018
    with pytest.raises(TypeError, match="gamma"):
        jnp.asarray(view.gamma)
    with pytest.raises(TypeError, match="gae_lambda"):
        jax.jit(lambda x: x * view.gae_lambda)(1.0)
    assert view.num_envs == config.num_envs and view.trpo.cg_iters == config.trpo.cg_iters  # statics stay
    assert view.network.init_log_std == config.network.init_log_std  # a static float stays a number

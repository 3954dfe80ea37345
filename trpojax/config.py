"""Run configuration: typed frozen dataclasses, YAML + ``--set`` loading, validation.

A run config is a YAML mapping whose keys are the fields of :class:`Config`; the section named after the
chosen ``algo`` (``trpo:``, ...) and ``network:`` are nested mappings. ``--set key.sub=value`` overrides
are parsed as YAML scalars/lists and applied before validation. Any unknown key, wrong type, out-of-range
value, unknown algorithm or environment raises :class:`ConfigError` with one line naming the key and what
is allowed (with the nearest valid name where there is one); the CLIs turn it into exit code 2.

Configs are pytrees (:mod:`trpojax.hparams`): float hyperparameters are traced leaves so sweeps vmap them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import typing
from pathlib import Path
from typing import Any

import yaml

from trpojax.algos import harpg as _harpg
from trpojax.algos import npg as _npg
from trpojax.algos import pg_igt as _pg_igt
from trpojax.algos import registry
from trpojax.algos import reinforce as _reinforce
from trpojax.algos import trpo as _trpo
from trpojax.algos.episodic import EPISODIC_ALGOS
from trpojax.envs import UnknownEnvError, check_env_name, make_env
from trpojax.hparams import config_dataclass, field_types, hp, is_config_class, section
from trpojax.networks import ACTIVATIONS


class ConfigError(ValueError):
    """Invalid configuration input; the message is one line naming the key and what is allowed."""


@config_dataclass
class NetworkConfig:
    """Policy and value network shapes (the ``network:`` section)."""

    policy_hidden: tuple[int, ...] = hp((64, 64), "hidden layer widths of the policy MLP", ge=1)
    value_hidden: tuple[int, ...] = hp((64, 64), "hidden layer widths of the value MLP", ge=1)
    activation: str = hp("tanh", "hidden activation", choices=tuple(ACTIVATIONS))
    init_log_std: float = hp(0.0, "initial log standard deviation of Gaussian policies", static=True)


@config_dataclass
class Config:
    """A complete training run. Float fields are sweepable (traced); the rest fix the program's shape."""

    algo: str = hp("trpo", "algorithm: a name in trpojax.algos.registry()")
    env: str = hp("CartPole-v1", "gymnax environment id")
    seed: int = hp(0, "base seed; seed i of a run uses fold_in(PRNGKey(seed), i)", ge=0)
    num_seeds: int = hp(1, "independent seeds run as one vmapped program", ge=1)
    total_env_steps: int = hp(100_000, "environment steps per seed (rounded down to whole updates)", ge=1)
    num_envs: int = hp(8, "parallel environments per seed (episodic algos: trajectories per gradient)", ge=1)
    num_steps: int = hp(128, "rollout length per environment per update (episodic algos: horizon H)", ge=1)
    gamma: float = hp(0.99, "discount factor", gt=0.0, le=1.0)
    gae_lambda: float = hp(0.95, "GAE lambda", ge=0.0, le=1.0)
    normalize_advantages: bool = hp(True, "standardise advantages over each batch")
    normalize_obs: bool = hp(False, "normalise observations with running statistics kept in the train state")
    eval_episodes: int = hp(32, "episodes per seed in the final deterministic evaluation", ge=1)
    num_chunks: int = hp(20, "host round-trips over the run (progress, metrics) ~ this many", ge=1)
    compilation_cache: bool = hp(True, "use JAX's persistent compilation cache in the user cache directory")
    compile_mode: str = hp(
        "auto",
        "XLA:CPU trade-off: 'fast' compiles ~2x faster, 'optimized' runs wide (many-seed) programs up to 30% "
        "faster; 'auto' is fast for runs of at most 250k env steps over all seeds",
        choices=("auto", "fast", "optimized"),
    )
    execution: str = hp(
        "auto",
        "how the CLI runs updates: 'scan' (each chunk one compiled lax.scan), 'split' (TRPO/NPG: each update "
        "as rollout, policy and critic programs, the critic fit on a second thread beside the policy step and "
        "the next rollout), 'auto' (split on CPU for TRPO/NPG, else scan)",
        choices=("auto", "scan", "split"),
    )
    checkpoint_every: int = hp(0, "save a checkpoint every this many updates (0: only at the end)", ge=0)
    keep_checkpoints: int = hp(3, "most recent checkpoints kept in DIR/checkpoints", ge=1)
    network: NetworkConfig = section(NetworkConfig, "network shapes")
    trpo: _trpo.Config = section(_trpo.Config, "TRPO hyperparameters (algo: trpo)")
    npg: _npg.Config = section(_npg.Config, "natural policy gradient hyperparameters (algo: npg)")
    reinforce: _reinforce.Config = section(_reinforce.Config, "REINFORCE / GPOMDP hyperparameters")
    pg_igt: _pg_igt.Config = section(_pg_igt.Config, "N-PG-IGT hyperparameters (algo: pg_igt)")
    harpg: _harpg.Config = section(_harpg.Config, "HARPG / N-HARPG hyperparameters (algo: harpg)")

    @property
    def num_updates(self) -> int:
        """Whole updates that fit in ``total_env_steps``."""
        return self.total_env_steps // self.steps_per_update

    @property
    def steps_per_update(self) -> int:
        """Environment steps one update consumes, per seed (HARPG adds its Hessian-vector-product batch)."""
        trajectories = self.num_envs + (self.harpg.hvp_trajectories if self.algo == "harpg" else 0)
        return trajectories * self.num_steps


ALGO_SECTIONS = tuple(registry())


def _close(name: str, options: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"list of {typing.get_args(tp)[0].__name__}"
    return tp.__name__


def _check_range(path: str, value: Any, meta: dict[str, Any]) -> None:
    items = [(f"{path}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, tuple) else [(path, value)]
    for where, item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{where}: must be a finite number, got {item}")
        for key, op, word in (
            ("gt", lambda a, b: a > b, ">"),
            ("ge", lambda a, b: a >= b, ">="),
            ("lt", lambda a, b: a < b, "<"),
            ("le", lambda a, b: a <= b, "<="),
        ):
            bound = meta.get(key)
            if bound is not None and not op(item, bound):
                raise ConfigError(f"{where}: must be {word} {bound}, got {item!r} ({meta['doc']})")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(map(str, choices))
        raise ConfigError(f"{path}: must be one of {allowed}, got {value!r}{_close(str(value), choices)}")


def _coerce(path: str, value: Any, tp: Any) -> Any:
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    if typing.get_origin(tp) is tuple:
        elem = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)) or len(value) == 0:
            raise ConfigError(f"{path}: expected a non-empty {_type_name(tp)}, got {value!r}")
        return tuple(_coerce(f"{path}[{i}]", v, elem) for i, v in enumerate(value))
    raise ConfigError(f"{path}: unsupported field type {tp!r}")


def build(cls: type, data: Any, path: str = "") -> Any:
    """Construct config class ``cls`` from a mapping, checking keys, types and ranges."""
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    types = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown config key {full!r}{_close(str(key), fields)}; allowed: {', '.join(fields)}"
            )
        tp = types[key]
        if is_config_class(tp):
            values[key] = build(tp, value, full)
        else:
            values[key] = _coerce(full, value, tp)
            _check_range(full, values[key], fields[key].metadata)
    return cls(**values)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: typing.Sequence[str]) -> list[tuple[str, Any]]:
    """Parse ``key.sub=value`` strings; values are YAML scalars or lists (``0.02``, ``true``, ``[64,64]``)."""
    parsed = []
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err.problem}") from None
        parsed.append((key.strip(), value))
    return parsed


def from_dict(data: dict[str, Any], overrides: typing.Sequence[str] = ()) -> Config:
    """Build and validate a :class:`Config` from a mapping plus ``--set`` overrides (the mapping is copied)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(data)
    for key, value in parse_overrides(overrides):
        _set_path(data, key, value)
    config = build(Config, data)
    validate(config, given_sections=[k for k in data if k in ALGO_SECTIONS])
    return config


def validate(config: Config, given_sections: typing.Sequence[str] = ()) -> None:
    """Cross-field checks: known algorithm and environment, sections that apply, a budget of >= 1 update."""
    algos = registry()
    if config.algo not in algos:
        raise ConfigError(f"algo: unknown algorithm {config.algo!r}{_close(config.algo, algos)}; "
                          f"allowed: {', '.join(algos)}")
    for name in given_sections:
        if name != config.algo:
            raise ConfigError(f"section {name!r} does not apply to algo {config.algo!r}; remove it or set algo: {name}")
    try:
        check_env_name(config.env)
        make_env(config.env)
    except UnknownEnvError as err:
        raise ConfigError(f"env: {err}") from None
    if config.normalize_obs and config.algo in EPISODIC_ALGOS:
        raise ConfigError(f"normalize_obs: not supported by algo {config.algo!r} (its estimators need one "
                          "fixed policy function across updates); set normalize_obs: false")
    if config.execution == "split" and not algos[config.algo].splittable:
        raise ConfigError(f"execution: 'split' needs an actor-critic algo (trpo, npg), not {config.algo!r}; "
                          "use 'auto' or 'scan'")
    if config.num_updates < 1:
        raise ConfigError(
            f"total_env_steps: {config.total_env_steps} is less than one update "
            f"({config.steps_per_update} env steps)"
        )


def load(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML run config, apply ``--set`` overrides, validate.

    Raises:
        ConfigError: missing or unreadable file, invalid YAML, or any invalid key or value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {str(path)!r}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {str(path)!r} is not valid YAML{where}") from None
    return from_dict(data, overrides)


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain YAML-ready data, with only the chosen algorithm's section."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return [plain(v) for v in obj]
        return obj

    data = plain(config)
    for name in ALGO_SECTIONS:
        if name != config.algo:
            data.pop(name)
    return data


def dump(config: Config) -> str:
    """YAML text of :func:`to_dict`."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)

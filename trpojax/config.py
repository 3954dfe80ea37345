"""Run configuration: typed frozen dataclasses, YAML + ``--set`` loading, validation.

A run config is a YAML mapping whose keys are the fields of :class:`Config`; ``network:`` and the section
named after the chosen ``algo`` (``trpo:``, ...) are nested mappings. The section comes from the algorithm
registry (:data:`trpojax.algos.REGISTRY`): each algorithm has its run-config class, :class:`Config` plus
that one section (:func:`config_class`), so a run config carries only its own algorithm's hyperparameters.
``--set key.sub=value`` overrides are parsed as YAML scalars/lists and applied before validation. Any
unknown key, wrong type, out-of-range value, unknown algorithm or environment raises :class:`ConfigError`
with one line naming the key and what is allowed (with the nearest valid name where there is one); the
CLIs turn it into exit code 2.

Configs are pytrees (:mod:`trpojax.core.hparams`): float hyperparameters are traced leaves so sweeps vmap them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from trpojax.algos import REGISTRY, AlgorithmSpec
from trpojax.core.hparams import config_dataclass, field_types, hp, is_config_class, section, static_view
from trpojax.envs import UnknownEnvError, make_env
from trpojax.networks import ACTIVATIONS

LOGGERS = ("csv", "tensorboard", "wandb")  # the names ``loggers:`` accepts (trpojax.train.trackers)


class ConfigError(ValueError):
    """Invalid configuration input; the message is one line naming the key and what is allowed."""


@config_dataclass
class NetworkConfig:
    """Policy and value network shapes (the ``network:`` section)."""

    policy_hidden: tuple[int, ...] = hp((64, 64), "hidden layer widths of the policy MLP", ge=1)
    value_hidden: tuple[int, ...] = hp((64, 64), "hidden layer widths of the value MLP", ge=1)
    activation: str = hp("tanh", "hidden activation", choices=tuple(ACTIVATIONS))
    init_log_std: float = hp(0.0, "initial log standard deviation of Gaussian policies", static=True)
    bounded_mean: bool = hp(
        False,
        "box actions: keep the Gaussian mean inside the action box (centre + half-width * tanh(MLP)); an unbounded "
        "mean can drift outside, where every sample clips to the bound and the policy stops learning",
    )


@config_dataclass
class Config:
    """A complete training run. Float fields are sweepable (traced); the rest fix the program's shape."""

    algo: str = hp("trpo", "algorithm: a name in trpojax.algos.REGISTRY")
    env: str = hp(
        "CartPole-v1",
        "environment id: a gymnax id (CartPole-v1), LQR-v0, playground:<Name> or brax:<name> (the last two need "
        "the mujoco extra)",
    )
    episode_length: int = hp(
        0, "playground:/brax: environments: time limit in agent steps (0: the environment's own)", ge=0
    )
    action_repeat: int = hp(
        0, "playground:/brax: environments: physics steps per agent step (0: the environment's own)", ge=0
    )
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
    checkpoint_interval_s: float = hp(
        600.0,
        "also save a checkpoint at the first chunk boundary after this many seconds since the last one "
        "(0: off); chunk lengths do not depend on it, so neither do the results",
        ge=0.0,
        static=True,
    )
    keep_checkpoints: int = hp(3, "most recent checkpoints kept in DIR/checkpoints", ge=1)
    loggers: tuple[str, ...] = hp(
        ("csv",),
        "where per-update metrics go besides DIR/metrics.csv, which is always written (listing csv is optional): "
        "tensorboard (DIR/tensorboard), wandb (DIR/wandb); docs/tracking.md",
        choices=LOGGERS,
        host=True,
    )
    network: NetworkConfig = section(NetworkConfig, "network shapes")

    @property
    def spec(self) -> AlgorithmSpec:
        """The chosen algorithm's registry entry."""
        return REGISTRY[self.algo]

    @property
    def algo_section(self) -> Any:
        """The chosen algorithm's config section (``config.trpo`` for ``algo: trpo``)."""
        return getattr(self, self.algo)

    @property
    def num_updates(self) -> int:
        """Whole updates that fit in ``total_env_steps``."""
        return self.total_env_steps // self.steps_per_update

    @property
    def steps_per_update(self) -> int:
        """Environment steps one update consumes, per seed (:meth:`AlgorithmSpec.steps_per_update`)."""
        return self.spec.steps_per_update(self)


def _make_config_class(spec: AlgorithmSpec) -> type:
    name = "".join(part.capitalize() for part in spec.name.split("_")) + "RunConfig"
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"A run of algo {spec.name!r}: :class:`Config` plus its ``{spec.name}:`` section.",
        "__annotations__": {spec.name: spec.config_cls},
        spec.name: section(spec.config_cls, spec.doc),
    }
    return config_dataclass(type(name, (Config,), namespace))


# One run-config class per registered algorithm, bound in this module under its name (``TrpoRunConfig``,
# ...) so that pickled tree structures (the executable cache's) find it again.
RUN_CONFIGS: dict[str, type] = {name: _make_config_class(spec) for name, spec in REGISTRY.items()}
globals().update({cls.__name__: cls for cls in RUN_CONFIGS.values()})


def config_class(algo: str) -> type:
    """The run-config class of ``algo`` (:class:`Config` with that algorithm's section).

    Raises:
        ConfigError: ``algo`` is not registered.
    """
    if algo not in RUN_CONFIGS:
        raise ConfigError(f"algo: unknown algorithm {algo!r}{_close(algo, RUN_CONFIGS)}; "
                          f"allowed: {', '.join(RUN_CONFIGS)}")
    return RUN_CONFIGS[algo]


def default(algo: str = "trpo", **fields: Any) -> Config:
    """The default run config of ``algo`` with ``fields`` replaced (not validated; see :func:`from_dict`)."""
    return config_class(algo)(algo=algo, **fields)


ALGO_SECTIONS = tuple(REGISTRY)


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
    choices = meta.get("choices")  # of a tuple field: of each element
    for where, item in items if choices is not None else ():
        if item not in choices:
            allowed = ", ".join(map(str, choices))
            raise ConfigError(f"{where}: must be one of {allowed}, got {item!r}{_close(str(item), choices)}")
    if choices is not None and isinstance(value, tuple) and len(set(value)) < len(value):
        twice = next(item for item in value if value.count(item) > 1)
        raise ConfigError(f"{path}: {twice!r} is listed twice; give each name once")


_EXPONENT_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # YAML 1.1 reads 1e-10 as a string


def _coerce(path: str, value: Any, tp: Any) -> Any:
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)
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
    algo = data.get("algo", Config.algo)
    if not isinstance(algo, str):
        raise ConfigError(f"algo: expected str, got {type(algo).__name__} {algo!r}")
    cls = config_class(algo)
    for name in ALGO_SECTIONS:
        if name in data and name != algo:
            raise ConfigError(f"section {name!r} does not apply to algo {algo!r}; remove it or set algo: {name}")
    config = build(cls, data)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cross-field checks: a known environment, options the algorithm supports, a budget of >= 1 update."""
    if type(config) is not RUN_CONFIGS.get(config.algo):
        raise ConfigError(f"algo: {config.algo!r} does not match the config's class {type(config).__name__} "
                          "(build configs with from_dict, load or default)")
    try:
        spec = make_env(config.env, episode_length=config.episode_length, action_repeat=config.action_repeat)
    except UnknownEnvError as err:
        raise ConfigError(f"env: {err}") from None
    conflict = getattr(config.algo_section, "conflict", None)  # an algorithm section's own cross-field check
    if conflict is not None and (problem := conflict()):
        raise ConfigError(problem)
    reason = config.spec.refuses_normalize_obs
    if config.normalize_obs and reason:
        raise ConfigError(f"normalize_obs: not supported by algo {config.algo!r} ({reason}); set normalize_obs: false")
    if config.execution == "split" and config.spec.make_learner(static_view(config), spec).split is None:
        split = [n for n in ALGO_SECTIONS
                 if REGISTRY[n].make_learner(static_view(default(n, env=config.env)), spec).split is not None]
        raise ConfigError(f"execution: 'split' needs an actor-critic algo with separate policy and critic "
                          f"stages ({', '.join(split)}), not {config.algo!r}; use 'auto' or 'scan'")
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

    return plain(config)


def dump(config: Config) -> str:
    """YAML text of :func:`to_dict`."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)

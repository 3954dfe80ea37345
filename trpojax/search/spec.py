"""Search files: parse and validate an Optuna search over a base run config.

A search file (YAML) names a base run config, the space to search and how::

    name: trpo_pendulum              # optional; default: the file's stem (also the Optuna study name)
    base: ../trpo_pendulum.yaml      # run config, relative to this file (else to the cwd)
    set: {total_env_steps: 100000}   # optional fixed overrides of the base, by config path
    space:                           # config path -> distribution
      trpo.max_kl: {low: 0.002, high: 0.1, log: true}   # traced float: one program for every value
      gae_lambda: {low: 0.8, high: 0.99}
      trpo.critic_epochs: {low: 5, high: 40, step: 5}   # static integer: one program per value
      network.policy_hidden: {choices: [[32, 32], [64, 64]]}
    seeds_per_trial: 4               # each trial trains this many seeds (seeds 0..n-1 of the base seed)
    batch_size: 16                   # trials asked per generation, run together
    trials: 64                       # the study's target of finished trials (--trials overrides)
    sampler: tpe                     # tpe (default), cmaes or random; or {name: tpe, seed: 0}
    objective: iqm                   # iqm (default) or mean of the trial's final eval returns over seeds
    memory_limit_gb: 16              # optional per-device cap (default: what the device reports)
    heartbeat_s: 60                  # optional: a trial whose worker is silent 2x this long is retried

Ranges (``low``/``high``, optional ``log`` and ``step``) are for traced float fields and static integer fields;
static fields of other types (and static floats such as ``network.init_log_std``) take ``choices``. Every
problem is a :class:`~trpojax.config.ConfigError` with one line naming it, raised before anything runs; each
range's ends and each choice are validated as run configs up front.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trpojax import config as config_lib
from trpojax.config import Config, ConfigError
from trpojax.core import stats
from trpojax.sweep.spec import (
    GIB,
    check_path,
    close_match,
    config_fields,
    deep_copy,
    load_base,
    mapping,
    number,
    read_yaml,
    set_path,
)

SEARCH_KEYS = (
    "name", "base", "set", "space", "seeds_per_trial", "batch_size", "trials", "sampler", "objective",
    "memory_limit_gb", "heartbeat_s",
)
SAMPLERS = ("tpe", "cmaes", "random")
OBJECTIVES = ("iqm", "mean")
DEFAULT_HEARTBEAT_S = 60


@dataclasses.dataclass(frozen=True)
class Param:
    """One dimension of the search space.

    Attributes:
        path: the dotted config path.
        kind: ``"float"`` (a traced float range), ``"int"`` (an integer range) or ``"choice"``.
        low: lower end of a range (inclusive).
        high: upper end of a range (inclusive).
        log: sample the range log-uniformly.
        step: grid step of the range, or None.
        choices: the values of a ``"choice"`` parameter, as config values.
        traced: the field is traced (one compiled program for all its values).
    """

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    traced: bool = False

    @property
    def labels(self) -> tuple[Any, ...]:
        """The choices as Optuna stores them: None, bool, int, float and str as they are, others as YAML."""
        return tuple(_label(c) for c in self.choices)

    def distribution(self) -> Any:
        """This parameter's ``optuna.distributions`` object."""
        from optuna import distributions

        if self.kind == "float":
            return distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return distributions.CategoricalDistribution(self.labels)

    def decode(self, value: Any) -> Any:
        """The config value of an Optuna parameter value."""
        if self.kind == "choice":
            return self.choices[self.labels.index(value)]
        return int(value) if self.kind == "int" else float(value)


def _label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip()


@dataclasses.dataclass(frozen=True)
class Search:
    """A parsed, validated search file.

    Attributes:
        name: the search's (and the Optuna study's) name.
        file: the resolved search file.
        base_path: the resolved base run config file.
        base_data: the base run config as plain data after ``set`` (with the base file's ``num_seeds``).
        params: the search space, in file order.
        seeds_per_trial: seeds each trial trains.
        batch_size: trials asked per generation.
        trials: the study's target of finished trials.
        sampler: ``tpe``, ``cmaes`` or ``random``.
        sampler_seed: the sampler's seed.
        objective: ``iqm`` or ``mean``.
        memory_limit_bytes: per-device cap, or None for what the device reports.
        heartbeat_s: seconds between a running trial's heartbeats in the storage.
        resolved: the resolved search as plain data (written to ``search.yaml``).
    """

    name: str
    file: Path
    base_path: Path
    base_data: dict[str, Any]
    params: tuple[Param, ...]
    seeds_per_trial: int
    batch_size: int
    trials: int
    sampler: str
    sampler_seed: int
    objective: str
    memory_limit_bytes: int | None
    heartbeat_s: int
    resolved: dict[str, Any]

    def run_data(self, values: dict[str, Any]) -> dict[str, Any]:
        """The run config (plain data, the base file's ``num_seeds``) with ``values`` ({path: value}) set."""
        data = deep_copy(self.base_data)
        for path, value in values.items():
            set_path(data, path, list(value) if isinstance(value, tuple) else value)
        return data

    def trial_config(self, values: dict[str, Any]) -> Config:
        """The validated config a trial trains: ``values`` set, ``seeds_per_trial`` seeds.

        Raises:
            ConfigError: the values make an invalid run config.
        """
        data = self.run_data(values)
        data["num_seeds"] = self.seeds_per_trial
        return config_lib.from_dict(data)


def _parse_param(path: Any, spec: Any) -> Param:
    check_path("space", path)
    fields, _ = config_fields()
    tp, traced = fields[path]
    spec = mapping(f"space.{path}", spec)
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise ConfigError(f"space.{path}: give either choices: [...] or low/high (log, step), not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"space.{path}.choices: expected a non-empty list, got {choices!r}")
        labels = [_label(c) for c in choices]
        if len(set(map(repr, labels))) != len(labels):
            raise ConfigError(f"space.{path}.choices: repeated values in {choices!r}")
        origin = typing.get_origin(tp)
        values = tuple(tuple(c) if origin is tuple and isinstance(c, list) else c for c in choices)
        return Param(path, "choice", choices=values, traced=traced)
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or "low" not in spec or "high" not in spec:
        what = f"unknown key {sorted(unknown)[0]!r}" if unknown else "missing low or high"
        raise ConfigError(f"space.{path}: {what}; expected {{low, high, log, step}} or {{choices: [...]}}")
    integer = tp is int
    if not integer and not (tp is float and traced):
        kind = "static float" if tp is float else f"static {getattr(tp, '__name__', str(tp))}"
        raise ConfigError(f"space.{path}: a {kind} field cannot take a range; give choices: [...] instead")
    low = number(f"space.{path}.low", spec["low"], integer=integer, positive=False)
    high = number(f"space.{path}.high", spec["high"], integer=integer, positive=False)
    if not low < high:
        raise ConfigError(f"space.{path}: empty or inverted range: low {low!r} must be below high {high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"space.{path}.log: expected true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"space.{path}: a log range needs low > 0, got {low!r}")
    step = spec.get("step")
    if step is not None:
        step = number(f"space.{path}.step", step, integer=integer)
        if log:
            raise ConfigError(f"space.{path}: step and log cannot be combined")
        if step > high - low:
            raise ConfigError(f"space.{path}.step: {step!r} is larger than the range {low!r}..{high!r}")
    return Param(path, "int" if integer else "float", low=low, high=high, log=log, step=step, traced=traced)


def _sampler(spec: Any) -> tuple[str, int]:
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = mapping("sampler", spec)
    unknown = set(spec) - {"name", "seed"}
    if unknown:
        raise ConfigError(f"sampler: unknown key {sorted(unknown)[0]!r}; allowed: name, seed")
    name = spec.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: unknown sampler {name!r}{close_match(str(name), SAMPLERS)}; "
                          f"allowed: {', '.join(SAMPLERS)}")
    return name, number("sampler.seed", spec.get("seed", 0), integer=True, positive=False)


def load_search(path: str | Path) -> Search:
    """Read and validate a search file; the base config, every range end and every choice are validated.

    Raises:
        ConfigError: an unreadable file, an unknown key or config path (with the nearest valid one), an empty
            or inverted range, a range on a static non-integer field, a bad sampler or objective, or a value
            that makes an invalid run config.
    """
    path = Path(path)
    data = mapping(f"search {str(path)!r}", read_yaml(path, "search file"))
    for key in data:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"unknown search key {key!r}{close_match(str(key), SEARCH_KEYS)}; "
                              f"allowed: {', '.join(SEARCH_KEYS)}")
    base_path, _, fixed, base = load_base(path, data, "search")
    base_data = config_lib.to_dict(base)

    space = mapping("space", data.get("space"))
    if not space:
        raise ConfigError("space is empty: give space: {path: {low: ..., high: ...} or {choices: [...]}}")
    params = []
    for key, spec in space.items():
        if key in fixed:
            raise ConfigError(f"space: {key!r} is also given in set:")
        params.append(_parse_param(key, spec))
    seeds = number("seeds_per_trial", data.get("seeds_per_trial", 4), integer=True)
    batch = number("batch_size", data.get("batch_size", 16), integer=True)
    trials = number("trials", data.get("trials", 64), integer=True)
    sampler, sampler_seed = _sampler(data.get("sampler", "tpe"))
    objective = data.get("objective", "iqm")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective: unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    heartbeat = number("heartbeat_s", data.get("heartbeat_s", DEFAULT_HEARTBEAT_S), integer=True)
    limit = data.get("memory_limit_gb")
    name = str(data.get("name", path.stem))
    search = Search(
        name=name, file=path.resolve(), base_path=base_path.resolve(), base_data=base_data, params=tuple(params),
        seeds_per_trial=seeds, batch_size=batch, trials=trials, sampler=sampler, sampler_seed=sampler_seed,
        objective=objective,
        memory_limit_bytes=None if limit is None else int(number("memory_limit_gb", limit) * GIB),
        heartbeat_s=heartbeat, resolved={},
    )
    for param in params:  # every end of every range and every choice, with the rest at the base
        ends = param.choices if param.kind == "choice" else (param.low, param.high)
        for value in ends:
            try:
                search.trial_config({param.path: param.decode(_label(value)) if param.kind == "choice" else value})
            except ConfigError as err:
                raise ConfigError(f"space.{param.path}: value {value!r}: {err}") from None
    resolved = {
        "name": name,
        "search_file": str(path.resolve()),
        "base": str(base_path.resolve()),
        "set": fixed,
        "space": space,
        "seeds_per_trial": seeds,
        "batch_size": batch,
        "sampler": {"name": sampler, "seed": sampler_seed},
        "objective": objective,
        "heartbeat_s": heartbeat,
        **({"memory_limit_gb": limit} if limit is not None else {}),
        "base_config": base_data,
    }
    return dataclasses.replace(search, resolved=resolved)


def objective_value(search: Search, returns: Any) -> float:
    """The trial's score: IQM or mean over its seeds' final eval returns (NaN if any is non-finite)."""
    returns = np.asarray(returns, dtype=np.float64)
    if not np.isfinite(returns).all():
        return math.nan
    return float(stats.iqm(returns) if search.objective == "iqm" else stats.mean(returns))

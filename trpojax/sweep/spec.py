"""Sweep files: parse and validate a seeds x hyperparameter-grid description into concrete run configs.

A sweep file (YAML) names a base run config and the hyperparameters to vary::

    name: trpo_cartpole_maxkl_lambda    # optional; default: the file's stem
    base: ../trpo_cartpole.yaml          # run config, relative to this file (else to the cwd)
    set: {total_env_steps: 50000}        # optional fixed overrides of the base, by config path
    num_seeds: 8                         # seeds per config (default: the base's num_seeds)
    grid:                                # Cartesian product over config paths
      trpo.max_kl: [0.005, 0.01, 0.02]
      gae_lambda: [0.9, 0.95, 0.98]
    random:                              # optional random search, crossed with the grid
      count: 8                           # samples
      seed: 0                            # sampling seed
      ranges:                            # float paths: uniform in [low, high], log-uniform with log: true
        trpo.critic_lr: {low: 1.0e-4, high: 1.0e-2, log: true}
    memory_limit_gb: 16                  # optional per-device cap (default: what the device reports)

Paths are dotted config paths (``gamma``, ``trpo.max_kl``, ``network.policy_hidden``); float fields are
traced (one program for all their values), other fields are static (one program per value). Every
resulting config is built and validated with :func:`trpojax.config.from_dict` before anything runs; any
problem is a :class:`~trpojax.config.ConfigError` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trpojax import config as config_lib
from trpojax.config import Config, ConfigError
from trpojax.core.hparams import field_types, is_config_class, traced_fields

SWEEP_KEYS = ("name", "base", "set", "num_seeds", "grid", "random", "memory_limit_gb")
NOT_SWEPT = {
    "seed": "seeds are the run axis: set num_seeds at the top of the sweep file (and seed under set:)",
    "num_seeds": "set num_seeds at the top of the sweep file",
    "num_chunks": "it only changes how often the host reports progress",
    "compilation_cache": "it is a host setting",
    "checkpoint_every": "it is a host setting of the whole sweep (give it under set:)",
    "checkpoint_interval_s": "it is a host setting of the whole sweep (give it under set:)",
    "keep_checkpoints": "it is a host setting of the whole sweep (give it under set:)",
    "loggers": "it is a host setting (the experiment trackers of python -m trpojax.train runs)",
}
GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed, validated sweep file.

    Attributes:
        name: sweep name (outputs and plot titles).
        base_path: the resolved base run config file.
        base: the base run config after ``set`` (and ``num_seeds``).
        num_seeds: seeds per config.
        paths: swept config paths, grid paths first, in column order.
        points: one tuple of values (aligned with ``paths``) per config.
        configs: one validated :class:`Config` per point.
        memory_limit_bytes: per-device memory cap, or None for what the device reports.
        resolved: the resolved sweep as plain data (written to ``sweep.yaml``).
    """

    name: str
    base_path: Path
    base: Config
    num_seeds: int
    paths: tuple[str, ...]
    points: tuple[tuple[Any, ...], ...]
    configs: tuple[Config, ...]
    memory_limit_bytes: int | None
    resolved: dict[str, Any]


def config_fields(cls: type | None = None, prefix: str = "") -> tuple[dict[str, tuple[Any, bool]], set[str]]:
    """Every field path of a config class: ``{path: (type, traced)}`` and the set of section paths; with no
    class, of every algorithm's run config (:data:`trpojax.config.RUN_CONFIGS`) together."""
    fields, sections = {}, set()
    if cls is None:
        for run_config in config_lib.RUN_CONFIGS.values():
            sub_fields, sub_sections = config_fields(run_config)
            fields.update(sub_fields)
            sections |= sub_sections
        return fields, sections
    types, traced = field_types(cls), traced_fields(cls)
    for f in dataclasses.fields(cls):
        path, tp = prefix + f.name, types[f.name]
        if is_config_class(tp):
            sections.add(path)
            sub_fields, sub_sections = config_fields(tp, path + ".")
            fields.update(sub_fields)
            sections |= sub_sections
        else:
            fields[path] = (tp, f.name in traced)
    return fields, sections


def close_match(name: str, options: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``name``, or an empty string."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_path(where: str, path: Any) -> None:
    """Raise a one-line :class:`ConfigError` (prefixed ``where``) unless ``path`` is a config field that may be
    given there: not a section, not a host setting outside ``set:``, not ``loggers`` under ``set:``."""
    fields, sections = config_fields()
    if not isinstance(path, str) or path not in fields:
        if path in sections:
            example = next(p for p in fields if p.startswith(f"{path}."))
            raise ConfigError(f"{where}: {path!r} is a config section, not a field (e.g. {example!r})")
        raise ConfigError(f"{where}: unknown hyperparameter path {path!r}{close_match(str(path), fields)}")
    if where != "set" and path in NOT_SWEPT:
        raise ConfigError(f"{where}: {path!r} cannot be swept: {NOT_SWEPT[path]}")
    if where == "set" and path == "loggers":
        raise ConfigError("set: 'loggers' does not apply here: sweeps and searches write their own tables, not "
                          "trackers (train the chosen config with python -m trpojax.train to track it)")


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set dotted ``path`` of the plain-data config ``data`` to ``value``, creating missing sections."""
    *sections, leaf = path.split(".")
    for key in sections:
        child = data.get(key)
        if child is not None and not isinstance(child, dict):
            raise ConfigError(f"{path}: {key!r} in the base config is not a section: {child!r}")
        data = data.setdefault(key, {}) if child is None else child
    data[leaf] = value


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML file ``path``; a :class:`ConfigError` naming ``what`` if unreadable or invalid."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML{where}") from None


def mapping(where: str, value: Any) -> dict[str, Any]:
    """``value`` as a mapping (None is empty); a :class:`ConfigError` at ``where`` for anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return value


def number(where: str, value: Any, *, integer: bool = False, positive: bool = True) -> Any:
    """``value`` checked to be a finite number (an integer with ``integer``; > 0 with ``positive``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}")
    return value


def _random_points(spec: Any, swept: dict[str, Any]) -> tuple[list[str], list[tuple[float, ...]], dict]:
    """Parse ``random:`` and draw its samples: (paths, one value tuple per sample, resolved section)."""
    spec = mapping("random", spec)
    unknown = set(spec) - {"count", "seed", "ranges"}
    if unknown:
        raise ConfigError(f"random: unknown key {sorted(unknown)[0]!r}; allowed: count, seed, ranges")
    count = number("random.count", spec.get("count"), integer=True)
    seed = number("random.seed", spec.get("seed", 0), integer=True, positive=False)
    ranges = mapping("random.ranges", spec.get("ranges"))
    if not ranges:
        raise ConfigError("random.ranges: empty; give at least one path: {low: ..., high: ..., log: ...}")
    fields, _ = config_fields()
    rng = np.random.default_rng(seed)
    columns = []
    for path, bounds in ranges.items():
        check_path("random.ranges", path)
        if not fields[path][1]:
            raise ConfigError(f"random.ranges: {path!r} is a static field; random search samples traced "
                              "float hyperparameters only (put static values in grid:)")
        if path in swept:
            raise ConfigError(f"random.ranges: {path!r} is also given in {swept[path]}")
        bounds = mapping(f"random.ranges.{path}", bounds)
        if set(bounds) - {"low", "high", "log"} or "low" not in bounds or "high" not in bounds:
            raise ConfigError(f"random.ranges.{path}: expected {{low: number, high: number, log: bool}}")
        low = number(f"random.ranges.{path}.low", bounds["low"], positive=False)
        high = number(f"random.ranges.{path}.high", bounds["high"], positive=False)
        log = bounds.get("log", False)
        if not isinstance(log, bool) or not low < high or (log and low <= 0):
            raise ConfigError(f"random.ranges.{path}: need low < high (low > 0 with log: true), got {bounds}")
        draw = rng.uniform(math.log(low), math.log(high), count) if log else rng.uniform(low, high, count)
        columns.append(np.exp(draw) if log else draw)
    samples = [tuple(float(col[k]) for col in columns) for k in range(count)]
    resolved = {"count": count, "seed": seed, "ranges": ranges, "samples": [list(s) for s in samples]}
    return list(ranges), samples, resolved


def load_base(path: Path, data: dict[str, Any], kind: str) -> tuple[Path, dict[str, Any], dict[str, Any], Config]:
    """The base run config of a sweep or search file (``kind``): ``(base_path, base_data, fixed, base)``.

    ``base:`` is resolved next to ``path``, else in the cwd; ``set:`` (``fixed``, checked by
    :func:`check_path`) is applied to the base's plain data (``base_data``), which is then validated (``base``).

    Raises:
        ConfigError: ``base:`` missing or not found, an unreadable base, a bad ``set:`` path, an invalid result.
    """
    if not isinstance(data.get("base"), str):
        raise ConfigError("base: name the base run config file, e.g. base: ../trpo_cartpole.yaml")
    candidates = [path.parent / data["base"], Path(data["base"])]
    base_path = next((p for p in candidates if p.is_file()), None)
    if base_path is None:
        raise ConfigError(f"base: run config {data['base']!r} not found next to the {kind} file or in the cwd")
    base_data = mapping(f"base config {str(base_path)!r}", read_yaml(base_path, "base config"))
    fixed = mapping("set", data.get("set"))
    for key, value in fixed.items():
        check_path("set", key)
        set_path(base_data, key, value)
    try:
        base = config_lib.from_dict(base_data)
    except ConfigError as err:
        raise ConfigError(f"base config {str(base_path)!r}: {err}") from None
    return base_path, base_data, fixed, base


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; every config is built and validated before anything runs.

    Raises:
        ConfigError: an unreadable file, an unknown key or hyperparameter path (with the nearest valid
            one), a field that cannot be swept, an empty grid, or any invalid resulting config.
    """
    path = Path(path)
    data = mapping(f"sweep {str(path)!r}", read_yaml(path, "sweep file"))
    for key in data:
        if key not in SWEEP_KEYS:
            allowed = ", ".join(SWEEP_KEYS)
            raise ConfigError(f"unknown sweep key {key!r}{close_match(str(key), SWEEP_KEYS)}; allowed: {allowed}")
    base_path, base_data, fixed, base = load_base(path, data, "sweep")
    num_seeds = number("num_seeds", data.get("num_seeds", base.num_seeds), integer=True)
    base_data["num_seeds"] = num_seeds
    base = dataclasses.replace(base, num_seeds=num_seeds)

    grid = mapping("grid", data.get("grid"))
    swept = {key: "set:" for key in fixed}
    for key, values in grid.items():
        check_path("grid", key)
        if key in swept:
            raise ConfigError(f"grid: {key!r} is also given in set:")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid: {key!r} needs a non-empty list of values, got {values!r}")
        swept[key] = "grid:"
    paths, points = list(grid), [tuple(p) for p in itertools.product(*grid.values())]
    resolved_random = None
    if "random" in data:
        random_paths, samples, resolved_random = _random_points(data["random"], swept)
        paths += random_paths
        points = [g + s for g in points for s in samples]
    if not grid and resolved_random is None:
        raise ConfigError("grid is empty: give grid: {path: [values, ...]} and/or random: {count, ranges}")

    configs = []
    for point in points:
        run_data = deep_copy(base_data)
        for key, value in zip(paths, point, strict=True):
            set_path(run_data, key, value)
        try:
            configs.append(config_lib.from_dict(run_data))
        except ConfigError as err:
            where = ", ".join(f"{k}={v!r}" for k, v in zip(paths, point, strict=True))
            raise ConfigError(f"grid point {where}: {err}") from None
    limit = data.get("memory_limit_gb")
    name = data.get("name", path.stem)
    resolved = {
        "name": name,
        "sweep_file": str(path.resolve()),
        "base": str(base_path.resolve()),
        "set": fixed,
        "num_seeds": num_seeds,
        "grid": grid,
        **({"random": resolved_random} if resolved_random else {}),
        **({"memory_limit_gb": limit} if limit is not None else {}),
        "base_config": config_lib.to_dict(base),
    }
    return Sweep(
        name=str(name),
        base_path=base_path,
        base=base,
        num_seeds=num_seeds,
        paths=tuple(paths),
        points=tuple(points),
        configs=tuple(configs),
        memory_limit_bytes=None if limit is None else int(number("memory_limit_gb", limit) * GIB),
        resolved=resolved,
    )


def deep_copy(data: Any) -> Any:
    """A copy of plain YAML data (dicts and lists copied, scalars shared)."""
    if isinstance(data, dict):
        return {k: deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [deep_copy(v) for v in data]
    return data

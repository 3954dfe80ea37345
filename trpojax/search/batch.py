"""One generation of a search: its trials x seeds as vmapped programs, one per static group.

The trials' configs become a :class:`trpojax.sweep.Sweep` of explicit points, so a generation runs exactly as
a sweep does (:mod:`trpojax.sweep.program`): trials that share every static value are one program, their
traced floats and seed keys stacked on the run axis and sharded over the devices. Compiled programs are kept
by static structure and padded run count across generations (a group's trials are padded up to a power of
two), so a search over traced floats compiles once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from trpojax.config import Config, ConfigError
from trpojax.search.spec import Search
from trpojax.sweep.program import (
    Compiled,
    build_program,
    device_memory_limit,
    group_configs,
    run_program,
)
from trpojax.sweep.spec import GIB, Sweep
from trpojax.train import outputs


class Interrupted(Exception):
    """A stop was requested at a chunk boundary; the generation's results are incomplete."""


class Generation(NamedTuple):
    """What a generation produced.

    Attributes:
        returns: [trials, seeds_per_trial] final deterministic eval return of each trial's seeds.
        train_s: seconds spent in update chunks.
        compile_s: seconds spent building programs (0 where a compiled program was reused).
        env_steps: environment steps over every run (padding excluded).
        programs: programs run.
    """

    returns: np.ndarray
    train_s: float
    compile_s: float
    env_steps: int
    programs: int


def as_sweep(search: Search, configs: Sequence[Config], values: Sequence[dict[str, Any]]) -> Sweep:
    """The generation's trials as a sweep of explicit points (``values[i]`` gives trial i's parameters)."""
    paths = tuple(p.path for p in search.params)
    return Sweep(
        name=search.name, base_path=search.base_path, base=configs[0], num_seeds=search.seeds_per_trial,
        paths=paths, points=tuple(tuple(v[p] for p in paths) for v in values), configs=tuple(configs),
        memory_limit_bytes=search.memory_limit_bytes, resolved={},
    )


def padded_trials(n: int, batch_size: int) -> int:
    """Trials a group of ``n`` is padded to: the next power of two, at most the batch size (at least ``n``)."""
    return max(n, min(1 << (n - 1).bit_length(), batch_size))


def run_generation(
    search: Search,
    configs: Sequence[Config],
    values: Sequence[dict[str, Any]],
    mesh: Any,
    cache: dict[Any, Compiled],
    *,
    progress: bool = True,
    stop_requested: Callable[[], bool] = lambda: False,
    desc: str = "generation",
) -> Generation:
    """Train every trial of a generation and evaluate it.

    Args:
        search: the search.
        configs: one validated run config per trial (``seeds_per_trial`` seeds each).
        values: each trial's parameters ({path: config value}), for group labels.
        mesh: the device mesh of the run axis.
        cache: compiled programs shared across generations (:func:`trpojax.sweep.program.build_program`).
        progress: show a progress bar per program.
        stop_requested: polled at each chunk boundary; when true, :class:`Interrupted` is raised.
        desc: the progress bars' label.

    Raises:
        ConfigError: a program's per-device footprint exceeds the memory budget (before it runs).
        Interrupted: ``stop_requested()`` became true.
    """
    sweep = as_sweep(search, configs, values)
    groups = group_configs(sweep)
    limit = device_memory_limit(sweep)
    returns = np.full((len(configs), search.seeds_per_trial), np.nan)
    train_s = compile_s = 0.0
    steps = 0

    def check_stop(*_: Any) -> None:
        if stop_requested():
            raise Interrupted

    for g, group in enumerate(groups):
        pad = padded_trials(len(group.configs), search.batch_size) * search.seeds_per_trial
        program = build_program(sweep, group, mesh, pad_to=pad, cache=cache)
        compile_s += program.compile_s
        if program.memory_bytes > limit:
            raise ConfigError(
                f"trials too large for device memory: {program.padded} runs need "
                f"{program.memory_bytes / GIB:.3g} GiB per device, budget {limit / GIB:.3g} GiB; lower "
                "batch_size or seeds_per_trial, or raise memory_limit_gb"
            )
        label = f" ({group.label})" if group.label else ""
        total = program.runs * sum(program.lengths) * program.env_steps_per_update
        bar = outputs.Progress(total, enabled=progress, desc=f"{desc} program {g + 1}/{len(groups)}{label}")
        try:
            result = run_program(program, bar, after_chunk=check_stop)
        finally:
            bar.close()
        train_s += result.train_s
        steps += total
        for r in range(program.runs):
            returns[program.config_index[r], program.seed_index[r]] = result.eval_return[r]
    return Generation(returns, train_s, compile_s, steps, len(groups))

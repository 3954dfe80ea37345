"""Sweep programs: seeds x hyperparameter grids, one vmapped program per static group, sharded over devices.

Every (config, seed) pair of a sweep (:mod:`trpojax.sweep.spec` describes the file) is one *run*. Float
hyperparameters are traced pytree leaves of the config (:mod:`trpojax.core.hparams`), so configs that differ
only in floats share one compiled program: their float leaves are stacked along a flat run axis together
with the seed keys, and the run axis is vmapped and split over every visible device with ``shard_map`` on a
1-D ``jax.sharding.Mesh`` (padded to a multiple of the device count by repeating the last run; devices
never communicate). Swept static fields (``num_envs``, hidden sizes, ``algo``, ``env``, ...) split the
sweep into one program per static group, run one after another. Seed i of every config uses
``fold_in(PRNGKey(seed), i)``, as ``python -m trpojax.train`` does, so a run's numbers do not depend on the
sweep around it or on the device count. Per-update metrics are reduced on device to the one curve that is
written (``episode_return_mean`` per run), and every compiled program's per-device footprint
(``compiled.memory_analysis()``) is checked against the device memory before anything runs.

Usage::

    python -m trpojax.sweep --config configs/sweeps/trpo_cartpole_maxkl_lambda.yaml [--out DIR] [--quiet]

Writes ``results.csv``, ``curves.csv``, ``summary.md``, ``curves.png`` and ``sweep.yaml`` (the resolved
sweep) into DIR; see docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trpojax.config import Config, ConfigError
from trpojax.core import stats
from trpojax.fastcpu import compiler_options
from trpojax.sweep.report import SweepResult
from trpojax.sweep.spec import GIB, Sweep, config_fields
from trpojax.train import outputs
from trpojax.trainer import (
    EVAL_KEY_SALT,
    chunk_schedule,
    evaluation_fn,
    make_learner,
    remaining_lengths,
    seed_keys,
    strong_types,
)

RUN_AXIS = "runs"


class Group(NamedTuple):
    """Configs that share every static setting, so they run as one program.

    Attributes:
        configs: indices into ``Sweep.configs``.
        label: the swept static settings that set this group apart (empty when nothing static is swept).
    """

    configs: tuple[int, ...]
    label: str


def group_configs(sweep: Sweep) -> list[Group]:
    """Split the sweep's configs by static settings (the pytree structure), in first-appearance order."""
    fields, _ = config_fields()
    static = [i for i, p in enumerate(sweep.paths) if not fields[p][1]]
    groups: dict[Any, list[int]] = {}
    for i, config in enumerate(sweep.configs):
        groups.setdefault(jax.tree_util.tree_structure(config), []).append(i)
    return [
        Group(tuple(members), ", ".join(f"{sweep.paths[k]}={sweep.points[members[0]][k]}" for k in static))
        for members in groups.values()
    ]


class Program(NamedTuple):
    """One static group compiled for the device mesh: init, update chunks and evaluation.

    Attributes:
        group: the configs it runs.
        runs: real runs, ``len(group.configs) * num_seeds``; the run axis is padded to ``padded``.
        padded: run-axis length, a multiple of the device count.
        config_index: [padded] sweep config index of each run (padding repeats the last run).
        seed_index: [padded] seed index i of each run.
        keys: [padded, 2] seed keys, sharded over the run axis.
        run_configs: the configs' float leaves stacked to [padded], sharded over the run axis.
        init: compiled (keys, run_configs) -> states.
        chunks: chunk length -> (states, run_configs) -> (states, returns [padded, length]); every length calls
            one compiled program, which takes the length as an argument.
        evaluate: compiled (states, keys) -> mean deterministic eval return [padded].
        lengths: the chunk lengths, in order (sum = num_updates; every ``checkpoint_every``-th update is a
            boundary, as in single runs).
        state_shapes: ``jax.ShapeDtypeStruct`` tree of the stacked train state ([padded, ...] leaves).
        env_steps_per_update: environment steps of one update of one run.
        memory_bytes: the largest per-device footprint of the compiled programs
            (arguments + outputs + temporaries - aliased, from ``compiled.memory_analysis()``; 0 where
            the backend gives no analysis).
        compile_s: seconds spent compiling.
    """

    group: Group
    runs: int
    padded: int
    config_index: np.ndarray
    seed_index: np.ndarray
    keys: jax.Array
    run_configs: Config
    init: Any
    chunks: dict[int, Any]
    evaluate: Any
    lengths: list[int]
    state_shapes: Any
    env_steps_per_update: int
    memory_bytes: int
    compile_s: float


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices``; default every visible device (all hosts after ``jax.distributed``)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (RUN_AXIS,))


def use_every_core() -> None:
    """Give XLA:CPU one device per core this process may use, unless the user chose a device count.

    One XLA:CPU program of small matrices keeps about one core busy, so a run axis split over one device per
    core trains about twice as fast on 2 cores (benchmarks/RESULTS.md); results do not depend on the device
    count. Call it before anything starts JAX's backends; afterwards (or with ``XLA_FLAGS`` naming
    ``xla_force_host_platform_device_count``, or ``JAX_NUM_CPU_DEVICES`` set) it changes nothing. GPU and TPU
    platforms are not affected.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if os.environ.get("JAX_NUM_CPU_DEVICES"):
        return
    try:
        jax.config.update("jax_num_cpu_devices", len(os.sched_getaffinity(0)))
    except RuntimeError:  # the backends already started (e.g. inside a test process): keep their devices
        pass


def _footprint(compiled: Any) -> int:
    analysis = compiled.memory_analysis()
    if analysis is None:
        return 0
    return int(
        analysis.argument_size_in_bytes + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes
    )


def device_memory_limit(sweep: Sweep) -> int:
    """Per-device memory budget: the sweep's cap, else the device's ``bytes_limit``, else RAM per device."""
    if sweep.memory_limit_bytes is not None:
        return sweep.memory_limit_bytes
    device_stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in device_stats:
        return int(device_stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // len(jax.local_devices())


class Compiled(NamedTuple):
    """The compiled programs of one static group at one padded run count (see :func:`build_program`); the
    fields of the same names in :class:`Program`."""

    init: Any
    chunks: dict[int, Any]
    evaluate: Any
    lengths: list[int]
    state_shapes: Any
    env_steps_per_update: int
    memory_bytes: int


def build_program(
    sweep: Sweep, group: Group, mesh: Mesh, *, pad_to: int = 0, cache: dict[Any, Compiled] | None = None
) -> Program:
    """Stack the group's runs on one axis, shard it over ``mesh`` and compile init / chunks / evaluate.

    Args:
        sweep: the sweep (its configs, seeds per config and memory cap).
        group: the configs to run as one program.
        mesh: the device mesh of the run axis.
        pad_to: pad the run axis to at least this many runs (then to a multiple of the device count), so
            groups of different sizes can share one compiled program.
        cache: compiled programs by (static structure, padded run count), shared between calls: a group that
            matches one compiled before binds its new runs to it without tracing or compiling (Optuna
            searches build a program per generation).
    """
    config = sweep.configs[group.configs[0]]
    spec, learner = make_learner(config)
    runs = len(group.configs) * sweep.num_seeds
    padded = -(-max(runs, pad_to) // mesh.size) * mesh.size
    flat = np.minimum(np.arange(padded), runs - 1)
    config_index = np.asarray(group.configs)[flat // sweep.num_seeds]
    seed_index = flat % sweep.num_seeds
    sharding = NamedSharding(mesh, PartitionSpec(RUN_AXIS))

    def put(host: np.ndarray) -> jax.Array:
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    keys = put(np.asarray(seed_keys(config))[seed_index])
    leaves = {i: jax.tree.leaves(sweep.configs[i]) for i in group.configs}  # one structure within a group
    num_leaves = len(leaves[group.configs[0]])
    stacked = [np.asarray([leaves[i][k] for i in config_index], np.float32) for k in range(num_leaves)]
    run_configs = jax.tree.unflatten(jax.tree.structure(config), [put(x) for x in stacked])

    t0 = time.perf_counter()
    key = (jax.tree.structure(config), padded, tuple(d.id for d in mesh.devices.flat))
    compiled = cache.get(key) if cache is not None else None
    if compiled is None:
        compiled = _compile(config, learner, spec, padded, mesh, keys, run_configs)
        if cache is not None:
            cache[key] = compiled
    return Program(
        group=group, runs=runs, padded=padded, config_index=config_index, seed_index=seed_index, keys=keys,
        run_configs=run_configs, **compiled._asdict(), compile_s=time.perf_counter() - t0,
    )


def _run_chunk(compiled: Any, length: int, states: Any, run_configs: Config) -> tuple[Any, jax.Array]:
    """``length`` updates of every run with the chunk program: (states, returns [padded, length])."""
    states, returns = compiled(states, run_configs, np.int32(length))
    return states, returns[:, :length]


def _compile(
    config: Config, learner: Any, spec: Any, padded: int, mesh: Mesh, keys: jax.Array, run_configs: Config
) -> Compiled:
    """Compile init / chunks / evaluate of ``config``'s static group for ``padded`` runs on ``mesh``."""

    lengths = chunk_schedule(config)
    longest = max(lengths)

    def chunk(state: Any, run_config: Config, length: jax.Array) -> tuple[Any, jax.Array]:
        """``length`` (traced, at most ``longest``) updates; returns [longest], NaN after ``length``: one
        compiled program for every chunk length."""

        def body(i: jax.Array, carry: tuple[Any, jax.Array]) -> tuple[Any, jax.Array]:
            state, returns = carry
            state, metrics = learner.step(state, run_config)
            return state, returns.at[i].set(metrics["episode_return_mean"])

        return jax.lax.fori_loop(0, length, body, (state, jnp.full((longest,), jnp.nan, jnp.float32)))

    eval_returns = evaluation_fn(config, spec, learner, config.eval_episodes)

    def evaluate(state: Any, key: jax.Array) -> jax.Array:
        return eval_returns(state, jax.random.fold_in(key, EVAL_KEY_SALT)).mean()

    def sharded(fn: Any) -> Any:
        """Run ``fn`` on each device's block of runs: no communication between devices."""
        spec = PartitionSpec(RUN_AXIS)
        return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)

    def init_block(block_keys: jax.Array, block_configs: Config) -> Any:
        return jax.vmap(lambda k, c: strong_types(learner.init(k, c)))(block_keys, block_configs)

    init_jit = jax.jit(sharded(init_block))
    init = init_jit.lower(keys, run_configs).compile(compiler_options(config, one_shot=True))
    states = jax.eval_shape(init_jit, keys, run_configs)
    vmapped = jax.vmap(chunk, in_axes=(0, 0, None))
    chunk_c = (
        jax.jit(jax.shard_map(vmapped, mesh=mesh, in_specs=(PartitionSpec(RUN_AXIS),) * 2 + (PartitionSpec(),),
                              out_specs=PartitionSpec(RUN_AXIS), check_vma=False), donate_argnums=0)
        .lower(states, run_configs, jax.ShapeDtypeStruct((), jnp.int32))
        .compile(compiler_options(dataclasses.replace(config, num_seeds=padded)))
    )
    chunks = {n: functools.partial(_run_chunk, chunk_c, n) for n in sorted(set(lengths))}
    one_shot = compiler_options(config, one_shot=True)
    evaluate_c = jax.jit(sharded(jax.vmap(evaluate))).lower(states, keys).compile(one_shot)
    return Compiled(
        init=init, chunks=chunks, evaluate=evaluate_c, lengths=lengths, state_shapes=states,
        env_steps_per_update=learner.env_steps_per_update,
        memory_bytes=max(_footprint(c) for c in (init, evaluate_c, chunk_c)),
    )


def build_programs(sweep: Sweep, mesh: Mesh) -> list[Program]:
    """Compile every static group and check its footprint against the per-device memory budget.

    Raises:
        ConfigError: a program's compiled per-device footprint exceeds the budget (nothing has run).
    """
    limit = device_memory_limit(sweep)
    programs = []
    groups = group_configs(sweep)
    for g, group in enumerate(groups):
        program = build_program(sweep, group, mesh)
        if program.memory_bytes > limit:
            raise ConfigError(
                f"sweep too large for device memory: program {g + 1}/{len(groups)} ({program.runs} runs, "
                f"{program.padded // mesh.size} per device on {mesh.size} devices) needs "
                f"{program.memory_bytes / GIB:.3g} GiB per device, budget {limit / GIB:.3g} GiB; "
                "use fewer configs or seeds, more devices, or raise memory_limit_gb"
            )
        programs.append(program)
    return programs


def _to_host(x: jax.Array) -> np.ndarray:
    return np.asarray(x if x.is_fully_addressable else multihost_utils.process_allgather(x, tiled=True))


class ProgramResult(NamedTuple):
    """Per-run outputs of one program (padding removed).

    Attributes:
        eval_return: [runs] mean deterministic evaluation return after training.
        curves: [runs, num_updates] ``episode_return_mean`` after each update.
        train_s: seconds spent in the update chunks.
    """

    eval_return: np.ndarray
    curves: np.ndarray
    train_s: float


class Resumed(NamedTuple):
    """Where a program continues: its state after ``update`` updates (from a checkpoint).

    Attributes:
        update: updates done.
        states: the stacked train state on the mesh ([padded, ...] leaves).
        curves: [runs, update] ``episode_return_mean`` of the updates done.
        train_s: seconds spent in update chunks so far.
    """

    update: int
    states: Any
    curves: np.ndarray
    train_s: float


AfterChunk = Callable[[int, Any, Callable[[], np.ndarray], float], None]


def run_program(
    program: Program, bar: outputs.Progress, resume: Resumed | None = None, after_chunk: AfterChunk | None = None
) -> ProgramResult:
    """Initialise (or continue from ``resume``), train in chunks (advancing ``bar``) and evaluate every run of
    ``program``.

    ``after_chunk(update, states, curves, train_s)`` is called at each chunk boundary with the updates done,
    the stacked state, a function giving the [runs, update] curves so far and the training seconds; it may
    checkpoint, or raise to stop the sweep there.
    """
    if resume is None:
        states, curves, train_s, done = program.init(program.keys, program.run_configs), [], 0.0, 0
    else:
        states, train_s, done = resume.states, resume.train_s, resume.update
        curves = [resume.curves] if resume.update else []
    for length in remaining_lengths(program.lengths, done):
        t0 = time.perf_counter()
        states, returns = program.chunks[length](states, program.run_configs)
        returns = _to_host(returns)[: program.runs]
        dt = time.perf_counter() - t0
        train_s += dt
        done += length
        curves.append(returns)
        steps = length * program.env_steps_per_update * program.runs
        bar.update(steps, steps / max(dt, 1e-9), float(stats.nanmean(returns[:, -1])))
        if after_chunk is not None:
            after_chunk(done, states, lambda: np.concatenate(curves, axis=1), train_s)
    eval_return = _to_host(program.evaluate(states, program.keys))[: program.runs]
    return ProgramResult(eval_return, np.concatenate(curves, axis=1), train_s)


def collect(sweep: Sweep, programs: list[Program], results: list[ProgramResult]) -> SweepResult:
    """Scatter the programs' flat run axes back to (config, seed) and compute the per-config statistics."""
    num_configs = len(sweep.configs)
    eval_return = np.full((num_configs, sweep.num_seeds), np.nan)
    curves: list[np.ndarray] = [np.empty(0)] * num_configs
    steps: list[int] = [0] * num_configs
    for program, result in zip(programs, results, strict=True):
        for c in program.group.configs:
            curves[c] = np.full((sweep.num_seeds, result.curves.shape[1]), np.nan)
            steps[c] = program.env_steps_per_update
        for r in range(program.runs):
            c, s = program.config_index[r], program.seed_index[r]
            eval_return[c, s] = result.eval_return[r]
            curves[c][s] = result.curves[r]
    config_stats = [stats.config_stats(eval_return[c]) for c in range(num_configs)]
    return SweepResult(eval_return, curves, steps, config_stats, stats.rank(config_stats))

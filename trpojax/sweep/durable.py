"""Checkpoints of a sweep's programs, so that ``python -m trpojax.sweep --resume DIR`` continues a sweep.

Each static group's program keeps its checkpoints in ``DIR/groups/<g>/checkpoints/<update>/``, written by
the run checkpoint module (:mod:`trpojax.train.checkpoint`: a temporary directory, fsynced files, a
manifest with sizes and SHA-256 written last, an atomic rename). The saved pytree holds

- ``states``: the group's stacked train state, the real runs only ([runs, ...]; the padding that fills the
  run axis to a multiple of the device count repeats the last run, so it is rebuilt on restore and the
  sweep may resume on another device count);
- ``curves``: [runs, update] ``episode_return_mean`` of the updates done;
- ``eval_return``: [runs] final deterministic evaluation return (NaN until evaluated);
- ``evaluated``: whether the group is finished (trained and evaluated).

The checkpoint's ``config.yaml`` is the resolved sweep plus the group's identity, so a checkpoint of another
sweep or group is refused, as is one written by other code versions. A checkpoint is written at every
``checkpoint_every``-th update, at the first chunk boundary ``checkpoint_interval_s`` seconds after the last
one, when a stop is requested, and after the group's evaluation (its final checkpoint, ``evaluated``).

Under ``jax.distributed`` every process gathers the state (a collective), process 0 writes, and each
process restores the checkpoint that process 0 chose (its update is broadcast), reading it from the shared
file system; the per-boundary decision to checkpoint or stop is agreed across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import yaml
from jax.experimental import multihost_utils

from trpojax.sweep.program import Group, Program, ProgramResult, Resumed, _to_host
from trpojax.sweep.spec import Sweep
from trpojax.train import checkpoint

GROUPS_DIR = "groups"


class SweepInterrupted(Exception):
    """A stop was requested; the running group was checkpointed at update ``update``.

    Attributes:
        group: 1-based program number.
        update: updates that group had done.
    """

    def __init__(self, group: int, update: int):
        super().__init__(f"stopped in program {group} after update {update}")
        self.group = group
        self.update = update


def group_dir(out_dir: str | Path, g: int) -> Path:
    """``out_dir/groups/<g + 1>``: the checkpoint directory of the sweep's ``g``-th program (0-based ``g``)."""
    return Path(out_dir) / GROUPS_DIR / str(g + 1)


def group_text(sweep: Sweep, group: Group, g: int) -> str:
    """The identity of program ``g`` as YAML: the resolved sweep, its number, configs, runs and updates."""
    identity = {
        "sweep": sweep.resolved,
        "program": g + 1,
        "configs": [int(c) for c in group.configs],
        "runs": len(group.configs) * sweep.num_seeds,
        "num_updates": sweep.configs[group.configs[0]].num_updates,
    }
    return yaml.safe_dump(identity, sort_keys=False)


def _template(program: Program, update: int) -> dict[str, Any]:
    runs = program.runs
    states = jax.tree.map(lambda s: jax.ShapeDtypeStruct((runs, *s.shape[1:]), s.dtype), program.state_shapes)
    return {
        "states": states,
        "curves": jax.ShapeDtypeStruct((runs, update), np.float32),
        "eval_return": jax.ShapeDtypeStruct((runs,), np.float32),
        "evaluated": jax.ShapeDtypeStruct((), np.bool_),
    }


def agree_any(flag: bool) -> bool:
    """``flag`` on one process; under ``jax.distributed``, true when it is true on any process (a collective:
    every process must call it at the same point)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.asarray(multihost_utils.process_allgather(np.asarray(flag, np.int32))).any())


def agree_int(value: int) -> int:
    """``value`` of process 0, broadcast to every process (itself on a single process)."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int64)))


def check_group(out_dir: Path, sweep: Sweep, group: Group, g: int) -> int:
    """Validate program ``g``'s newest complete checkpoint without loading it; return its update (-1: none).

    Raises:
        CheckpointError: checkpoints exist but none is complete, or the newest complete one belongs to
            another sweep or group or was written by other code versions (CheckpointMismatch).
    """
    run_dir = group_dir(out_dir, g)
    if not checkpoint.saved_updates(run_dir):
        return -1
    path, manifest, _ = checkpoint.latest(run_dir)
    checkpoint.check_versions(path, manifest)
    checkpoint.check_config(path, group_text(sweep, group, g))
    return int(manifest["update"])


class Restored(NamedTuple):
    """A program's checkpoint on the mesh: where to continue, or its finished result."""

    resume: Resumed
    result: ProgramResult | None
    notes: list[str]


def restore(out_dir: Path, sweep: Sweep, program: Program, g: int) -> Restored | None:
    """Load program ``g``'s newest complete checkpoint (the one process 0 picks) onto the mesh; None if there
    is none. Newer incomplete ones are removed (by process 0) and reported in ``notes``."""
    run_dir = group_dir(out_dir, g)
    update = agree_int(check_group(out_dir, sweep, program.group, g))
    if update < 0:
        if jax.process_index() == 0 and checkpoint.checkpoints_dir(run_dir).is_dir():
            checkpoint.discard_after(run_dir, -1)  # leftovers of a first write cut short
        return None
    path, manifest = checkpoint.find(run_dir, update)
    notes = [f"program {g + 1}: skipping checkpoint {run_dir / 'checkpoints' / str(u)} (incomplete or corrupt); "
             f"resuming from {path}" for u in checkpoint.saved_updates(run_dir) if u > update]
    if jax.process_index() == 0:
        checkpoint.discard_after(run_dir, update)
    saved = checkpoint.load_state(path, _template(program, update))
    flat = np.minimum(np.arange(program.padded), program.runs - 1)  # padding repeats the last run
    sharding = program.keys.sharding

    def put(host: np.ndarray) -> jax.Array:
        padded = host[flat]
        return jax.make_array_from_callback(padded.shape, sharding, lambda index: padded[index])

    states = jax.tree.map(put, saved["states"])
    train_s = float(manifest["train_s"])
    resume = Resumed(update, states, saved["curves"], train_s)
    result = ProgramResult(saved["eval_return"], saved["curves"], train_s) if saved["evaluated"] else None
    return Restored(resume, result, notes)


class GroupCheckpointer:
    """Checkpoints one program at chunk boundaries (the ``after_chunk`` of :func:`run_program`).

    Args:
        out_dir: the sweep directory.
        sweep: the sweep.
        program: the program.
        g: its 0-based number.
        stop_requested: polled at each boundary; when true the state is checkpointed and
            :class:`SweepInterrupted` raised.
    """

    def __init__(self, out_dir: Path, sweep: Sweep, program: Program, g: int, stop_requested: Callable[[], bool]):
        self.run_dir, self.program, self.g = group_dir(out_dir, g), program, g
        self.text = group_text(sweep, program.group, g)
        self.base = sweep.base
        self.stop_requested = stop_requested
        every = self.base.checkpoint_every
        self.scheduled = set(range(every, sum(program.lengths), every)) if every else set()
        self.saved_clock = time.monotonic()
        self.writer = jax.process_index() == 0
        self.final_states: Any = None

    def save(self, update: int, states: Any, curves: np.ndarray, train_s: float,
             eval_return: np.ndarray | None = None) -> None:
        """Gather the state (every process) and write the checkpoint of ``update`` (process 0)."""
        host_states = jax.tree.map(lambda x: _to_host(x)[: self.program.runs], states)
        evaluated = eval_return is not None
        tree = {
            "states": host_states,
            "curves": np.asarray(curves, np.float32),
            "eval_return": (np.asarray(eval_return, np.float32) if evaluated
                            else np.full(self.program.runs, np.nan, np.float32)),
            "evaluated": np.asarray(evaluated),
        }
        if self.writer:
            checkpoint.save(self.run_dir, tree, self.text, update=update, keep=self.base.keep_checkpoints,
                            train_s=train_s)
        self.saved_clock = time.monotonic()

    def __call__(self, update: int, states: Any, curves: Callable[[], np.ndarray], train_s: float) -> None:
        """At a chunk boundary: checkpoint when scheduled, overdue or stopping; raise when stopping."""
        interval = self.base.checkpoint_interval_s
        overdue = interval > 0 and time.monotonic() - self.saved_clock >= interval
        if update == sum(self.program.lengths):  # the final checkpoint follows the evaluation
            self.final_states = states
            return
        stop = agree_any(self.stop_requested())
        if agree_any(update in self.scheduled or overdue) or stop:
            self.save(update, states, curves(), train_s)
        if stop:
            raise SweepInterrupted(self.g + 1, update)

    def finish(self, result: ProgramResult, states: Any) -> None:
        """Write the finished program's final checkpoint: the state after the last chunk (the one seen at the
        last boundary, else ``states``, the state resumed from), the curves and the evaluation."""
        states = self.final_states if self.final_states is not None else states
        self.save(result.curves.shape[1], states, result.curves, result.train_s, result.eval_return)

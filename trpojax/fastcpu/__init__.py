"""The XLA:CPU fast path: what exists only to start or run a run faster on CPU, behind one small interface.

The host loop (:func:`trpojax.train.run`) asks a *path* for the run's keys and compiled programs. The plain
path (:class:`trpojax.trainer.PlainPath`) works on every backend and is what runs on GPU and TPU; on CPU
the loop takes :class:`FastPath` instead, which returns the same :class:`trpojax.trainer.Programs` faster:

- :mod:`~.keys`: seed and evaluation keys in NumPy (no tiny device programs to compile);
- :mod:`~.options`: XLA:CPU compile options per program (``compile_mode``);
- :mod:`~.compile`: programs traced on one thread and compiled on two workers, the evaluation program
  compiled while training runs;
- :mod:`~.cache`: the executable cache, so a repeated run neither traces nor compiles;
- :mod:`~.split`: TRPO/NPG updates as stage programs with the critic fit on a second thread
  (``execution: auto|split``), which uses the second core that one small-matrix XLA:CPU program leaves idle.

benchmarks/RESULTS.md measures what each piece buys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from trpojax.config import Config
from trpojax.fastcpu.cache import EXECUTABLES_SUBDIR, ExecutableCache
from trpojax.fastcpu.compile import compile_programs
from trpojax.fastcpu.keys import run_keys
from trpojax.fastcpu.options import compiler_options
from trpojax.trainer import Programs, Trainer


def applies(config: Config) -> bool:
    """Whether a run of ``config`` takes the fast path: on the CPU backend, or when it asks for split
    execution; never when the environment variable ``TRPOJAX_FASTCPU`` is ``0`` (the plain path, as on
    GPU and TPU, e.g. to compare the two)."""
    if os.environ.get("TRPOJAX_FASTCPU", "1") == "0":
        return False
    return jax.default_backend() == "cpu" or config.execution == "split"


class FastPath:
    """Keys and programs for a run on XLA:CPU (the interface of :class:`trpojax.trainer.PlainPath`).

    Args:
        cache_dir: JAX's compilation cache directory, whose ``trpojax-executables/`` holds the executable
            cache; None for no executable cache.
        while_compiling: called once while programs compile, if any has to (the CLI imports matplotlib).
    """

    def __init__(self, cache_dir: Path | None = None, while_compiling: Callable[[], Any] | None = None):
        self.executables = ExecutableCache(cache_dir / EXECUTABLES_SUBDIR) if cache_dir is not None else None
        self.while_compiling = while_compiling

    def keys(self, config: Config) -> tuple[jax.Array, jax.Array]:
        """``(seed_keys, eval_keys)``, computed on the host (:func:`trpojax.fastcpu.keys.run_keys`)."""
        return run_keys(config)

    def compile(
        self, trainer: Trainer, config: Config, keys: jax.Array, keys_eval: jax.Array, lengths: Sequence[int]
    ) -> Programs:
        """:func:`trpojax.fastcpu.compile.compile_programs` with this path's cache."""
        return compile_programs(trainer, config, keys, keys_eval, lengths, self.executables, self.while_compiling)


__all__ = ["FastPath", "applies", "compiler_options"]

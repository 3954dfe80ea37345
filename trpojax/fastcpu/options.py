"""XLA:CPU compile options for the trainer's programs, and when a run's updates run split.

Numbers: benchmarks/RESULTS.md, "Compile latency" and "Split execution".
"""

from __future__ import annotations

from typing import Any

import jax

from trpojax.config import Config
from trpojax.core.platform import classic_emitters_available

# XLA:CPU options for the trainer's programs (benchmarks/RESULTS.md, "Compile latency", measures them).
# LLVM at -O1 instead of XLA's default compiles the training programs faster and runs them as fast. XLA's
# classic fusion emitters instead of its newer ones compile faster again and run a one-seed program as
# fast, but a vmapped many-seed program slower; so the classic emitters are used for short runs ("fast"),
# and for programs that run once (init, the final evaluation, also at -O0).
CPU_OPTIMIZED_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 1}
CPU_FAST_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}
CPU_ONE_SHOT_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}
FAST_COMPILE_MAX_STEPS = 250_000  # compile_mode "auto": fast up to this many env steps over all seeds


def compiler_options(config: Config | None = None, one_shot: bool = False) -> dict[str, Any] | None:
    """XLA compile options for a trainer program of ``config`` on the default backend; None (XLA's
    defaults) off CPU.

    On CPU: :data:`CPU_ONE_SHOT_OPTIONS` for programs run once (``one_shot``), else per
    ``config.compile_mode``: :data:`CPU_FAST_OPTIONS` ("fast", or "auto" for runs of at most
    :data:`FAST_COMPILE_MAX_STEPS` env steps over all seeds) or :data:`CPU_OPTIMIZED_OPTIONS`. Pass them to
    ``jitted.lower(...).compile(options)``: a ``jax.jit(..., compiler_options=...)`` could no longer be
    called inside another jit, and the trainer's functions are meant to compose.
    """
    if jax.default_backend() != "cpu":
        return None
    if one_shot:
        return _supported(CPU_ONE_SHOT_OPTIONS)
    mode = config.compile_mode if config is not None else "optimized"
    if mode == "auto":
        mode = "fast" if config.total_env_steps * config.num_seeds <= FAST_COMPILE_MAX_STEPS else "optimized"
    return _supported(CPU_FAST_OPTIONS if mode == "fast" else CPU_OPTIMIZED_OPTIONS)


def _supported(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without those this jaxlib does not know."""
    if classic_emitters_available():
        return dict(options)
    return {k: v for k, v in options.items() if k != "xla_cpu_use_fusion_emitters"}


def use_split(config: Config, has_split: bool) -> bool:
    """Whether ``config``'s updates run as split stage programs (:class:`trpojax.fastcpu.split.SplitRunner`).

    ``execution: split`` always (validation admits it only for learners with split stages), ``scan``
    never, ``auto`` on CPU when the learner has split stages (``has_split``: TRPO, NPG): XLA:CPU runs a
    program's operations one after another and leaves a second core mostly idle during their small matrix
    products, so the critic fit gains a core of its own. Elsewhere (GPU, TPU) one scanned program per
    chunk keeps the host out of the loop.
    """
    if config.execution != "auto":
        return config.execution == "split"
    return jax.default_backend() == "cpu" and has_split

"""Shared timing helper for the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    """Fastest wall-clock seconds of ``repeats`` calls of ``fn`` (outputs blocked on), after one warm-up."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> str:
    """One line describing where the numbers were taken."""
    import os
    import platform

    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, JAX {jax.__version__} on {kind}"

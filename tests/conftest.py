"""Shared pytest fixtures and settings.

The suite compiles many small programs, and XLA:CPU's compile time dominates it. Tests (and the CLI
processes they start, which inherit the environment) compile with the options the CLI's fast path uses for
short runs (``trpojax.fastcpu.options.CPU_FAST_OPTIONS``: LLVM at -O1, XLA's classic fusion emitters),
which compile in about 40% less CPU time than XLA's defaults (benchmarks/RESULTS.md, "Test suite").
"""

import os

# Before JAX starts its backend; appended to, not replacing, any XLA_FLAGS the caller set.
_FAST = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1"
if _FAST not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (numerical oracles), restoring the default after."""
    with jax.enable_x64(True):
        yield

"""Shared pytest fixtures and settings.

The suite compiles many small programs, and XLA:CPU's compile time dominates it. Tests compile with the
options the CLI's fast path uses for programs that run once (``trpojax.fastcpu.options.CPU_ONE_SHOT_OPTIONS``:
LLVM at -O0, XLA's classic fusion emitters), set here through ``XLA_FLAGS`` so that the CLI processes the
tests start inherit them too (where the CLI passes its own options for a program, those apply). This takes
the suite from about 500 to about 390 CPU-seconds (benchmarks/RESULTS.md, "Test suite"); a test that runs a
long program compiles it with the CLI's options for it (tests/test_learning.py).
"""

import os

from trpojax.core.platform import classic_emitters_available  # noqa: E402  (imports no JAX backend)

# Before JAX starts its backend; appended to, not replacing, any XLA_FLAGS the caller set. XLA aborts the
# process on a flag it does not know, so the classic emitters are asked for only where they exist.
_FAST = "--xla_backend_optimization_level=0"
if classic_emitters_available():
    _FAST = f"--xla_cpu_use_fusion_emitters=false {_FAST}"
if _FAST not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (numerical oracles), restoring the default after."""
    with jax.enable_x64(True):
        yield


# Modules whose tests take longest, started first: the workers then end together instead of one
# waiting while the other runs a long test picked up last.
HEAVY_FIRST = ("test_sweep.py", "test_learning.py", "test_physics_envs.py", "test_accelerator_script.py",
               "test_search.py", "test_readme.py", "test_fastcpu.py", "test_compare.py", "test_verify.py",
               "test_fastcpu_split.py", "test_ntdac.py", "test_learning_pg.py", "test_cli.py", "test_estimators.py",
               "test_verify_lqr.py", "test_lqr.py")


def pytest_collection_modifyitems(items):
    """Order the collected tests heavy modules first (stable within a module)."""

    def rank(item):
        name = item.path.name
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=rank)

"""Shared pytest fixtures."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (numerical oracles), restoring the default after."""
    with jax.enable_x64(True):
        yield

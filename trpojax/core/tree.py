"""Tree maths beyond ``optax.tree``: the Euclidean norm, an all-finite test and the keep-if-valid guard.

Everything else (inner products, ``x + a y``, scaling) is ``optax.tree.vdot`` / ``add_scale`` / ``scale``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def norm(x: PyTree) -> jax.Array:
    """[] Euclidean norm sqrt(<x, x>) of a pytree viewed as one flat vector."""
    return jnp.sqrt(optax.tree.vdot(x, x))


def all_finite(x: PyTree) -> jax.Array:
    """[] bool, True when every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def keep_if_valid(valid: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``valid`` ([] bool) holds, else ``old``, leaf by leaf: the guard every update uses to
    leave its state unchanged after a non-finite or otherwise rejected step."""
    return optax.tree.where(valid, new, old)

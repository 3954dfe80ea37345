"""Seed and evaluation keys computed on the host, so a run compiles no small device programs for them.

``jax.random.PRNGKey`` and ``fold_in`` run eagerly as tiny XLA programs compiled on the spot, before the run's
own compilation can start (benchmarks/RESULTS.md, "The CPU fast path, piece by piece"). With JAX's default
threefry PRNG and a seed below 2**31, :func:`run_keys` computes the same keys in NumPy (tests/test_fastcpu.py
checks them against ``jax.random``); otherwise it falls back to ``jax.random``.
"""

from __future__ import annotations

import jax
import numpy as np

from trpojax.config import Config
from trpojax.trainer import EVAL_KEY_SALT, eval_keys, seed_keys


def run_keys(config: Config) -> tuple[jax.Array, jax.Array]:
    """``(seed keys [S], eval keys [S])`` equal to :func:`trpojax.trainer.seed_keys` / ``eval_keys``."""
    if not (jax.config.jax_default_prng_impl == "threefry2x32" and 0 <= config.seed < 2**31):
        return seed_keys(config), eval_keys(config)
    base = np.array([0, config.seed], np.uint32)  # PRNGKey(seed) for 0 <= seed < 2**31
    keys = np.stack([threefry_fold_in(base, i) for i in range(config.num_seeds)])
    keys_eval = np.stack([threefry_fold_in(k, EVAL_KEY_SALT) for k in keys])
    return jax.device_put(keys), jax.device_put(keys_eval)  # jnp.asarray would compile a copy program


def threefry_fold_in(key: np.ndarray, data: int) -> np.ndarray:
    """``jax.random.fold_in(key, data)`` for a raw threefry key ``uint32 [2]``, in NumPy on the host.

    fold_in hashes the counter pair (0, data) with Threefry-2x32 under ``key`` (Salmon et al. 2011, 20
    rounds); tests/test_fastcpu.py checks it against ``jax.random.fold_in``.
    """
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x = [np.uint32(0), np.uint32(data)]
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    with np.errstate(over="ignore"):
        x[0], x[1] = x[0] + ks[0], x[1] + ks[1]
        for block in range(5):
            for r in rotations[block % 2]:
                x[0] = x[0] + x[1]
                x[1] = np.uint32((int(x[1]) << r | int(x[1]) >> (32 - r)) & 0xFFFFFFFF) ^ x[0]
            x[0] = x[0] + ks[(block + 1) % 3]
            x[1] = x[1] + ks[(block + 2) % 3] + np.uint32(block + 1)
    return np.array(x, np.uint32)

"""Step-size and momentum schedules of the normalised-momentum policy-gradient methods.

Iterations are counted from t = 0. With scale c (gamma_0 for step sizes, eta_0 for momentum weights):

    constant:      c
    harmonic:      c * 2 / (t + 2)
    sqrt:          c * sqrt(2 / (t + 2))
    harmonic_4_5:  c * (2 / (t + 2))^(4/5)
    harmonic_2_3:  c * (2 / (t + 2))^(2/3)

Fatkhullin et al. (2023) use, for N-PG-IGT, gamma_t = gamma_0 2/(t+2) and eta_t = eta_0 (2/(t+2))^(4/5);
for N-HARPG, gamma_t = gamma_0 2/(t+2) and eta_t = eta_0 2/(t+2); for HARPG, gamma_t = gamma_0
sqrt(2/(t+2)) and eta_t = 2/(t+2). Their code's vanilla PG (garage's SGD) steps gamma_0 (2/(t+2))^(2/3).
All are 1 * c at t = 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCHEDULES = ("constant", "harmonic", "sqrt", "harmonic_4_5", "harmonic_2_3")


def schedule_value(name: str, scale: float | jax.Array, t: jax.Array) -> jax.Array:
    """The value of schedule ``name`` (one of ``SCHEDULES``, static) with ``scale`` at iteration ``t >= 0``.

    Args:
        name: schedule name, see the module docstring.
        scale: [] gamma_0 or eta_0 (may be traced).
        t: [] iteration counter, counted from 0 (int or float).

    Returns:
        [] value in the default float dtype (float64 under ``jax_enable_x64``).
    """
    ratio = 2.0 / (jnp.asarray(t, jnp.result_type(float)) + 2.0)
    factors = {
        "constant": jnp.ones_like(ratio),
        "harmonic": ratio,
        "sqrt": jnp.sqrt(ratio),
        "harmonic_4_5": ratio**0.8,
        "harmonic_2_3": ratio ** (2.0 / 3.0),
    }
    if name not in factors:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return scale * factors[name]

"""What the installed XLA can do: the one probe both the CPU fast path and the theory suite use."""

from __future__ import annotations

import functools
import importlib.metadata
import re


@functools.cache
def classic_emitters_available() -> bool:
    """Whether this jaxlib's XLA still has ``xla_cpu_use_fusion_emitters`` (jaxlib 0.11 dropped it: its
    fusion emitters are the only ones, and the option is an error)."""
    version = tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version("jaxlib"))[:2])
    return version < (0, 11)

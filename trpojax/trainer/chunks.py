"""How a run's updates are cut into chunks: host round-trips between compiled scans.

Chunking does not change the numbers (the scan is the same whatever its length), so a run resumed from
any chunk boundary ends bitwise equal to an uninterrupted one. Few distinct lengths means few compiled
programs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def chunk_lengths(num_updates: int, num_chunks: int) -> list[int]:
    """Split ``num_updates`` into about ``num_chunks`` chunks, preferring equal lengths (one compilation).

    With target ``ceil(num_updates / num_chunks)``, uses the divisor of ``num_updates`` closest to the target
    (in ratio) among those within a factor 2 of it, so every chunk has the same length and one program is
    compiled; when there is none, equal chunks of the target plus one shorter remainder.
    """
    target = max(1, math.ceil(num_updates / num_chunks))
    near = [d for d in range(1, min(num_updates, 2 * target) + 1) if num_updates % d == 0 and 2 * d >= target]
    if near:
        divisor = min(near, key=lambda d: abs(math.log(d / target)))
        return [divisor] * (num_updates // divisor)
    lengths = [target] * (num_updates // target)
    return lengths + ([num_updates % target] if num_updates % target else [])


def chunk_schedule(config: Any) -> list[int]:
    """Chunk lengths of a run: :func:`chunk_lengths`, with every ``checkpoint_every``-th update a boundary.

    Each span of ``checkpoint_every`` updates (and the shorter last one) is split into its share of the
    ``num_chunks`` chunks, so a run needs few distinct chunk lengths (one compilation each).
    """
    n, every = config.num_updates, config.checkpoint_every
    if every == 0 or every >= n:
        return chunk_lengths(n, config.num_chunks)
    spans = [every] * (n // every) + ([n % every] if n % every else [])
    return [
        length
        for span in spans
        for length in chunk_lengths(span, max(1, round(config.num_chunks * span / n)))
    ]


def remaining_lengths(lengths: Sequence[int], done: int) -> list[int]:
    """The chunks of ``lengths`` still to run after ``done`` updates (the first one cut at ``done``)."""
    remaining, end = [], 0
    for length in lengths:
        end += length
        if end > done:
            remaining.append(min(length, end - done))
    return remaining

"""Statistics over seeds: interquartile mean and stratified-bootstrap confidence intervals.

Follows Agarwal et al. 2021 ("Deep RL at the Edge of the Statistical Precipice", the rliable library):
a point estimate over runs is reported with a percentile-bootstrap interval whose resampling draws runs
with replacement *within* each stratum (task), so every bootstrap sample keeps the design's run counts
per task. A sweep config on one environment is a single stratum; its runs are its seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

Statistic = Callable[..., np.ndarray]


def iqm(scores: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean: the mean of the middle half of the sorted scores along ``axis``.

    Drops ``floor(n / 4)`` scores from each end (the convention of ``scipy.stats.trim_mean(x, 0.25)``,
    used by rliable), so for ``n < 4`` it is the plain mean. NaNs sort last and propagate.
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64), axis=axis)
    n = scores.shape[axis]
    cut = n // 4
    return np.take(scores, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def mean(scores: np.ndarray, axis: int = 0) -> np.ndarray:
    """Arithmetic mean along ``axis`` (the companion of :func:`iqm` with the same signature)."""
    return np.asarray(scores, dtype=np.float64).mean(axis=axis)


def nanmean(scores: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean along ``axis`` ignoring NaNs (NaN where every score is NaN), without warnings."""
    scores = np.asarray(scores, dtype=np.float64)
    count = np.sum(np.isfinite(scores), axis=axis)
    total = np.sum(np.where(np.isfinite(scores), scores, 0.0), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class Interval(NamedTuple):
    """A point estimate with its confidence interval (arrays of the statistic's shape)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def stratified_bootstrap_ci(
    strata: Sequence[np.ndarray],
    statistic: Statistic = iqm,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` over runs, resampling runs within each stratum.

    For each stratum i with runs ``x_i [n_i, ...]`` the indices of all ``reps`` bootstrap samples are drawn
    at once, ``rng.integers(0, n_i, size=(reps, n_i))`` (strata in order, one ``numpy`` generator seeded
    with ``seed``); bootstrap sample b pools the resampled runs of every stratum, ``[sum_i n_i, ...]``, and
    the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles (linear
    interpolation) of ``statistic(sample_b, axis=0)`` over the b where it is not NaN.

    Args:
        strata: one array per stratum, runs on the leading axis; trailing axes (e.g. updates) must match.
        statistic: ``f(scores [N, ...], axis=0) -> [...]``, e.g. :func:`iqm` or :func:`mean`.
        reps: bootstrap samples.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator (the interval is reproducible).

    Returns:
        ``Interval(estimate, low, high)``; the estimate is the statistic of the pooled original runs.
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in strata]
    if not arrays or any(x.shape[0] == 0 for x in arrays):
        raise ValueError("stratified_bootstrap_ci needs at least one run in every stratum")
    rng = np.random.default_rng(seed)
    resampled = [x[rng.integers(0, x.shape[0], size=(reps, x.shape[0]))] for x in arrays]
    samples = np.concatenate(resampled, axis=1)
    values = statistic(samples, axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(values, [tail, 100.0 - tail], axis=0)
    return Interval(statistic(np.concatenate(arrays, axis=0), axis=0), low, high)


class ConfigStats(NamedTuple):
    """Summary of one config's per-seed scores.

    Attributes:
        mean: mean over seeds, with a 95% stratified-bootstrap interval.
        iqm: interquartile mean over seeds, with a 95% stratified-bootstrap interval.
        num_seeds: seeds with a finite score (non-finite scores are left out and counted separately).
        non_finite: seeds whose score was NaN or infinite.
    """

    mean: Interval
    iqm: Interval
    num_seeds: int
    non_finite: int


def config_stats(scores: np.ndarray, *, reps: int = 2000, seed: int = 0) -> ConfigStats:
    """Mean and IQM of one config's scores [num_seeds] with 95% bootstrap intervals (NaN if none finite)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        nan = Interval(np.float64(np.nan), np.float64(np.nan), np.float64(np.nan))
        return ConfigStats(nan, nan, 0, int(scores.size))
    return ConfigStats(
        mean=stratified_bootstrap_ci([finite], mean, reps=reps, seed=seed),
        iqm=stratified_bootstrap_ci([finite], iqm, reps=reps, seed=seed),
        num_seeds=int(finite.size),
        non_finite=int(scores.size - finite.size),
    )


def rank(stats: Sequence[ConfigStats]) -> list[int]:
    """Config indices best first: by IQM, then mean, descending; configs without finite scores last."""

    def key(i: int) -> tuple[float, float]:
        s = stats[i]
        finite = np.isfinite(s.iqm.estimate)
        return (-float(s.iqm.estimate) if finite else np.inf, -float(s.mean.estimate) if finite else np.inf)

    return sorted(range(len(stats)), key=key)


def curve_band(curves: np.ndarray, *, reps: int = 1000, seed: int = 0) -> Interval:
    """Mean over seeds of ``curves [num_seeds, num_updates]`` with a 95% bootstrap band per update.

    Updates before any episode finished are NaN in a curve; the mean ignores them.
    """
    return stratified_bootstrap_ci([curves], nanmean, reps=reps, seed=seed)

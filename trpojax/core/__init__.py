"""Pure maths with no other trpojax import: matrix-free linear algebra, distributions, returns, the
trajectory estimators, schedules, the exact tabular-MDP toolkit, tree maths, statistics of scores, and the
hyperparameter pytrees that configs are made of."""

from __future__ import annotations

from trpojax.core import distributions, estimators, hparams, linalg, returns, schedules, stats, tabular, tree

__all__ = ["distributions", "estimators", "hparams", "linalg", "returns", "schedules", "stats", "tabular", "tree"]

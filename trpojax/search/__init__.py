"""Optuna searches: ``python -m trpojax.search``, each generation's trials as vmapped, sharded programs.

:mod:`~.spec` reads and validates search files, :mod:`~.study` holds the Optuna side (storage, samplers,
heartbeats, retrying the trials of dead workers), :mod:`~.batch` runs a generation's trials as sweep programs,
:mod:`~.report` writes trials.csv, best.yaml and the plots, :mod:`~.cli` is the command line (docs/search.md).
Optuna is the ``search`` extra; it is imported only when a search runs.
"""

from __future__ import annotations

from trpojax.search.batch import Generation, run_generation
from trpojax.search.cli import main
from trpojax.search.spec import Param, Search, load_search, objective_value

__all__ = ["Generation", "Param", "Search", "load_search", "main", "objective_value", "run_generation"]

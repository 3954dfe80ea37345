"""Sweeps: ``python -m trpojax.sweep``, seeds x hyperparameters as vmapped programs sharded over devices.

:mod:`~.spec` reads and validates sweep files, :mod:`~.program` builds and runs one program per static
group, :mod:`~.report` writes the tables, curves and summary, :mod:`~.cli` is the command line
(docs/sweeps.md).
"""

from __future__ import annotations

from trpojax.sweep.cli import main
from trpojax.sweep.program import Group, Program, build_program, build_programs, group_configs, make_mesh
from trpojax.sweep.spec import Sweep, load_sweep

__all__ = ["Group", "Program", "Sweep", "build_program", "build_programs", "group_configs", "load_sweep", "main",
           "make_mesh"]

"""``python -m trpojax.sweep``: see :mod:`trpojax.sweep.cli`."""

from trpojax.sweep.cli import entry_point

entry_point()

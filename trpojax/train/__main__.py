"""``python -m trpojax.train``: see :mod:`trpojax.train.cli`."""

from trpojax.train.cli import entry_point

entry_point()

"""``python -m trpojax.search``."""

from trpojax.search.cli import entry_point

entry_point()

"""``python -m trpojax.verify``: run the suite and exit with its code (see :func:`trpojax.verify.cli.main`)."""

from trpojax.verify.cli import entry_point

entry_point()

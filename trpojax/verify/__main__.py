"""``python -m trpojax.verify``: run the suite and exit with its code (see :func:`trpojax.verify.cli.main`)."""

import sys

from trpojax.verify.cli import main

if __name__ == "__main__":
    sys.exit(main())

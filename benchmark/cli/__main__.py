"""``python -m kdbench.cli``: the ``kdbench`` command."""

import sys

from kdbench.cli import main

if __name__ == "__main__":
    sys.exit(main())

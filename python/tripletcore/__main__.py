"""``python -m tripletcore``: the same command line as ``tripletcore``."""

import sys

from .app.cli import main

sys.exit(main())

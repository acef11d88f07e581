"""``python -m vramdeck``: the same as the ``vramdeck`` command."""

import sys

from vramdeck.cli import main

sys.exit(main())

"""``python -m workerid.verify``: the same as ``workerid verify``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m quantprompt.grid``: see :mod:`quantprompt.grid.cli`."""

import sys

from .cli import main

sys.exit(main())

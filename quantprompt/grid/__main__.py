"""``python -m quantprompt.grid``: see :mod:`quantprompt.grid.cli`."""

import os
import sys

from ..clierrors import run_cli
from .cli import main

try:
    sys.exit(run_cli(main, "python -m quantprompt.grid"))
except BrokenPipeError:  # `... --dry-run | head`: the reader left, nothing is wrong
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)

"""How every command-line entry point reports a bad input: one line on stderr, exit code 2, no traceback.

A user who mistypes a config value, a path or a name should read one line that names the value and says what
to do, not the last line of a 20-line traceback. The entry points (``train.py``, ``quantprompt ...``,
``tools/*.py``, ``python -m quantprompt.grid`` / ``quantprompt.world``) run their main function through
:func:`run_cli`; ``--debug`` anywhere on the command line, or ``QUANTPROMPT_DEBUG=1``, lets the traceback
through for a bug report.

What counts as a bad input: ``ValueError`` (our errors for config values, unknown names and damaged files all
derive from it: ``CLIPLoadError``, ``quant.FormatError``, ``ExportFormatError``, ``GridError``) and the
``OSError`` kinds a path given by the user raises (missing, in the way, a folder where a file was expected, no
permission).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn, Optional, Sequence

__all__ = ["DEBUG_ENV", "USER_ERRORS", "OneLineParser", "debug_requested", "one_line", "report", "run_cli"]

#: set to 1 to see the traceback behind a one-line error
DEBUG_ENV = "QUANTPROMPT_DEBUG"

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError,
                                                 NotADirectoryError, IsADirectoryError, PermissionError)


def debug_requested() -> bool:
    """``--debug`` on the command line or ``QUANTPROMPT_DEBUG`` set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return "--debug" in sys.argv[1:]


def one_line(err: BaseException) -> str:
    """The error's message on one line: a multi-line message keeps its lines, joined by ' | '."""
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:  # KeyError's str() is the repr of its key
        text = str(err.args[0])
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    return " | ".join(parts) or type(err).__name__


def report(err: BaseException, prog: str = "") -> int:
    """Print ``err`` as one ``error:`` line on stderr and return exit code 2; when debugging, re-raise it with
    its traceback instead. Call it from an ``except`` block."""
    if debug_requested():
        raise err
    lead = f"{prog}: error" if prog else "error"
    print(f"{lead}: {one_line(err)} (traceback: --debug or {DEBUG_ENV}=1)", file=sys.stderr)
    return 2


def run_cli(main: Callable[[], Optional[int]], prog: str = "") -> int:
    """Run ``main()``; a bad input becomes one ``error:`` line on stderr and exit code 2, unless debugging."""
    try:
        return int(main() or 0)
    except USER_ERRORS as err:
        return report(err, prog)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the message and where to read the usage), exit code 2, and
    ``--debug`` is accepted anywhere (it only lets tracebacks through: :func:`debug_requested`)."""

    def parse_known_args(self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        args = [a for a in (sys.argv[1:] if args is None else args) if a != "--debug"]
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

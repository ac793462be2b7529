"""The base of every error caused by user input (config, data, files): printed, not traced."""
from __future__ import annotations

import sys
from collections.abc import Callable


class ClipclsError(Exception):
    """A problem with the user's input, with a message naming the key, class or file at fault."""


def exit_status(run: Callable[[], int]) -> int:
    """Run an entry point's body: a ClipclsError becomes `error: <message>` on stderr and
    status 2 (bad input), instead of a traceback."""
    try:
        return run()
    except ClipclsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

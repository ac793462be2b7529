"""The base of every error caused by user input (config, data, files), and the one wrapper that
turns such errors into an exit status for every command."""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2  # partial: some inputs failed, the rest were done
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class ClipclsError(Exception):
    """A problem with the user's input, with a message naming the key, class or file at fault."""


def exit_status(run: Callable[[], int | None]) -> int:
    """Run a command's body and return its exit status.

    A ClipclsError or an OSError (a missing file, a full disk, a permission) becomes
    `error: <message>` on stderr and status 2 instead of a traceback; argparse's exit for
    `--help` (0) or a usage error (2) is returned rather than raised.
    """
    try:
        return int(run() or EXIT_OK)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    except (ClipclsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and returns 130 itself)
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED

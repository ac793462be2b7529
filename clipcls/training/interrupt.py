"""Ctrl-C during training: stop after the running step, save last.ckpt, say how to resume.

Python turns SIGINT into a KeyboardInterrupt wherever the program happens to be (inside a
backward pass, half-way through a checkpoint write); Lightning then shuts down without saving
and exits 1. Instead, the first Ctrl-C asks Lightning to stop exactly as SIGTERM does (after the
current batch, agreed across DDP processes by rank 0), so the run ends through the same path
that writes last.ckpt. A second Ctrl-C exits at once: every file is written atomically
(`clipcls.io`), so whatever was being saved is either whole or absent, never half-written.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SIGINT_EXIT = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C


@dataclass
class Interrupt:
    """Whether Ctrl-C was pressed during the fit."""

    received: bool = False


@contextmanager
def stop_on_sigint(trainer) -> Iterator[Interrupt]:
    """Within the block, Ctrl-C stops `trainer` after its current batch; twice, exits at once."""
    state = Interrupt()

    def handle(signum, frame) -> None:
        if state.received:
            os._exit(SIGINT_EXIT)  # atomic writes: nothing on disk is left half-written
        state.received = True
        print(
            "\ninterrupted: finishing the current step and saving last.ckpt (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )
        # Lightning's own SIGTERM flag: it stops after the batch and raises SIGTERMException
        trainer._signal_connector.received_sigterm = True

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)

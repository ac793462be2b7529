"""Helpers for the request-handling tests of `clipcls serve`: a model stand-in whose scoring can be
held on an event (so tests wait for states, not for time windows), a uvicorn server on an
ephemeral loopback port in a thread, and small upload builders.

The stand-in replaces only the model: every request still goes through the real app, intake,
decoder and batcher. The model path itself is covered by tests/test_serve.py with real exports.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

from clipcls.serving.backend import Backend

NAMES = ["cat", "dog", "owl"]


class GatedModel:
    """Scores (N, 3) fixed probabilities; while `gate` is clear, scoring blocks (a stuck or slow
    model). `entered` is set once a batch is inside the model; `sizes` lists the batch sizes."""

    def __init__(self, open_: bool = True) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []
        if open_:
            self.gate.set()

    def score(self, items: list[Any]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(timeout=60)  # never hangs a test run for good
        self.sizes.append(len(items))
        return np.tile(np.array([0.7, 0.2, 0.1], dtype=np.float32), (len(items), 1))

    def backend(self) -> Backend:
        return Backend(
            class_names=list(NAMES),
            prepare=lambda image: np.asarray(image.resize((4, 4)), dtype=np.float32),
            score=self.score,
            draft_size=(4, 4),
            kind="fake",
            scorer="head",
        )


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, fmt)
    return buffer.getvalue()


def files(*items: tuple[str, bytes]) -> list:
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for a state (not a time window); fail after a generous `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@contextmanager
def running(config: Any) -> Iterator[tuple[Any, int, threading.Thread]]:
    """A uvicorn.Server for `config` (port 0) on a thread: yields (server, port, thread)."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="the server to start")
        yield server, server.servers[0].sockets[0].getsockname()[1], thread
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it just closes)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)

"""Batches of numpy arrays without torch, for runtimes that are not PyTorch (ONNX Runtime,
OpenVINO): the same unreadable-image policy as `clipcls.data.dataset` (a bad file becomes a
(position, reason) failure in its batch, never an exception), and the same `Batch` fields, so
`clipcls.inference.prediction_csv.stream_predictions` consumes either kind."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from clipcls.data.images import ImageLoadError
from clipcls.data.index import PathTable


class ArrayBatch(NamedTuple):
    """Readable images stacked (None when none was readable) and the unreadable ones' reasons."""

    pixels: np.ndarray | None  # (N, 3, H, W) float32
    labels: np.ndarray | None
    positions: np.ndarray | None
    failures: list[tuple[int, str]]  # (position, reason)


class BatchMaker:
    """Loads one batch of positions: picklable, so worker processes can run it."""

    def __init__(self, paths: PathTable, load: Callable[[str], np.ndarray]) -> None:
        self.paths = paths
        self.load = load

    def __call__(self, positions: range) -> ArrayBatch:
        arrays, good, failures = [], [], []
        for i in positions:
            try:
                arrays.append(self.load(self.paths[i]))
                good.append(i)
            except ImageLoadError as err:
                failures.append((i, err.reason))
            except Exception as err:  # noqa: BLE001 - one bad file must not stop the run
                failures.append((i, f"{type(err).__name__}: {err}"))
        if not arrays:
            return ArrayBatch(None, None, None, failures)
        return ArrayBatch(np.stack(arrays), None, np.asarray(good, dtype=np.int64), failures)


def array_batches(
    paths: PathTable, load: Callable[[str], np.ndarray], batch_size: int, workers: int = 0
) -> Iterator[ArrayBatch]:
    """Batches in path order. `workers` > 0 decodes in that many processes (spawned: the caller
    may already run a multi-threaded runtime, which fork would copy mid-state), a few batches
    ahead; 0 decodes in-line, which on a 2-core CPU leaves both cores to the model."""
    chunks = [range(s, min(s + batch_size, len(paths))) for s in range(0, len(paths), batch_size)]
    make = BatchMaker(paths, load)
    if workers <= 0 or len(chunks) < 2:
        yield from map(make, chunks)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(make, chunks)

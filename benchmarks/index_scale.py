"""Scale: indexing a 200,000-file class-folder tree, and DataLoader worker memory over an epoch.

1. Indexing. A tree of N empty `.jpg` files in 19 class folders is built in a temporary directory
   (indexing lists files, it never opens them). `index_folder` and the stratified split run in a
   fresh subprocess that reports wall time and memory from /proc/self/status: VmHWM (the peak
   resident set of the whole process, interpreter and imports included) and the baseline VmRSS
   after imports, so the index's own share is VmHWM - baseline. Repeated, median reported.
2. Worker memory. Python objects carry reference counts, so a worker that merely reads a Python
   list of 200,000 path strings writes to the pages holding them and gets private copies of all
   of them (copy-on-write turns into copy), in every worker: its unique memory (USS, from
   /proc/<pid>/smaps_rollup) grows over the epoch. Our ImageDataset keeps paths in a numpy bytes
   buffer and labels in a numpy array, which reading never writes. Side by side: an epoch over
   ImageDataset vs the same dataset with the paths in a Python list, with images not decoded
   (`load_image` replaced by a constant image) so only the bookkeeping is measured; each
   worker's USS is read at the first batch and at the end of the epoch.

    python benchmarks/index_scale.py [--files 200000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the project root on sys.path)

CHILD = r"""
import json, os, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # kB -> MiB
import numpy as np
from clipcls.data.index import index_folder, stratified_split
base = status("VmRSS")
t0 = time.perf_counter()
index = index_folder(sys.argv[1])
t1 = time.perf_counter()
after_index = status("VmHWM")
train, val = stratified_split(index, 0.2, 0)
t2 = time.perf_counter()
print(json.dumps({"files": len(index.labels), "classes": len(index.class_names), "index_s": t1 - t0,
                  "split_s": t2 - t1, "baseline_mib": base, "peak_after_index_mib": after_index,
                  "peak_mib": status("VmHWM")}))
"""


def make_tree(root: Path, files: int, classes: int = 19) -> Path:
    """`root/class_XX/NNNNNNN.jpg`, empty files, spread evenly over the classes."""
    names = common.class_names(classes)
    for c, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(c, files, classes):
            open(folder / f"{i:07d}.jpg", "wb").close()
    return root


def index_figures(root: Path, repeats: int) -> list[dict]:
    """Run the indexing child `repeats` times (fresh interpreter each time)."""
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, env=env, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


# ---------------------------------------------------------------------------------------------- workers
def uss_mib(pid: int) -> float:
    """Unique set size of a process (private clean + private dirty), MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024


class ListPaths:
    """The same paths as a plain Python list of str: what a naive dataset holds."""

    def __init__(self, table) -> None:
        self.items = [table[i] for i in range(len(table))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> str:
        return self.items[i]


def worker_growth(root: Path, workers: int, as_list: bool, batch: int) -> dict:
    """Each worker's USS at the first batch and after the whole epoch, MiB."""
    import gc

    import torch
    from PIL import Image

    import clipcls.data.dataset as dataset_module
    from clipcls.data.dataset import ImageDataset
    from clipcls.data.index import index_folder
    from clipcls.data.loaders import make_loader

    index = index_folder(root)
    if as_list:
        index.paths = ListPaths(index.paths)
        index.labels = index.labels.tolist()
    blank = Image.new("RGB", (2, 2))
    original = dataset_module.load_image
    dataset_module.load_image = lambda path, draft_size=None: blank  # workers fork with this: no decoding
    try:
        dataset = ImageDataset.from_index(index, lambda image: torch.zeros(1), draft_size=(8, 8))
        loader = make_loader(dataset, batch, workers, shuffle=True)  # persistent workers, as in training
        iterator = iter(loader)
        next(iterator)
        pids = [w.pid for w in iterator._workers]
        first = [uss_mib(p) for p in pids]
        start = time.perf_counter()
        for _ in iterator:
            pass
        seconds = time.perf_counter() - start
        last = [uss_mib(p) for p in pids]  # persistent workers are still alive after the epoch
    finally:
        dataset_module.load_image = original
    del iterator, loader
    gc.collect()
    return {
        "first": first,
        "last": last,
        "epoch_s": seconds,
        "samples": len(dataset),
        "kind": "Python list" if as_list else "numpy (ImageDataset)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="indexing runs (median reported)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    common.print_machine()
    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        start = time.perf_counter()
        root = make_tree(Path(tmp) / "tree", args.files)
        print(f"built a tree of {args.files} empty files in {time.perf_counter() - start:.1f} s", flush=True)
        runs = index_figures(root, args.repeats)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        each = ", ".join(f"{r['index_s']:.2f}" for r in runs)
        print(
            f"index_folder: {med['files']:.0f} files, {med['classes']:.0f} classes in {med['index_s']:.2f} s "
            f"(runs: {each}); stratified split {med['split_s']:.2f} s"
        )
        print(
            f"peak resident memory of the whole process: {med['peak_mib']:.0f} MiB (VmHWM; after index_folder "
            f"{med['peak_after_index_mib']:.0f} MiB); baseline after imports {med['baseline_mib']:.0f} MiB, "
            f"so index + split add {med['peak_mib'] - med['baseline_mib']:.0f} MiB"
        )
        print(f"\nworker memory over one epoch of {args.files} samples, {args.workers} workers, batch {args.batch}:")
        for as_list in (False, True, False, True):  # alternated, twice each
            res = worker_growth(root, args.workers, as_list, args.batch)
            growth = [b - a for a, b in zip(res["first"], res["last"])]
            print(
                f"  {res['kind']:<22} USS per worker at first batch {', '.join(f'{x:.1f}' for x in res['first'])} MiB"
                f" -> end of epoch {', '.join(f'{x:.1f}' for x in res['last'])} MiB "
                f"(growth {', '.join(f'{x:+.1f}' for x in growth)} MiB; epoch {res['epoch_s']:.1f} s)",
                flush=True,
            )
    common.print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

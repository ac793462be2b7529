"""The one DataLoader factory: training, evaluation and prediction get the same CPU thread policy
and the same unreadable-image policy (`clipcls.data.dataset`)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from clipcls.data.dataset import ImageDataset, collate_samples
from clipcls.data.index import PathTable
from clipcls.data.transforms import build_transform


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(requested: int | None, cpu_compute: bool = False, processes: int = 1) -> int:
    """Loader workers per process: the requested count; else, feeding an accelerator, one per CPU
    up to 8; else (the CPUs also run the model) a quarter of this process's share of the CPUs,
    so that most cores compute. On 2 cores that is 0 (loading in-line): there, a compute-bound
    model trained faster with both cores computing than with one core kept for a worker
    (benchmarks/RESULTS.md); set num_workers to move cores to loading for data-bound runs."""
    if requested is not None:
        return requested
    if not cpu_compute:
        return min(8, usable_cpus())
    return max(1, usable_cpus() // max(1, processes)) // 4


def balance_cpu_threads(workers: int, processes: int = 1) -> int:
    """Give a process that runs the model on CPU the cores its loader workers leave free.

    PyTorch's OpenMP threads wait for each other at every operation, so on oversubscribed cores
    (intra-op threads + busy workers > cores) a step slows down far more than the loading work
    costs. OMP_NUM_THREADS, when set, is respected. Returns the thread count in use.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = max(1, usable_cpus() // max(1, processes) - workers)
    torch.set_num_threads(threads)
    return threads


def worker_init(worker_id: int) -> None:
    """Loader workers ignore SIGTERM. Schedulers (Slurm, `timeout`, a process-group kill) signal
    every process, and a worker dying first would crash the run before the main process could
    save a checkpoint; the main process stops after the batch, saves and shuts its workers down
    (they also exit on their own once it is gone). Then Lightning's per-worker seeding, which it
    adds only to loaders without an init function."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group too
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    workers: int,
    sampler: Sampler | None = None,
    shuffle: bool = False,
    pin_memory: bool | None = None,
    collate_fn: Callable = collate_samples,
) -> DataLoader:
    """A DataLoader of `Batch`es (or what `collate_fn` makes) that keeps its workers between epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=shuffle and sampler is None,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=workers > 0,
        drop_last=False,
        worker_init_fn=worker_init if workers > 0 else None,
    )


def inference_loader(
    paths: PathTable,
    labels,
    image_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    workers: int | None,
    device: torch.device | str = "cpu",
    resize: str = "squash",
) -> DataLoader:
    """A deterministic loader (no augmentation) for evaluation and prediction, resizing as the
    model was trained (`resize`). On a CPU device the cores are split between loader workers and
    the model's threads, as in training."""
    size = (int(image_size[0]), int(image_size[1]))
    transform = build_transform(size, list(mean), list(std), "none", resize)
    dataset = ImageDataset(paths, labels, transform, draft_size=size[::-1])
    on_cpu = torch.device(device).type == "cpu"
    batches = max(1, -(-len(dataset) // batch_size))
    count = min(default_workers(workers, cpu_compute=on_cpu), batches)
    if on_cpu:
        balance_cpu_threads(count)
    return make_loader(dataset, batch_size, count, pin_memory=torch.device(device).type == "cuda")

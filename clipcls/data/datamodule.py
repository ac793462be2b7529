"""From config to DataLoaders: classes, descriptions, the split and the loaders."""
from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, RandomSampler

from clipcls.data.dataset import ImageDataset, build_sampler, collate_skipping_bad
from clipcls.data.descriptions import check_classes, read_descriptions
from clipcls.data.index import ImageIndex, index_folder, list_classes, stratified_split
from clipcls.data.transforms import build_transform


@dataclass
class TrainData:
    """What training decides once about the data; everything downstream reads it from here."""

    class_names: list[str]
    descriptions: dict[str, list[str]]
    train: ImageIndex
    val: ImageIndex


def prepare_data(cfg: dict[str, Any]) -> TrainData:
    """Validate folders against descriptions and split (or read the separate validation dir)."""
    descriptions = read_descriptions(cfg["class_description_yaml_file"])
    classes = list_classes(cfg["train_dataset_dir"])
    check_classes(classes, descriptions, cfg["class_description_yaml_file"])
    index = index_folder(cfg["train_dataset_dir"])
    if cfg.get("val_dataset_dir"):
        train, val = index, index_folder(cfg["val_dataset_dir"], class_names=index.class_names)
    else:
        train, val = stratified_split(index, cfg["test_size"], cfg["seed"])
    ordered = {name: descriptions[name] for name in index.class_names}
    return TrainData(index.class_names, ordered, train, val)


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
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)


def make_loader(dataset: ImageDataset, batch_size: int, workers: int, sampler=None, shuffle: bool = False) -> DataLoader:
    """A DataLoader that skips unreadable samples and keeps its workers between epochs."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle and sampler is None,
        num_workers=workers, collate_fn=collate_skipping_bad, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0, drop_last=False, worker_init_fn=worker_init if workers > 0 else None,
    )


class EpochSeededRandomSampler(RandomSampler):
    """Shuffling whose order depends only on (seed, epoch), as DistributedSampler's does.

    Lightning calls `set_epoch` before every epoch, so a resumed run sees the same order as an
    uninterrupted one; a plain shuffle draws from the global RNG, which a resume does not restore.
    After a mid-epoch resume, `skip` leaves out the samples the checkpoint had already trained on.
    """

    def __init__(self, data_source, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.skip: dict[int, int] = {}  # epoch -> samples of its order already trained on
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip.pop(self.epoch, 0), None)


class ClipDataModule(pl.LightningDataModule):
    """Train and validation loaders built from prepared data and the model's normalisation."""

    def __init__(self, data: TrainData, cfg: dict[str, Any], mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.data, self.cfg = data, cfg
        size = (cfg["img_transform_size_H"], cfg["img_transform_size_W"])
        self.train_set = ImageDataset(data.train, build_transform(size, mean, std, cfg["augment"]), draft_size=size[::-1])
        self.val_set = ImageDataset(data.val, build_transform(size, mean, std, "none"), draft_size=size[::-1])
        self.workers = default_workers(cfg["num_workers"])

    def setup(self, stage: str) -> None:
        """When the CPUs run the model, split them between loader workers and its threads."""
        from pytorch_lightning.accelerators import CPUAccelerator

        if self.trainer is not None and isinstance(self.trainer.accelerator, CPUAccelerator):
            processes = self.trainer.num_devices
            self.workers = default_workers(self.cfg["num_workers"], cpu_compute=True, processes=processes)
            balance_cpu_threads(self.workers, processes)

    def train_dataloader(self) -> DataLoader:
        num_classes = len(self.data.class_names)
        sampler = build_sampler(self.cfg["sampler"], self.data.train.labels, num_classes, self.cfg["seed"])
        if sampler is None and getattr(self.trainer, "world_size", 1) == 1:
            # (with several processes Lightning's DistributedSampler shuffles by (seed, epoch) itself)
            sampler = EpochSeededRandomSampler(self.train_set, self.cfg["seed"])
        batch = num_classes if self.cfg["sampler"] == "per_class" else self.cfg["batch_size"]
        return make_loader(self.train_set, batch, self.workers, sampler=sampler, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.val_set, self.cfg["batch_size"], self.workers)

"""The LightningDataModule: training and validation loaders for a run's splits."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from clipcls.data.dataset import ImageDataset
from clipcls.data.device_decode import DeviceDecoder, EncodedBatch, EncodedImageDataset, collate_encoded
from clipcls.data.loaders import balance_cpu_threads, default_workers, make_loader
from clipcls.data.samplers import ShardSampler, build_sampler
from clipcls.data.splits import Splits
from clipcls.data.transforms import build_transform


class ClipDataModule(pl.LightningDataModule):
    """Train and validation loaders built from the splits and the model's normalisation."""

    def __init__(self, data: Splits, cfg: dict[str, Any], mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.data, self.cfg = data, cfg
        size = (cfg["img_transform_size_H"], cfg["img_transform_size_W"])
        train_transform = build_transform(size, mean, std, cfg["augment"], cfg.get("resize", "squash"))
        self.train_set = ImageDataset.from_index(data.train, train_transform, draft_size=size[::-1])
        self.val_set = ImageDataset.from_index(
            data.val, build_transform(size, mean, std, "none", cfg.get("resize", "squash")), draft_size=size[::-1]
        )
        self.workers = default_workers(cfg["num_workers"])
        self.decoder = None  # decode: gpu -> workers read files, the device decodes training images
        if cfg.get("decode", "cpu") == "gpu":
            self.train_set = EncodedImageDataset.from_index(data.train)
            self.decoder = DeviceDecoder(size, mean, std, cfg["augment"])

    def setup(self, stage: str) -> None:
        """When the CPUs run the model, split them between loader workers and its threads."""
        from pytorch_lightning.accelerators import CPUAccelerator

        if self.trainer is not None and isinstance(self.trainer.accelerator, CPUAccelerator):
            processes = self.trainer.num_devices
            self.workers = default_workers(self.cfg["num_workers"], cpu_compute=True, processes=processes)
            balance_cpu_threads(self.workers, processes)

    def _process(self) -> tuple[int, int]:
        """(rank, world size): the samplers split the data between processes themselves (the
        Trainer's use_distributed_sampler is off), so that a mid-epoch resume can skip exactly."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        num_classes = len(self.data.class_names)
        labels = self.data.train.labels
        sampler = build_sampler(self.cfg["sampler"], labels, num_classes, self.cfg["seed"], *self._process())
        batch = num_classes if self.cfg["sampler"] == "per_class" else self.cfg["batch_size"]
        return make_loader(self.train_set, batch, self.workers, sampler=sampler, **self._collation())

    def _collation(self) -> dict[str, Any]:
        """With the device decoder, batches of file bytes, not pinned (nvjpeg reads host memory)."""
        return {} if self.decoder is None else {"collate_fn": collate_encoded, "pin_memory": False}

    def transfer_batch_to_device(self, batch: Any, device, dataloader_idx: int) -> Any:
        """Training batches of file bytes are decoded, augmented and normalised on the device."""
        if isinstance(batch, EncodedBatch):
            return self.decoder(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def val_dataloader(self, shard: bool = True) -> DataLoader:
        """This process's share of the validation images (all of them with shard=False)."""
        sampler = ShardSampler(len(self.val_set), *(self._process() if shard else (0, 1)))
        return make_loader(self.val_set, self.cfg["batch_size"], self.workers, sampler=sampler)

"""The on-device data path (`decode: gpu`): loader workers only read files, and the training
device decodes the JPEGs (`torchvision.io.decode_jpeg`, nvjpeg on CUDA) and resizes, augments and
normalises them there.

On a fast GPU a CLIP step can consume more images a second than a few CPU workers decode; this
path moves the decoding and the pixel work to the device. It keeps the CPU path's policy for bad
files: an unreadable image is reported in `Batch.failures` with its reason and skipped, never
fatal. Files the device cannot decode as they are (not JPEG, CMYK, an EXIF rotation, a missing
end marker, oversized) are decoded in the worker by `load_image`, exactly as the CPU path does,
and only resized and augmented on the device; so both paths accept and reject the same files.
Augmentation reuses the CPU path's steps (`augmentation_steps`) per image, seeded by the
sampler's draw seed, so both paths draw the same augmentation for the same sample.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from clipcls.data.dataset import UNLABELLED, Batch
from clipcls.data.images import ImageLoadError, load_image
from clipcls.data.index import PathTable
from clipcls.data.transforms import augmentation_steps

_EXIF_ORIENTATION = 0x0112
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


class Encoded(NamedTuple):
    """One image as a worker hands it over: JPEG bytes for the device to decode (`jpeg`), or
    pixels the worker decoded (uint8, 3×H×W); None with the reason when the file is unreadable."""

    data: torch.Tensor | None
    jpeg: bool
    label: int
    position: int
    seed: int | None  # the sampler's draw seed of its augmentation
    failure: str | None


class EncodedBatch(NamedTuple):
    """A batch before decoding; the readable images' fields line up with `data`."""

    data: list[torch.Tensor]
    jpeg: list[bool]
    labels: torch.Tensor
    positions: torch.Tensor
    seeds: list[int | None]
    failures: list[tuple[int, str]]  # (position, reason)


def device_decodable(data: bytes) -> bool:
    """Whether `decode_jpeg` on a device gives the pixels `load_image` would: a complete RGB or
    grey JPEG (ending in its end-of-image marker, since nvjpeg may not reject truncated data),
    upright (the device decoder ignores EXIF rotation), within Pillow's decompression-bomb limit.
    Reads the header only."""
    if not (data.startswith(_JPEG_START) and data.rstrip(b"\0").endswith(_JPEG_END)):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:  # no other plugin reads it
            limit = Image.MAX_IMAGE_PIXELS
            return (
                img.format == "JPEG"
                and img.mode in ("RGB", "L")
                and img.getexif().get(_EXIF_ORIENTATION, 1) == 1
                and (limit is None or img.width * img.height <= limit)
            )
    except Exception:  # noqa: BLE001 - a bad header is for load_image to report
        return False


def read_encoded(path: str) -> tuple[torch.Tensor, bool]:
    """(JPEG bytes, True) when the device can decode the file as it is, else (the pixels
    `load_image` decodes here, False); an unreadable file raises ImageLoadError naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageLoadError(path, f"{type(exc).__name__}: {exc}") from exc
    if device_decodable(data):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), True
    return F.pil_to_tensor(load_image(path)), False


class EncodedImageDataset(Dataset):
    """The images of a path table, read for the device decoder (see `read_encoded`)."""

    def __init__(self, paths: PathTable, labels: np.ndarray | None) -> None:
        self.paths = paths
        self.labels = labels

    @classmethod
    def from_index(cls, index) -> EncodedImageDataset:
        return cls(index.paths, index.labels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> Encoded:
        """Image `key`, or (index, draw seed) from a training sampler (as `ImageDataset`)."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        label = UNLABELLED if self.labels is None else int(self.labels[i])
        try:
            data, jpeg = read_encoded(self.paths[i])
            return Encoded(data, jpeg, label, i, seed, None)
        except ImageLoadError as err:
            return Encoded(None, False, label, i, seed, err.reason)
        except Exception as err:  # noqa: BLE001 - a worker never dies on a bad file
            return Encoded(None, False, label, i, seed, f"{type(err).__name__}: {err}")


def collate_encoded(samples: list[Encoded]) -> EncodedBatch:
    """Keep the readable samples' data as a list (their sizes differ) and the others' reasons."""
    good = [s for s in samples if s.failure is None]
    return EncodedBatch(
        [s.data for s in good],
        [s.jpeg for s in good],
        torch.tensor([s.label for s in good], dtype=torch.long),
        torch.tensor([s.position for s in good], dtype=torch.long),
        [s.seed for s in good],
        [(s.position, s.failure) for s in samples if s.failure is not None],
    )


def _host_decode(data: torch.Tensor) -> torch.Tensor:
    """Pillow's decode of JPEG bytes the device decoder refused (ImageLoadError if unreadable)."""
    return F.pil_to_tensor(load_image(io.BytesIO(data.numpy().tobytes())))


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | str]:
    """Decode JPEG bytes on `device`, all in one call (nvjpeg's batched decode on CUDA); a file
    the decoder refuses is decoded by Pillow instead, and is a reason string if that fails too."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not data:
        return []
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except Exception:  # noqa: BLE001 - one bad file fails the whole call: find it
        pass
    out: list[torch.Tensor | str] = []
    for item in data:
        try:
            out.append(decode_jpeg(item, mode=ImageReadMode.RGB, device=device))
        except Exception:  # noqa: BLE001
            try:
                out.append(_host_decode(item).to(device))
            except ImageLoadError as err:
                out.append(err.reason)
    return out


def resize_all(images: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 images to `size` (H, W) with antialiasing, one batched call per source size
    (a camera's images usually share one), as the CPU path's `v2.Resize` does per image."""
    first = images[0]
    out = torch.empty((len(images), 3, *size), dtype=torch.uint8, device=first.device)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        groups[tuple(image.shape[-2:])].append(i)
    for shape, idx in groups.items():
        stack = torch.stack([images[i] for i in idx])
        out[idx] = stack if shape == tuple(size) else F.resize(stack, list(size), antialias=True)
    return out


class DeviceDecoder:
    """Turns an `EncodedBatch` into a `Batch` on a device: decode, resize, augment, normalise."""

    def __init__(
        self, size: tuple[int, int], mean: list[float], std: list[float], augment: str = "none", group: int = 1
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = list(mean), list(std)
        steps = augmentation_steps(augment)
        self.augment = v2.Compose(steps) if steps else None
        # images per augmentation draw: 1 = each image its own (the CPU path's); more share one
        # draw per group, for fewer Python calls (an experiment of benchmarks/gpu_suite.py)
        self.group = group

    def __call__(self, batch: EncodedBatch, device: torch.device | str) -> Batch:
        device = torch.device(device)
        images, failures = self.decode(batch, device)
        keep = [i for i, image in enumerate(images) if image is not None]
        if not keep:
            return Batch(None, None, None, failures)
        pixels = resize_all([images[i] for i in keep], self.size)
        if self.augment is not None:
            pixels = self.augment_each(pixels, [batch.seeds[i] for i in keep])
        pixels = F.normalize(F.to_dtype(pixels, torch.float32, scale=True), self.mean, self.std)
        index = torch.tensor(keep, dtype=torch.long)
        return Batch(pixels, batch.labels[index].to(device), batch.positions[index].to(device), failures)

    def decode(self, batch: EncodedBatch, device: torch.device) -> tuple[list[torch.Tensor | None], list]:
        """Every image's uint8 pixels on `device` (None where unreadable), and all failures."""
        jpegs = [i for i, is_jpeg in enumerate(batch.jpeg) if is_jpeg]
        decoded = dict(zip(jpegs, decode_jpegs([batch.data[i] for i in jpegs], device)))
        images: list[torch.Tensor | None] = []
        failures = list(batch.failures)
        for i, data in enumerate(batch.data):
            image = decoded.get(i, data)
            if isinstance(image, str):
                failures.append((int(batch.positions[i]), image))
                image = None
            images.append(None if image is None else image.to(device, non_blocking=True))
        return images, failures

    def augment_each(self, pixels: torch.Tensor, seeds: list[int | None]) -> torch.Tensor:
        """The CPU path's augmentation, image by image (each draws its own operations), from the
        image's draw seed when the sampler gave one, so that both paths draw alike. (With
        `group` > 1, each run of `group` images shares the draw of its first image's seed.)

        The draws come from the CPU generator (as in the CPU path, whatever the device): it is
        reseeded per draw and restored once per batch, since a `fork_rng` per image cost more
        than the augmentation itself (0.6 of 1.5 ms per image here)."""
        starts = range(0, len(pixels), self.group)
        if all(seed is None for seed in seeds):
            return torch.cat([self.augment(pixels[i : i + self.group]) for i in starts])
        generator, state = torch.default_generator, torch.get_rng_state()
        try:
            out = []
            for i in starts:
                if seeds[i] is not None:
                    generator.manual_seed(seeds[i])
                out.append(self.augment(pixels[i : i + self.group]))
        finally:
            torch.set_rng_state(state)  # the caller's random stream stays untouched
        return torch.cat(out)

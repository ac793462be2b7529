"""Issue 14, the on-device data path (`decode: gpu`), exercised on CPU tensors: its pixels equal the
CPU path's within JPEG decoder tolerance, it draws the same augmentation from the same seed, and it
reports unreadable files with the CPU path's reasons."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipcls.data.dataset import ImageDataset, collate_samples
from clipcls.data.device_decode import (
    DeviceDecoder,
    EncodedImageDataset,
    collate_encoded,
    device_decodable,
)
from clipcls.data.images import load_image
from clipcls.data.transforms import build_transform

MEAN, STD = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
SIZE = (32, 32)


def photo(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colour fields with noise: a photo-like JPEG, not a flat one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 127 + 90 * np.sin(0.11 * yy + 0.07 * xx + seed)
    rgb = np.stack([base, np.roll(base, 5, 1), 255 - base], -1) + rng.normal(0, 10, (height, width, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def image_files(folder: Path) -> list[Path]:
    """RGB JPEGs of two sizes (one batched resize each), a grey JPEG, a sideways phone photo (EXIF
    orientation 6: decoded by Pillow in the worker) and a PNG (also the worker's)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate([(48, 40), (48, 40), (40, 56), (40, 56)]):
        paths.append(folder / f"rgb{i}.jpg")
        Image.fromarray(photo(w, h, i)).save(paths[-1], quality=92)
    paths.append(folder / "grey.jpg")
    Image.fromarray(photo(44, 36, 7)[..., 0], "L").save(paths[-1], quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6
    paths.append(folder / "sideways.jpg")
    Image.fromarray(photo(50, 34, 8)).save(paths[-1], quality=92, exif=exif.tobytes())
    paths.append(folder / "plain.png")
    Image.fromarray(photo(36, 30, 9)).save(paths[-1])
    return paths


def device_batch(paths: list[Path], augment: str = "none", seeds: list[int] | None = None):
    dataset = EncodedImageDataset([str(p) for p in paths], np.arange(len(paths)))
    keys = range(len(paths)) if seeds is None else zip(range(len(paths)), seeds)
    encoded = collate_encoded([dataset[k] for k in keys])
    return encoded, DeviceDecoder(SIZE, MEAN, STD, augment)(encoded, "cpu")


def cpu_pixels(path: Path, augment: str = "none", seed: int | None = None) -> torch.Tensor:
    """The CPU path's tensor for one file (the training dataset's transform, from `seed`)."""
    transform = build_transform(SIZE, MEAN, STD, augment)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return transform(load_image(path))


def test_device_path_pixels_equal_the_cpu_path_within_jpeg_tolerance(tmp_path):
    paths = image_files(tmp_path / "images")
    encoded, batch = device_batch(paths)
    # the plain JPEGs go to the device decoder as bytes; the rotated one and the PNG are decoded
    # by Pillow in the worker, like the CPU path
    assert encoded.jpeg == [True, True, True, True, True, False, False]
    assert batch.failures == []
    assert batch.pixels.shape == (7, 3, *SIZE) and batch.pixels.dtype == torch.float32
    assert batch.labels.tolist() == list(range(7)) and batch.positions.tolist() == list(range(7))
    cpu = ImageDataset([str(p) for p in paths], np.arange(7), build_transform(SIZE, MEAN, STD, "none"))
    expected = collate_samples([cpu[i] for i in range(7)]).pixels
    levels = (batch.pixels - expected).abs() * torch.tensor(STD).view(1, 3, 1, 1) * 255  # in 8-bit steps
    # two JPEG decoders (Pillow's libjpeg-turbo, torchvision's libjpeg) may round IDCT and chroma
    # upsampling differently by a few levels; the worker-decoded files are identical
    assert levels[:5].max() <= 8 and levels[:5].mean() <= 1.0
    assert levels[5:].max() <= 1e-3
    assert batch.pixels[5].shape[-2:] == SIZE  # sideways photo turned upright, then resized


@pytest.mark.parametrize("augment", ["flip", "light", "trivialaugment"])
def test_device_path_draws_the_cpu_paths_augmentation_from_the_same_seed(tmp_path, augment):
    # PNGs: both paths then decode with Pillow, so any difference would be the augmentation's
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(6):
        paths.append(folder / f"{i}.png")
        Image.fromarray(photo(40, 40, i)).save(paths[-1])
    seeds = [11, 12, 13, 14, 15, 16]
    state = torch.get_rng_state()
    _, batch = device_batch(paths, augment, seeds)
    assert torch.equal(torch.get_rng_state(), state)  # the global random stream is left as it was
    expected = torch.stack([cpu_pixels(p, augment, s) for p, s in zip(paths, seeds)])
    torch.testing.assert_close(batch.pixels, expected, atol=1e-5, rtol=0)
    _, other = device_batch(paths, augment, [s + 100 for s in seeds])
    assert not torch.equal(other.pixels, batch.pixels)  # the seed, not the path, fixes the draw


def test_unreadable_files_are_failures_with_the_cpu_paths_reasons(tmp_path):
    folder = tmp_path / "images"
    good = image_files(folder)[:2]
    jpeg = io.BytesIO()
    Image.fromarray(photo(48, 40, 3)).save(jpeg, "JPEG")
    bad = {
        folder / "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        folder / "empty.jpg": b"",
        folder / "notes.png": "이건 그림이 아닙니다 - not an image\n".encode(),
    }
    for path, content in bad.items():
        path.write_bytes(content)
    paths = [good[0], *bad, good[1], folder / "missing.jpg"]
    _, batch = device_batch(paths)
    cpu = ImageDataset([str(p) for p in paths], np.arange(len(paths)), build_transform(SIZE, MEAN, STD, "none"))
    expected = collate_samples([cpu[i] for i in range(len(paths))])
    assert batch.failures == expected.failures
    assert [position for position, _ in batch.failures] == [1, 2, 3, 5]
    assert batch.positions.tolist() == [0, 4] and batch.labels.tolist() == [0, 4]
    assert batch.pixels.shape == (2, 3, *SIZE)


def test_a_jpeg_the_device_decoder_refuses_falls_back_to_pillow_or_fails_with_a_reason(tmp_path):
    folder = tmp_path / "images"
    good = image_files(folder)[0]
    data = bytearray(good.read_bytes())
    # a complete-looking JPEG (start and end markers, valid header) with a broken scan: it passes
    # the worker's header check, so the failure shows only when decoding
    broken = folder / "broken_scan.jpg"
    broken.write_bytes(bytes(data[:-600]) + b"\xff\xd9")
    assert device_decodable(broken.read_bytes())
    _, batch = device_batch([good, broken])
    try:
        load_image(broken)
    except Exception:  # noqa: BLE001 - Pillow refuses it too: a failure naming the reason
        assert [p for p, _ in batch.failures] == [1] and batch.failures[0][1]
        assert batch.positions.tolist() == [0]
    else:  # Pillow decodes it (it pads a short scan): so does the device path
        assert batch.failures == [] and batch.positions.tolist() == [0, 1]


def test_a_batch_with_no_readable_image_has_no_pixels(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    _, batch = device_batch([tmp_path / "a.jpg"])
    assert batch.pixels is None and [p for p, _ in batch.failures] == [0]


def test_training_with_decode_gpu_runs_on_the_cpu_and_skips_bad_files(base_cfg, caplog):
    from cfg import CFG
    from clipcls.commands.train import main
    from tests.conftest import cfg_argv

    root = Path(base_cfg["train_dataset_dir"])
    (root / "red" / "empty.jpg").write_bytes(b"")
    cfg = {**base_cfg, "decode": "gpu", "augment": "trivialaugment", "test_size": 0.1}
    assert main(cfg_argv(cfg), CFG) == 0
    metrics = json.loads((Path(cfg["output_dir"]) / "test" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["global_step"] == 3  # 22 training images (25 less 3 for validation) in batches of 8
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert f"skipping unreadable image: cannot load image {root / 'red' / 'empty.jpg'}: " in caplog.text


def test_the_datamodule_hands_decode_gpu_batches_to_the_device_decoder(base_cfg):
    from clipcls.data.device_decode import EncodedBatch
    from clipcls.data.splits import load_splits
    from clipcls.training.datamodule import ClipDataModule

    cfg = {**base_cfg, "decode": "gpu"}
    data = load_splits(cfg)
    datamodule = ClipDataModule(data, cfg, MEAN, STD)
    encoded = next(iter(datamodule.train_dataloader()))
    assert isinstance(encoded, EncodedBatch) and all(encoded.jpeg)
    batch = datamodule.transfer_batch_to_device(encoded, torch.device("cpu"), 0)
    assert batch.pixels.shape == (8, 3, 32, 32) and batch.labels.tolist() == encoded.labels.tolist()
    val = next(iter(datamodule.val_dataloader()))  # validation keeps the CPU path
    assert val.pixels.shape[1:] == (3, 32, 32)


def test_grouped_augmentation_shares_one_draw_per_group(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photo(40, 40, 0)).save(folder / "same.png")
    paths = [folder / "same.png"] * 6  # one image six times: a group's outputs must then be equal
    seeds = [21, 22, 23, 24, 25, 26]
    dataset = EncodedImageDataset([str(p) for p in paths], np.arange(6))
    encoded = collate_encoded([dataset[k] for k in zip(range(6), seeds)])
    pixels = DeviceDecoder(SIZE, MEAN, STD, "trivialaugment", group=3)(encoded, "cpu").pixels
    for first in (0, 3):
        expected = cpu_pixels(paths[first], "trivialaugment", seeds[first])
        for i in range(first, first + 3):
            torch.testing.assert_close(pixels[i], expected, atol=1e-5, rtol=0)

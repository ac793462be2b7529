"""Tests for clipcls.data.images: every pixel mode to RGB, orientation, and failures."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls.data.images import IMAGE_EXTENSIONS, ImageLoadError, load_image

SIZE = (24, 16)  # width != height so a swapped size would show


def _save(img: Image.Image, path: Path, **params: object) -> Path:
    """Save ``img`` to ``path`` and return the path."""
    img.save(path, **params)
    return path


def _grey_ramp(dtype: type, top: float) -> np.ndarray:
    """A horizontal ramp from 0 to ``top`` over SIZE, as an array of ``dtype``."""
    row = np.linspace(0, top, SIZE[0])
    return np.tile(row, (SIZE[1], 1)).astype(dtype)


def _mode_images() -> dict[str, Image.Image]:
    """One small image per pixel mode load_image must handle."""
    palette = Image.new("RGB", SIZE, (200, 30, 30)).convert("P")
    return {
        "1": Image.new("1", SIZE, 1),
        "L": Image.new("L", SIZE, 128),
        "LA": Image.new("LA", SIZE, (128, 255)),
        "P": palette,
        "RGB": Image.new("RGB", SIZE, (1, 2, 3)),
        "RGBA": Image.new("RGBA", SIZE, (10, 20, 30, 255)),
        "CMYK": Image.new("CMYK", SIZE, (0, 255, 255, 0)),
        "I": Image.fromarray(_grey_ramp(np.int32, 65535)),
        "I;16": Image.fromarray(_grey_ramp(np.uint16, 65535)),
        "I;16B": Image.fromarray(_grey_ramp(np.dtype(">u2"), 65535)),
        "F": Image.fromarray(_grey_ramp(np.float32, 1.0)),
    }


def test_image_extensions_are_lower_case_with_dot() -> None:
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)


@pytest.mark.parametrize("mode", sorted(_mode_images()))
def test_every_mode_becomes_rgb_of_same_size(tmp_path: Path, mode: str) -> None:
    img = _mode_images()[mode]
    assert img.mode == mode
    # TIFF stores every one of these modes as-is, so the loader sees the real mode.
    path = _save(img, tmp_path / f"{mode.replace(';', '_')}.tiff")
    with Image.open(path) as stored:
        assert stored.mode == mode

    out = load_image(path)

    assert out.mode == "RGB"
    assert out.size == SIZE


def test_cmyk_red_stays_red(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", SIZE, (0, 255, 255, 0)), tmp_path / "c.tiff")
    assert load_image(path).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_ramp_keeps_its_grey_levels(tmp_path: Path, mode: str) -> None:
    img = _mode_images()[mode]
    path = _save(img, tmp_path / "ramp.tiff")

    grey = np.asarray(load_image(path))[..., 0]

    # Clipping at 255 would leave only 0 and 255; scaling keeps one level per column.
    assert len(np.unique(grey)) == SIZE[0]
    assert grey.min() == 0 and grey.max() == 255
    assert np.all(np.diff(grey[0].astype(int)) > 0)


def test_16_bit_png_scales_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "g16.png")

    grey = np.asarray(load_image(path))[0, :, 0]

    assert grey.tolist() == [0, 1, 128, 255]


def test_float_image_in_unit_range_scales_to_255(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = _save(Image.fromarray(values), tmp_path / "f.tiff")

    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


def test_fully_transparent_rgba_becomes_white(tmp_path: Path) -> None:
    path = _save(Image.new("RGBA", SIZE, (0, 0, 0, 0)), tmp_path / "t.png")

    pixels = np.asarray(load_image(path))

    assert pixels.shape == (SIZE[1], SIZE[0], 3)
    assert np.all(pixels == 255)


def test_half_transparent_rgba_is_blended_with_white(tmp_path: Path) -> None:
    path = _save(Image.new("RGBA", SIZE, (0, 0, 0, 128)), tmp_path / "half.png")

    r, g, b = load_image(path).getpixel((0, 0))

    assert r == g == b and 120 <= r <= 135


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    img = Image.new("P", SIZE, 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 - 2) * 3)
    img.putpixel((1, 1), 1)
    path = _save(img, tmp_path / "p.png", transparency=0)
    with Image.open(path) as stored:
        assert "transparency" in stored.info

    out = load_image(path)

    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (255, 0, 0)


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (64, 32), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 8, 8))  # white marker in the stored top-left
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(img, tmp_path / "o6.jpg", exif=exif, quality=95)

    out = load_image(path)

    assert out.size == (32, 64)
    # Rotating clockwise moves the top-left corner to the top-right.
    assert min(out.getpixel((28, 3))) > 200
    assert max(out.getpixel((3, 3))) < 50


def test_draft_size_reduces_jpeg_but_not_below_request(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (400, 400), (90, 120, 150)), tmp_path / "big.jpg")

    out = load_image(path, draft_size=(100, 100))

    assert out.mode == "RGB"
    assert 100 <= out.width < 400 and 100 <= out.height < 400
    assert load_image(path).size == (400, 400)


def test_draft_size_is_ignored_for_png(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (400, 400)), tmp_path / "big.png")
    assert load_image(path, draft_size=(100, 100)).size == (400, 400)


def test_truncated_jpeg_raises_with_path(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    full = _save(Image.fromarray(noise), tmp_path / "full.jpg")
    path = tmp_path / "cut.jpg"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(path)

    assert str(path) in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jpg", b""), ("notes.png", b"this is not an image\n")],
)
def test_unreadable_file_raises_with_path(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(ImageLoadError) as info:
        load_image(path)

    assert str(path) in str(info.value)
    assert info.value.reason


def test_missing_file_raises_image_load_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="FileNotFoundError") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("limit", [1000, 6000])  # 2x-over -> error; 1-2x over -> warning
def test_oversized_image_raises_and_limit_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)

    with pytest.raises(ImageLoadError, match="DecompressionBomb") as info:
        load_image(path)

    assert str(path) in str(info.value)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_image_load_error_str_and_pickle() -> None:
    err = ImageLoadError("a/b.jpg", "broken data")

    copy = pickle.loads(pickle.dumps(err))

    assert str(err) == "cannot load image a/b.jpg: broken data"
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))

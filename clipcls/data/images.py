"""Load any image file a user may put in a class folder as an 8-bit RGB PIL image.

Defect datasets are collected from many cameras and tools, so a folder can hold
palette PNGs with transparency, 16-bit TIFFs, CMYK JPEGs and phone photos whose
pixels are stored sideways with an EXIF orientation tag. Every one of them must
reach the model looking the way a person sees it, and every unreadable file must
fail with one exception type that names the file.
"""

from __future__ import annotations

import os
import warnings
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

# Pillow format names we decode, for training, predict and serve alike; Pillow opens many more
# (EPS - handed to Ghostscript where installed -, SGI, PCX, TGA, DDS, QOI, IM, MSP, XBM ...), each
# more decoder code exposed to untrusted files. MPO is how Pillow names many cameras' JPEGs; PPM
# covers PGM and PBM.
ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "WEBP", "GIF", "PPM"})


def check_format(path: str | os.PathLike, image_format: str | None) -> None:
    """Raise ``ImageLoadError`` naming the format unless Pillow identified one of ALLOWED_FORMATS."""
    if image_format not in ALLOWED_FORMATS:
        allowed = ", ".join(sorted(ALLOWED_FORMATS))
        raise ImageLoadError(path, f"image format {image_format or 'unknown'} is not accepted (allowed: {allowed})")


def identify_format(source: str | os.PathLike | IO[bytes]) -> str | None:
    """The Pillow format name of a file that no allowed format's opener accepts (EPS, SGI, TGA
    ...), or None. Only headers are parsed; EPS is named from its signature alone, so its plugin
    (which hands the file to Ghostscript when the pixels are loaded) never touches it."""
    Image.init()
    start = source.tell() if hasattr(source, "tell") else None
    try:
        if hasattr(source, "read"):
            prefix = source.read(16)
            source.seek(start)
        else:
            with open(source, "rb") as handle:
                prefix = handle.read(16)
        eps_accept = Image.OPEN.get("EPS", (None, None))[1]
        if eps_accept is not None and eps_accept(prefix):
            return "EPS"
        others = [f for f in Image.ID if f not in ALLOWED_FORMATS and f != "EPS"]
        with Image.open(source, formats=others) as probe:
            return probe.format
    except Exception:  # noqa: BLE001 - no plugin recognises it: the caller's own error stands
        return None
    finally:
        if start is not None:
            source.seek(start)


def open_image(source: str | os.PathLike | IO[bytes], name: str | os.PathLike | None = None) -> Image.Image:
    """`Image.open` restricted to ALLOWED_FORMATS: the one gate for training, predict and serve.
    A file of another format is refused by its name (``ImageLoadError`` naming `name` or the
    path) before that format's plugin parses it, so an EPS never reaches Ghostscript. Only the
    header is read; the caller decodes (``load()``) and closes."""
    Image.init()  # every plugin registered, so the list below is complete
    # MPO has no opener of its own in current Pillow: the JPEG one returns it
    try:
        return Image.open(source, formats=[f for f in sorted(ALLOWED_FORMATS) if f in Image.OPEN])
    except UnidentifiedImageError:
        claimed = identify_format(source)
        if claimed is None:
            raise
        check_format(name if name is not None else source, claimed)
        raise  # pragma: no cover - an allowed format that Pillow could not open: its own error


_EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 store the picture rotated by 90 degrees (width and height swapped).
_SIDEWAYS_ORIENTATIONS = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255, 255)


class ImageLoadError(Exception):
    """An image file could not be opened, decoded or converted to RGB."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        # Passing both to Exception keeps the error picklable, so it survives the trip
        # back from a DataLoader worker process.
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot load image {os.fspath(self.path)}: {self.reason}"


def load_image(path: str | os.PathLike, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open, fully decode and upright an image, returned as 3-channel 8-bit RGB.

    ``draft_size`` lets the JPEG decoder skip detail that a later resize would throw
    away (it shrinks by powers of two and never below the requested size), which makes
    loading large photos several times faster. Any failure - missing, empty, corrupt or
    truncated file, or an image larger than ``PIL.Image.MAX_IMAGE_PIXELS`` - raises
    ``ImageLoadError`` naming the file.
    """
    try:
        # Pillow only *warns* for images between MAX_IMAGE_PIXELS and twice that; make the
        # warning an error here, locally, so oversized files are rejected at every size
        # without touching the global limit. (catch_warnings swaps process-wide filter
        # state; that is safe with DataLoader worker processes, not with threads.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(path) as img:
                if draft_size is not None:
                    _draft_jpeg(img, draft_size)
                upright = ImageOps.exif_transpose(img)
                # Decode every pixel now so truncated files fail here, inside the
                # try, rather than later in a transform far from the file name.
                upright.load()
                return to_rgb(upright)
    except ImageLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types
        # OSError, SyntaxError, ValueError, struct.error, the bomb error/warning...:
        # Pillow's plugins do not share one base class, so catch them all and keep the
        # original as __cause__ for debugging.
        raise ImageLoadError(path, f"{type(exc).__name__}: {exc}") from exc


def _draft_jpeg(img: Image.Image, draft_size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for a reduced-size decode that still covers ``draft_size``.

    ``draft_size`` is in upright (displayed) coordinates, but the decoder works on the
    stored pixels, so the request is swapped for sideways-stored photos.
    """
    if img.format != "JPEG":
        return
    width, height = draft_size
    if img.getexif().get(_EXIF_ORIENTATION) in _SIDEWAYS_ORIENTATIONS:
        width, height = height, width
    img.draft("RGB", (width, height))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to a new 8-bit RGB image."""
    if img.mode.startswith("I") or img.mode == "F":
        return _to_8bit_grey(img).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return _flatten_on_white(img)
    rgb = img.convert("RGB")
    # convert() returns the same object for RGB input; hand back an independent copy
    # so the caller never holds an image tied to the closed file.
    return rgb.copy() if rgb is img else rgb


def _flatten_on_white(img: Image.Image) -> Image.Image:
    """Composite transparent areas onto white.

    Dropping the alpha channel instead would expose whatever colour the encoder left
    under transparent pixels - often black or random noise - which the model would
    learn as if it were part of the object.
    """
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float grey image to 8 bits, keeping its grey levels.

    Pillow's own conversion to "L" clips at 255, which turns a 16-bit image into an
    almost binary one; scaling by the value range keeps the picture.
    """
    values = np.asarray(img, dtype=np.float64)
    low, high = _grey_range(img.mode, values)
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _grey_range(mode: str, values: np.ndarray) -> tuple[float, float]:
    """Return the (black, white) values for a high-bit-depth grey image.

    The range follows the data's bit depth rather than its contents wherever the depth
    is known, so a dark 16-bit picture stays dark instead of being contrast-stretched.
    """
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    if mode == "F" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0  # float images conventionally hold 0..1
    if low >= 0.0 and high <= 255.0:
        return 0.0, 255.0  # already 8-bit values, e.g. an "L" image converted to "I"
    if mode == "I" and low >= 0.0 and high <= 65535.0:
        return 0.0, 65535.0  # 16-bit data held in 32 bits (TIFF, older PNG readers)
    # No known depth fits (negative or >16-bit values): stretch the actual range.
    return low, max(high, low + 1.0)

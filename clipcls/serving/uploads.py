"""Uploaded images: read from multipart or base64 JSON, checked against the server's limits and
decoded, each failure an `UploadError` carrying the 4xx status and a message naming the image."""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from clipcls.data.images import ImageLoadError, check_format, load_image


class UploadError(Exception):
    """A request the server refuses: HTTP `status` (4xx, or 503 when it is too busy) and a
    message naming the problem; `headers` go with the reply (Retry-After, WWW-Authenticate)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    max_body_bytes: int = 20 * 2**20  # the whole request body
    max_images: int = 64  # images per request
    max_pixels: int = 40_000_000  # width x height of one image (below Pillow's bomb limit, 89 MP)
    max_queue: int = 256  # images waiting for the model, all requests together; more -> 503
    body_timeout_s: float = 30.0  # to receive one request body; slower -> 408
    request_timeout_s: float = 60.0  # to answer one request, body included; later -> 503
    health_timeout_s: float = 10.0  # for the batcher to answer /health's ping; later -> 503
    max_buffered_bytes: int = 256 * 2**20  # JSON bodies held in memory, all requests together


@dataclass
class Upload:
    """One uploaded file: a name to report it by, and its bytes (in memory, or spooled to a
    temporary file by the multipart parser, so a large upload is not held in memory)."""

    name: str
    file: BinaryIO
    size: int

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Upload:
        return cls(name, io.BytesIO(data), len(data))


def parse_json(body: bytes) -> list[Upload]:
    """{"images": ["<base64>", {"name": "a.jpg", "data": "<base64>"}, ...]}."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UploadError(400, f"request body is not valid JSON: {err}") from err
    except RecursionError as err:  # `[[[[...` deeper than the interpreter's recursion limit
        raise UploadError(400, "request body is JSON nested too deeply") from err
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list):
        raise UploadError(400, 'JSON body must be an object with a list "images" of base64 strings')
    uploads = []
    for i, item in enumerate(images):
        name, data = (
            (item.get("name", f"image {i}"), item.get("data")) if isinstance(item, dict) else (f"image {i}", item)
        )
        if not isinstance(data, str):
            raise UploadError(400, f"{name}: expected a base64 string")
        try:
            uploads.append(Upload.from_bytes(str(name), base64.b64decode(data, validate=True)))
        except (binascii.Error, ValueError) as err:
            raise UploadError(400, f"{name}: invalid base64: {err}") from err
    return uploads


def check_count(uploads: list[Upload], limits: Limits) -> list[Upload]:
    """At least one image and at most `max_images`."""
    if not uploads:
        raise UploadError(400, "no images in the request (multipart files or JSON 'images')")
    if len(uploads) > limits.max_images:
        raise UploadError(413, f"{len(uploads)} images in one request; the limit is {limits.max_images}")
    return uploads


def decode(upload: Upload, limits: Limits, draft_size: tuple[int, int]) -> Image.Image:
    """The upright RGB image, decoded like a file by `clipcls predict` (`load_image`: EXIF
    rotation, any mode to RGB, reduced JPEG decode); the size is checked from the header first,
    so an oversized image is refused before its pixels are decoded."""
    if not upload.size:
        raise UploadError(400, f"{upload.name}: empty file")
    try:
        upload.file.seek(0)
        with Image.open(upload.file) as probe:
            width, height = probe.size
            image_format = probe.format
    except UnidentifiedImageError as err:
        raise UploadError(415, f"{upload.name}: not an image (Pillow cannot identify its format)") from err
    except Image.DecompressionBombError as err:
        raise UploadError(413, f"{upload.name}: {err}") from err
    except Exception as err:  # noqa: BLE001 - Pillow's plugins raise many types on bad headers
        raise UploadError(400, f"{upload.name}: corrupt image header ({type(err).__name__}: {err})") from err
    if width * height > limits.max_pixels:
        raise UploadError(
            413, f"{upload.name}: {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}"
        )
    try:
        check_format(upload.name, image_format)
    except ImageLoadError as err:
        raise UploadError(415, f"{upload.name}: {err.reason}") from err
    try:
        upload.file.seek(0)
        return load_image(upload.file, draft_size=draft_size)
    except ImageLoadError as err:
        raise UploadError(400, f"{upload.name}: corrupt image ({err.reason})") from err

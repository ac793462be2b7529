"""Reading a /predict request under the server's limits: the body is streamed, never held whole
unless it is JSON; multipart files are spooled by Starlette's parser (to a temporary file past
64 KiB), so a junk upload costs disk, not memory; a slow body gets a 408; a client that goes away
ends its request quietly.

Every refusal is an `UploadError` (a 4xx naming the problem, or 503 when the server is full).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from clipcls.serving.uploads import Limits, Upload, UploadError, check_count, parse_json

# A file part is kept in memory up to this size, then moved to a temporary file (Starlette's
# default, 1 MiB, let 64 files of 300 KB hold a whole 20 MB body in memory per connection).
SPOOL_BYTES = 64 * 2**10


class ClientGone(Exception):
    """The client closed the connection before its request was read; nobody is left to answer."""


class MemoryBudget:
    """Bytes of request bodies held in memory by all requests together (JSON bodies must be read
    whole): a request that would pass `limit` is refused with 503 instead of growing the heap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            raise UploadError(
                503,
                f"server busy: {self.used} bytes of request bodies already held (limit {self.limit}); retry later",
                {"Retry-After": "1"},
            )
        self.used += size

    def give(self, size: int) -> None:
        self.used -= size


async def body_chunks(request: Any, limit: int) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, refused with 413 as soon as it passes `limit` bytes
    (whether or not the client sent a Content-Length)."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"request body of {declared} bytes; the limit is {limit}")
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadError(413, f"request body over {limit} bytes")
            yield chunk
    except ClientDisconnect as err:
        raise ClientGone() from err


async def read_json(request: Any, limits: Limits, budget: MemoryBudget) -> list[Upload]:
    """The images of an application/json body, read whole under the shared memory budget."""
    body, held = bytearray(), 0
    try:
        async for chunk in body_chunks(request, limits.max_body_bytes):
            budget.take(len(chunk))
            held += len(chunk)
            body += chunk
        return check_count(parse_json(bytes(body)), limits)
    finally:
        budget.give(held)


async def read_multipart(request: Any, limits: Limits) -> list[Upload]:
    """The files of a multipart/form-data body, parsed as it arrives; more files than
    `max_images` is a 413 whenever the parser notices, like any other over-limit request."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    class SpoolingParser(MultiPartParser):
        spool_max_size = SPOOL_BYTES

    parser = SpoolingParser(
        request.headers,
        body_chunks(request, limits.max_body_bytes),
        max_files=limits.max_images,
        max_fields=limits.max_images,
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        if err.message.startswith(("Too many files", "Too many fields")):
            raise UploadError(
                413, f"more than {limits.max_images} images in one request; the limit is {limits.max_images}"
            ) from err
        raise UploadError(400, f"malformed multipart body: {err.message}") from err
    uploads = []
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                raise UploadError(400, f"form field {key!r} is text; send images as files")
            uploads.append(Upload(value.filename or key, value.file, value.size or 0))
        return check_count(uploads, limits)
    except UploadError:
        await form.close()
        raise


async def read_uploads(request: Any, limits: Limits, budget: MemoryBudget) -> list[Upload]:
    """The images of a multipart/form-data or application/json request, received within
    `body_timeout_s` (slower: 408). The content type is checked before any of the body is read."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        reading = read_json(request, limits, budget)
    elif content_type.startswith("multipart/form-data"):
        reading = read_multipart(request, limits)
    else:
        raise UploadError(415, f"content type {content_type or 'none'!r}: send multipart/form-data or application/json")
    try:
        return await asyncio.wait_for(reading, limits.body_timeout_s)
    except asyncio.TimeoutError as err:
        raise UploadError(408, f"request body not received within {limits.body_timeout_s:g} s") from err


def close_uploads(uploads: list[Upload]) -> None:
    """Release the uploads' files (spooled temporary files are deleted on close)."""
    for upload in uploads:
        upload.file.close()

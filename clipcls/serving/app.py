"""The FastAPI application: `POST /predict` (multipart files or base64 JSON) -> top-k classes and
probabilities per image, `GET /health`; requests are scored in dynamic batches.

Why FastAPI + uvicorn rather than LitServe: LitServe is itself built on FastAPI and uvicorn, and
adds inference worker processes that each hold a copy of the model; on the small CPU boxes this
is meant for (2 cores here) one process whose model thread batches concurrent requests is
lighter, and owning the request handling keeps every refusal an explicit 4xx that names the
problem. The batching it would give is the 50 lines of `Batcher` below.

Threads: uploads are decoded one at a time on one thread (Pillow releases the GIL while decoding;
`load_image`'s warning filter is process-wide, so decoders must not overlap), and the model runs on
another, so decoding the next request overlaps scoring the current batch.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from clipcls.optional import require
from clipcls.serving.backend import Backend
from clipcls.serving.uploads import Limits, Upload, UploadError, check_count, decode, parse_json


class Batcher:
    """Collects model inputs from concurrent requests into batches of at most `max_batch`,
    waiting at most `max_wait_s` after the first for others to join, and scores each batch once."""

    def __init__(self, score: Callable[[list[Any]], np.ndarray], max_batch: int, max_wait_s: float) -> None:
        self.score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="clipcls-model")
        self.batches = 0  # batches scored (for /health and tests)

    async def submit(self, items: list[Any]) -> np.ndarray:
        """Probabilities (N, C) for `items`, scored alongside other requests' items."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures):
            self.queue.put_nowait((item, future))
        return np.stack(await asyncio.gather(*futures))

    async def next_batch(self) -> list[tuple[Any, asyncio.Future]]:
        """The first waiting item and whatever else arrives within `max_wait_s`."""
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self.queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self.queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        return batch

    async def run(self) -> None:
        """Score batches until cancelled; a failing batch fails only its own requests."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            live = [(item, fut) for item, fut in batch if not fut.done()]  # skip cancelled requests
            if not live:
                continue
            try:
                probs = await loop.run_in_executor(self.executor, self.score, [item for item, _ in live])
            except Exception as err:  # noqa: BLE001 - reported to the requests, the server keeps serving
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.batches += 1
            for (_, fut), row in zip(live, probs):
                if not fut.done():
                    fut.set_result(row)


def top_classes(probs: np.ndarray, names: list[str], k: int) -> list[dict[str, Any]]:
    """The k most probable classes of one image, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": names[i], "probability": float(probs[i])} for i in order]


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (whether or not the
    client sent a Content-Length)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"request body of {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_uploads(request: Any, limits: Limits) -> list[Upload]:
    """The images of a multipart/form-data or application/json request."""
    from starlette.requests import Request

    body = await read_body(request, limits.max_body_bytes)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return check_count(parse_json(body), limits)
    if not content_type.startswith("multipart/form-data"):
        raise UploadError(415, f"content type {content_type or 'none'!r}: send multipart/form-data or application/json")

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=limits.max_images + 1, max_fields=limits.max_images + 1)
    uploads = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            raise UploadError(400, f"form field {key!r} is text; send images as files")
        uploads.append(Upload(value.filename or key, await value.read()))
    return check_count(uploads, limits)


def create_app(
    backend: Backend,
    limits: Limits | None = None,
    top_k: int = 3,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    model_name: str = "",
) -> Any:
    """The FastAPI app serving `backend`."""
    fastapi = require("fastapi", "clipcls serve")
    require("python_multipart", "clipcls serve (multipart uploads)")
    from fastapi.responses import JSONResponse

    limits = limits or Limits()
    batcher = Batcher(backend.score, max_batch, max_wait_ms / 1000)
    decoder = ThreadPoolExecutor(1, thread_name_prefix="clipcls-decode")

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.executor.shutdown(wait=False)
        decoder.shutdown(wait=False)

    app = fastapi.FastAPI(title="clipcls", lifespan=lifespan)

    @app.exception_handler(UploadError)
    async def refuse(request: Any, err: UploadError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    def prepare(upload: Upload) -> Any:
        return backend.prepare(decode(upload, limits, backend.draft_size))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "backend": backend.kind,
            "scorer": backend.scorer,
            "classes": backend.class_names,
            "batches": batcher.batches,
        }

    @app.post("/predict")
    async def predict(request: fastapi.Request, k: int = top_k) -> dict[str, Any]:
        if k < 1:
            raise UploadError(400, f"k must be >= 1, got {k}")
        uploads = await read_uploads(request, limits)
        loop = asyncio.get_running_loop()
        items = [await loop.run_in_executor(decoder, prepare, upload) for upload in uploads]
        probs = await batcher.submit(items)
        k = min(k, len(backend.class_names))
        return {
            "scorer": backend.scorer,
            "predictions": [
                {"name": up.name, "label": tops[0]["class"], "probability": tops[0]["probability"], "top_k": tops}
                for up, tops in ((up, top_classes(p, backend.class_names, k)) for up, p in zip(uploads, probs))
            ],
        }

    return app

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
import hmac
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from clipcls.optional import require
from clipcls.serving.backend import Backend
from clipcls.serving.intake import ClientGone, MemoryBudget, close_uploads, read_uploads
from clipcls.serving.uploads import Limits, Upload, UploadError, decode

_PING = object()  # a queue entry that wakes the batcher for /health; never scored


class Batcher:
    """Collects model inputs from concurrent requests into batches of at most `max_batch`,
    waiting at most `max_wait_s` after the first for others to join, and scores each batch once.
    At most `max_queue` inputs wait: more is refused with 503 and a Retry-After estimate."""

    def __init__(
        self, score: Callable[[list[Any]], np.ndarray], max_batch: int, max_wait_s: float, max_queue: int = 256
    ) -> None:
        self.score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future | None]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="clipcls-model")
        self.batches = 0  # batches scored (for /health and tests)
        self.batch_seconds = 0.0  # how long the last batch took (for Retry-After)
        self.pings: list[asyncio.Future] = []

    async def submit(self, items: list[Any]) -> np.ndarray:
        """Probabilities (N, C) for `items`, scored alongside other requests' items."""
        waiting = self.queue.qsize()
        if waiting + len(items) > self.max_queue:
            wait_s = math.ceil((waiting / self.max_batch + 1) * max(self.batch_seconds, self.max_wait_s))
            raise UploadError(
                503,
                f"server busy: {waiting} images already wait for the model (limit {self.max_queue}); retry later",
                {"Retry-After": str(max(1, wait_s))},
            )
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

    async def ping(self) -> None:
        """Returns once the batcher has finished its current batch and its model thread has
        answered: what /health waits for (a stuck model never returns)."""
        future = asyncio.get_running_loop().create_future()
        self.pings.append(future)
        self.queue.put_nowait((_PING, None))  # wakes an idle batcher
        await future

    async def run(self) -> None:
        """Score batches until cancelled; a failing batch fails only its own requests."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            live = [(item, fut) for item, fut in batch if fut is not None and not fut.done()]  # skip cancelled
            if live:
                await self.score_batch(live)
            elif self.pings:
                await loop.run_in_executor(self.executor, int)  # the model thread answers
            pings, self.pings = self.pings, []
            for fut in pings:
                if not fut.done():
                    fut.set_result(None)

    async def score_batch(self, live: list[tuple[Any, asyncio.Future]]) -> None:
        """Score one batch on the model thread and hand each request its rows (or the error)."""
        start = time.monotonic()
        try:
            probs = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.score, [item for item, _ in live]
            )
        except Exception as err:  # noqa: BLE001 - reported to the requests, the server keeps serving
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(err)
            return
        self.batches += 1
        self.batch_seconds = time.monotonic() - start
        for (_, fut), row in zip(live, probs):
            if not fut.done():
                fut.set_result(row)


def top_classes(probs: np.ndarray, names: list[str], k: int) -> list[dict[str, Any]]:
    """The k most probable classes of one image, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": names[i], "probability": float(probs[i])} for i in order]


def create_app(
    backend: Backend,
    limits: Limits | None = None,
    top_k: int = 3,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    model_name: str = "",
    token: str | None = None,
) -> Any:
    """The FastAPI app serving `backend`; with `token`, /predict (and /health's details) need
    `Authorization: Bearer <token>`."""
    fastapi = require("fastapi", "clipcls serve")
    require("python_multipart", "clipcls serve (multipart uploads)")
    from fastapi.responses import JSONResponse, Response

    limits = limits or Limits()
    batcher = Batcher(backend.score, max_batch, max_wait_ms / 1000, limits.max_queue)
    budget = MemoryBudget(limits.max_buffered_bytes)
    decoder = ThreadPoolExecutor(1, thread_name_prefix="clipcls-decode")

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        app.state.batcher_task = asyncio.create_task(batcher.run())
        yield
        app.state.batcher_task.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)
        decoder.shutdown(wait=False, cancel_futures=True)

    app = fastapi.FastAPI(title="clipcls", lifespan=lifespan)
    app.state.batcher, app.state.limits = batcher, limits

    @app.exception_handler(UploadError)
    async def refuse(request: Any, err: UploadError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(ClientGone)
    async def gone(request: Any, err: ClientGone) -> Response:
        return Response(status_code=400)  # nobody reads it; not an error of the server's

    def authorized(request: Any) -> bool:
        if token is None:
            return True
        sent = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(sent, f"Bearer {token}".encode())

    def prepare(upload: Upload) -> Any:
        return backend.prepare(decode(upload, limits, backend.draft_size))

    async def batcher_problem() -> str | None:
        """Why the batcher cannot score now, or None when it answered a ping in time."""
        if app.state.batcher_task.done():
            return "the batcher has stopped"
        try:
            await asyncio.wait_for(batcher.ping(), limits.health_timeout_s)
        except asyncio.TimeoutError:
            return f"the model has not answered within {limits.health_timeout_s:g} s"
        return None

    @app.get("/health")
    async def health(request: fastapi.Request) -> JSONResponse:
        problem = await batcher_problem()
        body: dict[str, Any] = {"status": "ok"} if problem is None else {"status": "unavailable", "detail": problem}
        if authorized(request):
            body.update(
                model=model_name,
                backend=backend.kind,
                scorer=backend.scorer,
                classes=backend.class_names,
                batches=batcher.batches,
            )
        return JSONResponse(body, status_code=200 if problem is None else 503)

    async def score_request(request: Any) -> tuple[list[Upload], np.ndarray]:
        """Read, decode and score one request's images."""
        uploads = await read_uploads(request, limits, budget)
        try:
            loop = asyncio.get_running_loop()
            items = [await loop.run_in_executor(decoder, prepare, upload) for upload in uploads]
            return uploads, await batcher.submit(items)
        finally:
            close_uploads(uploads)

    @app.post("/predict")
    async def predict(request: fastapi.Request, k: int = top_k) -> dict[str, Any]:
        if not authorized(request):
            raise UploadError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if k < 1:
            raise UploadError(400, f"k must be >= 1, got {k}")
        try:
            uploads, probs = await asyncio.wait_for(score_request(request), limits.request_timeout_s)
        except asyncio.TimeoutError as err:
            raise UploadError(
                503, f"request not answered within {limits.request_timeout_s:g} s; retry later", {"Retry-After": "1"}
            ) from err
        k = min(k, len(backend.class_names))
        return {
            "scorer": backend.scorer,
            "predictions": [
                {"name": up.name, "label": tops[0]["class"], "probability": tops[0]["probability"], "top_k": tops}
                | {"verdict": verdict, "rule": rule}  # the class or "uncertain", and what decided it
                for up, tops, verdict, rule in zip(
                    uploads, (top_classes(p, backend.class_names, k) for p in probs), *backend.decide(probs)
                )
            ],
        }

    return app

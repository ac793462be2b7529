"""`clipcls serve`'s request handling under hostile or careless clients, in-process: each refusal
is the documented status with a message naming the problem, and nothing reaches the log as an
error. The model is a stand-in (tests/serve_fakes.py) held on an event, so a busy or stuck model
is a state the test sets, not a time window it hopes for."""

from __future__ import annotations

import asyncio
import logging
import threading
import tracemalloc

import httpx
import pytest
from fastapi.testclient import TestClient  # noqa: E402  (a required test dependency: no importorskip)

from clipcls.serving.app import create_app
from clipcls.serving.server import server_config
from clipcls.serving.uploads import Limits
from tests.serve_fakes import GatedModel, files, image_bytes, running, wait_until

PNG = image_bytes("PNG")


def test_deeply_nested_json_is_a_400_not_a_500():
    app = create_app(GatedModel().backend())
    with TestClient(app, raise_server_exceptions=False) as client:
        reply = client.post("/predict", content=b"[" * 100_000, headers={"content-type": "application/json"})
        assert reply.status_code == 400
        assert reply.json()["detail"] == "request body is JSON nested too deeply"
        assert client.post("/predict", files=files(("a.png", PNG))).status_code == 200  # still serving


@pytest.mark.parametrize("count", [5, 6, 40])
def test_too_many_files_is_a_413_at_every_count(count: int):
    """max_images=4: 5 files and 6 files (the form parser's own limit) and 40 all get the same 413."""
    app = create_app(GatedModel().backend(), Limits(max_images=4))
    with TestClient(app) as client:
        reply = client.post("/predict", files=files(*[(f"{i}.png", PNG) for i in range(count)]))
        assert reply.status_code == 413, reply.text
        assert reply.json()["detail"] == "more than 4 images in one request; the limit is 4"
        assert client.post("/predict", files=files(*[(f"{i}.png", PNG) for i in range(4)])).status_code == 200


def asgi_post(app, body: bytes, content_type: bytes, chunk: int = 65536, disconnect_after: int | None = None):
    """Run one POST /predict through the ASGI app (with its lifespan), the body in `chunk`-byte
    messages, optionally an http.disconnect after `disconnect_after` chunks; -> (status, body)."""
    sent: list[dict] = []

    async def main() -> None:
        lifespan_in: asyncio.Queue = asyncio.Queue()
        lifespan_out: asyncio.Queue = asyncio.Queue()
        await lifespan_in.put({"type": "lifespan.startup"})
        life = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_in.get, lifespan_out.put)
        )
        assert (await lifespan_out.get())["type"] == "lifespan.startup.complete"
        pieces = range(0, len(body), chunk)  # sliced as sent: the client's copy is not the server's memory
        state = {"i": 0}

        async def receive() -> dict:
            i = state["i"]
            state["i"] += 1
            if disconnect_after is not None and i >= disconnect_after:
                return {"type": "http.disconnect"}
            return {
                "type": "http.request",
                "body": body[pieces[i] : pieces[i] + chunk],
                "more_body": i + 1 < len(pieces),
            }

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
        await lifespan_in.put({"type": "lifespan.shutdown"})
        await life

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def multipart(name: str, data: bytes, boundary: str = "xyzzy") -> tuple[bytes, bytes]:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}".encode()


def test_a_client_that_disconnects_mid_body_is_not_an_error(caplog):
    """Before: starlette's ClientDisconnect escaped the app (uvicorn logs it as an ERROR traceback)."""
    body, content_type = multipart("a.png", b"\x00" * 300_000)
    with caplog.at_level(logging.INFO):
        status, _ = asgi_post(create_app(GatedModel().backend()), body, content_type, disconnect_after=2)
    assert status == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_large_junk_upload_is_streamed_not_held_in_memory():
    """A 16 MiB junk file: the server's Python heap peaks under 4 MiB (the multipart parser spools
    the file to disk past 1 MiB) and the reply names the upload. Before: the body was held whole,
    then copied (peak > 32 MiB)."""
    body, content_type = multipart("junk.jpg", b"\x00" * (16 * 2**20))
    app = create_app(GatedModel().backend(), Limits(max_body_bytes=20 * 2**20))
    tracemalloc.start()
    try:
        status, reply = asgi_post(app, body, content_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 415 and b"junk.jpg: not an image" in reply
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_many_small_junk_files_are_spooled_too():
    """60 junk files of 300 KB (18 MB): each part moves to disk past 64 KiB, so the heap peaks
    under 8 MiB. With Starlette's default 1 MiB spool every part stayed in memory (> 18 MiB)."""
    boundary = "xyzzy"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.jpg"\r\n\r\n'.encode()
        + bytes([i]) * 300_000
        + b"\r\n"
        for i in range(60)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    app = create_app(GatedModel().backend(), Limits(max_images=64, max_body_bytes=20 * 2**20))
    tracemalloc.start()
    try:
        status, reply = asgi_post(app, body, f"multipart/form-data; boundary={boundary}".encode())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 415 and b"0.jpg: not an image" in reply
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_json_bodies_share_a_memory_budget():
    """JSON must be read whole, so all JSON bodies in memory share max_buffered_bytes: past it, 503."""
    import base64

    payload = {"images": [base64.b64encode(PNG).decode()]}
    small = create_app(GatedModel().backend(), Limits(max_buffered_bytes=10))
    with TestClient(small) as client:
        reply = client.post("/predict", json=payload)
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
        assert "bytes of request bodies already held (limit 10)" in reply.json()["detail"]
    with TestClient(create_app(GatedModel().backend())) as client:  # the budget is given back
        assert [client.post("/predict", json=payload).status_code for _ in range(3)] == [200] * 3


ALLOWED = [
    ("JPEG", "RGB"),
    ("PNG", "RGB"),
    ("BMP", "RGB"),
    ("TIFF", "RGB"),
    ("WEBP", "RGB"),
    ("GIF", "P"),
    ("PPM", "L"),
]
REFUSED = [("TGA", "RGB"), ("PCX", "RGB"), ("SGI", "RGB"), ("IM", "RGB"), ("MSP", "1"), ("XBM", "1"), ("QOI", "RGB")]


def test_image_formats_outside_the_allowlist_are_refused_by_name():
    """Before: every format Pillow opens got a 200 (SGI, PCX, TGA, IM, MSP, XBM, QOI...)."""
    with TestClient(create_app(GatedModel().backend())) as client:
        for fmt, mode in ALLOWED:
            reply = client.post("/predict", files=files((f"a.{fmt.lower()}", image_bytes(fmt, mode=mode))))
            assert reply.status_code == 200, (fmt, reply.text)
        for fmt, mode in REFUSED:
            reply = client.post("/predict", files=files((f"a.{fmt.lower()}", image_bytes(fmt, mode=mode))))
            assert reply.status_code == 415, (fmt, reply.text)
            assert reply.json()["detail"].startswith(f"a.{fmt.lower()}: image format {fmt} is not accepted")


def test_bearer_token(monkeypatch):
    app = create_app(GatedModel().backend(), token="s3cret")
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            reply = client.post("/predict", files=files(("a.png", PNG)), headers=headers)
            assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
            assert reply.json()["detail"] == "missing or wrong bearer token"
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/predict", files=files(("a.png", PNG)), headers=good).status_code == 200
        assert client.get("/health").json() == {"status": "ok"}  # a probe learns no more without it
        assert client.get("/health", headers=good).json()["classes"] == ["cat", "dog", "owl"]


def in_thread(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    thread.start()
    return thread, out


def test_full_queue_is_a_503_with_retry_after_and_health_reports_a_stuck_model():
    """The model is held: one request inside it, a second waits in the queue (max_queue 2);
    a third of 2 images would pass the bound -> 503 + Retry-After at once; /health -> 503 naming
    the model. Released, every queued request is answered and /health is ok again."""
    model = GatedModel(open_=False)
    limits = Limits(max_images=2, max_queue=2, health_timeout_s=0.2)
    app = create_app(model.backend(), limits, max_batch=1, max_wait_ms=0)
    with running(server_config(app, port=0)) as (server, port, _):
        url = f"http://127.0.0.1:{port}"

        def post(n: int) -> httpx.Response:
            return httpx.post(url + "/predict", files=files(*[("a.png", PNG)] * n), timeout=60)

        first, first_out = in_thread(post, 1)
        assert model.entered.wait(30)
        second, second_out = in_thread(post, 1)
        wait_until(lambda: app.state.batcher.queue.qsize() == 1, what="the second request to queue")
        third = post(2)
        assert third.status_code == 503 and int(third.headers["retry-after"]) >= 1
        assert "1 images already wait for the model (limit 2)" in third.json()["detail"]
        health = httpx.get(url + "/health", timeout=30)
        assert health.status_code == 503
        assert health.json()["detail"] == "the model has not answered within 0.2 s"
        model.gate.set()
        first.join(30), second.join(30)
        assert [r[0].status_code for r in (first_out, second_out)] == [200, 200]
        assert httpx.get(url + "/health", timeout=30).json()["status"] == "ok"
        assert model.sizes == [1, 1]


def test_request_deadline_is_a_503_and_the_server_keeps_serving():
    model = GatedModel(open_=False)
    app = create_app(model.backend(), Limits(body_timeout_s=0.5, request_timeout_s=0.5))
    with TestClient(app) as client:
        reply = client.post("/predict", files=files(("a.png", PNG)))
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
        assert reply.json()["detail"] == "request not answered within 0.5 s; retry later"
        model.gate.set()
        assert client.post("/predict", files=files(("a.png", PNG))).status_code == 200


def test_health_reports_a_stopped_batcher():
    app = create_app(GatedModel().backend())
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200

        async def stop() -> None:  # on the app's own event loop
            app.state.batcher_task.cancel()
            await asyncio.gather(app.state.batcher_task, return_exceptions=True)

        client.portal.call(stop)
        reply = client.get("/health")
        assert reply.status_code == 503 and reply.json()["detail"] == "the batcher has stopped"

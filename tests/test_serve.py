"""`clipcls serve`: the app answers, refuses bad uploads with a 4xx naming them, keeps serving,
and batches concurrent requests; from an HF export (PyTorch) and from an ONNX export."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import fastapi.testclient as fastapi_testclient  # noqa: E402  (a required test dependency: no importorskip)
import numpy as np
import pytest
from PIL import Image

from clipcls.commands import export, serve
from clipcls.inference.predictor import load_predictor
from clipcls.serving.app import create_app
from clipcls.serving.backend import load_backend
from clipcls.serving.server import server_config
from clipcls.serving.uploads import Limits
from tests.conftest import CLASSES, tiny_hf_export, write_images
from tests.serve_fakes import running, wait_until


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    write_images(root)
    hf = tiny_hf_export(root)
    assert export.main([str(hf), "--out", str(root / "onnx"), "--format", "onnx"]) == 0
    return {"hf": hf, "onnx": root / "onnx"}


@pytest.fixture(scope="module")
def jpegs(models: dict[str, Path]) -> list[Path]:
    train = models["hf"].parent / "train"
    return [train / name / f"{i}.jpg" for name in CLASSES for i in range(2)]


def files(*items: tuple[str, bytes]) -> list:
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


@pytest.mark.parametrize("kind", ["hf", "onnx"])
def test_answers_refuses_bad_uploads_and_keeps_serving(kind: str, models, jpegs: list[Path]):
    backend = load_backend(models[kind], threads=1)
    limits = Limits(max_body_bytes=200_000, max_images=4, max_pixels=64 * 64)
    app = create_app(backend, limits, top_k=2, model_name=str(models[kind]))
    good = [(p.name, p.read_bytes()) for p in jpegs[:3]]
    want = load_predictor(models["hf"], device="cpu").predict([str(p) for p in jpegs[:3]]).probabilities
    with fastapi_testclient.TestClient(app) as client:
        health = client.get("/health").json()
        assert (health["status"], health["classes"]) == ("ok", list(CLASSES))
        assert health["backend"] == {"hf": "pytorch", "onnx": "onnxruntime"}[kind]

        reply = client.post("/predict", files=files(*good))
        assert reply.status_code == 200
        preds = reply.json()["predictions"]
        assert [p["name"] for p in preds] == [name for name, _ in good]
        for pred, row in zip(preds, want):
            assert len(pred["top_k"]) == 2 and pred["label"] == list(CLASSES)[int(row.argmax())]
            # PyTorch: the same preprocessing as predict; ONNX: PIL's resize in numpy vs torchvision's
            tolerance = {"hf": 1e-6, "onnx": 5e-3}[kind]
            assert pred["probability"] == pytest.approx(float(row.max()), abs=tolerance)

        refusals = {
            "corrupt.jpg": (files(("corrupt.jpg", good[0][1][:200])), 400),
            "notes.txt": (files(("notes.txt", b"not an image")), 415),
            "big.png": (files(("big.png", png(80, 80))), 413),  # 6400 pixels > 64 * 64
            "more than 4 images": (files(*good, *good[:2]), 413),
            "200000": (files(("huge.jpg", b"\xff" * 250_000)), 413),
            "image 0: invalid base64": (None, 400),
        }
        for needle, (upload, status) in refusals.items():
            if upload is None:
                reply = client.post("/predict", json={"images": ["not base64!"]})
            else:
                reply = client.post("/predict", files=upload)
            assert reply.status_code == status, reply.text
            assert needle in reply.json()["detail"]

        b64 = base64.b64encode(good[1][1]).decode()
        reply = client.post("/predict?k=1", json={"images": [{"name": "x.jpg", "data": b64}]})
        assert reply.status_code == 200  # still serving after every refusal
        assert reply.json()["predictions"][0]["top_k"][0]["class"] == preds[1]["label"]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_concurrent_requests_are_batched_on_a_real_socket(models, jpegs: list[Path]):
    """uvicorn on 127.0.0.1 (an ephemeral port), 8 concurrent requests, one corrupt: every good
    one answered, the corrupt one a 400. The model's first batch is held until the other good
    requests wait in the queue (a state, not a time window), so they must form one second batch."""
    import httpx

    backend = load_backend(models["onnx"], threads=1)
    sizes: list[int] = []
    app = create_app(replace(backend, score=lambda items: held_first(items, sizes)), max_batch=8)
    queued = threading.Event()

    def held_first(items: list, sizes: list[int]) -> np.ndarray:
        if not sizes:  # the first batch waits until the others have queued behind it
            waiting = lambda: app.state.batcher.queue.qsize()  # noqa: E731
            wait_until(lambda: len(items) + waiting() == 7, what="the other good requests to queue")
            queued.set()
        sizes.append(len(items))
        return backend.score(items)

    bodies = [jpegs[i % len(jpegs)].read_bytes() for i in range(7)] + [jpegs[0].read_bytes()[:200]]

    def post(data: bytes) -> int:
        with httpx.Client(timeout=30) as client:
            return client.post(f"http://127.0.0.1:{port}/predict", files=files(("a.jpg", data))).status_code

    with running(server_config(app, port=0)) as (_, port, _):
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(post, bodies))
        with httpx.Client(timeout=30) as client:
            batches = client.get(f"http://127.0.0.1:{port}/health").json()["batches"]
    assert codes == [200] * 7 + [400]
    assert queued.is_set() and len(sizes) == batches == 2 and sum(sizes) == 7


def test_serve_usage_errors_exit_2(models, capsys):
    assert serve.main([str(models["onnx"]), "--max-batch", "0"]) == 2
    assert "--max-batch must be >= 1" in capsys.readouterr().err
    assert serve.main([str(models["onnx"] / "missing")]) == 2


def test_batch_scores_match_single_scores(models, jpegs: list[Path]):
    """Dynamic batching must not change an image's probabilities."""
    backend = load_backend(models["onnx"], threads=1)
    items = [backend.prepare(Image.open(p).convert("RGB")) for p in jpegs]
    together = backend.score(items)
    alone = np.concatenate([backend.score([item]) for item in items])
    assert np.abs(together - alone).max() < 1e-5

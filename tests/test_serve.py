"""`clipcls serve`: the app answers, refuses bad uploads with a 4xx naming them, keeps serving,
and batches concurrent requests; from an HF export (PyTorch) and from an ONNX export."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls.commands import export, serve
from clipcls.inference.predictor import load_predictor
from clipcls.serving.app import create_app
from clipcls.serving.backend import load_backend
from clipcls.serving.uploads import Limits
from tests.conftest import CLASSES, tiny_hf_export, write_images

fastapi_testclient = pytest.importorskip("fastapi.testclient")


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
            assert pred["probability"] == pytest.approx(float(row.max()), abs=5e-3)  # PIL vs torchvision resize

        refusals = {
            "corrupt.jpg": (files(("corrupt.jpg", good[0][1][:200])), 400),
            "notes.txt": (files(("notes.txt", b"not an image")), 415),
            "big.png": (files(("big.png", png(80, 80))), 413),  # 6400 pixels > 64 * 64
            "5 images": (files(*good, *good[:2]), 413),
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
    one answered, the corrupt one a 400, fewer model batches than requests."""
    import httpx
    import uvicorn

    app = create_app(load_backend(models["onnx"], threads=1), max_batch=8, max_wait_ms=200)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    bodies = [jpegs[i % len(jpegs)].read_bytes() for i in range(7)] + [jpegs[0].read_bytes()[:200]]

    def post(data: bytes) -> int:
        with httpx.Client(timeout=30) as client:
            return client.post(f"http://127.0.0.1:{port}/predict", files=files(("a.jpg", data))).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(post, bodies))
        with httpx.Client(timeout=30) as client:
            batches = client.get(f"http://127.0.0.1:{port}/health").json()["batches"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert codes == [200] * 7 + [400]
    assert 1 <= batches < 7


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

"""`clipcls serve`'s server on a real loopback socket: slow-loris connections are closed, a slow
body gets a 408, connections past --max-concurrency a 503, a shutdown with a slow body in flight
ends within --shutdown-timeout; and the command line passes each flag to the server."""

from __future__ import annotations

import signal
import time

import pytest

from clipcls.commands import serve
from clipcls.serving.app import create_app
from clipcls.serving.server import server_config
from clipcls.serving.uploads import Limits
from tests.serve_fakes import GatedModel, connect, image_bytes, read_all, running, wait_until

HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"


@pytest.mark.parametrize("sent", [b"", HEAD])
def test_a_connection_without_a_complete_request_head_is_closed(sent: bytes):
    """Before: uvicorn kept a connection that sent nothing, or half a head, open for good."""
    app = create_app(GatedModel().backend())
    with running(server_config(app, port=0, header_timeout_s=0.3)) as (_, port, _):
        with connect(port) as sock:
            sock.settimeout(20)
            start = time.monotonic()
            sock.sendall(sent)
            assert read_all(sock) == b""  # closed by the server, nothing sent
            assert time.monotonic() - start < 15


def test_a_slow_body_gets_a_408():
    app = create_app(GatedModel().backend(), Limits(body_timeout_s=0.3))
    with running(server_config(app, port=0)) as (_, port, _):
        with connect(port) as sock:
            sock.sendall(HEAD + b"Content-Length: 1000\r\n\r\n--b\r\n")
            reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"request body not received within 0.3 s" in reply


def test_connections_past_max_concurrency_get_a_503():
    """Two requests held in the model fill --max-concurrency 2; a third connection is refused."""
    model = GatedModel(open_=False)
    app = create_app(model.backend())
    body = multipart_png()
    request = HEAD.replace(b"boundary=b", b"boundary=xyzzy") + b"Content-Length: %d\r\n\r\n" % len(body) + body
    with running(server_config(app, port=0, max_concurrency=2)) as (server, port, _):
        held = [connect(port), connect(port)]
        for sock in held:
            sock.sendall(request)
        wait_until(lambda: len(server.server_state.tasks) == 2, what="two requests in flight")
        with connect(port) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 503 ")
        model.gate.set()
        for sock in held:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            sock.close()


def multipart_png() -> bytes:
    png = image_bytes("PNG")
    head = b'--xyzzy\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    return head + png + b"\r\n--xyzzy--\r\n"


def test_sigterm_with_a_slow_body_in_flight_stops_within_the_shutdown_timeout():
    """Before: uvicorn waited for the request for good (40 s and counting in the issue)."""
    app = create_app(GatedModel().backend())  # the default body timeout (30 s) is far longer
    with running(server_config(app, port=0, shutdown_timeout_s=0.5)) as (server, port, thread):
        with connect(port) as sock:
            sock.sendall(HEAD + b"Content-Length: 100000\r\n\r\n--b\r\n")
            wait_until(lambda: len(server.server_state.tasks) == 1, what="the request to be in flight")
            start = time.monotonic()
            server.handle_exit(signal.SIGTERM, None)  # uvicorn's own SIGTERM handler
            thread.join(timeout=30)
            assert not thread.is_alive()
            assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-concurrency", "0", "--max-concurrency must be >= 1, got 0"),
        ("--max-queue", "0", "--max-queue must be >= 1, got 0"),
        ("--header-timeout", "0", "--header-timeout must be > 0 seconds, got 0.0"),
        ("--request-timeout", "-1", "--request-timeout must be > 0 seconds, got -1.0"),
        ("--body-timeout", "90", "--body-timeout (90 s) must not exceed --request-timeout (60 s)"),
        ("--max-queue", "8", "--max-queue (8) must hold one request of --max-images (64)"),
    ],
)
def test_bad_limits_exit_2_naming_the_flag(tmp_path, capsys, flag: str, value: str, message: str):
    assert serve.main([str(tmp_path), flag, value]) == 2  # refused before the model is loaded
    assert message in capsys.readouterr().err


def test_flags_reach_the_server_and_the_app(tmp_path, monkeypatch, capsys):
    """Every limit flag ends up in uvicorn's config or the app's limits; the token comes from the
    environment; binding beyond loopback without a token warns."""
    import uvicorn

    from clipcls.serving import backend as backend_module

    monkeypatch.setattr(backend_module, "load_backend", lambda *a, **k: GatedModel().backend())
    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: seen.setdefault("config", self.config))
    argv = [str(tmp_path), "--port", "0", "--max-concurrency", "7", "--header-timeout", "3", "--shutdown-timeout", "4"]
    argv += ["--max-queue", "99", "--body-timeout", "5", "--request-timeout", "6", "--health-timeout", "2"]
    monkeypatch.setenv("CLIPCLS_SERVE_TOKEN", "from-env")
    assert serve.main(argv) == 0
    config = seen["config"]
    assert (config.limit_concurrency, config.timeout_graceful_shutdown) == (7 + 1, 4)  # uvicorn counts the new one
    assert config.http.__name__ == "HeaderTimeoutH11Protocol"
    app = config.app
    assert app.state.batcher.max_queue == 99
    limits = app.state.limits
    assert (limits.max_queue, limits.body_timeout_s, limits.request_timeout_s, limits.health_timeout_s) == (99, 5, 6, 2)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok"}  # the env token is in force
        assert "classes" in client.get("/health", headers={"Authorization": "Bearer from-env"}).json()
    assert "warning" not in capsys.readouterr().err
    monkeypatch.delenv("CLIPCLS_SERVE_TOKEN")
    assert serve.main([str(tmp_path), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "0.0.0.0 is reachable from other machines and no token is set" in capsys.readouterr().err

"""`clipcls serve MODEL`: an HTTP prediction server on one host and port (FastAPI + uvicorn).

`--help` imports neither torch nor the server libraries.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from clipcls.commands.common import add_decision_args, add_scorer_arg, decision_options, run_command

EPILOG = """\
MODEL is a run directory, a checkpoint, a HuggingFace export (run by PyTorch) or an ONNX /
OpenVINO export (run by onnxruntime / openvino, no torch).

  POST /predict   images as multipart/form-data files, or JSON {"images": ["<base64>", ...]}
                  (or [{"name": "a.jpg", "data": "<base64>"}]); ?k=N classes per image.
                  -> {"scorer": ..., "predictions": [{"name", "label", "probability",
                      "top_k": [{"class", "probability"}, ...]}, ...]} in upload order
  GET  /health    -> {"status": "ok", "model", "backend", "scorer", "classes", "batches"}, or
                  503 {"status": "unavailable", "detail"} when the model does not answer a ping
                  within --health-timeout s (with --token, only "status"/"detail" without it)

A request is refused with a 4xx naming the problem, and the server keeps serving: 400 corrupt
image, bad JSON or base64, no images; 401 missing/wrong bearer token; 408 body not received
within --body-timeout; 413 body over --max-request-mb, more than --max-images images, an image
over --max-pixels; 415 not an image, an image format outside JPEG/PNG/BMP/TIFF/WebP/GIF/PPM/PGM,
or an unsupported content type. 503 (with Retry-After) when busy: more than --max-concurrency
connections, more than --max-queue images waiting, no answer within --request-timeout.
Concurrent requests are scored together in batches of up to --max-batch images, waiting up to
--max-wait-ms for a batch to fill. A connection that has not sent its request head within
--header-timeout is closed; on SIGTERM / Ctrl-C requests in flight get --shutdown-timeout s.
Bind beyond 127.0.0.1 only behind a reverse proxy (TLS), with a token (--token or
$CLIPCLS_SERVE_TOKEN). Needs pip install 'clipcls[deploy]'.
"""

TOKEN_ENV = "CLIPCLS_SERVE_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    """The command line of `clipcls serve`."""
    parser = argparse.ArgumentParser(
        prog="clipcls serve",
        description="Serve a trained model over HTTP: POST /predict, GET /health.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="run directory, checkpoint, HF export or ONNX/OpenVINO export")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_scorer_arg(parser, "head (default), text (description similarity) or their ensemble")
    add_decision_args(parser)
    parser.add_argument("--top-k", type=int, default=3, help="classes returned per image unless ?k= says (default 3)")
    parser.add_argument("--max-batch", type=int, default=32, help="images scored together at most (default 32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="wait for a batch to fill (default 5 ms)")
    parser.add_argument("--max-request-mb", type=float, default=20.0, help="request body limit (default 20 MB)")
    parser.add_argument("--max-images", type=int, default=64, help="images per request (default 64)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="pixels per image (default 40 MP)")
    parser.add_argument("--device", default="auto", help="cpu, cuda ... for PyTorch models (default auto)")
    parser.add_argument(
        "--threads", type=int, default=None, help="model threads (default: all CPUs or OMP_NUM_THREADS)"
    )
    limits = parser.add_argument_group("limits against overload and slow clients")
    limits.add_argument("--max-concurrency", type=int, default=256, help="connections at once, more: 503 (default 256)")
    limits.add_argument("--max-queue", type=int, default=256, help="images waiting for the model (default 256)")
    limits.add_argument("--header-timeout", type=float, default=10.0, help="to send a request head (default 10 s)")
    limits.add_argument("--body-timeout", type=float, default=30.0, help="to send a request body (default 30 s)")
    limits.add_argument("--request-timeout", type=float, default=60.0, help="to answer a request (default 60 s)")
    limits.add_argument("--health-timeout", type=float, default=10.0, help="for /health's ping (default 10 s)")
    limits.add_argument("--shutdown-timeout", type=float, default=10.0, help="for requests at exit (default 10 s)")
    limits.add_argument(
        "--token", default=None, help=f"require 'Authorization: Bearer TOKEN' (default ${TOKEN_ENV}, else none)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls serve MODEL [--host H] [--port N] ...`; serves until interrupted."""
    return run_command(build_parser(), serve, argv)


def serve(args: argparse.Namespace) -> int:
    """Load the model, build the app and run uvicorn until Ctrl-C / SIGTERM."""
    from clipcls.optional import require
    from clipcls.serving.app import create_app
    from clipcls.serving.backend import load_backend
    from clipcls.serving.server import server_config
    from clipcls.serving.uploads import Limits

    check_limits(args)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    uvicorn = require("uvicorn", "clipcls serve")
    backend = load_backend(args.model, args.scorer, args.device, args.threads, **decision_options(args))
    limits = Limits(
        int(args.max_request_mb * 2**20),
        args.max_images,
        args.max_pixels,
        max_queue=args.max_queue,
        body_timeout_s=args.body_timeout,
        request_timeout_s=args.request_timeout,
        health_timeout_s=args.health_timeout,
    )
    app = create_app(backend, limits, args.top_k, args.max_batch, args.max_wait_ms, str(args.model), token)
    config = server_config(app, args.host, args.port, args.max_concurrency, args.header_timeout, args.shutdown_timeout)
    print(
        f"serving {args.model} ({backend.kind}, {len(backend.class_names)} classes) on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    if not is_loopback(args.host) and token is None:
        print(
            f"warning: {args.host} is reachable from other machines and no token is set; put a reverse proxy "
            f"(TLS) in front and set --token or ${TOKEN_ENV}",
            file=sys.stderr,
        )
    uvicorn.Server(config).run()
    return 0


def check_limits(args: argparse.Namespace) -> None:
    """Refuse limits that cannot work, naming the flag."""
    from clipcls.errors import ClipclsError

    for name in ("max_batch", "max_images", "max_pixels", "top_k", "max_concurrency", "max_queue"):
        if getattr(args, name) < 1:
            raise ClipclsError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("header_timeout", "body_timeout", "request_timeout", "health_timeout", "shutdown_timeout"):
        if not getattr(args, name) > 0:
            raise ClipclsError(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(args, name)}")
    if args.body_timeout > args.request_timeout:
        raise ClipclsError(
            f"--body-timeout ({args.body_timeout:g} s) must not exceed --request-timeout ({args.request_timeout:g} s)"
        )
    if args.max_queue < args.max_images:
        raise ClipclsError(f"--max-queue ({args.max_queue}) must hold one request of --max-images ({args.max_images})")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

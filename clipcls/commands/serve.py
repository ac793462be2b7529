"""`clipcls serve MODEL`: an HTTP prediction server on one host and port (FastAPI + uvicorn).

`--help` imports neither torch nor the server libraries.
"""

from __future__ import annotations

import argparse
import sys

from clipcls.commands.common import add_scorer_arg, run_command

EPILOG = """\
MODEL is a run directory, a checkpoint, a HuggingFace export (run by PyTorch) or an ONNX /
OpenVINO export (run by onnxruntime / openvino, no torch).

  POST /predict   images as multipart/form-data files, or JSON {"images": ["<base64>", ...]}
                  (or [{"name": "a.jpg", "data": "<base64>"}]); ?k=N classes per image.
                  -> {"scorer": ..., "predictions": [{"name", "label", "probability",
                      "top_k": [{"class", "probability"}, ...]}, ...]} in upload order
  GET  /health    -> {"status": "ok", "model", "backend", "scorer", "classes", "batches"}

A request is refused with a 4xx naming the problem, and the server keeps serving: 400 corrupt
image, bad JSON or base64, no images; 413 body over --max-request-mb, more than --max-images
images, an image over --max-pixels; 415 not an image or an unsupported content type.
Concurrent requests are scored together in batches of up to --max-batch images, waiting up to
--max-wait-ms for a batch to fill. Needs pip install 'clipcls[deploy]'.
"""


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
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls serve MODEL [--host H] [--port N] ...`; serves until interrupted."""
    return run_command(build_parser(), serve, argv)


def serve(args: argparse.Namespace) -> int:
    """Load the model, build the app and run uvicorn until Ctrl-C / SIGTERM."""
    from clipcls.errors import ClipclsError
    from clipcls.optional import require
    from clipcls.serving.app import create_app
    from clipcls.serving.backend import load_backend
    from clipcls.serving.uploads import Limits

    for name in ("max_batch", "max_images", "max_pixels", "top_k"):
        if getattr(args, name) < 1:
            raise ClipclsError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    uvicorn = require("uvicorn", "clipcls serve")
    backend = load_backend(args.model, args.scorer, args.device, args.threads)
    limits = Limits(int(args.max_request_mb * 2**20), args.max_images, args.max_pixels)
    app = create_app(backend, limits, args.top_k, args.max_batch, args.max_wait_ms, str(args.model))
    print(
        f"serving {args.model} ({backend.kind}, {len(backend.class_names)} classes) on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

"""Load test of `clipcls serve` on localhost: concurrent clients, a bounded number of requests,
one in every N corrupt. Reports requests/s, p50/p99 latency, status codes (zero 5xx, every
corrupt request a 4xx) and the server's RSS across the run (it must stay flat).

The server runs as its own process (`clipcls serve` on 127.0.0.1, a free port) over an ONNX export
of the built-in tiny CLIP; the clients are threads with one httpx connection each. Traffic goes to
127.0.0.1 only, and the run stops by itself after --requests requests.

    .venv/bin/clipcls demo-data --out /tmp/demo2k --scale 2.33
    .venv/bin/python benchmarks/serve_load.py /tmp/demo2k --clients 8 --requests 2000 --corrupt-every 50

With --attackers N (issue 22), N hostile clients run beside the honest ones for --attack-s seconds
(see benchmarks/serve_attack.py): a third upload 19 MB of junk as fast as they can, a third send
a request head a byte at a time (slow-loris), a third a body a byte at a time. Reported: the
honest clients' p50/p99 (a 503 is retried after 50 ms and counts in the latency), the server's
RSS before, at its peak (VmHWM) and after the attack, and how long SIGTERM takes with a slow body
in flight.

    .venv/bin/python benchmarks/serve_load.py /tmp/demo2k --clients 8 --attackers 200 --attack-s 60
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_machine  # noqa: E402
from benchmarks.deploy_throughput import build_exports  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--corrupt-every", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--attackers", type=int, default=0, help="hostile clients beside the honest ones")
    parser.add_argument("--attack-s", type=float, default=60.0, help="how long the attack lasts")
    parser.add_argument("--rounds", type=int, default=1, help="attacks one after another on one server")
    parser.add_argument("--serve-args", default="", help="extra `clipcls serve` flags, space-separated")
    parser.add_argument("--model", type=Path, default=None, help="a model to serve (default: build the tiny ONNX)")
    args = parser.parse_args()
    print_machine()
    jpegs = sorted(args.images.rglob("*.jpg"))
    bodies = [p.read_bytes() for p in jpegs]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_exports(Path(tmp), args.size)["onnxruntime"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "clipcls", "serve", str(model), "--host", "127.0.0.1", "--port", str(port)]
        print("server: " + " ".join(cmd[2:4] + ["MODEL"] + cmd[5:] + args.serve_args.split()), flush=True)
        proc = subprocess.Popen(cmd + args.serve_args.split())
        try:
            wait_ready(url, proc)
            if args.attackers:
                from benchmarks.serve_attack import run_attack

                run_attack(url, port, bodies, args, proc)
            else:
                report(run_load(url, bodies, args, proc.pid), args)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)


def run_load(url: str, bodies: list[bytes], args: argparse.Namespace, pid: int) -> dict:
    """Send the requests from `clients` threads; record latency, status and corruptness."""
    import httpx

    lock = threading.Lock()
    counter = iter(range(args.requests))
    results: list[tuple[float, int, bool]] = []
    rss: list[float] = [rss_mib(pid)]

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                corrupt = (i + 1) % args.corrupt_every == 0
                body = bodies[i % len(bodies)]
                data = body[: len(body) // 3] if corrupt else body  # a truncated JPEG
                start = time.perf_counter()
                code = session.post(url + "/predict", files=[("file", (f"{i}.jpg", data, "image/jpeg"))]).status_code
                with lock:
                    results.append((time.perf_counter() - start, code, corrupt))
                    if len(results) % 250 == 0:
                        rss.append(rss_mib(pid))

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    rss.append(rss_mib(pid))
    batches = httpx.get(url + "/health").json()["batches"]
    return {"results": results, "wall": wall, "rss": rss, "batches": batches}


def report(run: dict, args: argparse.Namespace) -> None:
    results = run["results"]
    lat = sorted(r[0] for r in results)
    codes = [r[1] for r in results]
    good = [r for r in results if not r[2]]
    corrupt = [r for r in results if r[2]]
    rate = len(results) / run["wall"]
    print(f"{len(results)} requests from {args.clients} clients in {run['wall']:.1f} s: {rate:.1f} requests/s")
    print(f"latency p50 {statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.1f} ms")
    print(f"good: {sum(r[1] == 200 for r in good)}/{len(good)} answered 200")
    refused = sum(400 <= r[1] < 500 for r in corrupt)
    print(f"corrupt: {refused}/{len(corrupt)} refused with a 4xx (codes {sorted({r[1] for r in corrupt})})")
    mean_batch = len(good) / max(1, run["batches"])
    print(f"5xx: {sum(c >= 500 for c in codes)}; model batches: {run['batches']} (mean {mean_batch:.1f} images)")
    print("server RSS MiB every 250 requests: " + " ".join(f"{x:.0f}" for x in run["rss"]))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

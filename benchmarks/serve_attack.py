"""The hostile half of `benchmarks/serve_load.py --attackers N` (issue 22): N clients that upload
junk or send slowly, beside honest clients, against a `clipcls serve` process on 127.0.0.1.

Attackers run in their own process (one asyncio loop), so their work does not slow the honest
clients' threads through the GIL. Everything goes to 127.0.0.1; the attack stops by itself after
--attack-s seconds, each honest client after the attack, and the run after a bounded drain.
Kinds, in turn: `junk` (a 19 MB multipart file of random bytes, as fast as possible, again and
again), `slow_head` (a request head, one byte a second), `slow_body` (a full head announcing 19 MB,
then one byte a second).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

JUNK_BYTES = 19 * 2**20
KINDS = ("junk", "slow_head", "slow_body")
HEAD = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyzzy\r\n"
PART = b'--xyzzy\r\nContent-Disposition: form-data; name="file"; filename="junk.jpg"\r\n\r\n'


def status_of(reply: bytes) -> str:
    """'408', '503' ... from a reply's status line, or 'closed' when the server just closed."""
    return reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/1.1 ") else "closed"


async def junk(port: int, until: float, body: memoryview, outcomes: Counter) -> None:
    head = (HEAD + f"Content-Length: {len(body)}\r\n\r\n").encode()
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            for i in range(0, len(body), 2**20):
                writer.write(body[i : i + 2**20])
                await writer.drain()
            reply = await asyncio.wait_for(reader.read(4096), max(1.0, until - time.monotonic()))
            outcomes[f"junk {status_of(reply)}"] += 1
            writer.close()
        except (ConnectionError, asyncio.TimeoutError, OSError):
            outcomes["junk reset"] += 1
            await asyncio.sleep(0.05)


async def slow(port: int, until: float, kind: str, outcomes: Counter, held: list[float]) -> None:
    """Send `kind`'s request one byte a second until the server answers or closes; again."""
    if kind == "slow_head":
        data = (HEAD + "X-Pad: " + "a" * 4000 + "\r\n\r\n").encode()
    else:
        data = (HEAD + f"Content-Length: {JUNK_BYTES}\r\n\r\n").encode() + PART + b"\x00" * 4000
        first = data.index(PART)
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if kind == "slow_body":
                writer.write(data[:first])  # the head at once, the body a byte a second
                data_left = data[first:]
            else:
                data_left = data
            reply = b""
            for byte in data_left:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    reply = await asyncio.wait_for(reader.read(4096), 1.0)
                    break  # the server answered or closed (b"")
                except asyncio.TimeoutError:
                    if time.monotonic() >= until:
                        break
            outcomes[f"{kind} {status_of(reply)}"] += 1
            held.append(time.monotonic() - start)
            writer.close()
        except (ConnectionError, OSError):
            outcomes[f"{kind} reset"] += 1
            held.append(time.monotonic() - start)
            await asyncio.sleep(0.05)


async def attack(port: int, count: int, until: float) -> dict[str, Any]:
    outcomes: Counter = Counter()
    held: list[float] = []
    body = memoryview(PART + os.urandom(JUNK_BYTES) + b"\r\n--xyzzy--\r\n")  # one copy for every junk client
    tasks = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        tasks.append(junk(port, until, body, outcomes) if kind == "junk" else slow(port, until, kind, outcomes, held))
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"outcomes": dict(outcomes), "held": held}


def attacker_process(port: int, count: int, until_in_s: float, out: Any) -> None:
    out.put(asyncio.run(attack(port, count, time.monotonic() + until_in_s)))


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def honest(url: str, bodies: list[bytes], until: float, results: list, lock: threading.Lock, seed: int) -> None:
    """Real JPEGs one after another; a 503 is retried after 50 ms. Records (latency, final code,
    503s before it)."""
    import httpx

    i = seed
    with httpx.Client(timeout=120) as session:
        while time.monotonic() < until:
            body, i = bodies[i % len(bodies)], i + 8
            start, retries = time.perf_counter(), 0
            while True:
                try:
                    code = session.post(url + "/predict", files=[("file", ("a.jpg", body, "image/jpeg"))]).status_code
                except httpx.HTTPError:
                    code = 0  # the connection was refused or reset
                if code not in (0, 503) or time.monotonic() > until + 60:
                    break
                retries += 1
                time.sleep(0.05)
            with lock:
                results.append((time.perf_counter() - start, code, retries))


def sigterm_time(port: int, proc: subprocess.Popen) -> float:
    """Seconds from SIGTERM to exit with a slow body in flight."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((HEAD + f"Content-Length: {JUNK_BYTES}\r\n\r\n").encode() + PART)
    time.sleep(1.0)  # the request is read by now (nothing in this measurement depends on it)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    sock.close()
    return time.monotonic() - start


def run_attack(url: str, port: int, bodies: list[bytes], args: Any, proc: subprocess.Popen) -> None:
    """Warm up, then --rounds attacks one after another (a second round that ends where the first
    did shows a plateau, not a leak), then SIGTERM with a slow body in flight."""
    import httpx

    for body in bodies[:50]:  # warm-up
        httpx.post(url + "/predict", files=[("file", ("a.jpg", body, "image/jpeg"))], timeout=60)
    baseline = rss_mib(proc.pid)
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}", flush=True)
        attack_round(url, port, bodies, args, proc, baseline)
    print(f"SIGTERM with a slow body in flight: exited after {sigterm_time(port, proc):.1f} s", flush=True)


def attack_round(url: str, port: int, bodies: list[bytes], args: Any, proc: subprocess.Popen, baseline: float) -> None:
    import httpx

    samples = [rss_mib(proc.pid)]
    out: Any = multiprocessing.get_context("spawn").Queue()
    attacker = multiprocessing.get_context("spawn").Process(
        target=attacker_process, args=(port, args.attackers, args.attack_s, out)
    )
    attacker.start()
    until = time.monotonic() + args.attack_s
    results: list = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=honest, args=(url, bodies, until, results, lock, i)) for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    while time.monotonic() < until + 5 and (attacker.is_alive() or any(t.is_alive() for t in threads)):
        samples.append(rss_mib(proc.pid))
        time.sleep(0.5)
    attack_stats = out.get(timeout=120)
    attacker.join(timeout=60)
    for t in threads:
        t.join(timeout=120)
    peak = rss_mib(proc.pid, "VmHWM")
    drained = time.monotonic()
    after = []
    for _ in range(10):  # 5 s after the last attacker left
        time.sleep(0.5)
        after.append(rss_mib(proc.pid))
    health = httpx.get(url + "/health", timeout=30).status_code
    report(results, attack_stats, baseline, samples, peak, after, health, time.monotonic() - drained, args)


def report(results, attack_stats, baseline, samples, peak, after, health, settle_s, args) -> None:
    lat = sorted(r[0] for r in results)
    codes = Counter(r[1] for r in results)
    retries = sum(r[2] for r in results)
    print(f"attack: {args.attackers} clients for {args.attack_s:g} s beside {args.clients} honest clients")
    print("attacker outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(attack_stats["outcomes"].items())))
    held = attack_stats["held"]
    if held:
        print(f"slow connections held: median {statistics.median(held):.1f} s, max {max(held):.1f} s")
    print(f"honest: {len(results)} requests, final codes {dict(codes)}, 503s retried: {retries}")
    if lat:
        p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
        print(
            f"honest latency (with retries) p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms"
        )
    print(
        f"server RSS MiB: baseline (after warm-up) {baseline:.0f}, at this round's start {samples[0]:.0f}, "
        f"max sampled {max(samples):.0f}, peak since start (VmHWM) {peak:.0f}"
    )
    print(f"server RSS MiB after the attack (every 0.5 s for {settle_s:.0f} s): " + " ".join(f"{x:.0f}" for x in after))
    print(f"/health after the attack: {health}; load average {os.getloadavg()[0]:.2f}", flush=True)

"""Load script (not a test): N interpret requests, C at a time, against a running server; p50/p95 latency and errors.

    .venv/bin/python -m landsentry.api.loadtest --url http://127.0.0.1:8000 -n 200 -c 200
    .venv/bin/python -m landsentry.api.loadtest --url http://127.0.0.1:8001 --url http://127.0.0.1:8002   # replicas

With several --url (replicas), the requests alternate between them, and every one is probed for health.

Each request uploads the same small image: by default a 256x256 window of the bundled sample tile
(sample_tiles/spacenet_atlanta_pan.tif, real SpaceNet imagery) as a GeoTIFF, or `--image FILE`.
Standard library only (threads + http.client), so it runs without the test extras.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles" / "spacenet_atlanta_pan.tif"


def sample_window(size: int) -> bytes:
    """A size x size window of the sample tile, as GeoTIFF bytes (georeferenced, so areas are in m²)."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    with rasterio.open(SAMPLE) as src:
        window = Window(0, 0, min(size, src.width), min(size, src.height))
        profile = {**src.profile, "width": int(window.width), "height": int(window.height),
                   "transform": src.window_transform(window)}
        profile.pop("tiled", None), profile.pop("blockxsize", None), profile.pop("blockysize", None)
        data = src.read(window=window)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        return mem.read()


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def one_request(url: str, body: bytes, content_type: str, token: str | None, timeout: float) -> tuple[float, str]:
    """(seconds, outcome) where outcome is the HTTP status ('200', '202') or an error name."""
    parts = urlsplit(url)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("POST", "/v1/interpret", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        outcome = str(response.status)
        if response.status in (200, 202):
            json.loads(payload)  # a well-formed job record
    except Exception as exc:  # counted, not raised: the point is to see every failure
        outcome = type(exc).__name__
    finally:
        conn.close()
    return time.perf_counter() - started, outcome


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m landsentry.api.loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", action="append", help="base URL; repeat for replicas (requests alternate); default http://127.0.0.1:8000")
    p.add_argument("-n", "--requests", type=int, default=200)
    p.add_argument("-c", "--concurrency", type=int, default=200)
    p.add_argument("--image", type=Path, default=None, help="file to upload (default: 256x256 window of the sample tile)")
    p.add_argument("--size", type=int, default=256, help="window size of the default image")
    p.add_argument("--token", default=None, help="bearer token, when the server has LANDSENTRY_TOKEN set")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    urls = args.url or ["http://127.0.0.1:8000"]
    data = args.image.read_bytes() if args.image else sample_window(args.size)
    body, content_type = multipart("image", args.image.name if args.image else "window.tif", data)
    start_gate = threading.Barrier(min(args.concurrency, args.requests))

    def task(i: int) -> tuple[float, str]:
        try:
            start_gate.wait(timeout=30)  # the first C requests leave together: real concurrency
        except threading.BrokenBarrierError:
            pass
        return one_request(urls[i % len(urls)], body, content_type, args.token, args.timeout)

    health: list[float] = []
    done = threading.Event()

    def probe_health() -> None:
        """GET /v1/health every half second during the burst (each target in turn): does the service stay responsive?"""
        turn = 0
        while not done.wait(0.5):
            parts = urlsplit(urls[turn % len(urls)])
            turn += 1
            t = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=args.timeout)
                conn.request("GET", "/v1/health")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            health.append(time.perf_counter() - t if ok else float("inf"))

    prober = threading.Thread(target=probe_health, daemon=True)
    started = time.perf_counter()
    prober.start()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(task, range(args.requests)))
    wall = time.perf_counter() - started
    done.set()
    prober.join()
    outcomes = Counter(o for _, o in results)
    ok = [t for t, o in results if o in ("200", "202")]
    errors = len(results) - len(ok)
    print(f"{args.requests} requests, {args.concurrency} concurrent, {len(data):,} bytes each, to /v1/interpret of {', '.join(urls)}")
    print(f"outcomes: {dict(outcomes)}; errors: {errors}")
    if ok:
        print(f"latency s: p50 {percentile(ok, 50):.2f}  p95 {percentile(ok, 95):.2f}  max {max(ok):.2f}  mean {statistics.mean(ok):.2f}")
    print(f"wall {wall:.1f} s, {len(ok) / wall:.1f} requests/s")
    if health:
        print(f"GET /v1/health during the burst: {len(health)} probes, p50 {percentile(health, 50) * 1000:.0f} ms, "
              f"max {max(health) * 1000:.0f} ms, failed {sum(h == float('inf') for h in health)}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

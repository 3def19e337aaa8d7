"""The service under shared use: /health latency and search throughput while 8 clients send text
searches, large reference images and slow remote URLs.

    python benchmarks/service_load.py [--seconds 40] [--catalog 120] [--megapixels 40] [--slow-burst 45]
                                      [--server-pythonpath DIR]   # e.g. a checkout of an older commit

Everything runs on 127.0.0.1: a scene catalog indexed with the default model in an embedded
engine (in a temporary folder), `cir serve` in its own process, a slow image server that drips
a reference image over --drip-seconds, and the clients in this process:

- 4 clients send text searches back to back (the throughput reported),
- 2 clients upload a --megapixels JPEG reference image with a modification text,
- 2 clients send allow-listed URLs of the slow server, and at 2 s a burst of --slow-burst more
  slow URLs arrives at once (what used to exhaust the shared thread pool),
- a prober process (its own interpreter, so the clients' threads do not delay it) asks
  GET /health every 100 ms on its own connection.

First the prober runs alone for --idle-seconds (the idle baseline). Printed: /health p50, p99 and
max under load and idle, searches per second, each kind's answers by status, the server's
resident memory before and after, and the machine's load average and core count, which matter
on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

INDEX = "cir-load"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def big_jpeg(megapixels: float) -> bytes:
    """A smooth synthetic photo of `megapixels` (JPEG q85): large to decode, small to send."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(megapixels * 1e6 / width)
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                    (x[None, :] + y) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def start_slow_server(png: bytes, drip_seconds: float) -> ThreadingHTTPServer:
    class Drip(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            pause = drip_seconds / len(png)
            try:
                for i in range(len(png)):
                    self.wfile.write(png[i:i + 1])
                    self.wfile.flush()
                    time.sleep(pause)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    server.request_queue_size = 128
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def rss_mib(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Load:
    """The clients and the prober; each records (kind, status, seconds)."""

    def __init__(self, base: str, stop_at: float):
        self.base = base
        self.stop_at = stop_at
        self.results: list[tuple[str, int, float]] = []
        self._lock = threading.Lock()

    def record(self, kind: str, status: int, seconds: float) -> None:
        with self._lock:
            self.results.append((kind, status, seconds))

    def timed(self, client: httpx.Client, kind: str, method: str, path: str, **options) -> None:
        started = time.perf_counter()
        try:
            status = client.request(method, self.base + path, **options).status_code
        except httpx.HTTPError:
            status = 0  # connection failed or client timeout
        self.record(kind, status, time.perf_counter() - started)

    def loop(self, kind: str, make_request, pause: float = 0.0) -> None:
        with httpx.Client(timeout=120) as client:
            i = 0
            while time.monotonic() < self.stop_at:
                method, path, options = make_request(i)
                self.timed(client, kind, method, path, **options)
                i += 1
                if pause:
                    time.sleep(pause)

    def probe(self, kind: str, seconds: float) -> None:
        """GET /health every 100 ms for `seconds`, from a separate process."""
        script = (
            "import httpx, json, sys, time\n"
            "out, until = [], time.monotonic() + float(sys.argv[2])\n"
            "with httpx.Client(timeout=120) as client:\n"
            "    while time.monotonic() < until:\n"
            "        t = time.perf_counter()\n"
            "        status = client.get(sys.argv[1] + '/health').status_code\n"
            "        out.append((status, time.perf_counter() - t))\n"
            "        time.sleep(0.1)\n"
            "print(json.dumps(out))\n"
        )
        output = subprocess.run([sys.executable, "-c", script, self.base, str(seconds)], capture_output=True, text=True, check=True)
        for status, seconds_taken in json.loads(output.stdout):
            self.record(kind, status, seconds_taken)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--idle-seconds", type=float, default=8)
    parser.add_argument("--catalog", type=int, default=120, help="scenes in the index")
    parser.add_argument("--megapixels", type=float, default=40)
    parser.add_argument("--slow-burst", type=int, default=45)
    parser.add_argument("--drip-seconds", type=float, default=30)
    parser.add_argument("--server-pythonpath", default=None, help="PYTHONPATH of the served code (default: this checkout)")
    args = parser.parse_args()

    from opensearch_cir.cli.demo import build_scene_catalog
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.engines import EMBEDDED_SCHEME, connect

    work = Path(tempfile.mkdtemp(prefix="cir-service-load-"))
    engine_url = f"{EMBEDDED_SCHEME}{work / 'engine'}"
    started = time.perf_counter()
    client = connect(engine_url)
    scenes = build_scene_catalog(client, INDEX, load_encoder(None), work, n=args.catalog, queries=4)
    client.close()
    print(f"catalog: {len(scenes.records)} scenes indexed in {time.perf_counter() - started:.0f} s")
    reference = scenes.image_path(scenes.queries[0].reference).read_bytes()
    big = big_jpeg(args.megapixels)
    print(f"large reference: {args.megapixels:g} MP JPEG, {len(big) / 2**20:.1f} MiB")

    slow = start_slow_server(reference, args.drip_seconds)
    slow_base = f"http://127.0.0.1:{slow.server_address[1]}/slow/"
    port = free_port()
    env = {**os.environ, "CIR_REMOTE_URL_ALLOWLIST": slow_base, "CIR_MAX_UPLOAD_BYTES": str(64 * 2**20),
           "CIR_MAX_PIXELS": str(int(args.megapixels * 1e6) + 1), "CIR_REMOTE_FETCH_TIMEOUT_S": "5"}
    if args.server_pythonpath:
        env["PYTHONPATH"] = args.server_pythonpath
    server = subprocess.Popen([sys.executable, "-c", "from opensearch_cir.cli import main; main()", "serve", "--url", engine_url, "--index", INDEX,
                               "--port", str(port)], env=env, cwd=args.server_pythonpath, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the service did not start")
            time.sleep(0.5)
        load_before = os.getloadavg()
        rss_before = rss_mib(server.pid)

        load = Load(base, 0)
        load.probe("health idle", args.idle_seconds)

        load.stop_at = time.monotonic() + args.seconds
        texts = ["a red circle", "two blue squares", "a green triangle on the left", "small yellow objects"]
        threads = [threading.Thread(target=load.probe, args=("health", args.seconds))]
        threads += [threading.Thread(target=load.loop, args=("text search", lambda i: (
            "POST", "/search", {"data": {"text": texts[i % len(texts)], "k": "10"}}))) for _ in range(4)]
        threads += [threading.Thread(target=load.loop, args=("large image search", lambda i: (
            "POST", "/search", {"files": {"images": ("big.jpg", big, "image/jpeg")}, "data": {"text": "make it red", "k": "10"}})))
            for _ in range(2)]
        counter = iter(range(10**9))
        threads += [threading.Thread(target=load.loop, args=("slow URL search", lambda i: (
            "POST", "/search", {"data": {"image_url": f"{slow_base}{next(counter)}.png", "text": "make it red"}})))
            for _ in range(2)]

        def burst() -> None:
            time.sleep(2)
            with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=args.slow_burst)) as client:
                workers = [threading.Thread(target=load.timed, args=(client, "slow URL burst", "POST", "/search"),
                                            kwargs={"data": {"image_url": f"{slow_base}burst-{i}.png"}})
                           for i in range(args.slow_burst)]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()

        threads.append(threading.Thread(target=burst))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rss_after = rss_mib(server.pid)
        load_after = os.getloadavg()
    finally:
        server.terminate()
        server.wait(30)
        slow.shutdown()

    by_kind: dict[str, list[tuple[int, float]]] = {}
    for kind, status, seconds in load.results:
        by_kind.setdefault(kind, []).append((status, seconds))
    print(f"\nmachine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"(other processes share it); {args.seconds:g} s of load, 8 clients + a burst of {args.slow_burst} slow URLs")
    print(f"{'requests':<20} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses")
    for kind, rows in by_kind.items():
        ms = [seconds * 1000 for _, seconds in rows]
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(Counter(status for status, _ in rows).items()))
        print(f"{kind:<20} {len(rows):>5} {percentile(ms, 50):>8.0f} {percentile(ms, 99):>8.0f} {max(ms):>8.0f}  {statuses}")
    searches = sum(1 for status, _ in by_kind.get("text search", []) if status == 200)
    health = [seconds * 1000 for _, seconds in by_kind.get("health", [])]
    idle = [seconds * 1000 for _, seconds in by_kind.get("health idle", [])]
    print(f"\ntext searches answered 200: {searches / args.seconds:.1f}/s")
    print(f"/health p99 {percentile(health, 99):.0f} ms under load vs {percentile(idle, 99):.0f} ms idle "
          f"(ratio {percentile(health, 99) / percentile(idle, 99):.1f}); goal < 100 ms")
    print(f"server memory: {rss_before[0]:.0f} MiB before, {rss_after[0]:.0f} MiB after, peak {rss_after[1]:.0f} MiB")


if __name__ == "__main__":
    main()

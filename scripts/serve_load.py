#!/usr/bin/env python3
"""Issue 17's load target, measured: N concurrent clients against a real `imgsearch serve` for a
while, mixing what the web UI asks for (the same few searches page after page, stats,
thumbnails, "similar"), while the server's resident memory and thread count are sampled from
/proc. Prints errors by kind, throughput, latency percentiles, and memory/threads against the
idle server's (after `--warmup` seconds of one client doing the same; the figure after the
server's first search is printed beside it).

    python3 scripts/serve_load.py --clients 200 --seconds 60            # tiny test model
    python3 scripts/serve_load.py --model DIR --photos DIR --clients 200 # a real-shaped model

Needs a built binary (`cargo build --release`; --binary to choose). Uses only the standard library.
"""
import argparse
import http.client
import json
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["a photo of a cat", "a rocket", "coffee on a table", "a person in a space suit", "grey picture"]


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def client(host, port, ids, deadline, results, lock):
    rng = random.Random()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while time.time() < deadline:
        roll = rng.random()
        if roll < 0.6:
            path = f"/api/search?q={rng.choice(QUERIES).replace(' ', '%20')}&k=20&offset={20 * rng.randrange(3)}"
        elif roll < 0.7:
            path = "/api/stats"
        elif roll < 0.9:
            path = f"/api/images/{rng.choice(ids)}/thumbnail"
        else:
            path = f"/api/images/{rng.choice(ids)}/similar?k=20"
        started = time.perf_counter()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            outcome = str(response.status)
        except Exception as e:  # a dropped connection or a timeout counts as an error
            outcome = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        with lock:
            results.append((outcome, time.perf_counter() - started))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=str(ROOT / "target/release/imgsearch"))
    ap.add_argument("--model", default=str(ROOT / "tests/fixtures/models/tiny-clip-b32-quickgelu"))
    ap.add_argument("--photos", default=str(ROOT / "tests/fixtures/images"))
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--serve-args", default="", help="extra arguments for serve, e.g. '--workers 2'")
    ap.add_argument("--warmup", type=float, default=5, help="seconds of one client before the idle figure")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgsearch-load-"))
    try:
        data = work / "data"
        subprocess.run([args.binary, "--data-dir", str(data), "index", args.photos, "--model", args.model, "--quiet"],
                       check=True)
        server = subprocess.Popen([args.binary, "--data-dir", str(data), "serve", "--addr", "127.0.0.1:0",
                                   *args.serve_args.split()],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        banner = server.stdout.readline().strip()
        host, port = banner.rsplit("//", 1)[1].rstrip("/").split(":")
        port = int(port)
        conn = http.client.HTTPConnection(host, port)
        conn.request("GET", "/api/search?q=a%20photo&k=100")
        ids = [hit["id"] for hit in json.loads(conn.getresponse().read())["hits"]]
        time.sleep(1)
        cold_mb, _ = proc_status(server.pid)
        # One client first, through the same mix: what the server keeps whatever the number of
        # clients (thumbnails made and cached, the catalog's and the graph's pages read in, the
        # query cache) is then part of the idle figure, and the peak shows what more clients add.
        warm_results = []
        client(host, port, ids, time.time() + args.warmup, warm_results, threading.Lock())
        time.sleep(1)
        idle_mb, idle_threads = proc_status(server.pid)

        results, lock = [], threading.Lock()
        deadline = time.time() + args.seconds
        threads = [threading.Thread(target=client, args=(host, port, ids, deadline, results, lock), daemon=True)
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        peak_mb, peak_threads = idle_mb, idle_threads
        while time.time() < deadline:
            mb, n = proc_status(server.pid)
            peak_mb, peak_threads = max(peak_mb, mb), max(peak_threads, n)
            time.sleep(0.5)
        for t in threads:
            t.join()
        server.terminate()
        server.wait()

        outcomes = {}
        for outcome, _ in results:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        ok = [s for outcome, s in results if outcome == "200"]
        q = statistics.quantiles(ok, n=100) if len(ok) > 100 else [float("nan")] * 99
        print(f"{args.clients} clients for {args.seconds:.0f} s: {len(results)} requests, "
              f"{len(results) / args.seconds:.1f} req/s; outcomes {outcomes}")
        print(f"latency of 200s: p50 {q[49] * 1e3:.1f} ms, p90 {q[89] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms")
        print(f"server: {cold_mb:.0f} MB after its first search; idle after {args.warmup:.0f} s of one client "
              f"{idle_mb:.0f} MB / {idle_threads} threads; peak {peak_mb:.0f} MB ({peak_mb / idle_mb:.2f}x the idle, "
              f"{peak_mb / cold_mb:.2f}x the first figure) / {peak_threads} threads")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

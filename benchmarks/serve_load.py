"""Load test of ``rnnkit serve`` on loopback: a bounded number of requests at a fixed
concurrency against a real server process; failures, latency percentiles, throughput, whether
seeded answers stay the same under load, and the server's resident memory over time.

    python benchmarks/serve_load.py                      # trains a small model first
    python benchmarks/serve_load.py --run runs/charlm --requests 500 --concurrency 16
    python benchmarks/serve_load.py --run RUN --requests 60 --concurrency 8 --json load.json

The server is ``python -m rnnkit.serve RUN --port 0`` (its flags: ``--max-concurrent``,
``--queue``, ``--threads``); it must admit ``--concurrency`` requests (max-concurrent + queue),
else the refused ones (429) count as failures. Request ``i`` asks for ``--length`` characters
with seed ``i % 16``, and every ``--stream-every``-th one is streamed (server-sent events); the
16 seeds are first asked alone, one at a time, and every answer under load must equal its
seed's (``mismatches``). Memory: the server's VmRSS before any request, after the warm-up, its
largest value during the load (sampled every 0.25 s) and at the end. Exit status 1 on any
failure or mismatch. Timings are never asserted in tests: the machines are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SEEDS = 16


def train_small(out: Path) -> Path:
    """A 1x128 LSTM, 100 steps on the bundled Tiny Shakespeare (when no --run is given)."""
    from rnnkit.config import RunConfig, apply_overrides
    from rnnkit.trainer.loop import train

    config = RunConfig()
    apply_overrides(config, {"model": {"hidden": 128, "layers": 1},
                             "train": {"out": str(out), "max_steps": 100, "eval_every": 100,
                                       "eval_batches": 4, "sample_every": 0, "threads": 1,
                                       "log_every": 100}}, "serve_load")  # fmt: skip
    print(f"training a 1x128 LSTM for 100 steps into {out} ...", flush=True)
    train(config, log=lambda *_: None)
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (VmRSS from /proc), MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def start_server(run: Path, args) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "rnnkit.serve", str(run), "--port", "0",
               "--max-concurrent", str(args.max_concurrent), "--queue", str(args.queue),
               "--threads", str(args.threads), "--max-length", str(max(args.length, 1)),
               "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    line = server.stderr.readline()
    match = re.search(r"on (http://\S+) ", line)
    if not match:
        raise SystemExit(f"the server did not start: {line}{server.stderr.read()}")
    url = match.group(1)
    threading.Thread(target=server.stderr.read, daemon=True).start()  # a full pipe would block
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the server did not answer /health within a minute")


async def one(http: httpx.AsyncClient, i: int, length: int, stream: bool) -> dict:
    """One request: its status, text, latency (s) and, streamed, time to the first event."""
    body = {"prime": "", "length": length, "seed": i % SEEDS, "stream": stream}
    start = time.perf_counter()
    first = None
    try:
        if not stream:
            response = await http.post("/generate", json=body)
            ok = response.status_code == 200
            text = response.json().get("text") if ok else None
        else:
            pieces = []
            async with http.stream("POST", "/generate", json=body) as response:
                ok = response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        first = first or time.perf_counter() - start
                        pieces.append(json.loads(line[6:]).get("text") or "")
            text = "".join(pieces) if ok else None
        status = response.status_code
    except httpx.HTTPError as error:
        ok, status, text = False, type(error).__name__, None
    return {"i": i, "ok": ok, "status": status, "text": text, "stream": stream,
            "latency": time.perf_counter() - start, "first": first}  # fmt: skip


async def load(url: str, n: int, concurrency: int, length: int, stream_every: int, offset=0):
    """``n`` requests, at most ``concurrency`` in flight; results in completion order."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:

        async def gated(i: int) -> dict:
            async with gate:
                streamed = stream_every > 0 and i % stream_every == 0
                return await one(http, i, length, streamed)

        return await asyncio.gather(*(gated(offset + i) for i in range(n)))


async def measured_load(url: str, pid: int, args) -> tuple[list[dict], float, list[float]]:
    """The main load, timed, with the server's RSS sampled every 0.25 s."""
    samples: list[float] = []

    async def sample() -> None:
        while True:
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    start = time.perf_counter()
    results = await load(url, args.requests, args.concurrency, args.length, args.stream_every)
    wall = time.perf_counter() - start
    sampler.cancel()
    return results, wall, samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def figures(results, wall, alone, rss, about, args) -> dict:
    good = [r for r in results if r["ok"]]
    latencies = [r["latency"] for r in good] or [float("nan")]
    firsts = [r["first"] for r in good if r["first"] is not None]
    failures: dict[str, int] = {}
    for r in results:
        if not r["ok"]:
            failures[str(r["status"])] = failures.get(str(r["status"]), 0) + 1
    mismatches = sum(r["text"] != alone[r["i"] % SEEDS] for r in good)
    chars = sum(len(r["text"]) for r in good)
    return {
        "model": f"{about['cell']} {about['layers']}x{about['hidden']}",
        "parameters": about["parameters"], "requests": args.requests,
        "concurrency": args.concurrency, "length": args.length,
        "streamed": sum(r["stream"] for r in results), "max_concurrent": args.max_concurrent,
        "queue": args.queue, "threads": args.threads, "failures": sum(failures.values()),
        "failures_by_status": failures, "mismatches": mismatches, "wall_s": wall,
        "requests_per_s": len(good) / wall, "chars_per_s": chars / wall,
        "latency_p50_s": percentile(latencies, 0.5), "latency_p95_s": percentile(latencies, 0.95),
        "latency_p99_s": percentile(latencies, 0.99), "latency_mean_s": statistics.fmean(latencies),
        "stream_first_event_p50_s": percentile(firsts, 0.5) if firsts else None,
        **rss, "cpus": os.cpu_count(),
    }  # fmt: skip


def report(f: dict) -> str:
    first = f["stream_first_event_p50_s"]
    return "\n".join([
        f"rnnkit serve load test: {f['model']} ({f['parameters']:,} parameters), "
        f"{f['requests']} requests at {f['concurrency']} concurrent, length {f['length']} "
        f"({f['streamed']} streamed); server --max-concurrent {f['max_concurrent']} --queue "
        f"{f['queue']} --threads {f['threads']}; {f['cpus']} CPUs",
        f"  failures             {f['failures']} {f['failures_by_status'] or ''}".rstrip(),
        f"  seeded mismatches    {f['mismatches']} (answers under load vs the same seed alone)",
        f"  latency p50/p95/p99  {f['latency_p50_s']*1e3:.0f} / {f['latency_p95_s']*1e3:.0f} / "
        f"{f['latency_p99_s']*1e3:.0f} ms (mean {f['latency_mean_s']*1e3:.0f} ms)",
        f"  first event (p50)    {first * 1e3:.0f} ms" if first is not None else "",
        f"  throughput           {f['requests_per_s']:.1f} requests/s, "
        f"{f['chars_per_s']:,.0f} chars/s ({f['wall_s']:.1f} s)",
        f"  server RSS (MiB)     {f['rss_start_mb']:.0f} at start, {f['rss_warm_mb']:.0f} "
        f"after warm-up, {f['rss_max_load_mb']:.0f} max under load, {f['rss_end_mb']:.0f} "
        f"at the end",
    ]).replace("\n\n", "\n")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a --task lm run (default: train a small one)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--length", type=int, default=200, help="characters per request")
    parser.add_argument("--stream-every", type=int, default=4, help="stream every k-th (0: none)")
    parser.add_argument("--warmup", type=int, default=32, help="requests before measuring")
    parser.add_argument("--max-concurrent", type=int, default=2, help="the server's flag")
    parser.add_argument("--queue", type=int, default=16, help="the server's flag")
    parser.add_argument("--threads", type=int, default=1, help="the server's flag")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.max_concurrent + args.queue < args.concurrency:
        print("note: --max-concurrent + --queue < --concurrency: expect 429s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_small(Path(tmp) / "run")
        server, url = start_server(run, args)
        try:
            rss = {"rss_start_mb": rss_mb(server.pid)}
            about = httpx.get(f"{url}/model").json()
            alone = [asyncio.run(load(url, 1, 1, args.length, 0, offset=s))[0]["text"]
                     for s in range(SEEDS)]  # fmt: skip
            asyncio.run(load(url, args.warmup, args.concurrency, args.length, args.stream_every))
            rss["rss_warm_mb"] = rss_mb(server.pid)
            results, wall, samples = asyncio.run(measured_load(url, server.pid, args))
            rss["rss_max_load_mb"] = max(samples, default=rss["rss_warm_mb"])
            rss["rss_end_mb"] = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=120)
    result = figures(results, wall, alone, rss, about, args)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["failures"] or result["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

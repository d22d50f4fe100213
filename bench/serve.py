"""Model server latency and throughput: one entity per request at concurrency 1, 8 and 32,
with the challenger off and in shadow, on 127.0.0.1 only.

The server is `featurestack serve` in its own process; the load comes from this process:
asyncio with keep-alive HTTP/1.1 connections written and parsed by hand (one connection per
concurrent client, the next request sent as soon as the answer arrives), so the client costs
little of the 2 cores it shares with the server. Each level is bounded in time and count
(``--seconds``, ``--requests``) after a warm-up. Latency is measured by the client, from
writing the request to reading the whole response. The baseline of the same run is the
challenger-off server; ``GET /health`` at the same concurrency shows HTTP's own floor.

The data folder is `data/` after `make demo` (or ``--data-dir``); the bench copies its Feast
and MLflow state to data/bench/serve/ and serves from there. When the registry has no
challenger, the copy makes the champion's own version challenger: shadow then costs exactly
a second LightGBM model of the same size.

Usage: .venv/bin/python bench/serve.py [--data-dir data] [--seconds 10] [--requests 4000]
Scratch state under $FEATURESTACK_DATA_DIR/bench/serve/ (default data/bench/serve/); `make test`
runs it briefly on the test pipeline's data (tests/integration/test_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from featurestack.core.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = load_settings().data_dir / "bench" / "serve"
MODEL = "next_day_up"


def prepare(data_dir: Path) -> tuple[Path, list[str]]:
    """A scratch data folder (copied Feast and MLflow state, published files linked) with a
    challenger; the symbols to ask for."""
    import mlflow
    import pandas as pd

    scratch = SCRATCH / "data"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    for name in ("feast", "mlflow"):
        shutil.copytree(data_dir / name, scratch / name)
    (scratch / "published").symlink_to(data_dir.resolve() / "published")
    mlflow.set_tracking_uri(f"sqlite:///{scratch / 'mlflow' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(MODEL).aliases
    if "challenger" not in aliases:
        client.set_registered_model_alias(MODEL, "challenger", aliases["champion"])
    symbols = pd.read_parquet(
        data_dir / "published" / "current" / "feat_symbol__daily", columns=["symbol"]
    )
    return scratch, sorted(symbols["symbol"].unique())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(scratch: Path, port: int, challenger: str) -> tuple[subprocess.Popen, dict, list]:
    env = {
        **os.environ,
        "FEATURESTACK_DATA_DIR": str(scratch),
        "FEATURESTACK_RAW_DIR": str(scratch / "raw"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("FEATURESTACK_API_KEY", None)
    cmd = [
        str(Path(sys.executable).with_name("featurestack")),
        "serve",
        "--model",
        MODEL,
        "--port",
        str(port),
        "--challenger",
        challenger,
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                health = json.loads(r.read())
            if challenger == "shadow" and (health["shadow"] or {}).get("process") != "ready":
                # the shadow process loads its challenger at low priority: measure once it has
                if (health["shadow"] or {}).get("process") in {"died", "stopped"}:
                    raise RuntimeError(f"the shadow process stopped: {health['shadow']}")
                time.sleep(0.3)
                continue
            models = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/models").read())
            return proc, health, models
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not answer /health within 120 s")


def shadow_counts(port: int) -> dict[str, float]:
    """Requests the shadow process scored and dropped (from /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    counts = {"scored": 0.0, "dropped": 0.0}
    for line in text.splitlines():
        if line.startswith("featurestack_requests_total{") and 'role="shadow"' in line:
            counts["scored"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("featurestack_shadow_dropped_total{"):
            counts["dropped"] += float(line.rsplit(" ", 1)[1])
    return counts


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # a clean stop: uvicorn runs the shutdown (log flush)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _client(port: int, requests: list[bytes], latencies: list[float], stop_at: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            if time.perf_counter() > stop_at:
                break
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            status = int(head[9:12])
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
    finally:
        writer.close()


def _request(path: str, body: bytes | None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def load(
    port: int, concurrency: int, total: int, seconds: float, symbols: list[str], health: bool
) -> dict:
    """Closed loop: ``concurrency`` clients, ``total`` requests at most, ``seconds`` at most."""
    rng = random.Random(concurrency)

    def one() -> bytes:
        if health:
            return _request("/health", None)
        body = json.dumps({"entities": [{"symbol": rng.choice(symbols)}]}).encode()
        return _request(f"/predict/{MODEL}", body)

    async def run(n: int, limit: float) -> tuple[list[float], float]:
        latencies: list[float] = []
        per_client = [[one() for _ in range(n // concurrency)] for _ in range(concurrency)]
        start = time.perf_counter()
        await asyncio.gather(
            *(_client(port, reqs, latencies, start + limit) for reqs in per_client)
        )
        return latencies, time.perf_counter() - start

    asyncio.run(run(min(400, total), 5))  # warm-up: connections, caches, the allocator
    latencies, elapsed = asyncio.run(run(total, seconds))
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(ms),
        "seconds": round(elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "throughput_rps": round(len(ms) / elapsed, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--seconds", type=float, default=10.0, help="per level, at most")
    parser.add_argument("--requests", type=int, default=4000, help="per level, at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    if not (args.data_dir / "mlflow").exists():
        sys.exit(f"{args.data_dir} has no MLflow store: run `make demo` first (or give --data-dir)")
    scratch, symbols = prepare(args.data_dir)
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = []
    for mode in ("off", "shadow"):
        port = free_port()
        proc, _, models = start_server(scratch, port, mode)
        served = models[0]
        print(
            f"server ({mode}): {MODEL} v{served['champion']['version']}, fast path "
            f"{served['champion']['fast_path']}, challenger {served['challenger_mode']}",
            flush=True,
        )
        try:
            if mode == "off":
                row = load(port, 8, args.requests, args.seconds, symbols, health=True)
                rows.append({"mode": "GET /health (HTTP floor)", **row})
                print(rows[-1], flush=True)
            for c in args.concurrency:
                rows.append(
                    {
                        "mode": f"shadow {mode}",
                        **load(port, c, args.requests, args.seconds, symbols, health=False),
                    }
                )
                print(rows[-1], flush=True)
            if mode == "shadow":
                time.sleep(1)  # its last batches
                print(f"shadow requests (warm-ups included): {shadow_counts(port)}", flush=True)
        finally:
            stop_server(proc)
    print(f"load average after: {os.getloadavg()}")
    print("\n| challenger | concurrency | requests | p50 ms | p99 ms | requests/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']:.0f} |"
        )
    off = {r["concurrency"]: r for r in rows if r["mode"] == "shadow off"}
    on = {r["concurrency"]: r for r in rows if r["mode"] == "shadow shadow"}
    for c in args.concurrency:
        print(f"shadow on/off p99 at concurrency {c}: {on[c]['p99_ms'] / off[c]['p99_ms']:.2f}×")
    (SCRATCH / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

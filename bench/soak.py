"""Soak of the model server: mixed valid and invalid requests at concurrency 8 for a bounded
time (default 10 minutes) while materializations run into the online store it reads.

Per window (default one minute): requests answered, 4xx, 5xx, p50 and p99 latency, and the
server process's RSS. At the end, the server is stopped cleanly and its prediction log is
read back. Exits non-zero when any check fails:

- no 5xx, and every invalid request got a 4xx (every valid one a 200);
- RSS flat: no window after the first above the first window's RSS by more than
  ``--rss-growth`` (default 25 %, at least 64 MiB);
- the prediction log complete: its rows = the entities of the answered (200) requests;
- at least one materialization finished meanwhile, none failed.

The server is `featurestack serve` in its own process on 127.0.0.1, on a scratch copy of the
data folder's Feast and MLflow state (bench/serve.py ``prepare``); the materializations are
`featurestack materialize` processes on the same scratch copy, one after the other.

Usage: .venv/bin/python bench/soak.py [--data-dir data] [--seconds 600] [--interval 60]
`make test` runs it for a few seconds (tests/integration/test_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import MODEL, ROOT, free_port, prepare, start_server

INVALID = [
    ("POST", f"/predict/{MODEL}", b'{"entities": [{"sym": "AAA"}]}'),  # missing key
    ("POST", f"/predict/{MODEL}", b'{"entities": [{"symbol": 7}]}'),  # mistyped key
    ("POST", f"/predict/{MODEL}", b'{"entities": ['),  # not JSON
    ("POST", f"/predict/{MODEL}", b'{"entities": [], "request_id": [1]}'),
    ("POST", "/predict/no_such_model", b'{"entities": [{"symbol": "AAA"}]}'),
]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _request(method: str, path: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Window:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.status: dict[int, int] = {}
        self.wrong: list[str] = []  # a valid request not 200, an invalid one not 4xx
        self.entities = 0


async def client(
    port: int, symbols: list[str], seed: int, stop_at: float, windows: list[Window]
) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            valid = rng.random() < 0.75
            if valid:
                n = rng.choice((1, 1, 1, 5))
                body = json.dumps({"entities": [{"symbol": rng.choice(symbols)}] * n}).encode()
                request = _request("POST", f"/predict/{MODEL}", body)
            else:
                request = _request(*rng.choice(INVALID))
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            window = windows[-1]
            window.latencies.append(time.perf_counter() - t0)
            status = int(head[9:12])
            window.status[status] = window.status.get(status, 0) + 1
            if valid and status == 200:
                window.entities += n
            elif valid or not 400 <= status < 500:
                window.wrong.append(f"{'valid' if valid else 'invalid'} request got {status}")
    finally:
        writer.close()


def materializations(scratch: Path, stop: threading.Event, done: list[int]) -> None:
    """`featurestack materialize` on the scratch copy, one after the other, until ``stop``."""
    env = {**os.environ, "FEATURESTACK_DATA_DIR": str(scratch)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [str(Path(sys.executable).with_name("featurestack")), "materialize"]
    while not stop.is_set():
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        done.append(proc.returncode)
        if proc.returncode:
            print(f"materialize failed: {proc.stderr[-500:]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--seconds", type=float, default=600.0, help="the whole soak, at most")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per report")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rss-growth", type=float, default=0.25)
    args = parser.parse_args()
    if not (args.data_dir / "mlflow").exists():
        sys.exit(f"{args.data_dir} has no MLflow store: run `make demo` first (or give --data-dir)")
    scratch, symbols = prepare(args.data_dir)
    port = free_port()
    server, _, _ = start_server(scratch, port, "off")
    print(f"load average before: {os.getloadavg()}", flush=True)
    stop, done = threading.Event(), []
    worker = threading.Thread(target=materializations, args=(scratch, stop, done), daemon=True)
    worker.start()
    windows: list[Window] = [Window()]
    rss: list[float] = []
    end = time.monotonic() + args.seconds

    async def soak() -> None:
        tasks = [
            asyncio.create_task(client(port, symbols, i, end, windows))
            for i in range(args.concurrency)
        ]
        while time.monotonic() < end:
            await asyncio.sleep(min(args.interval, max(end - time.monotonic(), 0)))
            rss.append(rss_mib(server.pid))
            windows.append(Window())
        await asyncio.gather(*tasks)

    try:
        asyncio.run(soak())
    finally:
        stop.set()
        worker.join(300)
        server.send_signal(signal.SIGINT)  # a clean stop flushes the prediction log
        server.wait(120)
    every = windows
    windows = [w for w in windows if w.latencies][: len(rss)] or windows[:1]
    print(f"load average after: {os.getloadavg()}")
    print("\n| window | requests | 200 | 4xx | 5xx | p50 ms | p99 ms | RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (w, r) in enumerate(zip(windows, rss, strict=False), 1):
        ms = np.array(w.latencies) * 1000
        fours = sum(n for s, n in w.status.items() if 400 <= s < 500)
        fives = sum(n for s, n in w.status.items() if s >= 500)
        print(
            f"| {i} | {len(ms)} | {w.status.get(200, 0)} | {fours} | {fives} | "
            f"{np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | {r:.0f} |"
        )
    from models_py.prediction_log import read_log

    logged = len(read_log(scratch / "prediction_log"))
    answered = sum(w.entities for w in every)
    problems = [p for w in every for p in w.wrong][:10]
    if rss and max(rss[1:] or rss) - rss[0] > max(64.0, args.rss_growth * rss[0]):
        problems.append(f"RSS grew from {rss[0]:.0f} MiB to {max(rss):.0f} MiB")
    if logged != answered:
        problems.append(f"prediction log holds {logged} rows for {answered} answered entities")
    if not done or any(done):
        problems.append(f"materializations meanwhile: exit codes {done}")
    print(
        f"\nmaterializations meanwhile: {len(done)}; prediction log rows {logged}, "
        f"answered entities {answered}"
    )
    if problems:
        print("SOAK FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("soak passed: no 5xx, every invalid request a 4xx, RSS flat, the log complete")


if __name__ == "__main__":
    main()

"""The sync service under load: how fast a committed task reaches an SSE client, and how the
API answers 50 concurrent status requests while a sync runs.

A real ``marketlake serve`` (its own process, loopback, a synthetic universe) runs one sync of
``--symbols`` symbols (1D and 1h bars, small batches so there are many commits). Meanwhile:

- one SSE client follows the run; for each ``task`` event, the delay from the moment the
  task's batch commit returned in the service (``committed_at``) to the client's receipt;
- 50 clients request ``GET /api/v1/sync/status`` back to back; their latency percentiles.

The reference, in the same run: the same 50 clients against the idle service after the run.
Also printed: the service process's CPU time per status request (idle phase; independent of
how loaded the machine is) and the load average, since latency under 50 clients on a shared
machine is mostly queueing for a core. The service runs on the wall clock (no
``MARKETLAKE_NOW``): commit-to-event delays compare its ``committed_at`` with ours.

    python bench/serve.py [--symbols 120] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import marketlake  # noqa: F401 -- before polars: its allocator setting (marketlake/__init__.py)

# isort: split
import httpx
import polars as pl

TOKEN = "bench-token-0123456789abcdef"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def start_server(home: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MARKETLAKE_HOME": str(home)}
    env.pop("MARKETLAKE_NOW", None)
    env["MARKETLAKE_API_TOKEN"] = TOKEN
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketlake.cli", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(cwd / "serve.log", "w"),  # noqa: SIM115 - kept open for the server
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(base + "/api/v1/sync/health", timeout=1)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("serve did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follow(base: str, run_id: str, delays: list[float], done: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream(
        "GET", f"{base}/api/v1/runs/{run_id}/events", headers=headers, timeout=None
    ) as res:
        kind = None
        for line in res.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "task":
                received = time.time()
                committed = datetime.fromisoformat(json.loads(line[5:])["committed_at"])
                delays.append((received - committed.timestamp()) * 1000.0)
            elif line.startswith("data:") and kind == "final":
                break
    done.set()


async def _get(reader, writer, request: bytes) -> None:
    """One keep-alive GET on a raw connection: send, read the head, read the body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise SystemExit(f"status answered {status.decode()}")
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    await reader.readexactly(length)


async def hammer(base: str, clients: int, until: threading.Event | float) -> list[float]:
    """``clients`` concurrent loops of GET status until ``until`` is set (or for that many s).

    Each client is one keep-alive connection speaking plain HTTP/1.1 over asyncio streams:
    a full HTTP client library costs the load generator more CPU per request than the
    service spends answering, and on a shared machine the latency would measure the client.
    """
    lat: list[float] = []
    deadline = time.monotonic() + until if isinstance(until, float) else None

    def over() -> bool:
        return until.is_set() if deadline is None else time.monotonic() >= deadline

    host, port = base.removeprefix("http://").split(":")
    request = (
        f"GET /api/v1/sync/status HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not over():
                t0 = time.perf_counter()
                await _get(reader, writer, request)
                lat.append((time.perf_counter() - t0) * 1000.0)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=120)
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args()

    from marketlake.lake import Lake
    from marketlake.pipeline import universe

    root = Path(tempfile.mkdtemp(prefix="marketlake-bench-serve-"))
    home = root / "home"
    syms = [f"B{i:04d}" for i in range(args.symbols)]
    rows = pl.DataFrame(
        {
            "symbol": syms,
            "asset_type": ["equity"] * len(syms),
            "provider": ["synthetic"] * len(syms),
        }
    )
    Lake(home).upsert(
        "instruments", universe.instruments_frame(rows, "b"), run_id="b", stage="universe"
    )
    (root / "marketlake.toml").write_text("[sync]\nbatch_tasks = 8\nconcurrency = 2\n")
    proc, base = start_server(home, root)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        res = httpx.post(
            base + "/api/v1/sync", json={"timeframes": ["1D", "1h"]}, headers=headers, timeout=30
        )
        res.raise_for_status()
        run_id = res.json()["data"]["run_id"]
        delays: list[float] = []
        done = threading.Event()
        t0 = time.perf_counter()
        sse = threading.Thread(target=follow, args=(base, run_id, delays, done), daemon=True)
        sse.start()
        busy = asyncio.run(hammer(base, args.clients, done))
        sync_s = time.perf_counter() - t0
        sse.join(timeout=60)
        cpu0 = cpu_seconds(proc.pid)
        idle = asyncio.run(hammer(base, args.clients, 5.0))
        cpu_per_request = (cpu_seconds(proc.pid) - cpu0) / max(1, len(idle))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    tasks = 2 * args.symbols
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"sync of {args.symbols} symbols x (1D, 1h) = {tasks} tasks in {sync_s:.1f} s")
    print(
        f"commit -> SSE event: {len(delays)} task events, p50 {pct(delays, 0.5):.1f} ms, "
        f"p99 {pct(delays, 0.99):.1f} ms, max {max(delays):.1f} ms"
    )
    for name, lat, secs in (("during the sync", busy, sync_s), ("idle (reference)", idle, 5.0)):
        print(
            f"status, {args.clients} concurrent, {name}: {len(lat)} requests "
            f"({len(lat) / secs:.0f}/s), p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms"
        )
    print(f"service CPU per status request (idle): {cpu_per_request * 1000:.2f} ms")
    print(
        f"ratio p50 during/idle: {statistics.median(busy) / statistics.median(idle):.2f}x, "
        f"p99 during/idle: {pct(busy, 0.99) / pct(idle, 0.99):.2f}x"
    )


if __name__ == "__main__":
    main()

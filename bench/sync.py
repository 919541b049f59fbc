"""A 2,600-symbol daily sync through the real Yahoo provider against a slow replay server.

The server (its own process, threaded) answers every chart request after ``--latency`` (50 ms)
with plausible chart JSON for that symbol (one year of daily bars, generated once before the
clock starts). The sync is the real one: ``run_sync`` plans, fetches with the configured
concurrency through the shared HTTP layer and token bucket, validates, diffs and commits to the
lake. Printed: wall time, requests/s, and the ratio to the lower bound

    bound = max(requests / rate_limit, requests x latency / concurrency)

(a client with no overhead at all could not beat it). By default the concurrency is sized so
that the rate limit, not the client, is the bound. Target: ratio <= 1.3.

    python bench/sync.py [--symbols 2600] [--rate 100] [--concurrency 0 (auto)] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

YEAR = 2024
SESSION_OPEN_UTC = 14 * 3600 + 30 * 60  # 09:30 New York (winter time; close enough here)


def symbols(n: int) -> list[str]:
    return [f"S{i:04d}" for i in range(n)]


def chart_body(symbol: str) -> bytes:
    """One year of weekday bars in Yahoo's chart shape (seeded by the symbol)."""
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(symbol.encode()))
    days = [datetime(YEAR, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(366)]
    days = [d for d in days if d.weekday() < 5 and d.year == YEAR]
    n = len(days)
    close = 20 + 80 * rng.random() * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + rng.random(n) * 0.01)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 0.01)
    volume = rng.integers(10_000, 5_000_000, n)
    ts = [int(d.timestamp()) + SESSION_OPEN_UTC for d in days]
    body = {
        "chart": {
            "result": [
                {
                    "meta": {
                        "currency": "USD",
                        "symbol": symbol,
                        "exchangeName": "NMS",
                        "instrumentType": "EQUITY",
                        "gmtoffset": -18000,
                        "timezone": "EST",
                        "exchangeTimezoneName": "America/New_York",
                        "dataGranularity": "1d",
                    },
                    "timestamp": ts,
                    "indicators": {
                        "quote": [
                            {
                                "open": open_.round(4).tolist(),
                                "high": high.round(4).tolist(),
                                "low": low.round(4).tolist(),
                                "close": close.round(4).tolist(),
                                "volume": volume.tolist(),
                            }
                        ],
                        "adjclose": [{"adjclose": close.round(4).tolist()}],
                    },
                }
            ],
            "error": None,
        }
    }
    return json.dumps(body).encode()


def serve(n_symbols: int, latency: float, ready, port, count, stop) -> None:
    """The replay server process: precompute bodies, then answer after ``latency``."""
    bodies = {s: chart_body(s) for s in symbols(n_symbols)}
    missing = b'{"chart": {"result": null, "error": {"code": "Not Found", "description": "x"}}}'

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave together: no delayed-ACK stall

        def do_GET(self) -> None:
            time.sleep(latency)
            with count.get_lock():
                count.value += 1
            sym = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            body = bodies.get(sym)
            self.send_response(200 if body else 404)
            self.send_header("content-type", "application/json")
            payload = body or missing
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 256
    port.value = httpd.server_port
    ready.set()
    import threading

    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    stop.wait()
    httpd.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2600)
    ap.add_argument("--rate", type=float, default=100.0, help="provider rate limit, req/s")
    ap.add_argument("--concurrency", type=int, default=0, help="0: sized from rate x latency")
    ap.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args()
    concurrency = args.concurrency or max(2, math.ceil(args.rate * args.latency * 2))

    from marketlake.lake.store import Lake
    from marketlake.pipeline import universe
    from marketlake.pipeline.config import ProviderSettings, Settings
    from marketlake.pipeline.runs import new_run_id
    from marketlake.pipeline.stages.ingest import run_sync

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    port, count = ctx.Value("i", 0), ctx.Value("i", 0)
    server = ctx.Process(
        target=serve, args=(args.symbols, args.latency, ready, port, count, stop), daemon=True
    )
    server.start()
    ready.wait(120)
    url = f"http://127.0.0.1:{port.value}"

    with tempfile.TemporaryDirectory(prefix="marketlake-bench-sync-") as tmp:
        home = Path(tmp)
        lake = Lake(home)
        csv = home / "universe.csv"
        csv.write_text("symbol,name\n" + "".join(f"{s},{s} Inc\n" for s in symbols(args.symbols)))
        universe.import_csv(
            lake, csv, run_id=new_run_id(datetime.now(UTC)), asset_type="equity", provider="yahoo"
        )
        settings = Settings(
            home=home,
            concurrency=concurrency,
            now=datetime(2025, 3, 3, 12, tzinfo=UTC),
            providers={
                "yahoo": ProviderSettings(
                    "yahoo", base_url=url, rate_limit_per_s=args.rate, concurrency=concurrency
                )
            },
        )
        t0 = time.perf_counter()
        result = run_sync(
            settings,
            provider="yahoo",
            timeframes=["1D"],
            kinds=["ohlcv"],
            start=f"{YEAR}-01-01",
            end=f"{YEAR + 1}-01-01",
            trigger="bench",
        )
        wall = time.perf_counter() - t0
        stop.set()
        requests = count.value
        bars = lake.scan("ohlcv").select("symbol").collect().height

    by_rate = requests / args.rate
    by_latency = requests * args.latency / concurrency
    bound = max(by_rate, by_latency)
    print(f"symbols          {args.symbols}")
    print(f"status           {result.status} (ok {result.tasks_ok}, failed {result.tasks_failed})")
    print(f"bars landed      {bars:,}")
    print(f"requests         {requests:,}")
    print(
        f"rate limit       {args.rate:g} req/s, concurrency {concurrency}, "
        f"latency {args.latency * 1000:.0f} ms"
    )
    print(f"wall             {wall:.2f} s")
    print(f"requests/s       {requests / wall:.1f}")
    print(
        f"lower bound      {bound:.2f} s ({'rate limit' if by_rate >= by_latency else 'latency'}"
        f"; rate {by_rate:.2f} s, latency/concurrency {by_latency:.2f} s)"
    )
    print(f"ratio            {wall / bound:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()

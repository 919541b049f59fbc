"""``backfill --cluster``: fetches fanned out over Dask workers (symbol x chunk), one rate limit
per provider across all of them, the driver committing as one process does; the lake ends
identical to a single-process backfill, also when a worker is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import polars as pl
import pytest
from distributed import get_task_stream
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, Settings
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
RATE = 20.0  # requests/s for the one yahoo bucket of the cluster
KEYS = {
    "ohlcv": ["symbol", "timeframe", "ts"],
    "sync_status": ["segment", "symbol", "timeframe", "kind"],
    "quarantine": ["symbol", "ts", "reason"],
}


class ChartServer:
    """Yahoo's chart API on loopback for any symbol: weekday bars in [period1, period2),
    seeded by the symbol; the arrival time of every request is recorded."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                at = time.monotonic()
                url = urlsplit(self.path)
                symbol = url.path.rsplit("/", 1)[-1]
                server.seen.append((at, symbol))
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = chart(symbol, int(q["period1"]), int(q["period2"]))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"


def chart(symbol: str, period1: int, period2: int) -> bytes:
    day = datetime.fromtimestamp(period1, UTC).replace(hour=0, minute=0, second=0)
    days = []
    while day.timestamp() < period2:
        if day.weekday() < 5 and period1 <= day.timestamp() + 52200 < period2:
            days.append(int(day.timestamp()) + 52200)  # 14:30 UTC
        day += timedelta(days=1)
    rng = np.random.default_rng(zlib.crc32(symbol.encode()) + len(days))
    close = 50 + 10 * rng.random(len(days))
    quote = {
        "open": (close * 0.99).round(4).tolist(),
        "high": (close * 1.01).round(4).tolist(),
        "low": (close * 0.98).round(4).tolist(),
        "close": close.round(4).tolist(),
        "volume": rng.integers(1_000, 100_000, len(days)).tolist(),
    }
    meta = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "NMS",
        "instrumentType": "EQUITY",
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "dataGranularity": "1d",
    }
    result = {
        "meta": meta,
        "timestamp": days,
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": quote["close"]}]},
    }
    return json.dumps({"chart": {"result": [result], "error": None}}).encode()


@pytest.fixture(scope="module")
def charts():
    server = ChartServer()
    yield server
    server.httpd.shutdown()


def yahoo_home(path: Path, url: str, symbols: list[str]) -> Settings:
    path.mkdir(parents=True)
    universe.add_many(Lake(path), symbols, run_id="u", provider="yahoo", asset_type="equity")
    yahoo = ProviderSettings(
        "yahoo", base_url=url, rate_limit_per_s=RATE, backoff_base_s=0.01, backoff_max_s=0.05
    )
    return Settings(home=path, now=NOW, concurrency=8, providers={"yahoo": yahoo})


def backfill(settings: Settings, **kw):
    return run_sync(
        settings,
        provider="yahoo",
        timeframes=["1D"],
        kinds=["ohlcv"],
        start="2026-01-01",
        end="2026-11-01",
        trigger="backfill",
        stage="backfill",
        **kw,
    )


def table(home: Path, name: str) -> pl.DataFrame:
    frame = Lake(home).read(name).drop("run_id", "ingested_at", strict=False)
    return frame.select(sorted(frame.columns)).sort(KEYS[name])


def assert_same_lake(a: Path, b: Path, tables=("ohlcv", "sync_status")) -> None:
    for name in tables:
        left, right = table(a, name), table(b, name)
        assert left.equals(right), (name, left, right)


def workers_ready(client) -> None:
    client.wait_for_workers(2, timeout=180)


@pytest.mark.slow
def test_cluster_backfill_equals_one_process_with_chunks_failures_and_quarantine(
    tmp_path, dask_client
):
    """Synthetic 1m bars in 8-day chunks (one task each), a corrupt and an unknown symbol."""
    workers_ready(dask_client)
    fake = ProviderSettings("fake", options={"fail": {"BAD": "corrupt", "NOPE": "invalid"}})
    homes = {}
    for label in ("one", "cluster"):
        home = tmp_path / label
        home.mkdir()
        lake = Lake(home)
        for s in ("AAA", "BBB"):
            universe.add(lake, s, run_id="u", provider="synthetic", asset_type="equity")
        for s in ("BAD", "NOPE"):
            universe.add(lake, s, run_id="u", provider="fake", asset_type="equity")
        settings = Settings(home=home, now=NOW, providers={"fake": fake})
        res = run_sync(
            settings,
            timeframes=["1D", "1m"],
            start="2026-10-25",
            stage="backfill",
            client=dask_client if label == "cluster" else None,
        )
        assert res.tasks_ok == 6 and res.tasks_failed == 2 and res.quarantined > 0, res
        homes[label] = (home, res)
    (one, r1), (clustered, r2) = homes["one"], homes["cluster"]
    assert (r1.inserted, r1.quarantined) == (r2.inserted, r2.quarantined)
    assert_same_lake(one, clustered, ("ohlcv", "sync_status", "quarantine"))
    logs = Lake(clustered).read("sync_logs").filter(pl.col("run_id") == r2.run_id)
    assert logs["task_name"].is_unique().all() and logs.height == 8


@pytest.mark.slow
def test_one_rate_limit_holds_across_all_workers(tmp_path, charts, dask_client):
    workers_ready(dask_client)
    symbols = [f"R{i:02d}" for i in range(30)]
    settings = yahoo_home(tmp_path / "home", charts.url, symbols)
    first = len(charts.seen)
    with get_task_stream(dask_client) as stream:
        res = backfill(settings, client=dask_client)
    assert res.tasks_ok == len(symbols) and res.tasks_failed == 0
    seen = charts.seen[first:]
    times = sorted(t for t, _ in seen)
    assert len(times) == len(symbols)
    # the bucket holds one token (burst 1): N requests need (N - 1) / rate seconds at least;
    # one bucket per worker would let two workers finish in half that. A worker sleeps from
    # when the scheduler's answer reaches it, so that answer's varying latency (tens of ms on a
    # loaded machine) moves single sends: allow two intervals' worth, far from half the span
    span = times[-1] - times[0]
    assert span >= (len(times) - 3) / RATE, span
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= RATE + 2, busiest
    # both workers fetched: the limit was shared, not one worker doing everything
    fetched_on = {t["worker"] for t in stream.data if "fetch_piece" in str(t["key"])}
    assert len(fetched_on) == 2, fetched_on


@pytest.mark.slow
def test_a_worker_killed_mid_backfill_is_retried_and_nothing_doubles(tmp_path, charts, dask_client):
    workers_ready(dask_client)
    symbols = [f"K{i:02d}" for i in range(40)]
    single = yahoo_home(tmp_path / "one", charts.url, symbols)
    backfill(single)
    settings = yahoo_home(tmp_path / "cluster", charts.url, symbols)
    pids = list(dask_client.run(os.getpid).values())
    first = len(charts.seen)
    out: dict = {}

    def run() -> None:
        try:
            out["res"] = backfill(settings, client=dask_client)
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["exc"] = exc

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 120
        while len(charts.seen) - first < 8 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert t.is_alive(), "the backfill ended before a worker could be killed"
        os.kill(pids[0], signal.SIGKILL)  # a worker dies with tasks in flight
    finally:
        t.join(300)
    assert "exc" not in out, out.get("exc")
    res = out["res"]
    assert res.tasks_ok == len(symbols) and res.tasks_failed == 0, res.errors
    assert_same_lake(single.home, settings.home)
    bars = Lake(settings.home).read("ohlcv")
    assert bars.select(KEYS["ohlcv"]).is_unique().all()
    logs = Lake(settings.home).read("sync_logs").filter(pl.col("run_id") == res.run_id)
    assert logs.height == len(symbols) and logs["task_name"].is_unique().all()


def test_cli_backfill_on_a_running_scheduler_and_usage_errors(tmp_path, dask_client):
    runner = CliRunner()
    results = {}
    for label, extra in (("one", []), ("cluster", ["--cluster", dask_client.scheduler.address])):
        env = {"MARKETLAKE_HOME": str(tmp_path / label), "MARKETLAKE_NOW": NOW.isoformat()}
        for s in ("AAA", "BBB", "CCC"):
            r = runner.invoke(app, ["universe", "add", s, "--provider", "synthetic"], env=env)
            assert r.exit_code == 0, r.output
        r = runner.invoke(
            app, ["backfill", "equity", "--start", "2025-01-01", "--json", *extra], env=env
        )
        assert r.exit_code == 0, r.output
        results[label] = json.loads(r.stdout.strip().splitlines()[-1])
    assert results["cluster"]["rows"] == results["one"]["rows"]
    assert_same_lake(tmp_path / "one", tmp_path / "cluster")
    env = {"MARKETLAKE_HOME": str(tmp_path / "one"), "MARKETLAKE_NOW": NOW.isoformat()}
    for spec, word in (("local:x", "local:N"), ("somehost", "tcp://host:8786")):
        args = ["backfill", "equity", "--start", "2025-01-01", "--cluster", spec]
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 2 and word in r.output, r.output

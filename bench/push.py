"""Benchmark ``marketlake push`` against the raw transport, in one run on this machine.

* a local lake of ``--symbols`` x ``--days`` daily bars (default 2,000 x 2,500 = 5M);
* a remote ``marketlake serve`` (its own temp home, its own throwaway PostgreSQL schema);
* the raw ceiling: the same zstd Arrow IPC bytes the push sends, POSTed to a bare receiver
  that only reads and discards the body (no parse, no lake, no database);
* the initial push of the whole table (``marketlake push`` as a child process): rows/s end to
  end (the remote's lake commit and its PostgreSQL load included) and as a multiple of the
  raw POST's time, the client's peak RSS and the remote's peak RSS (VmHWM) before and after:
  both stay flat as ``--days`` grows (run 1M and 5M bars to compare);
* one new day for every symbol pushed (the change feed path), wall time (``--new-days N``:
  N days pushed one by one, the median);
* with ``--readjust``: a whole-history re-adjustment (every bar's prices changed, as a split
  adjusts a symbol's history) pushed as changes: rows/s, the client's peak RSS and the
  remote's peak RSS during that push (its high-water mark reset just before).

``--into-non-empty``: the remote's table already holds an older copy (the last 10 days
missing, one symbol's closes different, 5 symbols the source no longer has), seeded before
the service starts, so the push is the snapshot diff (streamed into checksummed files,
compared partition by partition in bounded buckets, deletes of the keys the source lacks):
its peak RSS against the push into an empty table.

Usage: ``python bench/push.py [--symbols 2000] [--days 2500] [--into-non-empty]
[--readjust] [--new-days 1]``; the server comes from
``MARKETLAKE_BENCH_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import bars  # noqa: E402  (the same synthetic bars as bench/load.py)

from marketlake.lake.batches import conform, iter_batches  # noqa: E402
from marketlake.lake.store import Lake  # noqa: E402
from marketlake.pipeline.config import load_settings  # noqa: E402
from marketlake.pipeline.remote.client import Remote  # noqa: E402
from marketlake.pipeline.remote.wire import FLAG, encode  # noqa: E402
from marketlake.pipeline.stages.push import run_push  # noqa: E402

DSN = os.environ.get("MARKETLAKE_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def sink_main(port: int) -> None:
    """The bare receiver: read each body to its end, answer its size."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def take(request):
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return JSONResponse({"bytes": n})

    async def health(request):
        return JSONResponse({})

    app = Starlette(routes=[Route("/", take, methods=["POST"]), Route("/h", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (the kernel's high-water mark, VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (``/proc/<pid>/clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_watched(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``, reading its VmHWM until it exits (getrusage's children figure is useless
    here: exec records the forking parent's own peak as the child's)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            value = peak_rss_mb(proc.pid)
            if value == value:  # not NaN
                peak = max(peak, value)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak


def seed_remote(home: Path, symbols: int, days: int) -> dict[str, int]:
    """The remote's older copy of the table: the source's bars without the last 10 days,
    one symbol's closes different, and 5 symbols the source does not have; the counts a
    snapshot push of the source must report."""
    import polars as pl

    full = bars(symbols, days)
    cut = full.get_column("ts").max() - timedelta(days=10)
    old = full.filter(pl.col("ts") <= cut)
    first = pl.col("symbol") == "SYM00000"
    old = old.with_columns(pl.when(first).then(pl.col("close") + 1).otherwise(pl.col("close")))
    gone = bars(5, days - 10).with_columns(pl.col("symbol").str.replace("SYM", "GONE"))
    Lake(home).upsert("ohlcv", pl.concat([old, gone]), run_id="seed", stage="bench")
    return {"inserted": symbols * 10, "updated": days - 10, "deleted": 5 * (days - 10)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--days", type=int, default=2500)
    ap.add_argument("--into-non-empty", action="store_true")
    ap.add_argument("--readjust", action="store_true", help="also push a whole-history change")
    ap.add_argument("--new-days", type=int, default=1, help="new days pushed one by one")
    args = ap.parse_args()
    rows = args.symbols * args.days
    root = Path(tempfile.mkdtemp(prefix="ml-bench-push-"))
    schema = f"mlbench_{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen] = []
    try:
        local, remote_home = root / "local", root / "remote"
        t0 = time.perf_counter()
        Lake(local).upsert("ohlcv", bars(args.symbols, args.days), run_id="bench", stage="bench")
        print(f"local lake: {rows:,} bars in {time.perf_counter() - t0:.1f}s", flush=True)
        expect = {"inserted": rows, "updated": 0, "deleted": 0}
        if args.into_non_empty:
            t0 = time.perf_counter()
            expect = seed_remote(remote_home, args.symbols, args.days)
            print(f"remote lake seeded in {time.perf_counter() - t0:.1f}s: {expect}", flush=True)

        # the remote service, and the bare receiver
        (root / "marketlake.toml").write_text(f'[postgres]\nschema = "{schema}"\n')
        port, sink_port = free_port(), free_port()
        env = {**os.environ, "MARKETLAKE_HOME": str(remote_home), "MARKETLAKE_DSN": DSN}
        env["MARKETLAKE_API_TOKEN"] = TOKEN
        log = (root / "serve.log").open("w")
        serve = subprocess.Popen(
            [sys.executable, "-m", "marketlake.cli", "serve", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(serve)
        sink = subprocess.Popen([sys.executable, __file__, "--sink", str(sink_port)])
        procs.append(sink)
        url = f"http://127.0.0.1:{port}"
        wait_up(url + "/api/v1/sync/health", serve)
        wait_up(f"http://127.0.0.1:{sink_port}/h", sink)

        # the raw ceiling: the snapshot's IPC bytes, encoded once, then POSTed as they are
        import pyarrow as pa

        dt = Lake(local).table("ohlcv")
        schema_ = pa.schema(dt.schema().to_arrow()).append(pa.field(FLAG, pa.bool_()))
        body = root / "body.arrows"
        t0 = time.perf_counter()
        with body.open("wb") as fh:
            batches = (
                b.append_column(FLAG, pa.repeat(pa.scalar(False), b.num_rows))
                for b in iter_batches(dt, "ohlcv")
            )
            for chunk in encode(schema_, conform(batches, schema_)):
                fh.write(chunk)
        encode_s = time.perf_counter() - t0
        size = body.stat().st_size

        def chunks():
            with body.open("rb") as fh:
                while block := fh.read(1 << 20):
                    yield block

        t0 = time.perf_counter()
        res = httpx.post(f"http://127.0.0.1:{sink_port}/", content=chunks(), timeout=600)
        raw_s = time.perf_counter() - t0
        assert res.json()["bytes"] == size
        body.unlink()

        # the initial push, as the command runs it
        remote_before = peak_rss_mb(serve.pid)
        cenv = {**os.environ, "MARKETLAKE_HOME": str(local), "MARKETLAKE_REMOTE_TOKEN": TOKEN}
        cenv.pop("MARKETLAKE_DSN", None)
        t0 = time.perf_counter()
        out, client_rss = run_watched(
            [sys.executable, "-m", "marketlake.cli", "push", "--remote", url, "--tables", "ohlcv"]
            + ["--json"],
            cenv,
        )
        push_s = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"push failed: {out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        info = result["tables"]["ohlcv"]
        remote_after = peak_rss_mb(serve.pid)
        assert {k: info[k] for k in expect} == expect, info
        served = info.get("load") or {}

        # one new day for every symbol, --new-days times: the change feed path
        settings = load_settings(home=local, env={})
        days_s = []
        for n in range(args.new_days):
            day = bars(args.symbols, 1, first_day=args.days + n)
            Lake(local).upsert("ohlcv", day, run_id=f"bench2-{n}", stage="bench")
            t0 = time.perf_counter()
            inc = run_push(settings, Remote.parse(url, TOKEN), tables=["ohlcv"])
            days_s.append(time.perf_counter() - t0)
            assert inc.inserted == args.symbols, inc.to_json()
        day_s = sorted(days_s)[len(days_s) // 2]

        # a whole-history re-adjustment: every bar's prices change, pushed as changes
        if args.readjust:
            import polars as pl

            adjusted = bars(args.symbols, args.days).with_columns(
                [pl.col(c) * 0.5 for c in ("open", "high", "low", "close", "adj_close")]
            )
            Lake(local).upsert("ohlcv", adjusted, run_id="bench3", stage="bench")
            del adjusted
            reset = reset_peak(serve.pid)
            remote_idle = peak_rss_mb(serve.pid)
            t0 = time.perf_counter()
            out, adj_client_rss = run_watched(
                [sys.executable, "-m", "marketlake.cli", "push", "--remote", url]
                + ["--tables", "ohlcv", "--json"],
                cenv,
            )
            adj_s = time.perf_counter() - t0
            if out.returncode != 0:
                raise SystemExit(f"re-adjustment push failed: {out.stderr}")
            adj = json.loads(out.stdout.strip().splitlines()[-1])["tables"]["ohlcv"]
            adj_remote_rss = peak_rss_mb(serve.pid)
            assert adj["mode"] == "changes" and adj["updated"] == rows, adj

        ratio = push_s / raw_s
        print(f"\nbars: {rows:,} ({size / 1e6:.1f} MB as zstd Arrow IPC)")
        print(f"{'step':<46}{'seconds':>9}{'rows/s':>12}{'x raw':>8}")
        print(
            f"{'encode the snapshot stream (client side)':<46}{encode_s:>9.2f}{rows / encode_s:>12,.0f}"
        )
        print(
            f"{'raw Arrow IPC POST of the same bytes':<46}{raw_s:>9.2f}{rows / raw_s:>12,.0f}{1:>8.1f}"
        )
        print(
            f"{'marketlake push (lake commit + PG load)':<46}{push_s:>9.2f}{rows / push_s:>12,.0f}"
            f"{ratio:>8.1f}"
        )
        print(
            f"  remote load into PostgreSQL: mode {served.get('mode')}, "
            f"{served.get('inserted', 0):,} rows"
        )
        print(f"{'one new day, ' + str(args.symbols) + ' symbols (changes)':<46}{day_s:>9.2f}")
        if len(days_s) > 1:
            print(f"  median of {len(days_s)} new days: {' '.join(f'{x:.2f}' for x in days_s)}")
        into = "a non-empty" if args.into_non_empty else "an empty"
        print(
            f"peak RSS of the push into {into} table: client {client_rss:.0f} MB; "
            f"remote {remote_after:.0f} MB ({remote_before:.0f} MB when it started serving)"
        )
        if args.readjust:
            print(
                f"{'whole-history re-adjustment (changes)':<46}{adj_s:>9.2f}{rows / adj_s:>12,.0f}"
            )
            if adj.get("seconds"):
                print(f"  remote seconds of it: {adj['seconds']} (lake merge, PostgreSQL load)")
            print(
                f"peak RSS of the re-adjustment push: client {adj_client_rss:.0f} MB; remote "
                f"{adj_remote_rss:.0f} MB ({remote_idle:.0f} MB before it"
                f"{'' if reset else ', high-water mark not reset: includes earlier pushes'})"
            )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            import psycopg

            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as exc:  # the report matters more than the cleanup
            print(f"could not drop {schema}: {exc}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        sink_main(int(sys.argv[2]))
    else:
        main()

"""Benchmark the PostgreSQL load against its ceiling and against what home-grown scripts do.

In one run, on the same server, side by side:

* raw ADBC COPY (``adbc_ingest``) of the in-memory bars into an empty table with the same
  primary key: the ceiling;
* our initial ``run_load`` of the lake (reads the lake, COPY, primary key, watermark, logs);
* our incremental ``run_load`` of one new day (one bar per symbol) into the full table, end to end;
* a psycopg ``executemany`` upsert of 100k rows (the seeds' row-by-row way).

Usage: ``python bench/load.py [--symbols 2000] [--days 2520]``; the server comes from
``MARKETLAKE_BENCH_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``). Everything
lives in a temp lake and throwaway schemas dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import marketlake  # noqa: F401 -- before polars: its allocator setting (marketlake/__init__.py)

# isort: split
import numpy as np
import polars as pl

from marketlake.lake.store import Lake  # noqa: E402
from marketlake.lake.tables import period_expr  # noqa: E402
from marketlake.pipeline.config import load_settings  # noqa: E402
from marketlake.pipeline.serving import Serving  # noqa: E402
from marketlake.pipeline.stages.load import run_load  # noqa: E402

DSN = os.environ.get("MARKETLAKE_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2015, 1, 1, tzinfo=UTC)
EXECUTEMANY_ROWS = 100_000
NEW_DAYS = 5


def bars(symbols: int, days: int, first_day: int = 0, seed: int = 0) -> pl.DataFrame:
    """``symbols`` x ``days`` synthetic daily bars in the lake's OHLCV schema."""
    rng = np.random.default_rng(seed + first_day)
    n = symbols * days
    close = 100 * np.exp(np.cumsum(rng.standard_normal(n) * 0.01))
    start = START + timedelta(days=first_day)
    ts = pl.datetime_range(
        start, start + timedelta(days=days - 1), "1d", time_zone="UTC", eager=True
    )
    frame = pl.DataFrame({"symbol": [f"SYM{i:05d}" for i in range(symbols)]}).join(
        pl.DataFrame({"ts": ts}), how="cross"
    )
    return frame.with_columns(
        timeframe=pl.lit("1D"),
        open=close * 0.995,
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=rng.random(n) * 1e6,
        adj_close=close,
        provider=pl.lit("synthetic"),
        is_final=pl.lit(True),
        ingested_at=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)),
        run_id=pl.lit("bench"),
    ).with_columns(period_expr())


def checkpoint(db: Serving) -> None:
    """Start each timed step from a clean checkpoint so one step's WAL does not bill another."""
    try:
        db.run("CHECKPOINT", what="checkpoint")
        db.commit()
    except Exception:  # not superuser: measure without it
        db.rollback()


def executemany_upsert(dsn: str, schema: str, frame: pl.DataFrame) -> float:
    """The seeds' way: one parameterised INSERT ... ON CONFLICT per row. Returns seconds."""
    import psycopg

    cols = frame.columns
    names = ", ".join(f'"{c}"' for c in cols)
    sets = ", ".join(
        f'"{c}" = EXCLUDED."{c}"' for c in cols if c not in ("symbol", "timeframe", "ts")
    )
    sql = (
        f'INSERT INTO "{schema}".ohlcv ({names}) VALUES ({", ".join(["%s"] * len(cols))}) '  # noqa: S608
        f"ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET {sets}"
    )
    rows = frame.rows()
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(sql, rows)
        conn.commit()
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--days", type=int, default=2520)
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    raw_schema, our_schema = f"bench_raw_{tag}", f"bench_ours_{tag}"
    home = Path(tempfile.mkdtemp(prefix="marketlake-bench-"))
    ours = load_settings(home=home, dsn=DSN, env={}).with_(pg_schema=our_schema)
    raw = ours.with_(pg_schema=raw_schema)
    out: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        frame = bars(args.symbols, args.days)
        lake = Lake(home)
        lake.append("ohlcv", frame, run_id="bench", stage="bench")
        n = frame.height
        print(
            f"lake: {n:,} OHLCV rows ({args.symbols} symbols x {args.days} days) written in "
            f"{time.perf_counter() - t0:.1f}s to {home}"
        )

        # 1. the ceiling: raw COPY of in-memory arrow into an empty table with the same PK
        table = lake.read("ohlcv").to_arrow()
        with Serving(raw) as db:
            db.migrate()
            checkpoint(db)
            t0 = time.perf_counter()
            db.ingest("ohlcv", table, mode="append")
            db.commit()
            out["raw"] = time.perf_counter() - t0
        del table

        # 2. our initial load, end to end
        with Serving(ours) as db:
            checkpoint(db)
        t0 = time.perf_counter()
        res = run_load(ours)
        out["initial"] = time.perf_counter() - t0
        assert res.status == "ok" and res.inserted == n, res.to_json()

        # 3. one new day (one bar per symbol), end to end, a few times
        days = []
        for k in range(NEW_DAYS):
            day = bars(args.symbols, 1, first_day=args.days + k)
            lake.upsert("ohlcv", day, run_id=f"day{k}", stage="bench")
            t0 = time.perf_counter()
            res = run_load(ours)
            days.append(time.perf_counter() - t0)
            assert res.inserted == args.symbols and res.updated == 0, res.to_json()
        out["day"] = statistics.median(days)

        # 4. the seeds' executemany upsert of 100k rows (into the raw schema's full table:
        # half new rows, half updates, like a re-download)
        em = pl.concat(
            [
                frame.head(EXECUTEMANY_ROWS // 2).with_columns(close=pl.col("close") + 1),
                bars(
                    args.symbols,
                    -(-EXECUTEMANY_ROWS // 2 // args.symbols),
                    first_day=args.days + 100,
                ).head(EXECUTEMANY_ROWS // 2),
            ]
        ).select(frame.columns)
        with Serving(raw) as db:
            checkpoint(db)
        out["executemany"] = executemany_upsert(DSN, raw_schema, em)
        em_rows = em.height

        # 5. the same 100k-row change set the marketlake way: lake MERGE (the ingest stage's
        # job, shown apart), then the load ships the delta (COPY to staging + one upsert)
        t0 = time.perf_counter()
        lake.upsert("ohlcv", em, run_id="em", stage="bench")
        lake_merge = time.perf_counter() - t0
        with Serving(ours) as db:
            checkpoint(db)
        t0 = time.perf_counter()
        res = run_load(ours)
        out["delta"] = time.perf_counter() - t0
        assert res.inserted + res.updated == em_rows, res.to_json()

        rate = {k: n / out[k] for k in ("raw", "initial")}
        rate["day"] = args.symbols / out["day"]
        rate["executemany"] = em_rows / out["executemany"]
        rate["delta"] = em_rows / out["delta"]
        print()
        print(f"{'step':<46}{'rows':>11}{'seconds':>10}{'rows/s':>13}")
        rows = [
            ("raw ADBC COPY into empty table + PK (ceiling)", n, "raw"),
            ("marketlake initial run_load", n, "initial"),
            (f"marketlake one new day run_load (median of {NEW_DAYS})", args.symbols, "day"),
            ("psycopg executemany upsert (50% new)", em_rows, "executemany"),
            ("marketlake run_load of that same change set", em_rows, "delta"),
        ]
        for label, count, key in rows:
            print(f"{label:<46}{count:>11,}{out[key]:>10.3f}{rate[key]:>13,.0f}")
        print()
        print("one new day, each run (s): " + ", ".join(f"{d:.3f}" for d in days))
        print(f"(lake MERGE of that change set, the ingest stage's cost: {lake_merge:.2f}s)")
        checks = [
            ("initial load / raw COPY ceiling (rows/s)", rate["initial"] / rate["raw"], 0.8, ">="),
            ("one new day end to end (s)", out["day"], 0.25, "<"),
            (
                "initial load / executemany (rows/s)",
                rate["initial"] / rate["executemany"],
                5.0,
                ">=",
            ),
            (
                "same change set: run_load / executemany",
                rate["delta"] / rate["executemany"],
                5.0,
                ">=",
            ),
        ]
        for label, value, target, op in checks:
            ok = value >= target if op == ">=" else value < target
            print(f"{label:<46}{value:>10.2f}   target {op} {target:<5} {'ok' if ok else 'MISSED'}")
    finally:
        import psycopg

        with psycopg.connect(DSN, autocommit=True) as conn:
            for schema in (raw_schema, our_schema):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

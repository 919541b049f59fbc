"""The load stage against a real PostgreSQL: deltas only, idempotent, crash-safe, redacted."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import polars as pl
import psycopg
import pytest

from marketlake.errors import ConfigError, ConnectionConfigError
from marketlake.lake.store import Lake
from marketlake.lake.tables import TABLES, period_expr
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.serving import Serving
from marketlake.pipeline.stages.load import APPLICATION_NAME, run_load

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2020, 1, 1, tzinfo=UTC)


# -- helpers ------------------------------------------------------------------------------------
def bars(symbols: int, days: int, start: datetime = START, seed: int = 0) -> pl.DataFrame:
    """Synthetic daily OHLCV in the lake's schema: ``symbols`` x ``days`` rows."""
    syms = pl.DataFrame({"symbol": [f"SYM{i:04d}" for i in range(symbols)]})
    ts = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                start, start + timedelta(days=days - 1), "1d", time_zone="UTC", eager=True
            )
        }
    )
    frame = syms.join(ts, how="cross")
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.standard_normal(frame.height) * 0.01))
    return frame.with_columns(
        timeframe=pl.lit("1D"),
        open=close * 0.995,
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=rng.random(frame.height) * 1e6,
        adj_close=close,
        provider=pl.lit("synthetic"),
        is_final=pl.lit(True),
        ingested_at=pl.lit(datetime(2024, 1, 1, tzinfo=UTC)),
        run_id=pl.lit("seed"),
    ).with_columns(period_expr())


def settings_for(home: Path, pg_dsn: tuple[str, str], dsn: str | None = None):
    base, schema = pg_dsn
    return load_settings(home=home, dsn=dsn or base, env={}).with_(pg_schema=schema)


def served(dsn: str, schema: str, table: str) -> pl.DataFrame:
    """The served table (lake columns only), sorted by key."""
    tdef = TABLES[table]
    cols = ", ".join(f'"{c}"' for c in tdef.columns)
    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT {cols} FROM "{schema}"."{table}"')  # noqa: S608 (test-owned names)
        frame = pl.from_arrow(cur.fetch_arrow_table())
    return frame.sort(list(tdef.key))


def lake_frame(home: Path, table: str) -> pl.DataFrame:
    tdef = TABLES[table]
    return Lake(home).read(table).select(tdef.columns).sort(list(tdef.key))


def assert_same(home: Path, pg_dsn: tuple[str, str], table: str = "ohlcv") -> None:
    """Row count and a checksum of every ordered row agree between lake and server."""
    dsn, schema = pg_dsn
    lake, server = lake_frame(home, table), served(dsn, schema, table)
    assert server.height == lake.height
    assert server.hash_rows().sum() == lake.hash_rows().sum()
    assert server.equals(lake)


def served_version(conn: psycopg.Connection, schema: str, table: str = "ohlcv") -> int | None:
    """The lake version the served table equals (None before its first load)."""
    if conn.execute("SELECT to_regclass(%s)", (f'"{schema}".load_watermarks',)).fetchone()[0]:
        row = conn.execute(
            f'SELECT lake_version FROM "{schema}".load_watermarks '  # noqa: S608
            "WHERE table_name = %s",
            (table,),
        ).fetchone()
        return None if row is None else row[0]
    return None


def table_stats(result, table: str = "ohlcv") -> dict:
    return result.details["tables"][table]


# -- the happy paths ----------------------------------------------------------------------------
def test_full_load_equals_the_lake_and_a_rerun_changes_nothing(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(20, 50), run_id="r1", stage="test")
    lake.upsert(
        "market_cache",
        pl.DataFrame(
            {
                "key": ["status:us", "calendar:earnings"],
                "value": ['{"open": true, "tz": "America/New_York"}', '[{"symbol": "BRK.B"}]'],
                "provider": ["yahoo", "yahoo"],
            }
        ),
        run_id="r1",
        stage="test",
    )
    settings = settings_for(home, pg_dsn)

    first = run_load(settings)
    assert first.status == "ok" and first.errors == ()
    assert table_stats(first)["inserted"] == 1000
    assert first.inserted == 1000 + 2
    assert_same(home, pg_dsn, "ohlcv")
    dsn, schema = pg_dsn
    cache = served(dsn, schema, "market_cache")
    assert [json.loads(v) for v in cache["value"]] == [
        [{"symbol": "BRK.B"}],
        {"open": True, "tz": "America/New_York"},
    ]

    second = run_load(settings)
    assert (second.inserted, second.updated) == (0, 0)
    assert table_stats(second)["mode"] == "noop"
    assert second.to_json()["rows"]["inserted"] == 0

    # one sync_logs row per table task, mirrored to the server with jsonb metadata
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f'SELECT task_name, status, metadata FROM "{schema}".sync_logs '  # noqa: S608
            "WHERE run_id = %s ORDER BY task_name",
            (first.run_id,),
        ).fetchall()
    # the first run's own load:sync_logs row reached the server with the second run
    assert [r[0] for r in rows] == ["load:market_cache", "load:ohlcv", "load:sync_logs"]
    assert all(r[1] == "success" for r in rows)
    ohlcv_meta = next(r[2] for r in rows if r[0] == "load:ohlcv")
    assert ohlcv_meta["inserted"] == 1000
    lake_logs = Lake(home).read("sync_logs").filter(pl.col("run_id") == second.run_id)
    assert set(lake_logs["task_name"]) == {"load:ohlcv", "load:market_cache", "load:sync_logs"}


def test_monthly_bars_and_open_interest_are_served(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(2, 3), run_id="r1", stage="test")
    assert run_load(settings_for(home, pg_dsn)).status == "ok"
    months = [datetime(2019, 11, 1, tzinfo=UTC), datetime(2019, 12, 1, tzinfo=UTC)]
    months.append(datetime(2020, 1, 1, tzinfo=UTC))
    monthly = (
        bars(2, 3)
        .with_columns(
            pl.lit("1mo").alias("timeframe"),
            pl.Series("ts", months * 2, dtype=pl.Datetime("us", "UTC")),
            pl.lit(9_000_000.0).alias("open_interest"),
        )
        .with_columns(period_expr())
    )
    lake.append("ohlcv", monthly, run_id="r2", stage="test")
    res = run_load(settings_for(home, pg_dsn))
    assert res.status == "ok", res.errors
    assert_same(home, pg_dsn, "ohlcv")  # every lake column, open_interest included
    dsn, schema = pg_dsn
    served_monthly = served(dsn, schema, "ohlcv").filter(pl.col("timeframe") == "1mo")
    assert served_monthly.height == 6 and served_monthly["open_interest"].min() == 9_000_000.0


def test_only_the_delta_travels(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(30, 40), run_id="r1", stage="test")
    settings = settings_for(home, pg_dsn)
    run_load(settings)

    new_day = bars(30, 41).filter(pl.col("ts") == START + timedelta(days=40))
    lake.upsert("ohlcv", new_day, run_id="r2", stage="test")
    day = run_load(settings, tables=["ohlcv"])
    assert table_stats(day)["mode"] == "changes"
    assert (day.inserted, day.updated, day.details["deleted"]) == (30, 0, 0)
    assert_same(home, pg_dsn)

    changed = lake.read("ohlcv").filter(pl.col("symbol") == "SYM0003").head(7)
    lake.upsert("ohlcv", changed.with_columns(close=pl.col("close") + 1), run_id="r3", stage="test")
    upd = run_load(settings)
    assert (upd.inserted, upd.updated, upd.unchanged) == (0, 7, 0)
    assert_same(home, pg_dsn)

    gone = lake.read("ohlcv").filter(pl.col("symbol") == "SYM0007").head(5)
    assert lake.delete_keys("ohlcv", gone, run_id="r4", stage="test") == 5
    dele = run_load(settings)
    assert (dele.inserted, dele.updated, dele.details["deleted"]) == (0, 0, 5)
    assert_same(home, pg_dsn)
    assert run_load(settings).inserted == 0


def test_duplicate_keys_in_one_delta_do_not_raise(home, pg_dsn):
    lake = Lake(home)
    base = bars(5, 10)
    # a careless blind append stored every key twice: the initial snapshot holds duplicates
    lake.append("ohlcv", base, run_id="r1", stage="test")
    lake.append("ohlcv", base, run_id="r1b", stage="test")
    settings = settings_for(home, pg_dsn)
    first = run_load(settings)
    assert first.status == "ok" and table_stats(first)["inserted"] == 50

    Lake(home).delete_keys("ohlcv", base, run_id="r1c", stage="test")  # clean the lake
    lake.append("ohlcv", base, run_id="r1d", stage="test")
    run_load(settings)
    assert_same(home, pg_dsn)

    # the same key changed in several commits, a new row appended twice, another deleted
    key = base.head(1)
    for bump in (1.0, 2.0, 3.0):
        lake.upsert(
            "ohlcv", key.with_columns(close=pl.col("close") + bump), run_id="r2", stage="test"
        )
    extra = bars(5, 11).filter(pl.col("ts") == START + timedelta(days=10))
    lake.append("ohlcv", extra, run_id="r3", stage="test")
    lake.append("ohlcv", extra.head(2), run_id="r4", stage="test")
    lake.delete_keys("ohlcv", extra.head(2), run_id="r5", stage="test")
    res = run_load(settings)
    assert res.status == "ok", res.errors
    assert (res.inserted, res.updated) == (3, 1)
    assert_same(home, pg_dsn)


def test_evolving_indicator_columns_reach_the_server(home, pg_dsn):
    lake = Lake(home)
    keys = bars(3, 5).select("symbol", "timeframe", "ts", "period")
    lake.upsert("indicators", keys.with_columns(sma_20=pl.lit(1.5)), run_id="r1", stage="test")
    settings = settings_for(home, pg_dsn)
    run_load(settings)
    # a new day brings a new output column (the append evolves the schema), then history
    # gets it too
    day = bars(3, 6).filter(pl.col("ts") == START + timedelta(days=5))
    lake.append(
        "indicators",
        day.select("symbol", "timeframe", "ts", "period").with_columns(
            sma_20=pl.lit(1.5), rsi_14=pl.lit(55.0)
        ),
        run_id="r2",
        stage="test",
    )
    lake.upsert(
        "indicators",
        keys.with_columns(sma_20=pl.lit(1.5), rsi_14=pl.lit(55.0)),
        run_id="r3",
        stage="test",
    )
    res = run_load(settings)
    assert (res.inserted, res.updated) == (3, 15)
    dsn, schema = pg_dsn
    with psycopg.connect(dsn) as conn:
        got = conn.execute(
            f'SELECT count(*), sum(rsi_14), sum(sma_20) FROM "{schema}".indicators'  # noqa: S608
        ).fetchone()
    assert got == (18, 18 * 55.0, 18 * 1.5)


def test_a_vacuumed_change_feed_falls_back_to_a_snapshot_diff(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(4, 10), run_id="r1", stage="test")
    settings = settings_for(home, pg_dsn)
    run_load(settings)
    current = lake.read("ohlcv")
    # the appended file is what the feed would read; compaction + vacuum remove it
    lake.append(
        "ohlcv",
        bars(4, 11).filter(pl.col("ts") == START + timedelta(days=10)),
        run_id="r2",
        stage="test",
    )
    lake.upsert("ohlcv", current.head(3).with_columns(close=pl.lit(1.0)), run_id="r3", stage="test")
    lake.delete_keys("ohlcv", current.tail(2), run_id="r4", stage="test")
    lake.table("ohlcv").optimize.compact()
    lake.table("ohlcv").vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    res = run_load(settings)
    stats = table_stats(res)
    assert stats["mode"] == "snapshot"
    assert (stats["inserted"], stats["updated"], stats["deleted"]) == (4, 3, 2)
    assert_same(home, pg_dsn)


# -- failures -----------------------------------------------------------------------------------
def test_unreachable_or_refused_servers_are_one_redacted_config_error(home, pg_dsn):
    secret = "s3cr3t-pw-xyz"
    lake = Lake(home)
    lake.append("ohlcv", bars(1, 2), run_id="r1", stage="test")
    for dsn in (
        f"postgresql://postgres:{secret}@127.0.0.1:1/test",
        f"postgresql://no_such_role_ml:{secret}@127.0.0.1:5432/test",
    ):
        with pytest.raises(ConnectionConfigError) as info:
            run_load(settings_for(home, pg_dsn, dsn))
        message = str(info.value)
        assert secret not in message and "\n" not in message
        assert "127.0.0.1" in message
        assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="no serving database"):
        run_load(load_settings(home=home, env={}))


def test_a_failing_table_is_logged_redacted_and_others_still_load(home, pg_dsn, caplog):
    secret = "pw-never-shown-42"
    dsn, schema = pg_dsn
    with_pw = dsn.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    lake = Lake(home)
    lake.append("ohlcv", bars(2, 3), run_id="r1", stage="test")
    lake.upsert(
        "market_cache",
        pl.DataFrame({"key": ["k"], "value": ["{not json"]}),
        run_id="r1",
        stage="test",
    )
    res = run_load(settings_for(home, pg_dsn, with_pw))
    assert res.status == "partial" and res.tasks_failed == 1
    assert table_stats(res)["inserted"] == 6
    assert "market_cache" in res.errors[0]
    logs = Lake(home).read("sync_logs")
    failed = logs.filter(pl.col("status") == "failed")
    assert failed["task_name"].to_list() == ["load:market_cache"]
    everything = json.dumps(res.to_json()) + caplog.text + logs.write_csv()
    assert secret not in everything


def test_kill_9_at_random_points_then_a_rerun_converges(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(200, 1000), run_id="r1", stage="test")
    settings = settings_for(home, pg_dsn)
    dsn, schema = pg_dsn
    code = (
        "import sys\n"
        "from marketlake.pipeline.config import load_settings\n"
        "from marketlake.pipeline.stages.load import run_load\n"
        "run_load(load_settings(home=sys.argv[1], dsn=sys.argv[2], env={})"
        ".with_(pg_schema=sys.argv[3]))\n"
    )
    env = dict(os.environ)
    rng = random.Random(7)
    interrupted = 0
    with psycopg.connect(dsn, autocommit=True) as watch:
        for round_ in range(4):
            if round_ >= 2:  # later rounds kill during change-feed loads
                frame = lake.read("ohlcv").filter(pl.col("symbol") < f"SYM{20 * round_:04d}")
                lake.upsert(
                    "ohlcv",
                    frame.with_columns(close=pl.col("close") * 1.01),
                    run_id=f"u{round_}",
                    stage="test",
                )
            proc = subprocess.Popen(
                [sys.executable, "-c", code, str(home), dsn, schema],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 20
            while (
                proc.poll() is None
                and time.monotonic() < deadline
                and not watch.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = %s",
                    (APPLICATION_NAME,),
                ).fetchone()
            ):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.6))  # a random point of the load
            proc.kill()
            proc.wait()
            interrupted += served_version(watch, schema) != lake.version("ohlcv")
    assert interrupted >= 1  # at least one kill landed before the table was committed
    res = run_load(settings)
    assert res.status == "ok", res.errors
    assert_same(home, pg_dsn)
    assert run_load(settings).inserted == 0


def test_a_terminated_session_mid_load_is_retried_and_converges(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(200, 1000), run_id="r1", stage="test")
    settings = settings_for(home, pg_dsn)
    dsn, _ = pg_dsn
    with Serving(settings) as db:  # the migrations first: the session to kill is a table's
        db.migrate()
    killed = threading.Event()
    stop = threading.Event()

    def killer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                    "AND state = 'active' AND now() - query_start > interval '150 ms' "
                    # a table's load, never a migration or bookkeeping statement: only those
                    # are retried per table (on a busy machine any statement can take 150 ms)
                    "AND (query ILIKE '%%_ml_stage%%' OR query ILIKE '%%ohlcv%%')",
                    (APPLICATION_NAME,),
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.set()
                    return
                time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        res = run_load(settings)
    finally:
        stop.set()
        thread.join(5)
    assert killed.is_set()
    assert res.status == "ok", res.errors
    # regression: on a loaded machine the killed statement could belong to another table,
    # so only the table that was hit shows a second attempt
    assert sum(t["attempts"] - 1 for t in res.details["tables"].values()) >= 1
    assert_same(home, pg_dsn)


def test_two_concurrent_loaders_do_not_race(home, pg_dsn):
    lake = Lake(home)
    lake.append("ohlcv", bars(100, 500), run_id="r1", stage="test")
    settings = settings_for(home, pg_dsn).with_(lock_wait=True)  # the lake's writer lock
    results, errors = [], []

    def load() -> None:
        try:
            results.append(run_load(settings, tables=["ohlcv"]))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and all(r.status == "ok" for r in results), [r.errors for r in results]
    # one of them loaded the table, the other found it done under the lock
    assert sorted(table_stats(r)["inserted"] for r in results) == [0, 50_000]
    assert_same(home, pg_dsn)

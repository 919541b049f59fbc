"""ohlcv and indicators are range-partitioned by ts in PostgreSQL: yearly partitions for daily
bars, monthly for intraday, created on demand by ``load`` with the same load semantics; rows
served before the partitioning migration are moved into the partitions."""

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from marketlake.lake.tables import period_expr
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.load import run_load

pytestmark = pytest.mark.postgres


def bars(tf: str, start: datetime, n: int, step: timedelta, symbol: str = "AAA") -> pl.DataFrame:
    ts = [start + i * step for i in range(n)]
    close = [100.0 + i for i in range(n)]
    return pl.DataFrame(
        {
            "symbol": symbol,
            "timeframe": tf,
            "ts": ts,
            "open": close,
            "high": [c + 1 for c in close],
            "low": close,
            "close": close,
            "volume": 1.0,
            "provider": "t",
            "is_final": True,
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")), period_expr())


def partitions(dsn: str, schema: str, parent: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE n.nspname = %s AND p.relname = %s ORDER BY 1",
            (schema, parent),
        ).fetchall()
    return [r[0] for r in rows]


def test_load_creates_yearly_and_monthly_partitions_on_demand(home, pg_dsn):
    dsn, schema = pg_dsn
    settings = load_settings(home=home, dsn=dsn, env={}).with_(pg_schema=schema)
    lake = settings.open_lake()
    daily = bars("1D", datetime(2022, 12, 30, tzinfo=UTC), 5, timedelta(days=1))
    hourly = bars("1h", datetime(2024, 1, 31, 22, tzinfo=UTC), 4, timedelta(hours=1))
    lake.append("ohlcv", pl.concat([daily, hourly]), run_id="r1", stage="sync")
    first = run_load(settings, tables=["ohlcv"])
    assert first.inserted == 9
    assert partitions(dsn, schema, "ohlcv") == ["ohlcv_daily", "ohlcv_intraday"]
    assert partitions(dsn, schema, "ohlcv_daily") == ["ohlcv_daily_2022", "ohlcv_daily_2023"]
    assert partitions(dsn, schema, "ohlcv_intraday") == [
        "ohlcv_intraday_2024_01",
        "ohlcv_intraday_2024_02",
    ]
    # an increment reaching a new year: its partition appears, the same upsert semantics
    more = bars("1D", datetime(2024, 3, 1, tzinfo=UTC), 2, timedelta(days=1))
    changed = daily.head(1).with_columns(pl.col("close") + 0.5, pl.col("high") + 0.5)
    lake.upsert("ohlcv", pl.concat([more, changed]), run_id="r2", stage="sync")
    second = run_load(settings, tables=["ohlcv"])
    assert (second.inserted, second.updated) == (2, 1)
    assert "ohlcv_daily_2024" in partitions(dsn, schema, "ohlcv_daily")
    with psycopg.connect(dsn) as conn:
        n, part = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE tableoid::regclass::text LIKE %s) "  # noqa: S608
            f'FROM "{schema}".ohlcv',
            ("%ohlcv_daily_2023",),
        ).fetchone()
    assert (n, part) == (11, 3)
    assert run_load(settings, tables=["ohlcv"]).inserted == 0


def test_rows_served_before_partitioning_are_moved_into_partitions(home, pg_dsn):
    """A server migrated up to the unpartitioned tables, holding rows, then migrated on."""
    from marketlake.pipeline.serving.connection import Serving

    dsn, schema = pg_dsn
    settings = load_settings(home=home, dsn=dsn, env={}).with_(pg_schema=schema)
    db = Serving(settings).open()
    try:
        pending = db.pending_migrations()
        db.script(db.sql("bootstrap"), what="bootstrap")
        for mig in pending:
            if mig.version >= 4:
                break
            from marketlake.pipeline.serving.sqltext import quote_ident, render

            db.script(render(mig.text, schema=quote_ident(schema)), what=mig.name)
            db.query("record_migration", (mig.version, mig.name, mig.checksum))
        db.commit()
    finally:
        db.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".ohlcv (symbol, timeframe, ts, close, period) VALUES '  # noqa: S608
            "('OLD', '1D', '2019-05-01Z', 1.0, '2019'), ('OLD', '15m', '2021-07-01 10:15Z', 2.0, '2021-07')"
        )
    db = Serving(settings).open()
    try:
        assert [m.split("_")[0] for m in db.migrate()][:1] == ["004"]
    finally:
        db.close()
    assert partitions(dsn, schema, "ohlcv_intraday") == ["ohlcv_intraday_2021_07"]
    assert partitions(dsn, schema, "ohlcv_daily") == ["ohlcv_daily_2019"]
    with psycopg.connect(dsn) as conn:
        count = f'SELECT count(*) FROM "{schema}".ohlcv'  # noqa: S608
        assert conn.execute(count).fetchone()[0] == 2
    # then a load: the served table equals the lake again (its snapshot replaces the rest)
    lake = settings.open_lake()
    lake.append(
        "ohlcv",
        bars("1D", datetime(2020, 1, 1, tzinfo=UTC), 2, timedelta(days=1)),
        run_id="r",
        stage="sync",
    )
    run_load(settings, tables=["ohlcv"])
    assert "ohlcv_daily_2020" in partitions(dsn, schema, "ohlcv_daily")
    with psycopg.connect(dsn) as conn:
        assert conn.execute(count).fetchone()[0] == 2

"""Migrations of the serving schema: applied once, under a lock, matching the lake's tables."""

from __future__ import annotations

import threading

import psycopg
import pytest

from marketlake.errors import ConfigError, LoadError
from marketlake.lake.tables import TABLES
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.serving import Serving, migrations, quote_ident, render
from marketlake.sql import load_sql

pytestmark = pytest.mark.postgres

JSON_COLUMNS = {
    ("instruments", "provider_symbols"),
    ("instruments", "routes"),
    ("profiles", "raw"),
    ("fundamentals", "raw"),
    ("market_cache", "value"),
    ("sync_logs", "metadata"),
    ("quarantine", "row"),
    ("sync_settings", "value"),
}


def _settings(tmp_path, dsn: str, schema: str):
    return load_settings(home=tmp_path / "home", dsn=dsn, env={}).with_(pg_schema=schema)


def _fetch(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def test_migrations_apply_once_and_rerun_is_a_noop(tmp_path, pg_dsn):
    dsn, schema = pg_dsn
    names = [m.name for m in migrations()]
    assert names and names == sorted(names)
    with Serving(_settings(tmp_path, dsn, schema)) as db:
        assert db.migrate() == names
        assert db.migrate() == []
    with Serving(_settings(tmp_path, dsn, schema)) as db:
        assert db.migrate() == []
    rows = _fetch(dsn, f'SELECT version, name FROM "{schema}".schema_migrations ORDER BY 1')  # noqa: S608
    assert [r[1] for r in rows] == names


def test_concurrent_migrators_apply_each_migration_once(tmp_path, pg_dsn):
    dsn, schema = pg_dsn
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with Serving(_settings(tmp_path, dsn, schema)) as db:
                results.append(db.migrate())
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = sorted(name for r in results for name in r)
    assert applied == sorted(m.name for m in migrations())


def test_sync_logs_has_the_seed_indexes_and_columns(tmp_path, pg_dsn):
    dsn, schema = pg_dsn
    with Serving(_settings(tmp_path, dsn, schema)) as db:
        db.migrate()
    indexes = dict(
        _fetch(
            dsn,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'sync_logs'",
            (schema,),
        )
    )
    assert "(task_name)" in indexes["idx_sync_logs_task_name"]
    assert "(completed_at DESC)" in indexes["idx_sync_logs_completed_at"]
    cols = {
        c
        for (c,) in _fetch(
            dsn,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'sync_logs'",
            (schema,),
        )
    }
    seed = {
        "id",
        "task_name",
        "status",
        "rows_updated",
        "error_message",
        "started_at",
        "completed_at",
        "duration_seconds",
        "metadata",
    }
    assert seed | {"run_id", "stage", "trigger"} <= cols
    for table in ("sync_settings", "load_watermarks", "schema_migrations"):
        assert _fetch(dsn, "SELECT to_regclass(%s)", (f'"{schema}".{table}',))[0][0] is not None


def test_every_lake_table_has_a_twin_with_its_columns_and_key(tmp_path, pg_dsn):
    dsn, schema = pg_dsn
    with Serving(_settings(tmp_path, dsn, schema)) as db:
        db.migrate()
        served = db.columns()
    for name, tdef in TABLES.items():
        cols = dict(served[name])
        server_only = {"id"} if name == "sync_logs" else set()
        assert set(cols) - server_only == set(tdef.columns), name
        for col in tdef.columns:
            want = "jsonb" if (name, col) in JSON_COLUMNS else None
            if want:
                assert cols[col] == want, (name, col)
            else:
                assert cols[col] != "jsonb", (name, col)
        # the lake key is the twin's primary key or unique constraint
        keys = _fetch(
            dsn,
            "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint con "
            "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
            "WHERE con.conrelid = to_regclass(%s) AND con.contype IN ('p', 'u') "
            "GROUP BY con.oid",
            (f'"{schema}"."{name}"',),
        )
        assert list(tdef.key) in [r[0] for r in keys], name


def test_bad_schema_names_are_refused(tmp_path, pg_server_dsn):
    for bad in ('x"; DROP TABLE t; --', "", "a b", "1abc", "x" * 64):
        with pytest.raises(ConfigError):
            Serving(_settings(tmp_path, pg_server_dsn, bad))
    with pytest.raises(LoadError):
        quote_ident('sma_20"')


def test_sql_texts_load_from_the_package_and_render_placeholders():
    text = load_sql("postgres/queries/watermark_get.sql")
    assert "{schema}" in text
    assert '"s"' in render(text, schema=quote_ident("s"))
    with pytest.raises(LoadError):
        render("SELECT {nothing}")
    with pytest.raises(ValueError):
        load_sql("../lake/store.py")


def test_monthly_and_open_interest_migration_on_a_served_schema(pg_dsn):
    """A schema served before 005 (daily bars in it) gains open_interest and takes 1mo rows."""
    dsn, schema = pg_dsn
    q = quote_ident(schema)
    before = [m for m in migrations() if m.version < 5]
    (m005,) = [m for m in migrations() if m.version == 5]
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        for mig in before:
            conn.execute(render(mig.text, schema=q))
        conn.execute(
            f"SELECT {q}.ml_ensure_ts_partitions('{q}.ohlcv'::regclass, '1D', "  # noqa: S608
            "'2024-01-01', '2024-01-02')"
        )
        conn.execute(
            f"INSERT INTO {q}.ohlcv (symbol, timeframe, ts, close, period) "  # noqa: S608
            "VALUES ('NIFTY FUT', '1D', '2024-01-01', 21700, '2024')"
        )
        conn.execute(render(m005.text, schema=q))
        conn.execute(
            f"SELECT {q}.ml_ensure_ts_partitions('{q}.ohlcv'::regclass, '1mo', "  # noqa: S608
            "'2024-01-01', '2024-01-01')"
        )
        conn.execute(
            f"INSERT INTO {q}.ohlcv (symbol, timeframe, ts, close, period, open_interest) "  # noqa: S608
            "VALUES ('NIFTY FUT', '1mo', '2024-01-01', 21730, '2024', 12500000)"
        )
        rows = conn.execute(
            f"SELECT timeframe, open_interest, tableoid::regclass::text FROM {q}.ohlcv "  # noqa: S608
            "ORDER BY timeframe"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("1D", None), ("1mo", 12500000.0)]
    assert all(r[2].endswith("ohlcv_daily_2024") for r in rows)  # yearly partitions


def test_routes_migration_moves_the_reserved_key_into_its_column(pg_dsn):
    dsn, schema = pg_dsn
    q = quote_ident(schema)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        for mig in [m for m in migrations() if m.version < 6]:
            conn.execute(render(mig.text, schema=q))
        conn.execute(
            f"INSERT INTO {q}.instruments (symbol, provider_symbols) VALUES "  # noqa: S608
            """('BTC/IDR', '{"indodax": "btcidr", "routes": {"profile": "coingecko"}}'),"""
            """('AAPL', '{"source": "file"}')"""
        )
        (m006,) = [m for m in migrations() if m.version == 6]
        conn.execute(render(m006.text, schema=q))
        rows = conn.execute(
            f"SELECT symbol, provider_symbols, routes, listed_by FROM {q}.instruments "  # noqa: S608
            "ORDER BY symbol"
        ).fetchall()
    assert rows == [
        ("AAPL", {}, None, "file"),
        ("BTC/IDR", {"indodax": "btcidr"}, {"profile": "coingecko"}, None),
    ]

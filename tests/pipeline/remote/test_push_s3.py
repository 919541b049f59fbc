"""push and pull when the lakes live in S3 (moto's server on loopback): a local lake at one
prefix pushes to a service whose lake is at another; the remote's lake equals the local one
after a snapshot and after a change, its PostgreSQL follows, and a pulled app table lands in
the local S3 lake."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import polars as pl
import psycopg
import pytest
from psycopg import sql
from remote_helpers import TOKEN, Remote, cli_env
from tests_helpers import bars

from marketlake.pipeline.config import load_settings
from marketlake.pipeline.remote.client import Remote as Target
from marketlake.pipeline.stages.pull import run_pull

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SYMBOLS = [f"S{i:02d}" for i in range(12)]


@pytest.fixture
def remote(tmp_path, pg_server_dsn, s3_lake):
    schema = f"mltest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".watchlists (id bigint PRIMARY KEY, owner text NOT NULL, '
            "symbol text, note text, updated_at timestamptz NOT NULL DEFAULT now(), "
            "deleted_at timestamptz)"
        )
    env = s3_lake | {"MARKETLAKE_LAKE_URI": s3_lake["MARKETLAKE_LAKE_URI"] + "-remote"}
    # a tiny merge budget: the change push below is merged out of core, into S3
    srv = Remote(
        tmp_path / "remote",
        tmp_path,
        pg_server_dsn,
        schema,
        env,
        "\n[serve]\npush_memory_rows = 5\n",
    )
    srv.schema, srv.lake_env = schema, env
    yield srv
    srv.stop()
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def push(home, env, remote) -> dict:
    """``marketlake push`` as its own process: delta-rs reads the change feed holding the GIL,
    which would starve moto's server thread inside this process."""
    out = subprocess.run(
        [sys.executable, "-m", "marketlake.cli", "push", "--remote", remote.url, "--json"]
        + ["--tables", "ohlcv"],
        env=cli_env(home) | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["tables"]["ohlcv"]


def q(text: str, remote) -> sql.Composed:
    return sql.SQL(text).format(sql.Identifier(remote.schema))


def rows(settings, name="ohlcv"):
    frame = settings.open_lake().read(name)
    return frame.select(sorted(frame.columns)).sort(["symbol", "timeframe", "ts"])


def test_push_and_pull_between_s3_lakes(tmp_path, remote, s3_lake):
    local = load_settings(home=tmp_path / "local", env=s3_lake)
    there = load_settings(home=remote.home, env=remote.lake_env)
    assert local.lake.uri.startswith("s3://") and there.lake.uri.startswith("s3://")
    assert local.lake.uri != there.lake.uri
    target = Target.parse(remote.url, TOKEN)
    lake = local.open_lake()
    lake.upsert("ohlcv", bars(SYMBOLS, days=40), run_id="r1", stage="sync")

    info = push(local.home, s3_lake, remote)
    assert (info["mode"], info["inserted"]) == ("snapshot", 12 * 40)
    assert rows(there).equals(rows(local))

    new_day = bars(SYMBOLS, days=41).filter(pl.col("ts") == pl.col("ts").max())
    changed = bars(SYMBOLS[:3], days=1, close=7.0)  # an update of three existing bars
    lake.upsert("ohlcv", new_day, run_id="r2", stage="sync")
    lake.upsert("ohlcv", changed, run_id="r3", stage="sync")
    info = push(local.home, s3_lake, remote)
    assert (info["mode"], info["inserted"], info["updated"]) == ("changes", 12, 3)
    assert rows(there).equals(rows(local))
    assert "ohlcv: merging 15 rows into files holding 480 out of core" in remote.output()
    with psycopg.connect(remote.dsn) as conn:
        served = conn.execute(q("SELECT count(*) FROM {}.ohlcv", remote)).fetchone()[0]
    assert served == 12 * 41

    with psycopg.connect(remote.dsn, autocommit=True) as conn:
        conn.execute(
            q(
                "INSERT INTO {}.watchlists (id, owner, symbol) VALUES (1, 'ann', 'AAPL'), (2, 'b', 'X')",
                remote,
            )
        )
    pulled = run_pull(local, target, tables=["watchlists"])
    assert pulled.status == "ok", pulled.errors
    assert pulled.inserted == 2
    got = local.open_lake().location.list("watchlists")
    assert any(k.endswith(".parquet") for k in got)  # the table lives in the local bucket
    from deltalake import DeltaTable

    dt = DeltaTable(local.lake.table_uri("watchlists"), storage_options=local.lake.storage_options)
    assert sorted(r["id"] for r in dt.to_pyarrow_table().to_pylist()) == [1, 2]

    # a full pull into the table that now holds rows: the snapshot diff over S3 (ranged reads)
    with psycopg.connect(remote.dsn, autocommit=True) as conn:
        conn.execute(q("DELETE FROM {}.watchlists WHERE id = 2", remote))
    full = run_pull(local, target, tables=["watchlists"], full=True)
    assert full.status == "ok", full.errors
    assert (full.inserted, full.details["deleted"]) == (0, 1)
    dt = DeltaTable(local.lake.table_uri("watchlists"), storage_options=local.lake.storage_options)
    assert [r["id"] for r in dt.to_pyarrow_table().to_pylist()] == [1]

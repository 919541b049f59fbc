"""``marketlake push`` between two homes over a real service on a loopback port: the remote's
lake equals the local one after every push, its PostgreSQL follows, re-sends change 0 rows,
``kill -9`` of either side mid-push is survived, a wrong token is refused, a new indicator
column travels, and a lost watermark falls back to a snapshot diff."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest
from psycopg import sql
from remote_helpers import TOKEN, Remote, cli_env, table
from tests_helpers import bars, has_page_crcs

from marketlake.lake import Lake
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.remote.client import Remote as Target
from marketlake.pipeline.stages.push import run_push

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SYMBOLS = [f"S{i:03d}" for i in range(40)] + ["BRK.B", "x'; DROP TABLE ohlcv;--"]


@pytest.fixture(scope="module")
def remote(tmp_path_factory, pg_server_dsn):
    import uuid

    schema = f"mltest_{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("remote")
    srv = Remote(root / "home", root, pg_server_dsn, schema)
    srv.schema = schema
    yield srv
    srv.stop()
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def local(tmp_path):
    home = tmp_path / "local"
    Lake(home).upsert("ohlcv", bars(SYMBOLS, days=30), run_id="r1", stage="sync")
    return home


def push(home, remote, tables=("ohlcv",), token=TOKEN):
    settings = load_settings(home=home, env={})
    return run_push(settings, Target.parse(remote.url, token), tables=list(tables))


def stmt(remote, text: str, name: str = "") -> sql.Composed:
    """SQL with the remote's schema (and a table) quoted as identifiers."""
    return sql.SQL(text).format(s=sql.Identifier(remote.schema), t=sql.Identifier(name))


def served_rows(remote, name="ohlcv") -> int:
    with psycopg.connect(remote.dsn) as conn:
        return conn.execute(stmt(remote, "SELECT count(*) FROM {s}.{t}", name)).fetchone()[0]


def reset_remote(remote, names=("ohlcv", "indicators")):
    """An empty remote lake table (a fresh table id) and served table for the next test."""
    import shutil

    for name in names:
        shutil.rmtree(remote.home / "lake" / name, ignore_errors=True)
    with psycopg.connect(remote.dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{remote.schema}.load_watermarks",)).fetchone()[
            0
        ]:
            for name in names:
                conn.execute(stmt(remote, "TRUNCATE {s}.{t}", name))
                conn.execute(
                    stmt(remote, "DELETE FROM {s}.load_watermarks WHERE table_name = %s"), (name,)
                )


def test_push_then_changes_then_nothing(remote, local):
    reset_remote(remote)
    first = push(local, remote)
    assert first.status == "ok", first.errors
    assert first.details["tables"]["ohlcv"]["mode"] == "snapshot"
    assert first.inserted == 42 * 30
    assert table(remote.home, "ohlcv").equals(table(local, "ohlcv"))
    assert served_rows(remote) == 42 * 30

    lake = Lake(local)
    lake.upsert("ohlcv", bars(SYMBOLS, days=31, close=1.0), run_id="r2", stage="sync")  # +1 day
    lake.upsert("ohlcv", bars(["S001"], days=2, close=5.0), run_id="r3", stage="sync")  # 2 changed
    lake.delete_keys("ohlcv", bars(["S002"], days=30), run_id="r4", stage="sync")  # 30 gone
    second = push(local, remote)
    assert second.status == "ok", second.errors
    info = second.details["tables"]["ohlcv"]
    assert info["mode"] == "changes"
    assert (second.inserted, second.updated, second.details["deleted"]) == (42, 2, 30)
    assert table(remote.home, "ohlcv").equals(table(local, "ohlcv"))
    assert served_rows(remote) == 42 * 31 - 30  # S002 lost its 30 old bars, kept the new one
    # the change merge writes like every local merge: page checksums in every file it wrote
    rlake = Lake(remote.home)
    paths = rlake.table("ohlcv").get_add_actions(flatten=True).column("path").to_pylist()
    assert all(has_page_crcs(rlake.path("ohlcv") / p) for p in paths)

    third = push(local, remote)
    assert third.details["tables"]["ohlcv"]["mode"] == "noop"
    assert third.inserted + third.updated + third.details["deleted"] == 0


def test_an_unacknowledged_push_is_resent_and_changes_nothing(remote, local):
    # regression guard for the lost acknowledgement: the remote committed, the source never
    # heard back, so its watermark stayed behind and the same batch goes again
    reset_remote(remote)
    assert push(local, remote).status == "ok"
    marks_file = next((local / "remotes").glob("*.json"))
    before = marks_file.read_bytes()
    Lake(local).upsert("ohlcv", bars(SYMBOLS, days=32), run_id="r2", stage="sync")
    assert push(local, remote).inserted == 84
    marks_file.write_bytes(before)  # as if the acknowledgement never arrived
    again = push(local, remote)
    info = again.details["tables"]["ohlcv"]
    assert info["already_applied"] is True
    assert again.inserted + again.updated + again.details["deleted"] == 0
    assert table(remote.home, "ohlcv").equals(table(local, "ohlcv"))
    assert served_rows(remote) == 42 * 32


def test_a_lost_watermark_falls_back_to_a_snapshot_diff(remote, local):
    reset_remote(remote)
    assert push(local, remote).status == "ok"
    Lake(local).delete_keys("ohlcv", bars(["S003"], days=30), run_id="r2", stage="sync")
    for f in (local / "remotes").glob("*.json"):
        f.unlink()  # no watermark: the whole table goes, the remote diffs it against its own
    res = push(local, remote)
    info = res.details["tables"]["ohlcv"]
    assert info["mode"] == "snapshot"
    assert (res.inserted, res.updated, res.details["deleted"]) == (0, 0, 30)
    assert table(remote.home, "ohlcv").equals(table(local, "ohlcv"))
    assert served_rows(remote) == 41 * 30
    # the snapshot diff writes like every other write: page checksums in every live file
    rlake = Lake(remote.home)
    paths = rlake.table("ohlcv").get_add_actions(flatten=True).column("path").to_pylist()
    assert all(has_page_crcs(rlake.path("ohlcv") / p) for p in paths)


def test_a_new_indicator_column_appears_remotely(remote, local):
    reset_remote(remote)
    base = bars(["AAA", "BBB"], days=5).select("symbol", "timeframe", "ts", "period")
    lake = Lake(local)
    lake.upsert("indicators", base.with_columns(sma_5=pl.lit(1.5)), run_id="i1", stage="compute")
    assert push(local, remote, tables=["indicators"]).status == "ok"
    lake.upsert(
        "indicators",
        base.with_columns(sma_5=pl.lit(1.5), rsi_14=pl.lit(55.0)),
        run_id="i2",
        stage="compute",
    )
    res = push(local, remote, tables=["indicators"])
    assert res.status == "ok", res.errors
    assert res.updated == 10
    remote_frame = table(remote.home, "indicators")
    assert "rsi_14" in remote_frame.columns
    assert remote_frame.equals(table(local, "indicators"))
    with psycopg.connect(remote.dsn) as conn:
        got = conn.execute(
            stmt(remote, "SELECT count(*), min(rsi_14) FROM {s}.indicators")
        ).fetchone()
    assert got == (10, 55.0)


def test_a_wrong_token_is_refused_and_nothing_moves(remote, local):
    res = subprocess.run(
        [sys.executable, "-m", "marketlake.cli", "push", "--remote", remote.url],
        env=cli_env(local, token="wrong-" + TOKEN),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert "refused the token" in res.stderr
    assert TOKEN not in res.stderr + res.stdout
    assert not (local / "remotes").exists() or not list((local / "remotes").glob("*.json"))


def _many_bars(symbols: int, days: int) -> pl.DataFrame:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    ts = pl.datetime_range(
        start, start + timedelta(days=days - 1), "1d", eager=True, time_zone="UTC"
    )
    frame = pl.DataFrame({"symbol": [f"K{i:04d}" for i in range(symbols)]}).join(
        pl.DataFrame({"ts": ts}), how="cross"
    )
    price = (pl.int_range(0, pl.len()) % 97).cast(pl.Float64) + 1.0
    return frame.with_columns(
        timeframe=pl.lit("1D"),
        open=price,
        high=price + 1,
        low=price - 0.5,
        close=price,
        volume=pl.lit(1000.0),
        provider=pl.lit("t"),
        is_final=pl.lit(True),
    )


def _push_cli(home, remote) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "marketlake.cli", "push", "--remote", remote.url, "--json"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_spool(remote, timeout=60.0) -> None:
    scratch = remote.home / ".scratch"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = scratch.glob("push-*/body.arrows") if scratch.exists() else []
        if any(p.exists() and p.stat().st_size > 0 for p in bodies):
            return
        time.sleep(0.01)
    raise AssertionError("the push never reached the remote")


def test_kill9_of_either_side_then_push_again_makes_the_remote_equal(remote, tmp_path):
    reset_remote(remote)
    home = tmp_path / "big"
    Lake(home).upsert("ohlcv", _many_bars(200, 500), run_id="b", stage="s")
    # the source dies while its body is on the wire
    proc = _push_cli(home, remote)
    _wait_for_spool(remote)
    proc.kill()
    assert proc.wait(timeout=10) == -9  # killed mid-push, not finished
    # the remote dies while a body arrives (or while it applies it)
    proc = _push_cli(home, remote)
    _wait_for_spool(remote)
    remote.kill9()
    proc.wait(timeout=60)
    assert proc.returncode != 0
    remote.start()
    proc = _push_cli(home, remote)
    out, errs = proc.communicate(timeout=240)
    assert proc.returncode == 0, errs
    result = json.loads(out.strip().splitlines()[-1])
    assert result["tables"]["ohlcv"]["sent"] == 200 * 500
    assert table(remote.home, "ohlcv").equals(table(home, "ohlcv"))
    assert served_rows(remote) == 200 * 500

"""``marketlake query`` is read-only: every way to write, read outside the lake, attach or
install is refused with one line and the lake stays intact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


@pytest.fixture
def synced(home):
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="synthetic", asset_type="equity")
    run_sync(load_settings(home=home, env={}, now=NOW), timeframes=["1D"], start="2026-10-01")
    return lake


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _query(home: Path, *args: str):
    env = {"MARKETLAKE_HOME": str(home), "COLUMNS": "200"}
    return CliRunner().invoke(app, ["query", *args], env=env)


def test_a_select_still_works(home, synced):
    res = _query(home, "SELECT symbol, count(*) AS n FROM ohlcv GROUP BY 1", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["symbol"] == "AAA"


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        # regression: this COPY left the lake unreadable (exit 0)
        ("COPY (SELECT 1 AS x) TO '{log}/00000000000000000099.json' (FORMAT json)", "COPY"),
        ("COPY ohlcv TO '{lake}/ohlcv/stolen.parquet'", "COPY"),
        ("SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
        ("SELECT * FROM read_text('{home}/../outside.txt')", "outside.txt"),
        ("ATTACH '{home}/other.duckdb' AS other", "ATTACH"),
        ("CREATE TABLE t AS SELECT * FROM ohlcv", "CREATE"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("SELECT 1; COPY (SELECT 1) TO '{lake}/x.csv'", "one statement"),
        ("SELECT * FROM read_json('http://127.0.0.1:9/x.json')", "http://127.0.0.1:9"),
    ],
)
def test_query_attacks_are_refused_and_the_lake_is_intact(home, synced, sql, refusal):
    # regression: COPY TO into the lake, read_csv('/etc/passwd'), ATTACH, CREATE TABLE and
    # INSTALL all ran
    lake_root = synced.path("ohlcv").parent
    (home.parent / "outside.txt").write_text("private")
    before = _files(lake_root)
    text = sql.format(log=lake_root / "ohlcv" / "_delta_log", lake=lake_root, home=home)
    res = _query(home, text)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and refusal in lines[0], res.stderr
    assert "private" not in res.output
    assert _files(lake_root) == before
    assert not (home / "other.duckdb").exists()
    assert synced.read("ohlcv").height > 0


def test_out_is_the_way_to_write_and_never_into_the_lake(home, synced, tmp_path):
    dest = tmp_path / "bars.csv"
    res = _query(home, "SELECT * FROM ohlcv", "--format", "csv", "--out", str(dest))
    assert res.exit_code == 0, res.output
    assert pl.read_csv(dest).height == synced.read("ohlcv").height
    log = synced.path("ohlcv") / "_delta_log" / "00000000000000000099.json"
    before = _files(synced.path("ohlcv").parent)
    res = _query(home, "SELECT 1", "--format", "json", "--out", str(log))
    assert res.exit_code == 2 and "inside the lake" in res.stderr
    assert _files(synced.path("ohlcv").parent) == before

import json
import os
import re
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from marketlake.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
SYMS = [
    "../../etc/passwd",
    "AAA",
    "BRK.B",
    "BTC/IDR",
    "NSE_INDEX|Nifty 50",
    "x'; DROP TABLE ohlcv;--",
]
ENV = {"MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00"}


def run(home, *args, env=None):
    result = runner.invoke(app, [*args], env={**ENV, "MARKETLAKE_HOME": str(home), **(env or {})})
    return result


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def commands():
    out = []
    for cmd in app.registered_commands:
        out.append(cmd.name or cmd.callback.__name__)
    for group in app.registered_groups:
        for cmd in group.typer_instance.registered_commands:
            out.append(f"{group.name} {cmd.name}")
    return out


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in commands():
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert len(result.stdout.strip()) > 40, name
        assert f"marketlake {name}" in readme, f"{name} missing from README"


def test_readme_commands_are_the_ci_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
    assert any("marketlake demo" in b for b in blocks)


def test_universe_sync_status_logs_query_export(home, tmp_path):
    csv = tmp_path / "u.csv"
    csv.write_text(
        "symbol,name\nAAA,Alpha\nBRK.B,Berkshire\nx'; DROP TABLE ohlcv;--,Evil\n"
        "../../etc/passwd,Path\nNSE_INDEX|Nifty 50,Index\n"
    )
    r = run(home, "universe", "import", str(csv), "--provider", "synthetic")
    assert r.exit_code == 0, r.output
    r = run(home, "universe", "add", "BTC/IDR", "--asset-type", "crypto", "--provider", "synthetic")
    assert r.exit_code == 0, r.output
    r = run(home, "universe", "list", "--json")
    assert {row["symbol"] for row in last_json(r)} == set(SYMS)
    r = run(home, "sync", "--dry-run", "--json", "--start", "2026-06-01")
    plan = last_json(r)
    assert r.exit_code == 0 and len(plan["tasks"]) == len(SYMS)
    assert set(plan["tasks"][0]) >= {
        "symbol",
        "timeframe",
        "kind",
        "start",
        "end",
        "provider",
        "reason",
    }
    r = run(home, "sync", "--json", "--start", "2026-06-01")
    res = last_json(r)
    assert r.exit_code == 0 and res["status"] == "ok" and res["rows"]["inserted"] > 400
    assert set(res) >= {"run_id", "stage", "status", "tasks", "rows", "duration_seconds", "errors"}
    r = run(home, "sync", "--json", "--start", "2026-06-01")
    again = last_json(r)
    assert again["rows"]["inserted"] == 0 and again["rows"]["updated"] == 0
    r = run(home, "status", "--json")
    seg = {(s["segment"], s["timeframe"]): s for s in last_json(r)}
    assert seg[("equity", "1D")]["symbols"] == 5 and seg[("crypto", "1D")]["failed"] == 0
    r = run(home, "logs", "--json", "--task", "BRK.B")
    assert all("BRK.B" in row["task_name"] for row in last_json(r)) and r.exit_code == 0
    r = run(
        home,
        "query",
        "SELECT symbol, count(*) AS n FROM ohlcv GROUP BY 1 ORDER BY 1",
        "--format",
        "json",
    )
    rows = last_json(r)
    assert [x["symbol"] for x in rows] == sorted(SYMS)
    r = run(home, "query", "SELECT symbol FROM ohlcv LIMIT 1", "--format", "csv")
    assert r.stdout.startswith("symbol\n")

    out = tmp_path / "export"
    r = run(home, "export", "ohlcv", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    path = Path(last_json(r)["path"])
    a = pl.from_arrow(pq.read_table(path)).sort("symbol", "ts")
    b = pl.read_parquet(path).sort("symbol", "ts")
    c = pl.from_pandas(pd.read_parquet(path)).sort("symbol", "ts")
    d = duckdb.read_parquet(str(path)).pl().sort("symbol", "ts")
    # DuckDB names the zone after its session setting ("Etc/UTC"): same instants
    d = d.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))
    assert a.equals(b) and a.equals(c) and a.equals(d)
    assert set(a["symbol"]) == set(SYMS)
    for path in home.rglob("*"):
        assert path.resolve().is_relative_to(home.resolve())
    r = run(home, "export", "ohlcv", "--out", str(out), "--format", "csv", "--symbols", "BRK.B")
    assert r.exit_code == 0 and (out / "ohlcv.csv").read_text().count("BRK.B") > 100
    r = run(home, "maintain", "--json")
    assert r.exit_code == 0 and "ohlcv" in last_json(r)
    r = run(home, "query", "SELECT count(*) AS n FROM ohlcv", "--format", "json")
    assert last_json(r)[0]["n"] == len(a)


def test_usage_errors_exit_2_with_one_line(home):
    r = run(home, "sync", "--symbols", "NOPE")
    assert r.exit_code == 1 or r.exit_code == 2
    assert "NOPE" in r.stderr and len(r.stderr.strip().splitlines()) <= 3
    r = run(home, "sync", "--timeframes", "7h")
    assert r.exit_code == 2 and "unknown timeframe" in r.stderr
    r = run(home, "query", "SELEC nonsense")
    assert r.exit_code == 2 and "query failed" in r.stderr
    r = run(home, "export", "nosuchtable", "--out", str(home / "x"))
    assert r.exit_code == 2


def test_unwritable_home_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/marketlake-home")  # not writable even for root
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
        target = target / "inner"
    r = run(target, "status")
    assert r.exit_code == 2
    assert "not writable" in r.stderr


@pytest.mark.slow
def test_demo_runs_offline(home):
    r = run(home, "demo", "--symbols", "4", "--json")
    assert r.exit_code == 0, r.output
    report = last_json(r)
    assert report["status"] == "ok" and report["lake"] == str(home / "lake")
    assert [s["stage"] for s in report["steps"]] == ["sync", "sync", "compute"]
    assert report["sample"] and "rsi_14" in report["sample"][0]


def universe_of(home, *symbols):
    for s in symbols:
        r = run(home, "universe", "add", s, "--provider", "synthetic")
        assert r.exit_code == 0, r.output


def test_scope_never_with_limit_plans_a_never_synced_symbol(home):
    # regression: --limit was applied before --scope, so `--scope never --limit 1` planned nothing
    universe_of(home, "AAA", "BBB", "CCC")
    r = run(home, "sync", "--symbols", "AAA", "--timeframes", "1D", "--start", "2026-11-01")
    assert r.exit_code == 0, r.output
    args = ("sync", "--dry-run", "--json", "--timeframes", "1D", "--start", "2026-11-01")
    r = run(home, *args, "--scope", "never", "--limit", "1")
    assert r.exit_code == 0, r.output
    assert {t["symbol"] for t in last_json(r)["tasks"]} == {"BBB"}


def test_timeframe_aliases_on_the_command_line_print_canonical_names(home):
    # regression: `--timeframes 1d` was rejected
    universe_of(home, "AAA")
    r = run(
        home, "sync", "--dry-run", "--json", "--timeframes", "1d,1wk,60m", "--start", "2026-11-01"
    )
    assert r.exit_code == 0, r.output
    assert {t["timeframe"] for t in last_json(r)["tasks"]} == {"1D", "1W", "1h"}
    r = run(home, "sync", "--dry-run", "--json", "--timeframes", "1m", "--start", "2026-11-19")
    assert {t["timeframe"] for t in last_json(r)["tasks"]} == {"1m"}


def test_progress_counters_never_pass_their_totals(home):
    # regression: counters ran on across the steps of daily/demo (`49/12`, `4/3`)
    universe_of(home, "AAA", "BBB", "CCC")
    universe_of(home, "BTC/USD")
    run(home, "universe", "add", "ETH/USD", "--asset-type", "crypto", "--provider", "synthetic")
    r = run(home, "daily")
    assert r.exit_code == 0, r.output
    pairs = [(int(a), int(b)) for a, b in re.findall(r": (\d+)/(\d+)", r.stderr)]
    assert len(pairs) >= 3 and all(a <= b for a, b in pairs), r.stderr
    assert "daily [2]" in r.stderr  # each step counts on its own


def test_status_and_logs_print_whole_rows_when_piped(home):
    # regression: off a terminal, status and logs wrapped each row into fragments
    universe_of(home, "AVERYLONGSYMBOLNAME.WITH.MANY.PARTS")
    r = run(home, "sync", "--timeframes", "1D", "--start", "2026-11-01", "--json")
    run_id = last_json(r)["run_id"]
    r = run(home, "logs", "--limit", "1")
    row = next(line for line in r.stdout.splitlines() if "AVERYLONG" in line)
    assert "sync:ohlcv:1D:AVERYLONGSYMBOLNAME.WITH.MANY.PARTS" in row and run_id in row
    assert "success" in row
    r = run(home, "status")
    row = next(line for line in r.stdout.splitlines() if "equity" in line)
    assert "1D" in row and "ohlcv" in row and "2026-11-20" in row


def test_backfill_json_names_its_stage(home):
    # regression: `backfill --json` said "stage": "sync"
    universe_of(home, "AAA")
    r = run(home, "backfill", "equity", "--start", "2026-10-01", "--timeframes", "1D", "--json")
    assert r.exit_code == 0, r.output
    assert last_json(r)["stage"] == "backfill"
    r = run(home, "logs", "--json", "--task", "AAA")
    assert r.exit_code == 0 and last_json(r)[0]["trigger"] == "backfill"


def test_a_pinned_clock_is_the_only_clock(home):
    # regression: with MARKETLAKE_NOW set, sync stamped status and logs with the wall clock, so
    # the next plan started after its own end and status showed negative ages
    universe_of(home, "AAA", "BBB")
    r = run(home, "sync", "--timeframes", "1D,1h", "--start", "2026-11-01", "--json")
    assert r.exit_code == 0, r.output
    pinned = ENV["MARKETLAKE_NOW"]
    r = run(home, "query", "SELECT max(completed_at) AS t FROM sync_logs", "--format", "json")
    assert last_json(r)[0]["t"].replace(" ", "T") <= pinned
    r = run(home, "status", "--json")
    assert all(row["freshness_hours"] >= 0 for row in last_json(r))
    r = run(home, "sync", "--dry-run", "--json", "--timeframes", "1D,1h")
    tasks = last_json(r)["tasks"]
    assert all(t["start"] < t["end"] <= pinned for t in tasks)

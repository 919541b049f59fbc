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

"""The lake at ``s3://`` on a real S3 API (moto's server on loopback) behaves as the local lake:
sync, compute, load, query and maintain give identical results; concurrent writers are kept
apart by conditional puts; settings that would allow unsafe renames are refused."""

import json

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.lake.location import LakeLocation
from marketlake.pipeline.config import load_settings

runner = CliRunner()
NOW = {"MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00"}
SYMS = ["AAA", "BRK.B", "x'; DROP TABLE ohlcv;--"]
KEY = ["symbol", "timeframe", "ts"]


def cli(home, env, *args):
    result = runner.invoke(app, list(args), env={**NOW, "MARKETLAKE_HOME": str(home), **env})
    assert result.exit_code == 0, result.output
    return result


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def pipeline(home, env, config) -> dict:
    """universe -> sync -> compute -> load -> query -> maintain; what each reports."""
    cfg = ["--config", str(config)]
    for s in SYMS:
        cli(home, env, "universe", "add", s, "--provider", "synthetic", *cfg)
    out = {}
    out["sync"] = last_json(
        cli(home, env, "sync", "--timeframes", "1D,1h", "--start", "2026-10-01", "--json", *cfg)
    )
    out["resync"] = last_json(
        cli(home, env, "sync", "--timeframes", "1D,1h", "--start", "2026-10-01", "--json", *cfg)
    )
    out["compute"] = last_json(cli(home, env, "compute", "--json", *cfg))
    out["load"] = last_json(cli(home, env, "load", "--json", *cfg))
    out["query"] = last_json(
        cli(
            home,
            env,
            "query",
            "SELECT timeframe, symbol, count(*) AS n, round(sum(close), 6) AS c FROM ohlcv "
            "WHERE ts >= '2026-10-15' GROUP BY ALL ORDER BY ALL",
            "--format",
            "json",
            *cfg,
        )
    )
    out["maintain"] = last_json(cli(home, env, "maintain", "--json", *cfg))
    return out


def lake_state(settings) -> dict[str, pl.DataFrame]:
    lake = settings.open_lake(create=False)
    ohlcv = lake.read("ohlcv").drop("run_id", "ingested_at").sort(KEY)
    ind = lake.read("indicators").drop("run_id", "computed_at")
    return {"ohlcv": ohlcv, "indicators": ind.select(sorted(ind.columns)).sort(KEY)}


def served(dsn: str, schema: str) -> dict[str, list]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                f'SELECT symbol, timeframe, ts FROM "{schema}".{t} ORDER BY 1, 2, 3'  # noqa: S608
            ).fetchall()
            for t in ("ohlcv", "indicators")
        }


@pytest.mark.slow
def test_an_s3_lake_gives_the_results_of_a_local_lake(tmp_path, s3_lake, pg_server_dsn):
    import uuid

    results, states, tables = {}, {}, {}
    for kind, env in (("local", {}), ("s3", s3_lake)):
        home = tmp_path / kind
        home.mkdir()
        schema = f"mltest_{uuid.uuid4().hex[:10]}"
        config = tmp_path / f"{kind}.toml"
        config.write_text(f'[postgres]\nschema = "{schema}"\n')
        env = {**env, "MARKETLAKE_DSN": pg_server_dsn}
        try:
            results[kind] = pipeline(home, env, config)
            settings = load_settings(home=home, env=env, config_file=config)
            states[kind] = lake_state(settings)
            tables[kind] = served(pg_server_dsn, schema)
        finally:
            with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if kind == "s3":  # nothing of the lake was written under the local home
            assert not (home / "lake" / "ohlcv").exists()
            assert settings.lake.uri == s3_lake["MARKETLAKE_LAKE_URI"]
    local, s3 = results["local"], results["s3"]
    assert local["sync"]["rows"] == s3["sync"]["rows"] and s3["sync"]["rows"]["inserted"] > 100
    assert s3["resync"]["rows"]["inserted"] == 0 and s3["resync"]["rows"]["updated"] == 0
    for step in ("compute", "load"):
        assert {k: local[step][k] for k in ("rows", "tasks")} == {
            k: s3[step][k] for k in ("rows", "tasks")
        }, step
    assert local["query"] == s3["query"] and len(s3["query"]) == 2 * len(SYMS)
    assert set(local["maintain"]) == set(s3["maintain"])
    # every file carries the page-checksum mark, read from the footer alone on S3 too
    for report in (local["maintain"], s3["maintain"]):
        assert {i["rewritten_for_checksums"] for i in report.values()} == {0}
    for name in ("ohlcv", "indicators"):
        assert states["local"][name].equals(states["s3"][name]), name
    assert tables["local"] == tables["s3"] and len(tables["s3"]["ohlcv"]) > 100


def test_the_aws_environment_becomes_storage_options_and_unsafe_renames_are_refused(tmp_path):
    env = {
        "MARKETLAKE_LAKE_URI": "s3://bucket/some/prefix/",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AWS_ALLOW_HTTP": "true",
    }
    settings = load_settings(home=tmp_path, env=env)
    assert settings.lake.uri == "s3://bucket/some/prefix"
    assert settings.lake.table_uri("ohlcv") == "s3://bucket/some/prefix/ohlcv"
    assert settings.storage_options == {
        "aws_endpoint_url": "http://127.0.0.1:9000",
        "aws_region": "eu-west-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG",
        "aws_allow_http": "true",
        "aws_conditional_put": "etag",
    }
    assert "wJalrXUtnFEMI/K7MDENG" in settings.secrets()
    assert "wJalrXUtnFEMI" not in repr(settings)
    for bad, word in (
        ({"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}, "AWS_S3_ALLOW_UNSAFE_RENAME"),
        ({"AWS_S3_LOCKING_PROVIDER": "dynamodb"}, "AWS_S3_LOCKING_PROVIDER"),
        ({"MARKETLAKE_LAKE_URI": "gs://bucket/x"}, "MARKETLAKE_LAKE_URI"),
        ({"MARKETLAKE_LAKE_URI": "  "}, "MARKETLAKE_LAKE_URI"),
    ):
        r = runner.invoke(
            app, ["status"], env={**env, **bad, "MARKETLAKE_HOME": str(tmp_path / "h")}
        )
        assert r.exit_code == 2 and word in r.output and len(r.output.strip().splitlines()) == 1
    local = load_settings(home=tmp_path, env={"MARKETLAKE_LAKE_URI": str(tmp_path / "elsewhere")})
    assert local.lake.is_local and local.lake.path == tmp_path / "elsewhere"


def test_two_writers_of_one_s3_version_cannot_both_commit(tmp_path, s3_lake):
    from tests_helpers import bars

    from marketlake.lake._errors import CommitConflict
    from marketlake.lake.writes import commit_properties

    settings = load_settings(home=tmp_path, env=s3_lake)
    lake = settings.open_lake()
    lake.append("ohlcv", bars(["AAA"]), run_id="r0", stage="sync")
    # two writers read version 0 and each commits one new file: exactly one may land
    first, second = lake.table("ohlcv"), lake.table("ohlcv")
    from marketlake.lake import writes
    from marketlake.lake.tables import TABLES

    tdef = TABLES["ohlcv"]
    writes.append_files(first, lake.location, tdef, bars(["BBB"]), commit_properties("a", "s"))
    with pytest.raises(CommitConflict):
        writes.append_files(second, lake.location, tdef, bars(["CCC"]), commit_properties("b", "s"))
    assert sorted(lake.read("ohlcv")["symbol"].unique()) == ["AAA", "BBB"]
    # the refused writer's files were removed: every parquet object is referenced
    keys = [k for k in lake.location.list("ohlcv") if k.endswith(".parquet")]
    assert len(keys) == lake.check_files("ohlcv")


def test_location_parsing():
    loc = LakeLocation.parse("s3://b/p/", {"aws_region": "x"})
    assert (loc.uri, loc.storage_options, loc.is_local) == ("s3://b/p", {"aws_region": "x"}, False)
    assert "aws_region" not in repr(loc)
    assert Lake  # the facade accepts a location (exercised above)


def _s3_commits(location: LakeLocation) -> int:
    return sum(1 for k in location.list("ohlcv/_delta_log") if k.endswith(".json"))


@pytest.mark.slow
def test_kill_9_on_an_s3_lake_then_rerun_equals_a_clean_local_run(tmp_path, s3_lake):
    import os
    import signal
    import subprocess
    import sys
    import time

    from marketlake.pipeline import universe

    syms = [f"K{i:02d}" for i in range(16)]
    csv = tmp_path / "universe.csv"
    csv.write_text("symbol\n" + "\n".join(syms) + "\n")
    args = ["sync", "--timeframes", "1D", "--start", "2024-01-01", "--json", "--wait"]
    runs = {}
    for kind, extra in (("local", {}), ("s3", s3_lake)):
        home = tmp_path / kind
        home.mkdir()
        (home / "marketlake.toml").write_text(
            "[sync]\nbatch_tasks = 2\nconcurrency = 2\n[lake]\nlease_s = 3\n"
        )
        env = {**os.environ, **NOW, **extra, "MARKETLAKE_HOME": str(home)}
        settings = load_settings(home=home, env=env, config_file=home / "marketlake.toml")
        lake = settings.open_lake()
        universe.import_csv(lake, csv, run_id="u", provider="synthetic")
        runs[kind] = (home, env, settings)

    def sync(kind):
        home, env, _ = runs[kind]
        cmd = [sys.executable, "-m", "marketlake.cli", *args]
        return subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=120)

    assert sync("local").returncode == 0
    home, env, settings = runs["s3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketlake.cli", *args],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while _s3_commits(settings.lake) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the sync finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the dead run's lease is still there: a writer that does not wait is refused at once
    from marketlake.errors import LakeBusyError
    from marketlake.lake.lock import writer

    with pytest.raises(LakeBusyError):
        with writer(settings.lake, "other", "sync"):
            pass
    done = sync("s3")  # --wait: the lease runs out (3 s), the run takes over
    assert done.returncode == 0, done.stderr
    a = lake_state(runs["local"][2])["ohlcv"]
    b = lake_state(settings)["ohlcv"]
    assert a.height == b.height and a.equals(b)
    logs = settings.open_lake().read("sync_logs")
    assert "interrupted" in logs["status"].to_list()
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"]["inserted"] < a.height
    # files the killed run wrote but never committed are removed by maintain
    from marketlake.lake.maintenance import maintain

    lake = settings.open_lake()
    maintain(lake, tables=["ohlcv"], optimize=False, vacuum=False)
    stored = [k for k in lake.location.list("ohlcv") if k.endswith(".parquet")]
    assert len(stored) == lake.check_files("ohlcv")

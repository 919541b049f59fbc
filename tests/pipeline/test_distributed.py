"""``compute --cluster``: Dask workers write the indicator files, the driver commits them in one
transaction; the result equals a single-process compute, also when a worker is killed."""

import json
import os
import shutil
import signal
import threading
import time

import polars as pl
import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake.tables import TABLES
from marketlake.pipeline.config import load_settings

runner = CliRunner()
ENV = {"MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00"}
SYMS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
KEY = ["symbol", "timeframe", "ts"]


def cli(home, *args):
    r = runner.invoke(app, list(args), env={**ENV, "MARKETLAKE_HOME": str(home)})
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1]) if "--json" in args else r


def indicators(home) -> pl.DataFrame:
    lake = load_settings(home=home, env={}).open_lake(create=False)
    frame = lake.read("indicators").drop("run_id", "computed_at")
    return frame.select(sorted(frame.columns)).sort(KEY)


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """A home whose lake has bars of six symbols on 1D and 1h (copied by each test)."""
    home = tmp_path_factory.mktemp("synced")
    for s in SYMS:
        cli(home, "universe", "add", s, "--provider", "synthetic")
    cli(home, "sync", "--timeframes", "1D,1h", "--start", "2026-06-01", "--json")
    return home


@pytest.fixture(scope="module")
def single(synced, tmp_path_factory):
    """The single-process compute's indicators for the synced lake."""
    home = tmp_path_factory.mktemp("single") / "home"
    shutil.copytree(synced, home)
    cli(home, "compute", "--json")
    return indicators(home)


@pytest.mark.slow
def test_cluster_compute_equals_single_process_in_one_commit(synced, single, tmp_path, dask_client):
    from marketlake.pipeline.stages.distributed import run_compute_cluster

    home = tmp_path / "home"
    shutil.copytree(synced, home)
    res = cli(home, "compute", "--cluster", "local:2", "--json")
    assert res["status"] == "ok" and res["rows"]["inserted"] == single.height
    assert res["workers"] == 2 and res["shards"] >= 2  # one per worker thread, by rows
    assert indicators(home).equals(single)
    assert data_commits(home) == 1  # every shard's files arrived in one transaction
    settings = load_settings(home=home, env=ENV)
    again = run_compute_cluster(settings, cluster="local:2", full=True, client=dask_client)
    assert again.inserted == 0 and again.updated == 0
    assert again.unchanged == single.height and data_commits(home) == 1


def data_commits(home) -> int:
    """Commits of the indicators table that add data files."""
    log = home / "lake" / "indicators" / "_delta_log"
    return sum(
        any('"add"' in line for line in p.read_text().splitlines()) for p in log.glob("*.json")
    )


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_result_is_identical(
    synced, single, tmp_path, dask_client
):
    from marketlake.lake.maintenance import remove_orphans
    from marketlake.pipeline.stages.distributed import run_compute_cluster

    home = tmp_path / "home"
    shutil.copytree(synced, home)
    settings = load_settings(home=home, env=ENV)
    files = home / "lake" / "indicators"
    client = dask_client
    out: dict = {}

    def run():
        try:
            out["res"] = run_compute_cluster(settings, cluster="local:2", client=client)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out["exc"] = exc

    try:
        pids = client.run(os.getpid)
        t = threading.Thread(target=run)
        t.start()
        deadline = time.time() + 120
        while not any(files.rglob("*.parquet")) and t.is_alive() and time.time() < deadline:
            time.sleep(0.01)
        assert t.is_alive(), "the compute finished before a worker could be killed"
        victim = next(iter(pids.values()))
        os.kill(victim, signal.SIGKILL)  # a worker dies mid-run
    finally:
        t.join(180)
    assert "exc" not in out, out.get("exc")
    assert out["res"].inserted == single.height
    assert indicators(home).equals(single)
    lake = settings.open_lake()
    remove_orphans(lake, "indicators")  # what maintain does: files of the killed attempt go
    stored = [p for p in files.rglob("*.parquet") if "_delta_log" not in p.parts]
    assert len(stored) == lake.check_files("indicators")
    assert TABLES["indicators"].name == "indicators"


def test_cluster_settings_are_usage_errors(synced, tmp_path):
    for args, word in (
        (["--cluster", "local:x"], "local:N"),
        (["--cluster", "somehost"], "tcp://host:8786"),
        (["--cluster", "local:2", "--symbols", "AAA"], "--symbols"),
    ):
        r = runner.invoke(
            app, ["compute", *args], env={**ENV, "MARKETLAKE_HOME": str(tmp_path / "h")}
        )
        assert r.exit_code == 2 and word in r.output, r.output

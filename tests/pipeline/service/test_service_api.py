"""``marketlake serve`` as a real subprocess on a loopback port: auth, the offline docs,
triggering a run and following it over SSE, 409 while it (or a CLI sync) runs, times from the
settings' clock, a daily run's progress, settings validation, bars and instruments, and
``kill -9`` mid-run followed by a restart.

One service serves the whole module (starting one costs seconds); the tests run in file order
over its lake, and the last one kills and restarts it."""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import subprocess
import sys
import time

import polars as pl
import pytest
from service_helpers import NOW, TOKEN, Server, env_for, events, make_universe
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake
from marketlake.lake.lock import WriterLock
from marketlake.pipeline import journal
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.planning import parse_when
from marketlake.pipeline.stages.ingest import run_sync

pytestmark = pytest.mark.slow
SYMBOLS = ["AAA", "BBB", "BRK.B", "CCC", "DDD", "EEE", "x'; DROP TABLE ohlcv;--"]
SLOW_SYNC = "[sync]\nbatch_tasks = 2\nconcurrency = 1\n"  # several commits per run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    home = root / "home"
    make_universe(home, SYMBOLS)
    (root / "marketlake.toml").write_text(SLOW_SYNC)
    srv = Server(home, root)
    yield srv
    srv.stop()


def test_every_api_route_but_health_needs_the_token(server):
    with server.client(token="") as anon, server.client(token="wrong-" + TOKEN) as wrong:
        for method, path in [
            ("GET", "/api/v1/sync/status"),
            ("POST", "/api/v1/sync"),
            ("GET", "/api/v1/sync/logs"),
            ("GET", "/api/v1/sync/settings"),
            ("POST", "/api/v1/sync/stop"),
            ("GET", "/api/v1/instruments"),
            ("GET", "/api/v1/bars/AAA"),
            ("GET", "/api/v1/runs/x/events"),
        ]:
            for client in (anon, wrong):
                res = client.request(method, path)
                assert res.status_code == 401, (method, path, res.text)
                assert res.json() == {"success": False, "error": "missing or wrong bearer token"}
                assert res.headers["www-authenticate"] == "Bearer"
        health = anon.get("/api/v1/sync/health")
        assert health.status_code in (200, 503)
        assert {"status", "is_running", "is_overdue", "summary", "checked_at"} <= set(
            health.json()["data"]
        )
        assert "access-control-allow-origin" not in health.headers  # CORS is off


def test_docs_and_every_asset_they_load_come_from_this_origin(server):
    # regression: /docs loaded Swagger UI's script and styles from a CDN, so it rendered
    # blank without a network
    with server.client(token="") as c:
        for page in ("/docs", "/redoc"):
            res = c.get(page)
            assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
            html = res.text
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
            assets += re.findall(r"""url: ?["']([^"']+)["']""", html)
            assert len(assets) >= 2, html
            for url in assets:
                got = c.get(url)
                assert got.status_code == 200 and len(got.content) > 100, (page, url)
        assert (
            c.get("/docs-assets/swagger-ui-bundle.js")
            .headers["content-type"]
            .startswith("text/javascript")
        )
        spec = c.get("/openapi.json").json()
        assert "/api/v1/sync/status" in spec["paths"]


def test_trigger_follow_events_and_the_final_event_is_the_lakes_state(server):
    with server.client() as c:
        res = c.post("/api/v1/sync", json={"timeframes": ["1D"]})
        assert res.status_code == 202, res.text
        body = res.json()
        assert body["success"] is True
        run_id = body["data"]["run_id"]
        assert body["data"]["status"] == "running"
        assert {"triggered_at", "estimated_duration"} <= set(body["data"])

        busy = c.post("/api/v1/sync", json={})
        assert busy.status_code == 409, busy.text
        assert busy.json()["data"]["run_id"] == run_id
        assert f"a run {run_id}" in busy.json()["error"]

        seen = list(events(c, run_id))
    kinds = [k for k, _ in seen]
    assert kinds[0] == "state" and kinds[-1] == "final"
    tasks = [d for k, d in seen if k == "task"] + seen[0][1]["tasks"]
    final = seen[-1][1]
    assert final["run_id"] == run_id and final["status"] == "ok"
    assert final["tasks"]["ok"] == len(SYMBOLS) == len({t["symbol"] for t in tasks})
    assert {t["symbol"] for t in tasks} == set(SYMBOLS)
    progress = [d for k, d in seen if k == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == len(SYMBOLS)

    lake = Lake(server.home)
    ohlcv = lake.read("ohlcv")
    assert final["rows"]["inserted"] == ohlcv.height == sum(t["rows"] for t in tasks)
    assert ohlcv.filter(pl.col("run_id") == run_id).height == ohlcv.height
    assert lake.read("sync_status").height == len(SYMBOLS)
    row = journal.find(lake, run_id)
    assert row["status"] == "success" and row["metadata"]["result"] == final

    # a late client: the state (with every task), then the same final event
    with server.client() as c:
        late = list(events(c, run_id))
        assert [k for k, _ in late] == ["state", "final"]
        assert late[1][1] == final and len(late[0][1]["tasks"]) == len(SYMBOLS)
        status = c.get("/api/v1/sync/status").json()["data"]
        assert status["is_running"] is False and status["last_run_id"] == run_id
        assert status["segments"] and status["segments"][0]["symbols"] == len(SYMBOLS)
        logs = c.get("/api/v1/sync/logs", params={"task": "run:", "limit": 5}).json()["data"]
        assert logs["logs"][0]["run_id"] == run_id and logs["logs"][0]["status"] == "success"
        assert c.get("/api/v1/sync/logs", params={"failed": True}).json()["data"]["logs"] == []
        assert c.get("/api/v1/runs/nope/events").status_code == 404


def test_service_times_come_from_the_settings_clock(server):
    # regression: run rows and "last sync" took the wall clock while the run id and the data
    # took the settings' clock (MARKETLAKE_NOW), so the page showed a sync 12 days after its
    # own run and segment ages from the mix (the page hid the negative sign)
    now = parse_when(NOW, "now")
    with server.client() as c:
        status = c.get("/api/v1/sync/status").json()["data"]
        run_id = status["last_run_id"]
        assert run_id is not None and run_id.startswith("20261120T180000Z")
        assert status["last_sync"] == NOW
        assert status["segments"] and all(s["freshness_hours"] == 0 for s in status["segments"])
        assert all(s["overdue"] == 0 for s in status["segments"])
        health = c.get("/api/v1/sync/health").json()["data"]
        assert health["last_sync_age"] == "0s" and health["checked_at"] == NOW
        final = list(events(c, run_id))[-1][1]
        assert final["run_id"] == run_id
    row = journal.find(Lake(server.home), run_id)
    assert row["started_at"] == row["completed_at"] == now
    tasks = row["metadata"]["result"]
    assert tasks["status"] == "ok"


def test_a_daily_runs_progress_never_moves_back(server):
    # regression: each step of the daily run added its tasks to the total when it began, so
    # done/total (and the page's bar) fell back at every step
    with server.client() as c:
        res = c.post("/api/v1/sync", json={"stage": "daily"})
        assert res.status_code == 202, res.text
        seen = list(events(c, res.json()["data"]["run_id"]))
    progress = [seen[0][1]["progress"]] + [d for k, d in seen if k == "progress"]
    steps = [p["step"]["name"] for p in progress if p["step"]]
    assert "sync:equity" in steps and "compute" in steps, steps
    ratios = [p["done"] / p["total"] if p["total"] else 0.0 for p in progress]
    percents = [p["percent"] for p in progress]
    assert ratios == sorted(ratios) and percents == sorted(percents), progress
    assert progress[-1]["done"] == progress[-1]["total"] > 1 and percents[-1] == 100.0
    assert progress[-1]["unit"] == "steps"
    # each step's own tasks are reported with it
    sync_totals = [
        p["step"]["total"] for p in progress if p["step"] and p["step"]["name"] == "sync:equity"
    ]
    assert max(sync_totals) >= len(SYMBOLS), progress
    assert seen[-1][1]["status"] in ("ok", "partial")


def test_settings_are_validated_and_secrets_cannot_be_set(server):
    with server.client() as c:
        res = c.put("/api/v1/sync/settings", json={"bogus": 1})
        assert res.status_code == 422 and "bogus" in res.json()["error"]
        for key in ("providers.yahoo.base_url", "api_token", "dsn", "lake_uri"):
            res = c.put("/api/v1/sync/settings", json={key: "http://127.0.0.1:1"})
            assert res.status_code == 422, key
            assert (
                res.json()["error"]
                == f"{key} cannot be set over HTTP (set it where the service starts)"
            )
        res = c.put("/api/v1/sync/settings", json={"overdue_grace": "soon"})
        assert res.status_code == 422 and "overdue_grace" in res.json()["error"]
        # the seeds' list shape works too
        res = c.put(
            "/api/v1/sync/settings",
            json=[{"setting_key": "overdue_grace", "setting_value": "30m"}],
        )
        assert res.status_code == 200 and res.json()["data"]["overdue_grace"] == "30m"

        res = c.post(
            "/api/v1/sync/start", params={"cron": "0 5 * * 1-5", "timezone": "Asia/Kolkata"}
        )
        assert res.status_code == 200, res.text
        st = c.get("/api/v1/sync/status").json()["data"]
        assert st["enabled"] and st["cron"] == "0 5 * * 1-5" and st["timezone"] == "Asia/Kolkata"
        assert st["next_sync"] is not None
        assert c.post("/api/v1/sync/start", params={"cron": "99 * * * *"}).status_code == 422
        assert c.post("/api/v1/sync/stop").status_code == 200
        st = c.get("/api/v1/sync/status").json()["data"]
        assert st["enabled"] is False and st["next_sync"] is None
    stored = Lake(server.home).read("sync_settings")
    assert set(stored.get_column("key").to_list()) >= {"schedule", "overdue_grace"}


def test_request_bodies_are_bounded(server):
    with server.client() as c:
        res = c.post(
            "/api/v1/sync",
            content=b"{" + b" " * 200_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert res.status_code == 413


def test_bad_run_requests_are_422_naming_the_field(server):
    with server.client() as c:
        for body, needle in [
            ({"timeframes": ["2D"]}, "2D"),
            ({"kinds": ["gossip"]}, "gossip"),
            ({"segments": ["martian"]}, "martian"),
            ({"scope": "sometimes"}, "scope"),
            ({"unknown_field": 1}, "unknown_field"),
        ]:
            res = c.post("/api/v1/sync", json=body)
            assert res.status_code == 422, (body, res.text)
            assert needle in res.json()["error"]


def test_bars_and_instruments_as_json_and_arrow(server):
    with server.client() as c:
        if not Lake(server.home).exists("ohlcv"):
            list(events(c, c.post("/api/v1/sync", json={}).json()["data"]["run_id"]))
        inst = c.get("/api/v1/instruments").json()["data"]
        assert {i["symbol"] for i in inst["instruments"]} == set(SYMBOLS)
        res = c.get(
            "/api/v1/bars/BRK.B",
            params={"timeframe": "1D", "indicators": "sma(20),bbands(20,2),rsi(14)", "limit": 50},
        )
        assert res.status_code == 200, res.text
        data = res.json()["data"]
        assert data["count"] == 50 == len(data["time"])
        assert {"sma_20", "bb_upper_20_2", "rsi_14", "close"} <= set(data["columns"])
        assert None not in data["columns"]["sma_20"]  # warm-up comes from bars before the window
        arrow = c.get(
            "/api/v1/bars/x'; DROP TABLE ohlcv;--",
            params={"limit": 10},
            headers={"Accept": "application/vnd.apache.arrow.stream"},
        )
        assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
        frame = pl.read_ipc_stream(io.BytesIO(arrow.content))
        assert frame.height == 10 and frame.columns[:2] == ["ts", "open"]
        assert c.get("/api/v1/bars/NOPE").status_code == 404
        bad = c.get("/api/v1/bars/AAA", params={"indicators": "sma(-3)"})
        assert bad.status_code == 422 and "sma" in bad.json()["error"]


def test_a_cli_sync_holding_the_lake_makes_a_trigger_409_with_its_run_id(server, tmp_path):
    # a real `marketlake sync` in its own process, stuck on a provider that never answers
    # (a loopback socket nobody accepts on), holds the lake's writer lock
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    (tmp_path / "marketlake.toml").write_text(
        f'[providers.yahoo]\nbase_url = "http://127.0.0.1:{port}"\n'
    )
    cli = subprocess.Popen(
        [sys.executable, "-m", "marketlake.cli", "sync", "--provider", "yahoo"]
        + ["--symbols", "AAA", "--timeframes", "1D"],
        cwd=tmp_path,
        env=env_for(server.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = WriterLock(server.home / "lake")
        deadline = time.monotonic() + 60
        while (holder := lock.holder()) is None and cli.poll() is None:
            assert time.monotonic() < deadline, "the CLI sync never took the lock"
            time.sleep(0.05)
        assert holder is not None and holder.pid == cli.pid and holder.stage == "sync"
        with server.client() as c:
            busy = c.post("/api/v1/sync", json={"timeframes": ["1D"]})
            assert busy.status_code == 409, busy.text
            assert busy.json()["data"]["run_id"] == holder.run_id
            assert busy.json()["error"].startswith(f"a run {holder.run_id} (sync) started at")
            deadline = time.monotonic() + 10
            while not (st := c.get("/api/v1/sync/status").json()["data"])["is_running"]:
                assert time.monotonic() < deadline, st
                time.sleep(0.1)
            assert st["other_process_run"]["run_id"] == holder.run_id
    finally:
        cli.kill()
        cli.wait()
        silent.close()


def test_a_non_loopback_bind_without_a_token_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv("MARKETLAKE_API_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--port", "9", "--home", str(tmp_path / "home")]
    )
    assert res.exit_code == 2, res.output
    assert "refusing to bind 0.0.0.0" in res.output and "MARKETLAKE_API_TOKEN" in res.output
    assert not (tmp_path / "home" / "api-token").exists()


def _bars(home, timeframe: str) -> pl.DataFrame:
    cols = ["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume", "is_final"]
    frame = Lake(home).read("ohlcv").filter(pl.col("timeframe") == timeframe)
    return frame.select(cols).sort("symbol", "timeframe", "ts")


def test_kill_9_mid_run_then_restart_reads_interrupted_and_the_next_run_completes(server, tmp_path):
    # the module's service, killed mid-way through a sync of bars it has not seen (1h), then
    # started again (with a token of its own making); compared with one clean run
    with server.client() as c:
        run_id = c.post("/api/v1/sync", json={"timeframes": ["1h"]}).json()["data"]["run_id"]
        for kind, _ in events(c, run_id):
            if kind == "task":
                break
    server.kill9()
    assert journal.find(Lake(server.home), run_id)["status"] == "running"

    server.start(token=None, wait=False)  # a generated token
    clean = tmp_path / "clean"  # the reference, made while the service starts
    make_universe(clean / "home", SYMBOLS)
    (clean / "marketlake.toml").write_text(SLOW_SYNC)
    settings = load_settings(home=clean / "home", env={}, cwd=clean)
    ref = run_sync(settings.with_(now=parse_when(NOW, "now")), timeframes=["1h"])
    assert ref.status == "ok"
    server.wait_ready()
    token_file = server.home / "api-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in server.output()  # never logged
    with server.client(token=token) as c:
        dead = journal.find(Lake(server.home), run_id)
        assert dead["status"] == "interrupted"
        replay = list(events(c, run_id))
        assert [k for k, _ in replay] == ["state", "final"]
        assert replay[1][1]["status"] == "interrupted"
        res = c.post("/api/v1/sync", json={"timeframes": ["1h"]})
        assert res.status_code == 202, res.text
        final = list(events(c, res.json()["data"]["run_id"]))[-1][1]
        assert final["status"] == "ok"
    assert journal.runs(Lake(server.home), statuses=["running"]).is_empty()
    assert _bars(server.home, "1h").equals(_bars(clean / "home", "1h"))

"""``sync fo_expired``: expired F&O contracts expiry by expiry, checkpointed per expiry; a run
killed (SIGKILL) mid-way resumes at the first unfinished expiry and never re-downloads a
finished one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from marketlake.lake.store import Lake
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.ingest import run_sync

ROOT = Path(__file__).resolve().parents[3]
OWN = Path(__file__).parent / "fixtures" / "upstox"
NIFTY = "NSE_INDEX|Nifty 50"
EMPTY = {"status": "success", "data": []}
NOW = "2025-05-01T12:00:00+00:00"
TOML = """
[segments.fo_expired]
task = "fo_expired"
provider = "upstox"
symbols = ["NSE_INDEX|Nifty 50"]
timeframes = ["1D"]
start = "2025-04-01"
"""


def _contracts(replay, up_dir, *, slow_last: bool) -> None:
    replay.add_file(
        "/v2/expired-instruments/expiries",
        up_dir / "doc_sample_expired_expiries_nifty50.json",
        params={"instrument_key": NIFTY},
    )
    for what in ("option", "future"):
        path = f"/v2/expired-instruments/{what}/contract"
        replay.add_json(path, EMPTY, params={"expiry_date": "2025-04-03"})
        replay.add_json(path, EMPTY, params={"expiry_date": "2025-04-09"})
    replay.add_file(
        "/v2/expired-instruments/option/contract",
        OWN / "written_from_docs_expired_option_contract_minimum_lot_only.json",
        params={"expiry_date": "2025-04-09"},
    )
    last = replay.add_file(
        "/v2/expired-instruments/option/contract",
        up_dir / "doc_sample_expired_option_contract_nifty50.json",
        params={"expiry_date": "2025-04-17"},
    )
    if slow_last:
        last.replies[0].delay = 60.0  # the run is killed while it waits here
    replay.add_file(
        "/v2/expired-instruments/future/contract",
        up_dir / "doc_sample_expired_future_contract_nifty50.json",
        params={"expiry_date": "2025-04-17"},
    )
    base = "/v2/expired-instruments/historical-candle"
    replay.add_file(
        f"{base}/NSE_FO|40001|09-04-2025/day/2025-04-09/2024-12-11",
        OWN / "written_from_docs_expired_historical_candle_day_april_2025.json",
    )
    for key in ("NSE_FO|47983|17-04-2025", "NSE_FO|54452|24-04-2025"):
        replay.add_file(
            f"{base}/{key}/day/2025-04-17/2024-12-19",
            up_dir / "doc_sample_expired_historical_candle_day.json",
        )


def _asked(replay, expiry: str) -> int:
    return sum(
        1
        for s in replay.seen
        if s.path.endswith("/option/contract") and s.params.get("expiry_date") == expiry
    )


def test_killed_mid_way_resumes_at_the_next_expiry(replay, provider_fixtures, home, tmp_path):
    up_dir = provider_fixtures / "upstox"
    _contracts(replay, up_dir, slow_last=True)
    (tmp_path / "marketlake.toml").write_text(TOML)
    env = {
        **os.environ,
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_NOW": NOW,
        "MARKETLAKE_UPSTOX_BASE_URL": replay.url,
        "MARKETLAKE_UPSTOX_TOKEN": "t-0123456789abcdef",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketlake.cli", "sync", "fo_expired", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while _asked(replay, "2025-04-17") == 0:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached the last expiry"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    lake = Lake(home)
    done = lake.read("sync_status").filter(pl.col("kind") == "expiry")
    assert sorted(done["symbol"]) == [f"{NIFTY}@2025-04-03", f"{NIFTY}@2025-04-09"]

    # the same sync again, in process: only the unfinished expiry is asked for
    replay.add_file(
        "/v2/expired-instruments/option/contract",
        up_dir / "doc_sample_expired_option_contract_nifty50.json",
        params={"expiry_date": "2025-04-17"},
    )
    settings = load_settings(env=env, cwd=tmp_path)
    res = run_sync(settings, segments=["fo_expired"])
    assert res.tasks_failed == 0 and res.tasks_ok == 1, res.errors
    assert (_asked(replay, "2025-04-03"), _asked(replay, "2025-04-09")) == (1, 1)
    assert _asked(replay, "2025-04-17") == 2
    done = lake.read("sync_status").filter(pl.col("kind") == "expiry")
    assert done.height == 3 and set(done["status"]) == {"ok"}
    inst = lake.read("instruments")
    assert inst.height == 3 and inst["lot_size"].null_count() == 0  # never null
    assert not inst["active"].any() and inst["delisted_at"].null_count() == 0
    bars = lake.read("ohlcv").filter(pl.col("symbol") == "NIFTY 22000 CE 09 APR 25")
    assert bars.height == 3 and set(bars["provider"]) == {"upstox"}

    # a third run downloads no expiry again
    before = len(replay.seen)
    again = run_sync(settings, segments=["fo_expired"])
    assert again.tasks_skipped == 3 and again.inserted == 0
    assert [s.path for s in replay.seen[before:]] == ["/v2/expired-instruments/expiries"]


def test_status_lists_named_segments(home, tmp_path):
    from marketlake.pipeline.commands import segment_overview

    (tmp_path / "marketlake.toml").write_text(TOML)
    settings = load_settings(env={"MARKETLAKE_HOME": str(home)}, cwd=tmp_path)
    rows = {r["segment"]: r for r in segment_overview(settings)}
    assert {
        "equity",
        "indices_nse",
        "indices_bse",
        "fo_current",
        "fo_historical",
        "fo_expired",
        "indicators",
        "us_equity",
        "etf",
        "crypto",
    } <= set(rows)
    assert rows["fo_expired"]["configured"] and rows["fo_expired"]["instruments"] == 1
    assert rows["indicators"]["task"] == "indicators"

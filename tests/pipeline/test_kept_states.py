"""The indicator states an increment or a full recompute keeps for the next increment
(``pipeline.kept_states``): the next nightly continues RSI, MACD, ADX and Supertrend from
them and stores what a full recompute stores; stale, damaged or foreign states are never
continued from."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from marketlake import kernels
from marketlake.kernels import resume
from marketlake.kernels.registry import DEFAULT_INDICATORS
from marketlake.lake import Lake
from marketlake.pipeline import kept_states, universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages import compute_increment
from marketlake.pipeline.stages.compute import run_compute
from marketlake.pipeline.stages.ingest import run_sync

SPECS = list(DEFAULT_INDICATORS)  # what a nightly computes (an explicit set recomputes all)
STATEFUL = ["rsi(14)", "macd(12,26,9)", "adx(14)", "supertrend(10,3)"]
NOW = datetime(2026, 11, 18, 22, 0, tzinfo=UTC)
START = "2023-06-01"  # three and a half years: longer than every window


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Three years of daily bars of two equities and a crypto pair, computed."""
    home = tmp_path_factory.mktemp("kept") / "home"
    lake = Lake(home)
    universe.add_many(lake, ["AAA", "BBB"], run_id="u", provider="synthetic", asset_type="equity")
    universe.add(lake, "BTC/USD", run_id="u", provider="synthetic", asset_type="crypto")
    settings = load_settings(home=home, env={}, now=NOW)
    run_sync(settings, timeframes=["1D"], start=START)
    run_compute(settings)
    return home


@pytest.fixture
def nightly(base: Path, tmp_path: Path, monkeypatch):
    """A copy of ``base``; ``night(n)`` syncs and computes ``n`` days later and says how each
    resumed series went: continued from kept states, or over windows."""
    home = tmp_path / "home"
    shutil.copytree(base, home)
    seen: dict[str, int] = {"continued": 0, "windowed": 0}
    cont, win = resume.continue_into, compute_increment._window_states

    def continued(*a, **k):
        seen["continued"] += 1
        return cont(*a, **k)

    def windowed(*a, **k):
        seen["windowed"] += 1
        return win(*a, **k)

    monkeypatch.setattr(resume, "continue_into", continued)
    monkeypatch.setattr(compute_increment, "_window_states", windowed)

    def night(n: int) -> dict[str, int]:
        seen.update(continued=0, windowed=0)
        settings = load_settings(home=home, env={}, now=NOW + timedelta(days=n))
        run_sync(settings, timeframes=["1D"], start=START)
        run_compute(settings)
        return dict(seen)

    night.home = home  # type: ignore[attr-defined]
    return night


def _assert_as_a_full_recompute(home: Path, tf: str = "1D") -> None:
    lake = Lake(home)
    bars = lake.read("ohlcv").filter(pl.col("timeframe") == tf).sort("symbol", "ts")
    columns = kernels.output_columns(SPECS)
    zones = dict(lake.read("instruments").select("symbol", "timezone").iter_rows())
    full = kernels.compute(
        bars.select("symbol", "ts", "high", "low", "close", "volume"),
        SPECS,
        session_tz={s: z or "UTC" for s, z in zones.items()},
    )
    want = full.select(pl.col("symbol").cast(pl.String), "ts", *columns).sort("symbol", "ts")
    got = lake.read("indicators").filter(pl.col("timeframe") == tf)
    got = got.select("symbol", "ts", *columns).sort("symbol", "ts")
    assert got.select("symbol", "ts").equals(want.select("symbol", "ts"))
    exact = {c for s in STATEFUL for c in kernels.output_columns([s])}
    exact |= set(kernels.output_columns(["ema(9)", "ema(21)", "ema(50)", "ema(200)", "atr(14)"]))
    exact |= set(kernels.output_columns(["obv"]))
    for c in columns:
        a = got.get_column(c).fill_null(np.nan).to_numpy()
        b = want.get_column(c).fill_nan(None).fill_null(np.nan).to_numpy()
        if c in exact:  # continued from a state or a stored value: bit for bit
            assert np.array_equal(a, b, equal_nan=True), c
        else:  # windowed running sums: to rounding
            assert np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True), c


def test_the_next_nights_continue_from_the_kept_states(nightly) -> None:
    kept_states.path(nightly.home).unlink()  # none kept (a lake computed before they were)
    first = nightly(1)
    assert first == {"continued": 0, "windowed": 1}  # nothing kept yet: the windows
    assert kept_states.path(nightly.home).exists()
    for n in (2, 3, 6):
        assert nightly(n) == {"continued": len(STATEFUL), "windowed": 0}
    _assert_as_a_full_recompute(nightly.home)
    kept = kept_states.load(Lake(nightly.home), {})
    assert kept is not None
    per_series = kept.frame.group_by("symbol").len().get_column("len").to_list()
    assert sorted(kept.frame.get_column("symbol").unique().to_list()) == ["AAA", "BBB", "BTC/USD"]
    assert max(per_series) == kept_states.ROWS


def test_hourly_bars_continue_from_their_states(tmp_path, monkeypatch) -> None:
    """Intraday: many new bars a night, and the session indicators' windows beside them."""
    home = tmp_path / "home"
    lake = Lake(home)
    universe.add(lake, "AAA", run_id="u", provider="synthetic", asset_type="equity")
    universe.add(lake, "ETH/USD", run_id="u", provider="synthetic", asset_type="crypto")
    calls = {"continued": 0}
    cont = resume.continue_into

    def continued(*a, **k):
        calls["continued"] += 1
        return cont(*a, **k)

    monkeypatch.setattr(resume, "continue_into", continued)
    for n in (0, 1, 2):
        settings = load_settings(home=home, env={}, now=NOW + timedelta(days=n, hours=n))
        run_sync(settings, timeframes=["1h"], start="2026-04-01")
        run_compute(settings)
    # the second run from the states the first (a full computation) kept, the third from
    # the second's
    assert calls["continued"] == 2 * len(STATEFUL)
    _assert_as_a_full_recompute(home, "1h")


def test_states_of_another_commit_are_stale(nightly) -> None:
    nightly(1)
    lake = Lake(nightly.home)
    specs = {str(s): resume.width(s) for s in resume.stateful(STATEFUL)}
    assert kept_states.load(lake, specs) is not None
    lake.mark("indicators", run_id="other", stage="compute", metadata={})  # any other commit
    assert kept_states.load(lake, specs) is None
    assert nightly(2) == {"continued": 0, "windowed": 1}  # the windows again, then kept anew
    assert nightly(3)["continued"] == len(STATEFUL)
    _assert_as_a_full_recompute(nightly.home)


def test_a_full_recompute_keeps_the_states_of_every_series_it_computed(nightly) -> None:
    """The first compute of the lake (``base``) and a later ``compute --full`` each keep the
    states after every series' last rows, computed from its first bar: the next nights
    continue from them (no windows) and store what a full recompute stores."""
    symbols = ["AAA", "BBB", "BTC/USD"]
    specs = {str(s): resume.width(s) for s in resume.stateful(STATEFUL)}
    first = kept_states.load(Lake(nightly.home), specs)
    assert first is not None and first.holding("1D", symbols) == symbols
    assert nightly(1) == {"continued": len(STATEFUL), "windowed": 0}
    _assert_as_a_full_recompute(nightly.home)
    settings = load_settings(home=nightly.home, env={}, now=NOW + timedelta(days=1))
    run_compute(settings, full=True)
    kept = kept_states.load(Lake(nightly.home), specs)
    assert kept is not None and kept.holding("1D", symbols) == symbols
    assert kept.frame.group_by("symbol").len().get_column("len").to_list() == [kept_states.ROWS] * 3
    for n in (2, 3):
        assert nightly(n) == {"continued": len(STATEFUL), "windowed": 0}
    _assert_as_a_full_recompute(nightly.home)


def test_damaged_states_are_ignored_and_kept_anew(nightly, caplog) -> None:
    nightly(1)
    path = kept_states.path(nightly.home)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside a page
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="marketlake.compute"):
        assert nightly(2) == {"continued": 0, "windowed": 1}
    assert "ignoring the kept indicator states" in caplog.text
    assert nightly(3)["continued"] == len(STATEFUL)
    _assert_as_a_full_recompute(nightly.home)


def test_a_failed_timeframe_forgets_the_states(nightly, monkeypatch) -> None:
    nightly(1)
    from marketlake.pipeline.stages import compute

    def broken(*a, **k):
        raise ValueError("no room left")

    monkeypatch.setattr(compute, "increment", broken)
    settings = load_settings(home=nightly.home, env={}, now=NOW + timedelta(days=2))
    run_sync(settings, timeframes=["1D"], start=START)
    assert run_compute(settings).tasks_failed == 3
    assert not kept_states.path(nightly.home).exists()


# a compute that stops right after its commits, before it keeps their states, until killed
_PAUSED_SAVE = """
import os, sys, time
from datetime import datetime
from pathlib import Path
from marketlake.pipeline import kept_states
def paused(lake, kept):
    Path(os.environ["READY"]).write_text("1")
    time.sleep(600)
kept_states.save = paused
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.compute import run_compute
now = datetime.fromisoformat(sys.argv[2])
run_compute(load_settings(home=Path(sys.argv[1]), env={}, now=now))
"""


def test_kill_9_between_the_commit_and_the_states_leaves_them_unused(nightly, tmp_path) -> None:
    nightly(1)
    now = NOW + timedelta(days=2)
    run_sync(load_settings(home=nightly.home, env={}, now=now), timeframes=["1D"], start=START)
    ready = tmp_path / "ready"
    env = {**os.environ, "READY": str(ready)}
    args = [sys.executable, "-c", _PAUSED_SAVE, str(nightly.home), now.isoformat()]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert ready.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() else "late"
        os.kill(proc.pid, signal.SIGKILL)  # the rows are committed, the states are the old ones
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    specs = {str(s): resume.width(s) for s in resume.stateful(STATEFUL)}
    assert kept_states.path(nightly.home).exists()
    assert kept_states.load(Lake(nightly.home), specs) is None  # stale: never continued from
    assert nightly(3) == {"continued": 0, "windowed": 1}
    assert nightly(4)["continued"] == len(STATEFUL)
    _assert_as_a_full_recompute(nightly.home)


def test_states_a_full_recompute_cannot_keep_never_fail_it(nightly, monkeypatch, caplog) -> None:
    """The states are a cache: when they cannot be computed the recompute still lands, with
    one warning, none kept for the timeframe, and the next night recomputes the windows."""
    from marketlake.pipeline.stages import compute

    real = compute.series_states

    def broken(*a, **k):
        raise RuntimeError("no state today")

    monkeypatch.setattr(compute, "series_states", broken)
    settings = load_settings(home=nightly.home, env={}, now=NOW)
    with caplog.at_level("WARNING", logger="marketlake.compute"):
        res = run_compute(settings, full=True)
    assert res.status == "ok" and res.tasks_failed == 0
    assert "could not keep the indicator states of 1D" in caplog.text
    specs = {str(s): resume.width(s) for s in resume.stateful(STATEFUL)}
    kept = kept_states.load(Lake(nightly.home), specs)
    assert kept is None or kept.holding("1D", ["AAA", "BBB", "BTC/USD"]) == []
    monkeypatch.setattr(compute, "series_states", real)
    assert nightly(1) == {"continued": 0, "windowed": 1}
    _assert_as_a_full_recompute(nightly.home)

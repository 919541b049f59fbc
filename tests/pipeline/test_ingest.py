import subprocess
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import polars as pl
import pytest

from marketlake.errors import ConfigError, UnknownSymbolError
from marketlake.lake import Lake
from marketlake.lake.writes import live_files
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, load_settings
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
HOSTILE = ["BRK.B", "BTC/IDR", "NSE_INDEX|Nifty 50", "../../etc/passwd", "x'; DROP TABLE ohlcv;--"]


def setup(home, symbols=("AAA", "BBB", "CCC"), provider="synthetic", options=None, **kw):
    settings = load_settings(home=home, env={}, now=NOW, **kw)
    if options is not None:
        providers = dict(settings.providers)
        providers[provider] = ProviderSettings(
            provider, options=options, max_retries=2, backoff_base_s=0.0
        )
        settings = settings.with_(providers=providers)
    lake = Lake(home)
    for asset_type in ("equity", "crypto"):
        same = [s for s in symbols if ("/" in s) == (asset_type == "crypto")]
        if same:
            universe.add_many(lake, same, run_id="u", provider=provider, asset_type=asset_type)
    return settings, lake


def test_second_sync_changes_nothing(home):
    settings, lake = setup(home)
    first = run_sync(settings, timeframes=["1D", "1W"], start="2025-01-01")
    assert first.status == "ok" and first.inserted > 0
    second = run_sync(settings, timeframes=["1D", "1W"], start="2025-01-01")
    assert (second.inserted, second.updated) == (0, 0)
    assert second.unchanged > 0
    ohlcv = lake.read("ohlcv")
    assert ohlcv.select("symbol", "timeframe", "ts").is_duplicated().sum() == 0
    logs = lake.read("sync_logs")
    assert logs.filter(pl.col("run_id") == second.run_id).height == 6  # one row per task
    assert (logs["status"] == "success").all()


def test_dry_run_plans_chunks_and_writes_nothing(home):
    settings, lake = setup(home, symbols=("AAA",))
    res = run_sync(settings, timeframes=["1m"], start="2026-10-25", dry_run=True)
    tasks = res.details["tasks"]
    assert len(tasks) >= 3  # 26 days of 1m bars in 8-day requests
    assert {t["reason"] for t in tasks} == {"never synced"}
    assert lake.read("ohlcv").is_empty()


def test_overlap_refetch_replaces_provisional_bars(home):
    settings, lake = setup(home, symbols=("AAA",))
    run_sync(settings, timeframes=["1D"], start="2026-11-01")
    last = lake.read("ohlcv").sort("ts").tail(1)
    assert last["is_final"][0] is False
    later = settings.with_(now=datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    plan = run_sync(later, timeframes=["1D"], dry_run=True).details["tasks"]
    assert "provisional" in plan[0]["reason"]
    res = run_sync(later, timeframes=["1D"])
    assert res.updated == 1  # the forming bar became final
    assert lake.read("ohlcv").sort("ts")["is_final"].all()


def test_failures_never_stop_other_symbols(home):
    opts = {"fail": {"BAD": "invalid", "FLAKY": "transient", "UGLY": "bad", "CORR": "corrupt"}}
    settings, lake = setup(
        home, symbols=("AAA", "BAD", "FLAKY", "UGLY", "CORR"), provider="fake", options=opts
    )
    res = run_sync(settings, timeframes=["1D"], start="2026-10-01")
    assert res.status == "partial" and (res.tasks_ok, res.tasks_failed) == (3, 2)
    assert any("BAD" in e and "unknown symbol" in e for e in res.errors)
    assert any("UGLY" in e and "truncated JSON" in e for e in res.errors)
    landed = set(lake.read("ohlcv")["symbol"].unique())
    assert landed == {"AAA", "FLAKY", "CORR"}  # FLAKY was retried
    q = lake.read("quarantine")
    assert set(q["symbol"]) == {"CORR"} and q.height == 2 and res.quarantined == 2
    st = lake.read("sync_status").filter(pl.col("symbol") == "BAD")
    assert st["status"][0] == "failed" and st["consecutive_failures"][0] == 1
    again = run_sync(settings, timeframes=["1D"], start="2026-10-01")
    st = lake.read("sync_status").filter(pl.col("symbol") == "BAD")
    assert st["consecutive_failures"][0] == 2 and again.inserted == 0


def test_auth_failure_aborts_only_that_provider(home):
    settings, lake = setup(
        home, symbols=("AAA", "BBB", "CCC"), provider="fake", options={"fail": {"AAA": "auth"}}
    )
    settings = settings.with_(concurrency=1)
    universe.add(lake, "SYN", run_id="u", provider="synthetic")
    res = run_sync(settings, timeframes=["1D"], start="2026-11-01")
    assert res.tasks_failed == 3 and res.tasks_ok == 1
    assert set(lake.read("ohlcv")["symbol"].unique()) == {"SYN"}
    assert sum("401" in e for e in res.errors) == 3


def test_readjusted_history_is_replaced_in_one_commit(home):
    settings, lake = setup(home, symbols=("AAA",))
    run_sync(settings, timeframes=["1D"], start="2026-01-01")
    # the provider now reports history halved, as after a 2:1 split adjustment
    from marketlake.pipeline.providers import synthetic

    original = synthetic.SyntheticProvider._fetch_ohlcv

    def halved(self, request):
        f = original(self, request)
        return f.with_columns([pl.col(c) / 2 for c in ("open", "high", "low", "close")])

    synthetic.SyntheticProvider._fetch_ohlcv = halved
    try:
        before = lake.read("ohlcv").height
        res = run_sync(
            settings.with_(now=datetime(2026, 11, 21, 12, tzinfo=UTC)),
            timeframes=["1D"],
            start="2026-01-01",
        )
    finally:
        synthetic.SyntheticProvider._fetch_ohlcv = original
    events = res.details["events"]
    assert events[0]["event"] == "history_replaced" and events[0]["symbol"] == "AAA"
    after = lake.read("ohlcv").sort("ts")
    assert after.height == before
    full = original(
        synthetic.SyntheticProvider(clock=lambda: NOW),
        __import__("marketlake.pipeline.providers.base", fromlist=["FetchRequest"]).FetchRequest(
            "AAA", "1D", datetime(2026, 1, 1, tzinfo=UTC), NOW
        ),
    )
    assert after["close"].head(5).to_list() == (full["close"] / 2).head(5).to_list()
    last = lake.history("ohlcv", 1)[0]  # one commit: the replace
    assert last["merge"] == "replace" and int(last["merge_updated"]) > 0


def test_hostile_symbols_round_trip(home):
    settings, lake = setup(home, symbols=HOSTILE)
    res = run_sync(settings, timeframes=["1D"], start="2026-11-01")
    assert res.status == "ok"
    assert sorted(lake.read("ohlcv")["symbol"].unique()) == sorted(HOSTILE)
    for path in home.rglob("*"):
        assert path.resolve().is_relative_to(home.resolve())


def test_unknown_symbols_and_bad_options_are_usage_errors(home):
    settings, _ = setup(home)
    with pytest.raises(UnknownSymbolError, match="'NOPE'"):
        run_sync(settings, symbols=["NOPE"])
    with pytest.raises(ConfigError, match="unknown timeframe"):
        run_sync(settings, timeframes=["2h"])
    with pytest.raises(ConfigError, match="--scope"):
        run_sync(settings, scope="sometimes")
    with pytest.raises(ConfigError, match="unknown provider"):
        run_sync(settings, provider="nasdaq")


def test_scope_never_and_limit(home):
    settings, lake = setup(home, symbols=("AAA", "BBB", "CCC"))
    run_sync(settings, timeframes=["1D"], start="2026-11-01", limit=1)
    assert set(lake.read("ohlcv")["symbol"]) == {"AAA"}
    plan = run_sync(
        settings, timeframes=["1D"], start="2026-11-01", scope="never", dry_run=True
    ).details["tasks"]
    assert {t["symbol"] for t in plan} == {"BBB", "CCC"}


def test_closed_days_are_not_a_gap_a_missing_session_is(home):
    # regression: a series complete to Friday was re-requested over the weekend and a holiday
    # (last bar + one day < now), asking the provider for days the exchange was closed
    settings, lake = setup(home, symbols=("AAA",))
    friday = datetime(2025, 1, 17, 23, 0, tzinfo=UTC)  # NYSE closed at 21:00 UTC
    run_sync(settings.with_(now=friday), timeframes=["1D"], start="2025-01-02")
    last = lake.read("ohlcv").sort("ts").tail(1)
    assert last["ts"][0] == datetime(2025, 1, 17, tzinfo=UTC) and last["is_final"][0]

    def planned(at: datetime) -> list[dict]:
        res = run_sync(settings.with_(now=at), timeframes=["1D"], start="2025-01-02", dry_run=True)
        return res.details["tasks"]

    assert planned(datetime(2025, 1, 19, 12, 0, tzinfo=UTC)) == []  # Sunday
    assert planned(datetime(2025, 1, 20, 23, 0, tzinfo=UTC)) == []  # Martin Luther King Day
    tuesday = planned(datetime(2025, 1, 21, 23, 0, tzinfo=UTC))  # a session closed: a gap
    assert [t["reason"] for t in tuesday] == ["update"]


def test_land_bars_takes_a_frame_without_optional_columns(home):
    # regression: a caller's frame without open_interest failed in the diff against a lake
    # that has the column
    from marketlake.pipeline.stages.ingest import land_bars

    ts = [datetime(2026, 1, d, tzinfo=UTC) for d in (5, 6)]
    bars = pl.DataFrame(
        {
            "symbol": ["AAA", "AAA"],
            "timeframe": ["1D", "1D"],
            "ts": ts,
            "open": [10.0, 11.0],
            "high": [12.0, 12.0],
            "low": [9.0, 10.0],
            "close": [11.0, 11.5],
            "volume": [100.0, 200.0],
            "adj_close": [11.0, 11.5],
            "provider": ["files", "files"],
            "is_final": [True, True],
        }
    )
    lake = Lake(home)
    assert land_bars(lake, bars, run_id="a", now=NOW, timeframe="1D").inserted == 2
    again = land_bars(lake, bars, run_id="b", now=NOW, timeframe="1D")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert lake.read("ohlcv").get_column("open_interest").null_count() == 2


def test_land_bars_diffs_only_the_symbols_a_stored_file_may_hold(home):
    # batches fetched on several threads end out of symbol order: the next batch's symbols
    # touch the last one's range; rows of the symbols no stored file covers are appended
    # blindly, the others' diffed (a stored row unchanged, a changed one updated)
    from tests_helpers import bars

    from marketlake.pipeline.stages.ingest import land_bars

    def frame(*a, **k):
        return bars(*a, **k).drop("period").with_columns(pl.col("close").alias("adj_close"))

    lake = Lake(home)
    first = pl.concat([frame(["A", "C"]), frame(["B"], days=2)])
    assert land_bars(lake, first, run_id="a", now=NOW, timeframe="1D").inserted == 8
    provisional = frame(["B"], close=2.0).with_columns(pl.lit(False).alias("is_final"))
    second = pl.concat([provisional, frame(["D", "E"])])
    assert lake.overlap_suspects("ohlcv", second) == {"B"}
    res = land_bars(lake, second, run_id="b", now=NOW, timeframe="1D")
    assert (res.inserted, res.updated, res.unchanged) == (7, 2, 0)
    assert res.per_series[("B", "1D")] == {"changed": 2, "new": 1}
    out = lake.read("ohlcv")
    assert out.height == 15 and out.select("symbol", "ts").is_unique().all()
    assert out.filter(pl.col("symbol") == "B").get_column("close").to_list() == [2.0] * 3
    again = land_bars(lake, second, run_id="c", now=NOW, timeframe="1D")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 9)


def test_packs_of_daily_units_land_what_units_one_by_one_land(home, tmp_path):
    symbols = tuple(f"P{i:02d}" for i in range(12))
    packed, lake = setup(home, symbols=symbols)
    alone, lake_alone = setup(tmp_path / "alone", symbols=symbols, batch_tasks=1)
    for settings in (packed, alone):  # a backfill, then one new day
        assert run_sync(settings, timeframes=["1D"], start="2026-06-01").status == "ok"
        later = settings.with_(now=datetime(2026, 11, 23, 22, 0, tzinfo=UTC))
        assert run_sync(later, timeframes=["1D"]).status == "ok"
    keys = ["symbol", "timeframe", "ts"]
    a, b = (x.read("ohlcv").drop("run_id", "ingested_at").sort(keys) for x in (lake, lake_alone))
    assert a.height > 12 * 100 and a.equals(b)
    status = [x.read("sync_status").drop("run_id").sort("symbol") for x in (lake, lake_alone)]
    assert (
        status[0]
        .drop("last_attempt_at", "last_success_at")
        .equals(status[1].drop("last_attempt_at", "last_success_at"))
    )


def test_a_failing_pack_falls_back_to_one_fetch_per_unit(home, monkeypatch):
    from marketlake.pipeline.planning import Unit
    from marketlake.pipeline.providers.synthetic import SyntheticProvider
    from marketlake.pipeline.stages import ingest

    settings, _ = setup(home)

    def broken(self, requests):
        raise RuntimeError("pack failed")

    monkeypatch.setattr(SyntheticProvider, "fetch_many", broken)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    units = [
        Unit("equity", s, "1D", "ohlcv", "synthetic", "never", ((start, NOW),), "1D")
        for s in ("AAA", "BBB")
    ]
    out = ingest._fetch_pack(units, ingest._Providers(settings, NOW))
    assert [o.unit.symbol for o in out] == ["AAA", "BBB"]
    assert all(o.error is None and o.frame.height > 10 for o in out)


def test_packs_span_a_bounded_number_of_bars():
    from datetime import timedelta

    from marketlake.pipeline.planning import Unit
    from marketlake.pipeline.stages import ingest

    def unit(sym, tf, days):
        return Unit(
            "equity", sym, tf, "ohlcv", "synthetic", "never", ((NOW - timedelta(days=days), NOW),)
        )

    # one new day for many symbols: packs of up to ``size`` units
    day = [unit(f"D{i}", "1D", 1) for i in range(7)]
    assert [len(p) for p in ingest._packs(day, lambda *_: 100_000, 3)] == [3, 3, 1]
    # ten years of daily bars: as many as fit the bars bound (3,654 each)
    years = [unit(f"Y{i}", "1D", 3653) for i in range(30)]
    assert [len(p) for p in ingest._packs(years, lambda *_: 100_000, 500)] == [27, 3]
    # ten years of hourly bars: one unit each, fetched in parallel and committed as they come
    hours = [unit(f"H{i}", "1h", 3653) for i in range(4)]
    assert [len(p) for p in ingest._packs(hours, lambda *_: 100_000, 500)] == [1] * 4
    # ... unless the provider's bound for the timeframe is higher (the synthetic market's)
    bound = ingest._pack_bars
    assert (bound("synthetic", "1h"), bound("synthetic", "1D")) == (500_000, ingest.PACK_BARS)
    assert [len(p) for p in ingest._packs(hours * 3, bound, 500)] == [5, 5, 2]
    assert bound("yahoo", "1h") == 0  # one request at a time
    # a provider that does not answer in packs: one unit each
    assert [len(p) for p in ingest._packs(day, lambda *_: 0, 3)] == [1] * 7


def test_a_batch_spanning_many_partitions_holds_rows_for_files_of_a_fair_size():
    """A batch goes at batch_rows rows, unless its bars span so many partitions (a month each
    for intraday bars, a year for daily) that its files would be small: then at up to twice
    as many, FILE_ROWS rows per partition."""
    from marketlake.pipeline.planning import Unit
    from marketlake.pipeline.stages import ingest

    def batch(tf: str, days: int, rows: int, units: int = 4) -> ingest._Batch:
        b = ingest._Batch()
        for i in range(units):
            span = ((NOW - timedelta(days=days), NOW),)
            u = Unit("equity", f"S{i}", tf, "ohlcv", "synthetic", "never", span)
            b.add(ingest.Outcome(u, pl.DataFrame({"x": range(rows // units)})))
        return b

    fair, rows = ingest.FILE_ROWS, 2_000_000
    # ten years of daily bars: 11 yearly partitions, files of far more than FILE_ROWS rows
    assert batch("1D", 3653, rows).full(5000, rows)
    assert not batch("1D", 3653, rows - 4).full(5000, rows)
    # a year of hourly bars: 13 monthly partitions, the same
    assert batch("1h", 365, rows).full(5000, rows)
    # ten years of hourly bars (121 monthly partitions): files of FILE_ROWS rows ...
    assert not batch("1h", 3653, rows).full(5000, rows)
    assert not batch("1h", 3653, 120 * fair).full(5000, rows)
    assert batch("1h", 3653, 121 * fair).full(5000, rows)
    # ... and never more than twice batch_rows
    assert batch("1h", 3653, rows).full(5000, rows // 2)
    # batch_tasks still bounds the units; one new day is one partition
    assert batch("1h", 3653, 100).full(4, rows)
    assert batch("1h", 1, rows).full(5000, rows)


def test_a_bulk_loads_batches_hold_one_timeframe_each(home, monkeypatch):
    from marketlake.pipeline.stages import ingest

    settings, lake = setup(home)
    checked: list[list[str]] = []
    check = ingest.check_bars

    def checking(frame: pl.DataFrame, timeframe: str | None = None) -> ingest.Checked:
        checked.append(sorted(frame.get_column("timeframe").unique().to_list()))
        return check(frame, timeframe)

    monkeypatch.setattr(ingest, "check_bars", checking)
    monkeypatch.setattr(ingest, "SPLIT_ROWS", 100)
    res = run_sync(settings, timeframes=["1D", "1h"], start="2026-09-01")
    assert res.status == "ok" and res.tasks_ok == 6
    # one batch would hold them all (batch_rows): cut where the hourly bars begin
    assert checked == [["1D"], ["1h"]]
    stored = lake.read("ohlcv")
    assert stored.height == res.inserted
    assert sorted(stored.get_column("timeframe").unique().to_list()) == ["1D", "1h"]
    assert stored.select("symbol", "timeframe", "ts").is_duplicated().sum() == 0
    # a small load is not cut: one commit for both timeframes
    checked.clear()
    monkeypatch.setattr(ingest, "SPLIT_ROWS", 10**9)
    other, _ = setup(home / "small")
    assert run_sync(other, timeframes=["1D", "1h"], start="2026-09-01").status == "ok"
    assert checked == [["1D", "1h"]]


def test_a_timeframes_batch_goes_once_its_bars_are_in_not_once_the_next_ones_answer(
    home, monkeypatch
):
    """The plan's order says where the daily bars end: their batch is checked while every
    hourly request is still unanswered (here held until then, or for 10 s at most)."""
    import threading

    from marketlake.pipeline.providers.synthetic import SyntheticProvider
    from marketlake.pipeline.stages import ingest

    settings, _ = setup(home)
    released, held = threading.Event(), []
    check = ingest.check_bars

    def checking(frame: pl.DataFrame, timeframe: str | None = None) -> ingest.Checked:
        if timeframe == "1D":
            released.set()
        return check(frame, timeframe)

    fetch, fetch_many = SyntheticProvider.fetch, SyntheticProvider.fetch_many

    def hold(requests) -> None:
        if any(r.timeframe == "1h" for r in requests):
            held.append(released.wait(10))

    def fetching(self, request):
        hold([request])
        return fetch(self, request)

    def fetching_many(self, requests):
        hold(requests)
        return fetch_many(self, requests)

    monkeypatch.setattr(ingest, "check_bars", checking)
    monkeypatch.setattr(ingest, "SPLIT_ROWS", 100)
    monkeypatch.setattr(SyntheticProvider, "fetch", fetching)
    monkeypatch.setattr(SyntheticProvider, "fetch_many", fetching_many)
    res = run_sync(settings, timeframes=["1D", "1h"], start="2026-09-01")
    assert res.status == "ok" and res.tasks_ok == 6
    assert held and all(held)


def test_a_bulk_load_writes_files_ahead_and_commits_each_batch_once(home, monkeypatch):
    from marketlake.lake import Lake as LakeClass
    from marketlake.pipeline.stages import ingest

    symbols = tuple(f"W{i}" for i in range(6))
    settings, lake = setup(home, symbols=symbols, batch_tasks=2)
    committed: list[int] = []
    commit = LakeClass.commit_written

    def committing(self, written, **kw):
        res = commit(self, written, **kw)
        committed.append(-1 if res is None else res.inserted)
        return res

    monkeypatch.setattr(LakeClass, "commit_written", committing)
    monkeypatch.setattr(ingest, "WRITE_AHEAD_ROWS", 1)
    res = run_sync(settings, timeframes=["1D"], start="2025-06-01")
    assert res.status == "ok" and res.tasks_ok == 6
    assert len(committed) == 3 and sum(committed) == res.inserted  # three batches, ahead
    stored = lake.read("ohlcv")
    assert stored.height == res.inserted
    assert stored.select("symbol", "timeframe", "ts").is_duplicated().sum() == 0
    assert sorted(stored.get_column("symbol").unique()) == list(symbols)
    assert _unreferenced(lake) == set()
    # a re-run changes nothing; a later run extends series the lake holds: not written ahead
    again = run_sync(settings, timeframes=["1D"], start="2025-06-01")
    assert again.inserted == 0 and len(committed) == 3
    later = run_sync(settings.with_(now=datetime(2026, 11, 27, 22, 0, tzinfo=UTC)))
    assert later.status == "ok" and later.inserted > 6 * 5
    assert len(committed) == 3
    assert lake.read("ohlcv").height == res.inserted + later.inserted


def test_files_written_ahead_of_rows_the_lake_holds_are_removed(home):
    from marketlake.pipeline.stages import ingest

    settings, lake = setup(home, symbols=("AAA", "BBB"))
    res = run_sync(settings, symbols=["AAA"], timeframes=["1D"], start="2026-10-01")
    assert res.status == "ok"
    frame = lake.read("ohlcv").drop("period", "run_id", "ingested_at")
    new = frame.with_columns(pl.lit("BBB").alias("symbol"))
    checked = ingest.check_bars(pl.concat([frame, new]), "1D")
    stamped = checked.good.with_columns(
        pl.lit(NOW).cast(pl.Datetime("us", "UTC")).alias("ingested_at"), pl.lit("r").alias("run_id")
    )
    checked.written = lake.write_ahead("ohlcv", stamped)
    landed = ingest.land_checked(lake, checked, run_id="r", now=NOW)
    # AAA's rows are stored already: the files go, only BBB's rows are written (diffed)
    assert (landed.inserted, landed.unchanged) == (new.height, frame.height)
    assert not any((lake.path("ohlcv") / a.path).exists() for a in checked.written.adds)
    assert lake.read("ohlcv").height == 2 * frame.height
    assert _unreferenced(lake) == set()


def test_a_failed_commit_leaves_no_files_written_ahead(home, monkeypatch):
    from marketlake.pipeline.stages import ingest

    settings, lake = setup(home, symbols=tuple(f"F{i}" for i in range(4)), batch_tasks=2)
    monkeypatch.setattr(ingest, "WRITE_AHEAD_ROWS", 1)

    calls: list[int] = []

    def failing(*a, **kw):
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest, "land_checked", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run_sync(settings, timeframes=["1D"], start="2025-06-01")
    assert calls == [1]  # the second batch, checked and written ahead, is not committed
    assert lake.version("ohlcv") is None
    assert not list((lake.path("ohlcv")).rglob("*.parquet"))


def _unreferenced(lake: Lake) -> set[str]:
    """Data files under ohlcv that its latest snapshot does not name."""
    root = lake.path("ohlcv")
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
    return on_disk - {unquote(f["path"]) for f in live_files(lake.table("ohlcv"))}


def test_spans_of_bars_in_runs_equal_those_of_a_group_by():
    from marketlake.pipeline.stages.ingest import _spans

    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    rows = [("A", 0), ("A", 1), ("A", 4), ("B", 2), ("B", 3), ("C", 0)]
    frame = pl.DataFrame(
        {"symbol": [s for s, _ in rows], "ts": [t0 + timedelta(days=d) for _, d in rows]}
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")), pl.lit("1D").alias("timeframe"))
    expected = {
        ("A", "1D"): (t0, t0 + timedelta(days=4), 3),
        ("B", "1D"): (t0 + timedelta(days=2), t0 + timedelta(days=3), 2),
        ("C", "1D"): (t0, t0, 1),
    }
    assert _spans(frame, "1D") == expected  # in runs
    assert _spans(frame, None) == expected
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert _spans(shuffled, "1D") == expected  # not in runs: grouped
    assert _spans(shuffled, None) == expected


FROZEN_BEFORE_PLAN = """
import gc, sys
from datetime import datetime
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages import ingest

settings = load_settings(home=sys.argv[1], env={}, now=datetime.fromisoformat(sys.argv[2]))
seen = []
plan = ingest.plan_with_coverage
ingest.plan_with_coverage = lambda *a, **k: (seen.append(gc.get_freeze_count()), plan(*a, **k))[1]
ingest.run_sync(settings, timeframes=["1D"], start="2026-11-01", dry_run=True)
print(seen[0])
"""


def test_sync_freezes_the_imports_before_it_plans(home):
    """A sync's plan (and a files import's read beside it) allocate enough for full
    collections: the objects the imports made are out of their reach by then, in a fresh
    process, even for a dry run that never takes the writer lock."""
    setup(home, symbols=("AAA",))
    run = subprocess.run(
        [sys.executable, "-c", FROZEN_BEFORE_PLAN, str(home), NOW.isoformat()],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(run.stdout.strip()) > 10_000

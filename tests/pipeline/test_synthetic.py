from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from marketlake.pipeline.providers.base import FetchRequest
from marketlake.pipeline.providers.synthetic import SyntheticProvider

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def provider(seed=42):
    from marketlake.pipeline.config import ProviderSettings

    return SyntheticProvider(
        ProviderSettings("synthetic", options={"seed": seed}), clock=lambda: NOW
    )


def req(sym, tf, start, end=NOW, **inst):
    return FetchRequest(sym, tf, start, end, instrument=inst)


def test_values_do_not_depend_on_the_requested_range():
    p = provider()
    wide = p.fetch(req("AAPL", "1D", datetime(2020, 1, 1, tzinfo=UTC)))
    narrow = p.fetch(
        req("AAPL", "1D", datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    )
    j = narrow.join(wide, on="ts")
    assert j.height == narrow.height > 15
    assert (j["close"] == j["close_right"]).all() and (j["volume"] == j["volume_right"]).all()
    hourly_a = p.fetch(req("AAPL", "1h", NOW - timedelta(days=20)))
    hourly_b = p.fetch(req("AAPL", "1h", NOW - timedelta(days=5)))
    j = hourly_b.join(hourly_a, on="ts")
    assert j.height == hourly_b.height and (j["close"] == j["close_right"]).all()


def test_seed_changes_the_market():
    a = provider(1).fetch(req("AAPL", "1D", datetime(2024, 1, 1, tzinfo=UTC)))
    b = provider(2).fetch(req("AAPL", "1D", datetime(2024, 1, 1, tzinfo=UTC)))
    assert a["close"].to_list() != b["close"].to_list()


def test_equities_skip_weekends_and_holidays_crypto_does_not():
    p = provider()
    eq = p.fetch(
        req("AAPL", "1D", datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    )
    days = [t.date() for t in eq["ts"].to_list()]
    assert all(d.weekday() < 5 for d in days)
    assert date(2024, 12, 25) not in days and date(2024, 7, 4) not in days
    assert date(2024, 11, 28) not in days  # Thanksgiving
    assert len(days) == 252  # as on the NYSE in 2024
    btc = p.fetch(
        req(
            "BTC/USD",
            "1D",
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2025, 1, 1, tzinfo=UTC),
            asset_type="crypto",
        )
    )
    assert btc.height == 366


def test_ohlc_sanity_and_daily_keys_at_midnight_utc():
    p = provider()
    f = p.fetch(req("MSFT", "1D", datetime(2015, 1, 1, tzinfo=UTC)))
    sane = f.select(
        (pl.col("low") <= pl.min_horizontal("open", "close"))
        & (pl.col("high") >= pl.max_horizontal("open", "close"))
    )
    assert sane.to_series().all()
    assert (f["volume"] >= 0).all()
    assert (f["ts"].dt.hour() == 0).all()
    assert f["is_final"].to_list()[-1] is False  # the session of NOW is still open


def test_intraday_bars_align_to_the_session_open():
    p = provider()
    h = p.fetch(
        req("AAPL", "1h", datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC))
    )
    # 09:30 New York = 14:30 UTC in November; 7 bars, the last one 30 minutes long
    assert [t.strftime("%H:%M") for t in h["ts"]] == [
        "14:30",
        "15:30",
        "16:30",
        "17:30",
        "18:30",
        "19:30",
        "20:30",
    ]
    m = p.fetch(req("ETH/USD", "15m", NOW - timedelta(hours=2), asset_type="crypto"))
    assert m.height == 8 and m["is_final"].all()  # NOW is on a bar boundary
    later = NOW + timedelta(minutes=7)
    p.clock = lambda: later
    m = p.fetch(req("ETH/USD", "15m", NOW - timedelta(hours=2), later, asset_type="crypto"))
    assert m.height == 9 and m["is_final"].to_list()[-1] is False


def test_long_history_has_splits_dividends_and_a_halt():
    p = provider()
    start = datetime(2000, 1, 1, tzinfo=UTC)
    kinds = set()
    halted = False
    for s in [f"S{i:03d}" for i in range(30)]:
        acts = p.fetch(FetchRequest.actions(s, start, NOW))
        kinds |= set(acts["kind"].to_list())
        days = p.fetch(req(s, "1D", start))["ts"].dt.date().to_list()
        gaps = [(b - a).days for a, b in zip(days, days[1:], strict=False)]
        halted |= max(gaps) > 6
    assert {"split", "dividend"} <= kinds
    assert halted


def test_daily_series_are_pinned_by_golden_values():
    # golden values of this version of the market (seed 42: exchange-calendars sessions,
    # year anchors); a change here is a new market and must be documented as such
    p = provider()
    day = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
    aapl = p.fetch(req("AAPL", "1D", *day)).row(0, named=True)
    btc = p.fetch(req("BTC/USD", "1D", *day, asset_type="crypto")).row(0, named=True)
    # to 12 significant digits: the last bit of an exp/log may differ between numpy builds
    assert (aapl["open"], aapl["close"], aapl["volume"]) == pytest.approx(
        (692.6392540241441, 681.7438067957413, 491925.0), rel=1e-12
    )
    assert (btc["high"], btc["low"], btc["volume"]) == pytest.approx(
        (685390.9435590302, 644360.6982656325, 236.5763963799448), rel=1e-12
    )


def test_intraday_series_are_pinned_by_golden_values():
    # golden values of the intraday split (the same version of the market): the middle bar
    # of a day at every level and calendar shape, and the day's volume
    p = provider()
    day = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
    cases = [
        (("AAPL", "1h"), {}, (699.2407498867728, 699.131569171232, 36777.0, 491926.0)),
        (
            ("BTC/USD", "4h"),
            {"asset_type": "crypto"},
            (685390.9435590302, 660282.1966486807, 19.12567189168433, 236.57639637994484),
        ),
        (
            ("BBRI", "30m"),
            {"exchange": "IDX"},
            (14.76321235676709, 14.732468735606387, 84393.0, 1293749.0),
        ),
        (("AAPL", "1m"), {}, (699.2407498867728, 699.2406875074633, 414.0, 491917.0)),
    ]
    for (sym, tf), inst, want in cases:
        bars = p.fetch(req(sym, tf, *day, **inst))
        mid = bars.row(bars.height // 2, named=True)
        got = (mid["high"], mid["low"], mid["volume"], bars.get_column("volume").sum())
        assert got == pytest.approx(want, rel=1e-12), (sym, tf)


def test_sessions_come_from_the_exchange_calendars():
    p = provider()
    # NYSE: the national day of mourning of 2025-01-09 is a special closure
    days = p.fetch(
        req("AAPL", "1D", datetime(2025, 1, 6, tzinfo=UTC), datetime(2025, 1, 13, tzinfo=UTC))
    )
    assert [t.day for t in days["ts"].dt.date()] == [6, 7, 8, 10]
    # NYSE closes early (13:00 New York) the day after Thanksgiving
    h = p.fetch(
        req("AAPL", "1h", datetime(2024, 11, 29, tzinfo=UTC), datetime(2024, 11, 30, tzinfo=UTC))
    )
    assert [t.strftime("%H:%M") for t in h["ts"]] == ["14:30", "15:30", "16:30", "17:30"]
    assert h["is_final"].all()
    # NSE (XBOM): 09:15-15:30 India time, closed on Republic Day (2024-01-26, a Friday)
    nse = p.fetch(
        req(
            "RELIANCE",
            "1h",
            datetime(2024, 1, 25, tzinfo=UTC),
            datetime(2024, 1, 29, tzinfo=UTC),
            exchange="NSE",
        )
    )
    assert {t.strftime("%m-%d") for t in nse["ts"]} == {"01-25"}
    assert nse["ts"][0].strftime("%H:%M") == "03:45" and nse.height == 7
    # IDX (XIDX): Nyepi and the Idul Fitri holidays of 2025
    idx = p.fetch(
        req(
            "BBCA.JK",
            "1D",
            datetime(2025, 3, 26, tzinfo=UTC),
            datetime(2025, 4, 10, tzinfo=UTC),
            exchange="IDX",
        )
    )
    assert [t.strftime("%m-%d") for t in idx["ts"]] == ["03-26", "03-27", "04-08", "04-09"]


def _per_day(frame, tz):
    day = pl.col("ts").dt.convert_time_zone(tz).dt.date().alias("day")
    return (
        frame.group_by(day)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
        )
        .sort("day")
    )


def test_intraday_timeframes_nest_exactly_into_each_other_and_the_day():
    p = provider()
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 14, tzinfo=UTC)
    for sym, tz, inst in [
        ("AAPL", "America/New_York", {}),
        ("ETH/USD", "UTC", {"asset_type": "crypto"}),
    ]:
        daily = p.fetch(req(sym, "1D", start, end - timedelta(days=1), **inst))
        daily = daily.with_columns(pl.col("ts").dt.date().alias("day"))
        coarser = None
        for tf in ["4h", "1h", "30m", "15m", "1m"]:
            bars = p.fetch(req(sym, tf, start, end, **inst))
            sane = (pl.col("low") <= pl.min_horizontal("open", "close")) & (
                pl.col("high") >= pl.max_horizontal("open", "close")
            )
            assert bars.select(sane.all()).item()
            days = _per_day(bars, tz).join(daily, on="day")
            assert days.height == daily.height >= 9
            for c in ["open", "high", "low", "close"]:
                assert (days[c] == days[f"{c}_right"]).all(), (sym, tf, c)
            # equity volume is rounded per bar: at most half a share per bar off
            assert ((days["volume"] - days["volume_right"]).abs() <= 0.5 * 1440).all()
            if coarser is not None:  # finer bars aggregate exactly to the coarser ones
                parent = coarser.select(
                    pl.col("ts").alias("parent"), "open", "high", "low", "close"
                )
                agg = (
                    bars.sort("ts")
                    .join_asof(parent.select("parent"), left_on="ts", right_on="parent")
                    .group_by("parent")
                    .agg(
                        pl.col("open").first(),
                        pl.col("high").max(),
                        pl.col("low").min(),
                        pl.col("close").last(),
                    )
                    .join(parent, on="parent")
                )
                assert agg.height == coarser.height
                for c in ["open", "high", "low", "close"]:
                    assert (agg[c] == agg[f"{c}_right"]).all(), (sym, tf, c)
            coarser = bars


def test_many_daily_requests_answer_as_each_one_alone():
    p = provider()
    reqs = [
        req("AAA", "1D", NOW - timedelta(days=1)),
        req("BBB", "1D", NOW - timedelta(days=40), NOW + timedelta(days=2)),
        req("CCC", "1D", datetime(2026, 11, 14, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)),
        req("BTC-USD", "1D", NOW - timedelta(days=5), asset_type="crypto"),
        req("DDD", "1D", NOW - timedelta(days=900)),
    ]
    many = p.fetch_many(reqs)
    assert [f.height for f in many][2] == 0 and sum(f.height for f in many) > 600
    for r, frame in zip(reqs, many, strict=True):
        assert frame.equals(p.fetch(r)) and frame.schema == p.fetch(r).schema


@pytest.mark.parametrize("tf", ["1h", "15m"])
def test_many_intraday_requests_answer_as_each_one_alone(tf):
    """Sessions of many requests are split together; each request still gets exactly the
    rows it gets alone: other calendars (crypto, IDX), early closes, halts, splits, ranges
    of every length, one cut mid-session, one empty, one in the future."""
    from marketlake.pipeline.providers.synthetic import _profile

    p = provider()
    days = 400 if tf == "1h" else 50
    reqs = [req(f"S{i}", tf, NOW - timedelta(days=days * (12 - i) / 12)) for i in range(12)]
    reqs += [
        # halted from 2024-05-17 for 8 days
        req("S69", tf, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 10, tzinfo=UTC)),
        req("BTC-USD", tf, NOW - timedelta(days=20), asset_type="crypto"),
        req("BBRI", tf, NOW - timedelta(days=30), exchange="IDX"),
        # the day after Thanksgiving 2025: an early close
        req("EEE", tf, datetime(2025, 11, 26, tzinfo=UTC), datetime(2025, 12, 2, tzinfo=UTC)),
        req("FFF", tf, datetime(2026, 11, 19, 15, 7, tzinfo=UTC)),
        req("GGG", tf, datetime(2026, 11, 14, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)),
        req("HHH", tf, NOW + timedelta(days=1), NOW + timedelta(days=2)),
    ]
    assert _profile(42, "S69", False).halt_start == date(2024, 5, 17)
    many = p.fetch_many(reqs)
    heights = [f.height for f in many]
    assert heights[-2:] == [0, 0] and all(heights[:-2])
    for r, frame in zip(reqs, many, strict=True):
        alone = provider().fetch(r)
        assert frame.equals(alone) and frame.schema == alone.schema, r.symbol


def test_sessions_kept_on_disk_are_the_built_ones(tmp_path, monkeypatch):
    from marketlake.pipeline import session_tables
    from marketlake.pipeline.providers import synthetic_sessions as ss

    monkeypatch.setattr(session_tables.platformdirs, "user_cache_dir", lambda app: str(tmp_path))
    built = ss._built("XBOM", 2026)
    ss.clear()
    first = ss.sessions("XBOM", 2026)  # built and stored
    ss.clear()
    monkeypatch.setattr(ss, "_build", None)  # read back, not built again
    again = ss.sessions("XBOM", 2026)
    for a, b, c in zip(built, first, again, strict=True):
        assert a.dtype == b.dtype == c.dtype and (a == b).all() and (a == c).all()
    ss.clear()

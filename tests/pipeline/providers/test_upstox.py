"""Upstox against its documented samples, a real F&O body and the real 401, over a loopback
socket."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from replay_server import FakeClock, Reply, load_recording, settings_for

from marketlake.errors import AuthError
from marketlake.pipeline.providers.base import FetchRequest, frame_schema, provider_class
from marketlake.pipeline.providers.upstox import (
    UpstoxProvider,
    candle_rows,
    is_expired_key,
    parse_candles,
    parse_contracts,
    parse_expiries,
)

OWN = Path(__file__).parent / "fixtures" / "upstox"
TOKEN = "upstox-test-token-abcdef0123456789"
NIFTY = "NSE_INDEX|Nifty 50"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def body_of(path: Path):
    doc = json.loads(path.read_text())
    return doc["response"]["bodyJson"] if "response" in doc else doc


@pytest.fixture
def up_dir(provider_fixtures):
    return provider_fixtures / "upstox"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2023, 10, 19, 12, 0))  # after the 19 Oct 2023 close (10:00 UTC)


@pytest.fixture
def upstox(replay, home, clock):
    p = UpstoxProvider(
        settings_for("upstox", replay, max_retries=1, secret=TOKEN),
        home=home,
        clock=clock.now,
        sleep=clock.sleep,
    )
    yield p
    p.close()


def test_real_1minute_body_newest_first_with_gaps(up_dir):
    body = body_of(up_dir / "candles_1minute_2023-07-26_illiquid_fo_descending_with_gaps.body.json")
    raw = body["data"]["candles"]
    out = parse_candles(body, symbol="NIFTY FO", timeframe="1m", now=utc(2023, 7, 27))
    assert out.schema == frame_schema("ohlcv") and out.height == len(raw)
    assert out["ts"].is_sorted()  # arrives newest first
    assert out["ts"][-1] == utc(2023, 7, 26, 9, 59)  # 15:29 IST
    minutes = {t.astimezone(UTC).strftime("%H:%M") for t in out["ts"]}
    # 15:15-15:22 IST are missing in the body and stay missing (a gap is not invented)
    assert not {f"09:{m}" for m in range(45, 53)} & minutes
    assert out["is_final"].all()
    assert (out["volume"] == 0).sum() > 0  # zero-volume minutes are real rows


def test_month_doc_sample_rows_parse_oldest_first(up_dir):
    body = body_of(up_dir / "doc_sample_v2_historical_candle_month.json")
    rows = candle_rows(body["data"]["candles"], symbol="NSE_EQ|INE848E01016")
    assert [r[0].date() for r in rows] == [date(2023, 9, 1), date(2023, 10, 1)]
    assert rows[0][5] == 1004998611 and rows[0][6] == 0  # volume, oi


def test_monthly_bars_native_with_open_interest(replay, up_dir, upstox):
    replay.add_file(
        "/v3/historical-candle/NSE_EQ|INE848E01016/months/1/2023-10-19/2023-09-01",
        up_dir / "doc_sample_v2_historical_candle_month.json",
    )
    inst = {"provider_symbols": json.dumps({"upstox": "NSE_EQ|INE848E01016"})}
    req = FetchRequest.bars("NHPC", "1mo", utc(2023, 9, 1), utc(2023, 10, 20), instrument=inst)
    out = upstox.fetch(req)  # the clock: 19 Oct 2023, after the close
    assert replay.unmatched == []
    # keyed at 00:00 UTC of the month's first day; October is still forming
    assert out["ts"].to_list() == [utc(2023, 9, 1), utc(2023, 10, 1)]
    assert out["is_final"].to_list() == [True, False]
    assert out["open_interest"].to_list() == [0.0, 0.0]  # an equity: Upstox sends 0


def test_fo_minutes_carry_open_interest(up_dir):
    body = body_of(up_dir / "candles_1minute_2023-07-26_illiquid_fo_descending_with_gaps.body.json")
    raw = {str(c[0]): c[6] for c in body["data"]["candles"]}
    out = parse_candles(body, symbol="NIFTY FO", timeframe="1m", now=utc(2023, 7, 27))
    assert out["open_interest"].null_count() == 0
    assert out["open_interest"].to_list() == [
        float(raw[k]) for k in sorted(raw, key=datetime.fromisoformat)
    ]
    assert out["open_interest"].max() > 0


def test_intraday_30minute_today(replay, up_dir, upstox):
    replay.add_file(
        "/v3/historical-candle/intraday/NSE_EQ|INE848E01016/minutes/30",
        up_dir / "doc_sample_v2_intraday_candle_30minute.json",
    )
    req = FetchRequest.bars("NHPC", "30m", utc(2023, 10, 19), utc(2023, 10, 20))
    inst = {"provider_symbols": json.dumps({"upstox": "NSE_EQ|INE848E01016"})}
    out = upstox.fetch(FetchRequest.bars("NHPC", "30m", req.start, req.end, instrument=inst))
    assert out["ts"].to_list() == [utc(2023, 10, 19, 9, 15), utc(2023, 10, 19, 9, 45)]
    assert out["is_final"].to_list() == [True, True]
    seen = replay.requests_to("/v3/historical-candle/intraday/NSE_EQ|INE848E01016/minutes/30")
    assert seen and seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_daily_history_range_and_session_keys(replay, up_dir, upstox):
    replay.add_file(
        "/v3/historical-candle/NSE_INDEX|Nifty 50/days/1/2022-11-30/2022-11-01",
        up_dir / "doc_sample_expired_historical_candle_day.json",
    )
    out = upstox.fetch(FetchRequest.bars(NIFTY, "1D", utc(2022, 11, 1), utc(2022, 12, 1)))
    # daily bars keyed at 00:00 UTC of the IST session date (never the previous UTC day)
    assert out["ts"].to_list() == [utc(2022, 11, 29), utc(2022, 11, 30)]
    assert replay.unmatched == []


def test_ranges_chunk_to_documented_limits():
    caps = UpstoxProvider.capabilities
    assert caps.max_range["1m"] == timedelta(days=30)
    assert caps.max_range["30m"] == timedelta(days=90)
    assert caps.max_range["1D"] == timedelta(days=3650)
    assert caps.max_range["1W"] is None
    assert caps.max_range["1mo"] is None
    assert set(caps.timeframes) == {"1m", "30m", "1D", "1W", "1mo"}  # 15m, 1h, 4h resampled


def test_expiries_and_expired_contracts(replay, up_dir, upstox, clock):
    clock.current = utc(2025, 5, 1)
    replay.add_file(
        "/v2/expired-instruments/expiries",
        up_dir / "doc_sample_expired_expiries_nifty50.json",
        params={"instrument_key": NIFTY},
    )
    replay.add_file(
        "/v2/expired-instruments/option/contract",
        up_dir / "doc_sample_expired_option_contract_nifty50.json",
        params={"instrument_key": NIFTY, "expiry_date": "2025-04-17"},
    )
    replay.add_file(
        "/v2/expired-instruments/future/contract",
        up_dir / "doc_sample_expired_future_contract_nifty50.json",
        params={"instrument_key": NIFTY, "expiry_date": "2025-04-17"},
    )
    expiries = upstox.expiries(NIFTY)
    assert expiries[0] == date(2024, 10, 3) and expiries[-1] == date(2025, 4, 17)
    assert len(expiries) == 29
    frame, problems = upstox.expired_contracts(NIFTY, date(2025, 4, 17))
    assert problems == []
    opt = frame.filter(frame["asset_type"] == "option").row(0, named=True)
    assert opt["symbol"] == "NIFTY 20400 PE 17 APR 25"
    assert (opt["underlying"], opt["strike"], opt["option_type"]) == (NIFTY, 20400.0, "PE")
    assert opt["expiry"] == date(2025, 4, 17) and opt["lot_size"] == 75
    assert opt["active"] is False and opt["delisted_at"] == utc(2025, 4, 17, 10, 0)
    assert json.loads(opt["provider_symbols"]) == {"upstox": "NSE_FO|47983|17-04-2025"}
    fut = frame.filter(frame["asset_type"] == "future").row(0, named=True)
    assert fut["symbol"] == "NIFTY FUT 24 APR 25" and fut["lot_size"] == 75
    assert fut["strike"] is None and fut["option_type"] is None


def test_lot_size_from_minimum_lot_and_never_null():
    body = body_of(OWN / "written_from_docs_expired_option_contract_minimum_lot_only.json")
    frame, problems = parse_contracts(body, symbol=NIFTY, today=date(2025, 5, 1))
    assert frame["lot_size"].to_list() == [75] and problems == []
    body["data"][0].pop("minimum_lot")
    frame, problems = parse_contracts(body, symbol=NIFTY, today=date(2025, 5, 1))
    assert frame.is_empty()  # left out, never stored with a null lot size
    assert problems and "lot size" in problems[0]


def test_expired_candles_by_expired_key(replay, up_dir, upstox):
    key = "NSE_FO|47983|17-04-2025"
    assert is_expired_key(key) and not is_expired_key(NIFTY)
    replay.add_file(
        f"/v2/expired-instruments/historical-candle/{key}/day/2022-11-30/2022-11-01",
        up_dir / "doc_sample_expired_historical_candle_day.json",
    )
    inst = {"provider_symbols": json.dumps({"upstox": key})}
    req = FetchRequest.bars("X", "1D", utc(2022, 11, 1), utc(2022, 12, 1), instrument=inst)
    out = upstox.fetch(req)
    assert out["close"].to_list() == [125.35, 123.45]
    assert replay.unmatched == []


def test_current_option_contracts(replay, upstox, clock):
    clock.current = utc(2025, 12, 1)
    replay.add_file(
        "/v2/option/contract",
        OWN / "written_from_docs_v2_option_contract_nifty50.json",
        params={"instrument_key": NIFTY},
    )
    frame, _ = upstox.option_contracts(NIFTY)
    assert frame["active"].all() and frame["delisted_at"].null_count() == 2
    assert sorted(frame["option_type"]) == ["CE", "PE"]


def test_401_udapi100050_stops_upstox(replay, up_dir, upstox):
    replay.add_file(
        "/v3/historical-candle/NSE_INDEX|Nifty 50/days/1/2022-11-30/2022-11-01",
        up_dir / "error_401_invalid_token_UDAPI100050.envelope.json",
    )
    with pytest.raises(AuthError, match="UDAPI100050") as exc:
        upstox.fetch(FetchRequest.bars(NIFTY, "1D", utc(2022, 11, 1), utc(2022, 12, 1)))
    assert TOKEN not in str(exc.value)
    n = len(replay.seen)
    with pytest.raises(AuthError):
        upstox.fetch(
            FetchRequest.bars("NSE_INDEX|Nifty Bank", "1D", utc(2022, 11, 1), utc(2022, 12, 1))
        )
    assert len(replay.seen) == n
    assert (
        load_recording(up_dir / "error_401_invalid_token_UDAPI100050.envelope.json").status == 401
    )


def test_registry_and_expiry_parse_errors():
    assert provider_class("upstox") is UpstoxProvider
    with pytest.raises(Exception, match="not a date"):
        parse_expiries({"status": "success", "data": ["17-04-2025"]}, symbol=NIFTY)


MASTERS = {
    "NSE": OWN / "written_from_docs_instruments_json_NSE_futures_sample.json",
    "BSE": OWN / "written_from_docs_instruments_json_BSE_futures_sample.json",
}


def _instruments_file(replay, exchange: str) -> None:
    """The exchange's instrument master, gzip-compressed as Upstox publishes it."""
    raw = MASTERS[exchange].read_bytes()
    path = f"/market-quote/instruments/exchange/{exchange}.json.gz"
    replay.add(path, Reply(200, gzip.compress(raw), {"content-type": "application/gzip"}))


def test_current_futures_from_the_instrument_master(replay, upstox, clock):
    clock.current = utc(2025, 12, 1, 4, 0)
    _instruments_file(replay, "NSE")
    _instruments_file(replay, "BSE")
    frame, problems = upstox.future_contracts([NIFTY, "NSE_INDEX|Nifty Bank", "BSE_INDEX|SENSEX"])
    assert problems == [] and replay.unmatched == []
    assert sorted(frame["symbol"]) == [
        "BANKNIFTY FUT 30 DEC 25",
        "NIFTY FUT 27 JAN 26",
        "NIFTY FUT 30 DEC 25",
        "SENSEX FUT 24 DEC 25",
    ]  # no option, no equity future of another underlying, no FINNIFTY (not asked)
    nifty = frame.filter(frame["symbol"] == "NIFTY FUT 30 DEC 25").row(0, named=True)
    # the file's expiry is epoch milliseconds at the day's end, IST
    assert nifty["expiry"] == date(2025, 12, 30) and nifty["lot_size"] == 75
    assert (nifty["asset_type"], nifty["underlying"], nifty["exchange"]) == (
        "future",
        NIFTY,
        "NSE_FO",
    )
    assert nifty["strike"] is None and nifty["option_type"] is None and nifty["active"]
    assert json.loads(nifty["provider_symbols"]) == {"upstox": "NSE_FO|52168"}
    # the static file is fetched without the API's rate limit, from the configured origin
    assert len(replay.requests_to("/market-quote/instruments/exchange/NSE.json.gz")) == 1


def test_instrument_master_inflate_limit_and_bad_bodies():
    from marketlake.errors import BadResponseError
    from marketlake.pipeline.providers.upstox import instruments_file

    raw = json.dumps([{"instrument_type": "FUT"}] * 200).encode()
    assert len(instruments_file(gzip.compress(raw), exchange="NSE", limit=len(raw))) == 200
    assert len(instruments_file(raw, exchange="NSE", limit=10)) == 200  # plain JSON as is
    with pytest.raises(BadResponseError, match="inflates beyond"):
        instruments_file(gzip.compress(raw), exchange="NSE", limit=100)
    with pytest.raises(BadResponseError, match="not a list"):
        instruments_file(b"{}", exchange="NSE", limit=100)

"""Yahoo's ``/v8/finance/chart`` JSON → lake frames (bars and corporate actions).

Pure functions, no I/O. The rules (SPEC §4):

- daily and weekly bars are keyed at 00:00 UTC of the exchange-local session date, taken in
  ``meta.exchangeTimezoneName`` (so DST never moves a day: GS2C.DE opens at 07:00 UTC in
  summer and 08:00 UTC in winter, WSKT.JK at 02:00 UTC, BTC-USD at 00:00 UTC); weekly bars on
  the Monday of their week; intraday bars by their UTC open;
- bars whose open, high, low and close are all null (Yahoo's leading placeholder rows) are
  dropped; a response without ``timestamp`` (a weekend 1m request) is an empty frame;
- only the last bar can still be forming: it is ``is_final=false`` when its timestamp is not
  on the session grid (a live bar stamped with the last trade time, e.g. 15:00:03) or its
  session/interval has not ended at ``now``;
- OHLC and volume are as Yahoo gives them (split-adjusted); ``adj_close`` comes from
  ``indicators.adjclose`` (close where Yahoo sends none, i.e. intraday);
- events are dated by their ``date`` field, not by their map key (which is the bar bucket);
- a bar with a value that is not a number (``"volume": "abc"``) is kept with its reason in the
  :data:`~marketlake.pipeline.providers.base.REJECT` column, to be quarantined; the other bars
  of the response are unaffected.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from marketlake.errors import BadResponseError, InvalidSymbolError, TerminalProviderError
from marketlake.pipeline.providers.base import REJECT, empty_actions, empty_ohlcv, frame_schema
from marketlake.pipeline.timeframes import DURATION

INTERVALS = {"1m": "1m", "15m": "15m", "30m": "30m", "1h": "1h", "1D": "1d", "1W": "1wk"}
_DAILY = {"1D", "1W"}
_PRICE = ("open", "high", "low", "close")


def chart_result(body: Any, *, provider: str, symbol: str) -> dict[str, Any]:
    """The single ``chart.result`` entry, or the provider error the body carries."""
    chart = body.get("chart") if isinstance(body, dict) else None
    if not isinstance(chart, dict):
        raise BadResponseError(
            f"{provider} {symbol}: chart response without a 'chart' object",
            provider=provider,
            symbol=symbol,
        )
    err = chart.get("error")
    if err:
        code = err.get("code") if isinstance(err, dict) else str(err)
        desc = err.get("description") if isinstance(err, dict) else ""
        cls = InvalidSymbolError if code == "Not Found" else TerminalProviderError
        raise cls(
            f"{provider} {symbol}: chart error {code}: {desc}", provider=provider, symbol=symbol
        )
    result = chart.get("result")
    if not result or not isinstance(result, list) or not isinstance(result[0], dict):
        raise InvalidSymbolError(
            f"{provider} {symbol}: chart response has no result", provider=provider, symbol=symbol
        )
    return result[0]


def exchange_tz(meta: dict[str, Any]) -> tzinfo:
    """The exchange's zone: ``exchangeTimezoneName``, else the fixed ``gmtoffset``, else UTC."""
    name = meta.get("exchangeTimezoneName")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    offset = meta.get("gmtoffset")
    if isinstance(offset, int | float):
        return timezone(timedelta(seconds=int(offset)))
    return UTC


def _tod(ts: int, tz: tzinfo) -> int:
    local = datetime.fromtimestamp(ts, tz)
    return local.hour * 3600 + local.minute * 60 + local.second


def _regular(meta: dict[str, Any]) -> tuple[int, int] | None:
    period = meta.get("currentTradingPeriod")
    regular = period.get("regular") if isinstance(period, dict) else None
    if isinstance(regular, dict) and "start" in regular and "end" in regular:
        return int(regular["start"]), int(regular["end"])
    return None


def _column(values: Any, n: int) -> list[Any]:
    values = list(values or [])
    return (values + [None] * n)[:n]


def _local(epoch_s: pl.Expr, tz: tzinfo) -> pl.Expr:
    """Naive exchange-local datetimes of epoch seconds."""
    if isinstance(tz, ZoneInfo):
        return (
            pl.from_epoch(epoch_s, time_unit="s")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(tz.key)
            .dt.replace_time_zone(None)
        )
    offset = int((tz.utcoffset(None) or timedelta(0)).total_seconds())
    return pl.from_epoch(epoch_s + offset, time_unit="s")


def _last_is_final(
    last: int,
    session_tod: int | None,
    timeframe: str,
    meta: dict[str, Any],
    tz: tzinfo,
    now: datetime,
) -> bool:
    """Whether the last bar of the response is complete (see the module rules);
    ``session_tod`` is the most common local time of day of the other bars."""
    regular = _regular(meta)
    now_s = now.timestamp()
    if timeframe in _DAILY:
        # on the grid: the session-open time of day (from the other bars or the current
        # trading period) or local midnight (futures, FX, crypto, funds)
        grid = {0}
        if session_tod is not None:
            grid.add(session_tod)
        if regular:
            grid.add(_tod(regular[0], tz))
        if _tod(last, tz) not in grid:
            return False
        local_day = datetime.fromtimestamp(last, tz).date()
        if regular and datetime.fromtimestamp(regular[0], tz).date() == local_day:
            if now_s < regular[1]:
                return False
        if timeframe == "1W":
            week_end = local_day - timedelta(days=local_day.weekday()) + timedelta(days=7)
            return now.astimezone(tz).date() >= week_end
        next_midnight = datetime.combine(local_day + timedelta(days=1), datetime.min.time(), tz)
        return regular is not None or now >= next_midnight
    step = int(DURATION[timeframe].total_seconds())
    if last + step > now_s:
        return False
    if regular and (_tod(last, tz) - _tod(regular[0], tz)) % step != 0:
        return False
    return True


_RAW_SCHEMA = {"t": pl.Int64, **{k: pl.Float64 for k in (*_PRICE, "volume", "adj_close")}}


def _unparsed(data: dict[str, list[Any]], raw: pl.DataFrame) -> pl.Series | None:
    """Per bar, why a value did not parse as a number (null where all did); None when every
    value parsed (the common case, found without a per-value loop)."""
    reasons: list[str | None] | None = None
    for k in (*_PRICE, "volume", "adj_close"):
        parsed = raw[k]
        if parsed.null_count() == sum(v is None for v in data[k]):
            continue
        reasons = reasons or [None] * raw.height
        for i, (given, got) in enumerate(zip(data[k], parsed.to_list(), strict=True)):
            if given is not None and got is None and reasons[i] is None:
                reasons[i] = f"{k} {str(given)[:40]!r} is not a number"
    return None if reasons is None else pl.Series(reasons, dtype=pl.String)


def parse_bars(
    body: Any,
    *,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    now: datetime,
    provider: str = "yahoo",
) -> pl.DataFrame:
    """Bars of ``timeframe`` with key ts in [start, end), in ``OHLCV_SCHEMA``."""
    res = chart_result(body, provider=provider, symbol=symbol)
    meta = res.get("meta") or {}
    raw_ts = res.get("timestamp") or []
    if not raw_ts:
        return empty_ohlcv()
    n = len(raw_ts)
    indicators = res.get("indicators") or {}
    quote = (indicators.get("quote") or [{}])[0] or {}
    adj = ((indicators.get("adjclose") or [{}])[0] or {}).get("adjclose")
    data: dict[str, list[Any]] = {"t": raw_ts}
    for k in (*_PRICE, "volume"):
        data[k] = _column(quote.get(k), n)
    data["adj_close"] = _column(adj, n) if adj is not None else data["close"]
    try:
        raw = pl.DataFrame(data, schema=_RAW_SCHEMA, strict=False)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise BadResponseError(
            f"{provider} {symbol}: malformed chart arrays: {exc}", provider=provider, symbol=symbol
        ) from exc
    reasons = _unparsed(data, raw)
    if raw["t"].null_count():
        raise BadResponseError(
            f"{provider} {symbol}: chart timestamps are not integers",
            provider=provider,
            symbol=symbol,
        )
    tz = exchange_tz(meta)
    local = _local(pl.col("t"), tz)
    if timeframe in _DAILY:
        day = local.dt.date()
        if timeframe == "1W":
            day = day - pl.duration(days=local.dt.weekday() - 1)
        key = day.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    else:
        key = (
            pl.from_epoch(pl.col("t"), time_unit="s")
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
    tod = local.dt.hour().cast(pl.Int64) * 3600 + local.dt.minute() * 60 + local.dt.second()
    # eager calls with fast paths: this runs once per request, and each polars query costs
    # ~0.1 ms (a lazy plan ~1 ms), which matters at hundreds of requests per second
    frame = raw.select(
        pl.lit(symbol, pl.String).alias("symbol"),
        pl.lit(timeframe, pl.String).alias("timeframe"),
        key.alias("ts"),
        *_PRICE,
        "volume",
        "adj_close",
        pl.lit(provider, pl.String).alias("provider"),
        (pl.int_range(pl.len()) < n - 1).alias("is_final"),
        tod.alias("_tod"),
    )
    if reasons is not None:
        frame = frame.with_columns(reasons.alias(REJECT))
    others = Counter(frame["_tod"].head(n - 1).to_list())
    session_tod = others.most_common(1)[0][0] if others else None
    if _last_is_final(int(raw_ts[-1]), session_tod, timeframe, meta, tz, now):
        frame = frame.with_columns(pl.lit(True).alias("is_final"))  # else: only the last False
    frame = frame.drop("_tod")
    if sum(frame[k].null_count() for k in _PRICE):
        placeholder = pl.all_horizontal(pl.col(k).is_null() for k in _PRICE)
        if REJECT in frame.columns:
            placeholder = placeholder & pl.col(REJECT).is_null()
        frame = frame.filter(~placeholder)
    ts = frame["ts"]
    if frame.height and (ts.min() < start or ts.max() >= end):
        frame = frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    if frame["ts"].n_unique() < frame.height:
        frame = frame.unique(subset=["ts"], keep="last", maintain_order=True)
    if not frame["ts"].is_sorted():
        frame = frame.sort("ts")
    return frame


def _split_ratio(event: dict[str, Any]) -> float | None:
    num, den = event.get("numerator"), event.get("denominator")
    if isinstance(num, int | float) and isinstance(den, int | float) and den:
        return float(num) / float(den)
    text = str(event.get("splitRatio") or "")
    if ":" in text:
        a, _, b = text.partition(":")
        try:
            return float(a) / float(b)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def parse_events(
    body: Any,
    *,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    provider: str = "yahoo",
) -> pl.DataFrame:
    """Splits, dividends and capital gains with ex_date in [start, end) (``ACTIONS_SCHEMA``).

    Two events of one kind on one day (a special and a regular dividend) are summed.
    """
    res = chart_result(body, provider=provider, symbol=symbol)
    meta = res.get("meta") or {}
    events = res.get("events") or {}
    tz = exchange_tz(meta)
    currency = meta.get("currency")
    lo: date | None = start.date() if start else None
    hi: date | None = end.date() if end else None
    acc: dict[tuple[date, str], dict[str, Any]] = {}
    for key, kind in (
        ("splits", "split"),
        ("dividends", "dividend"),
        ("capitalGains", "capital_gain"),
    ):
        for map_key, ev in (events.get(key) or {}).items():
            if not isinstance(ev, dict):
                continue
            when = ev.get("date")
            if when is None:
                when = int(map_key)
            ex_date = datetime.fromtimestamp(int(when), tz).date()
            if (lo and ex_date < lo) or (hi and ex_date >= hi):
                continue
            row = acc.setdefault(
                (ex_date, kind),
                {
                    "symbol": symbol,
                    "ex_date": ex_date,
                    "kind": kind,
                    "ratio": None,
                    "amount": None,
                    "currency": None if kind == "split" else (ev.get("currency") or currency),
                    "provider": provider,
                },
            )
            if kind == "split":
                ratio = _split_ratio(ev)
                if ratio is not None:
                    row["ratio"] = ratio * (row["ratio"] or 1.0)
            elif isinstance(ev.get("amount"), int | float):
                row["amount"] = float(ev["amount"]) + (row["amount"] or 0.0)
    if not acc:
        return empty_actions()
    return pl.DataFrame(list(acc.values()), schema=frame_schema("actions")).sort("ex_date", "kind")

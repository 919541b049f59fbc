"""Upstox: Indian indices, equities and F&O contracts (current and expired) with their candles.

Token auth (``Authorization: Bearer`` from ``MARKETLAKE_UPSTOX_TOKEN``). Instruments are named
by Upstox's instrument key (``NSE_INDEX|Nifty 50``, ``NSE_EQ|INE848E01016``,
``NSE_FO|47983|17-04-2025`` for an expired contract), always percent-encoded as one path
segment or sent as a query parameter.

Candles (V3, ``/v3/historical-candle/{key}/{unit}/{interval}/{to}/{from}``, plus the intraday
endpoint for today's session) are native for 1m, 30m, 1D, 1W and 1mo (unit ``months``); 15m,
1h and 4h are resampled. Requests stay inside Upstox's documented range per request (1-15
minutes: one month; more than 15 minutes: one quarter; days: a decade; weeks and months:
unlimited) and history (minutes from January 2022, days from January 2000). Rows arrive newest
first as ``[ts(+05:30), open, high, low, close, volume, oi]``, with missing minutes left
missing; ``oi`` lands in ``open_interest``. Daily, weekly and monthly bars are keyed at
00:00 UTC of their IST session date (a month at its first day's).

Expired contracts (Upstox Plus): expiries per underlying, then the option and future
contracts of an expiry (``lot_size``; the expired API also sends ``minimum_lot``, the same
number, used when ``lot_size`` is absent), then their candles from
``/v2/expired-instruments/historical-candle``.

Current contracts: options from ``/v2/option/contract``; futures from the daily instrument
master per exchange (``NSE.json.gz``, ``BSE.json.gz`` on Upstox's assets host; the API has no
current-futures endpoint and its documentation points there), filtered to ``FUT`` records of
the wanted underlyings.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from marketlake.errors import AuthError, BadResponseError, InvalidSymbolError, TerminalProviderError
from marketlake.pipeline.providers.base import (
    Capabilities,
    FetchRequest,
    empty_ohlcv,
    frame_schema,
    rows_frame,
)
from marketlake.pipeline.providers.http import HttpProvider, with_origin
from marketlake.pipeline.providers.symbols import path_segment, provider_symbol
from marketlake.pipeline.timeframes import DURATION, shift

BASE_URL = "https://api.upstox.com"
# the daily (BOD) instrument master per exchange; the documented source of current futures
INSTRUMENTS_URL = "https://assets.upstox.com/market-quote/instruments/exchange/{exchange}.json.gz"
INFLATE_FACTOR = 8  # the inflated file may be this many times max_response_bytes
IST = ZoneInfo("Asia/Kolkata")
SESSION_CLOSE_UTC = time(10, 0)  # 15:30 IST
# lake timeframe -> (V3 unit, interval)
V3_INTERVALS = {"1m": ("minutes", "1"), "30m": ("minutes", "30"), "1D": ("days", "1"), "1W": ("weeks", "1"), "1mo": ("months", "1")}  # fmt: skip
SESSION_KEYED = ("1D", "1W", "1mo")  # bars keyed at 00:00 UTC of their IST session date
# lake timeframe -> expired-instrument interval
EXPIRED_INTERVALS = {"1m": "1minute", "15m": "15minute", "30m": "30minute", "1D": "day"}
MINUTES_FROM = datetime(2022, 1, 1, tzinfo=UTC)
DAYS_FROM = datetime(2000, 1, 1, tzinfo=UTC)
INDICES = (
    "NSE_INDEX|Nifty 50",
    "NSE_INDEX|Nifty Bank",
    "NSE_INDEX|Nifty Fin Service",
    "BSE_INDEX|SENSEX",
    "BSE_INDEX|BANKEX",
)
_EXPIRED_KEY = re.compile(r"^[A-Z_]+\|[^|]+\|\d{2}-\d{2}-\d{4}$")


def is_expired_key(key: str) -> bool:
    """``NSE_FO|47983|17-04-2025`` (segment|token|dd-mm-yyyy) names an expired contract."""
    return bool(_EXPIRED_KEY.match(key))


def _check(body: Any, what: str, symbol: str) -> Any:
    """The ``data`` of a ``{"status": "success", "data": ...}`` envelope."""
    if not isinstance(body, dict) or body.get("status") != "success" or "data" not in body:
        errors = body.get("errors") if isinstance(body, dict) else None
        first = (
            errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        )
        code = first.get("errorCode") or first.get("error_code")
        text = f"{code}: {first.get('message')}" if code else "not a success envelope"
        raise BadResponseError(f"upstox {symbol}: {what}: {text}", provider="upstox", symbol=symbol)
    return body["data"]


def candle_rows(
    candles: list[Any], *, symbol: str
) -> list[tuple[datetime, float, float, float, float, float, float | None]]:
    """``[ts, open, high, low, close, volume, oi]`` rows as typed tuples, oldest first (Upstox
    sends them newest first). A row that does not parse is a malformed response."""
    out = []
    for c in candles:
        try:
            opened = datetime.fromisoformat(str(c[0]))
            o, h, low, close, vol = (float(x) for x in c[1:6])
            oi = float(c[6]) if len(c) > 6 and c[6] is not None else None
        except (IndexError, TypeError, ValueError) as exc:
            raise BadResponseError(
                f"upstox {symbol}: malformed candle {str(c)[:80]}: {type(exc).__name__}",
                provider="upstox",
                symbol=symbol,
            ) from exc
        if opened.tzinfo is None:
            opened = opened.replace(tzinfo=IST)
        out.append((opened, o, h, low, close, vol, oi))
    out.sort(key=lambda r: r[0])
    return out


def session_dates(start: datetime, end: datetime, timeframe: str) -> tuple[date, date]:
    """The first and last IST dates [start, end) covers: daily and weekly bars are keyed by
    their session date (at 00:00 UTC), intraday bars by their UTC open time."""
    last = end - timedelta(microseconds=1)
    if timeframe in SESSION_KEYED:
        return start.astimezone(UTC).date(), last.astimezone(UTC).date()
    return start.astimezone(IST).date(), last.astimezone(IST).date()


def parse_candles(
    body: Any,
    *,
    symbol: str,
    timeframe: str,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    provider: str = "upstox",
) -> pl.DataFrame:
    """A candles body → ``ohlcv`` rows in ascending time, in [start, end) when given.

    Intraday bars keep their open time in UTC; daily and weekly bars are keyed at 00:00 UTC
    of their IST date. A bar is final once its period has ended by ``now``."""
    data = _check(body, "candles", symbol)
    candles = data.get("candles") if isinstance(data, dict) else None
    if not isinstance(candles, list):
        raise BadResponseError(
            f"upstox {symbol}: candles response without 'candles'", provider=provider, symbol=symbol
        )
    if not candles:
        return empty_ohlcv()
    step = DURATION[timeframe]
    daily = timeframe in SESSION_KEYED
    rows = []
    for opened, o, h, low, close, vol, oi in candle_rows(candles, symbol=symbol):
        if timeframe == "1mo":  # final once the month's last day has closed
            local = opened.astimezone(IST).date().replace(day=1)
            ts = datetime(local.year, local.month, 1, tzinfo=UTC)
            last_day = shift(ts, "1mo", 1).date() - timedelta(days=1)
            final_at = datetime.combine(last_day, SESSION_CLOSE_UTC, UTC)
        elif daily:
            local = opened.astimezone(IST).date()
            ts = datetime(local.year, local.month, local.day, tzinfo=UTC)
            final_at = datetime.combine(local, SESSION_CLOSE_UTC, UTC) + (step - DURATION["1D"])
        else:
            ts = opened.astimezone(UTC)
            final_at = ts + step
        rows.append(
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "ts": ts,
                "open": o,
                "high": h,
                "low": low,
                "close": close,
                "volume": vol,
                "adj_close": close,
                "provider": provider,
                "is_final": final_at <= now,
                "open_interest": oi,
            }
        )
    out = pl.DataFrame(rows, schema=frame_schema("ohlcv"))
    if start is not None:
        out = out.filter(pl.col("ts") >= start)
    if end is not None:
        out = out.filter(pl.col("ts") < end)
    return out.unique(subset=["ts"], keep="first", maintain_order=True).sort("ts")


def parse_expiries(body: Any, *, symbol: str) -> list[date]:
    """``/v2/expired-instruments/expiries`` → the expiry dates, ascending."""
    data = _check(body, "expiries", symbol)
    if not isinstance(data, list):
        raise BadResponseError(
            f"upstox {symbol}: expiries are not a list", provider="upstox", symbol=symbol
        )
    out = set()
    for d in data:
        try:
            out.add(date.fromisoformat(str(d)))
        except ValueError as exc:
            raise BadResponseError(
                f"upstox {symbol}: expiry {d!r} is not a date", provider="upstox", symbol=symbol
            ) from exc
    return sorted(out)


def parse_contracts(
    body: Any, *, symbol: str, today: date, provider: str = "upstox"
) -> tuple[pl.DataFrame, list[str]]:
    """Option or future contracts (a ``{"status": "success", "data": [...]}`` envelope) →
    ``instruments`` rows, and one line per contract left out; see :func:`contract_rows`."""
    data = _check(body, "contracts", symbol)
    if not isinstance(data, list):
        raise BadResponseError(
            f"upstox {symbol}: contracts are not a list", provider=provider, symbol=symbol
        )
    return contract_rows(data, symbol=symbol, today=today, provider=provider)


def _expiry(value: Any) -> date:
    """An expiry as the API sends it (``2025-04-24``) or as the instruments JSON file does
    (epoch milliseconds of the expiry day's end, IST)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC).astimezone(IST).date()
    return date.fromisoformat(str(value)[:10])


def contract_rows(
    data: list[Any], *, symbol: str, today: date, provider: str = "upstox"
) -> tuple[pl.DataFrame, list[str]]:
    """Contract records → ``instruments`` rows, and one line per contract left out (no lot
    size at all, no trading symbol). The canonical symbol is Upstox's trading symbol
    (``NIFTY 20400 PE 17 APR 25``); the instrument key is kept in ``provider_symbols``.
    A contract whose expiry has passed is inactive, delisted at that session's close."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for c in data:
        if not isinstance(c, dict):
            continue
        name = str(c.get("trading_symbol") or "").strip()
        key = str(c.get("instrument_key") or "").strip()
        if not name or not key:
            problems.append(f"upstox {symbol}: contract without trading symbol or key: {c}"[:200])
            continue
        lot = c.get("lot_size") if c.get("lot_size") not in (None, 0) else c.get("minimum_lot")
        try:
            lot_size = int(lot)
            expiry = _expiry(c.get("expiry"))
        except (TypeError, ValueError, OverflowError, OSError):
            problems.append(f"upstox {name}: no usable lot size or expiry (left out)")
            continue
        kind = str(c.get("instrument_type") or "").upper()
        is_option = kind in ("CE", "PE")
        strike = c.get("strike_price")
        rows.append(
            {
                "symbol": name,
                "name": name,
                "asset_type": "option" if is_option else "future",
                "exchange": c.get("segment") or c.get("exchange"),
                "timezone": "Asia/Kolkata",
                "currency": "INR",
                "is_etf": False,
                "underlying": c.get("underlying_key") or c.get("underlying_symbol"),
                "expiry": expiry,
                "strike": float(strike) if is_option and strike is not None else None,
                "option_type": kind if is_option else None,
                "lot_size": lot_size,
                "active": expiry >= today,
                "delisted_at": None
                if expiry >= today
                else datetime.combine(expiry, SESSION_CLOSE_UTC, UTC),
                "provider": provider,
                "provider_symbols": json.dumps({provider: key}),
            }
        )
    return rows_frame("instruments", rows), problems


def instruments_file(raw: bytes, *, exchange: str, limit: int) -> list[Any]:
    """The records of an instruments JSON file (gzip as published, or plain JSON), inflated
    to at most ``limit`` bytes."""
    where = f"upstox instruments {exchange}"
    if raw[:2] == b"\x1f\x8b":
        inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        try:
            raw = inflate.decompress(raw, limit)
        except zlib.error as exc:
            raise BadResponseError(f"{where}: corrupt gzip: {exc}", provider="upstox") from exc
        if inflate.unconsumed_tail:
            raise BadResponseError(
                f"{where}: inflates beyond max_response_bytes ({limit} bytes)", provider="upstox"
            )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadResponseError(f"{where}: not JSON: {exc}", provider="upstox") from exc
    if not isinstance(data, list):
        raise BadResponseError(f"{where}: not a list of instruments", provider="upstox")
    return data


class UpstoxProvider(HttpProvider):
    """Upstox's REST API over the shared HTTP layer."""

    name = "upstox"
    base_url = BASE_URL
    capabilities = Capabilities(
        kinds=frozenset({"ohlcv", "instruments"}),
        timeframes=tuple(V3_INTERVALS),
        max_range={
            "1m": timedelta(days=30),
            "30m": timedelta(days=90),
            "1D": timedelta(days=3650),
            "1W": None,
            "1mo": None,
        },
        history={"1m": None, "30m": None, "1D": None, "1W": None, "1mo": None},
        rate_limit_per_s=20.0,  # documented: 50/s, 500/min, 2000 per 30 min per user
        default_concurrency=4,
        asset_types=frozenset({"equity", "index", "option", "future"}),
        needs_secret=True,
    )

    def __init__(self, settings=None, **kw) -> None:
        from marketlake.pipeline.config import ProviderSettings

        settings = settings or ProviderSettings(name=self.name)
        headers = {"Authorization": f"Bearer {settings.secret}"} if settings.secret else {}
        super().__init__(settings, headers=headers, **kw)

    def fetch(self, request: FetchRequest) -> pl.DataFrame:
        """Refuse at once without a token: an :class:`AuthError` stops only this provider."""
        if not self.settings.secret:
            raise AuthError(
                f"{self.name} {request.symbol}".rstrip()
                + ": no token: set MARKETLAKE_UPSTOX_TOKEN",
                provider=self.name,
                symbol=request.symbol,
            )
        return super().fetch(request)

    @staticmethod
    def instrument_key(symbol: str, instrument: Mapping[str, Any] | None = None) -> str:
        """Upstox's key: ``provider_symbols["upstox"]``, else the symbol itself."""
        return provider_symbol(instrument, "upstox") or symbol

    # -- candles ------------------------------------------------------------------------------
    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        key = request.provider_symbol or self.instrument_key(request.symbol, request.instrument)
        if is_expired_key(key):
            return self.expired_candles(
                request.symbol, key, request.timeframe, request.start, request.end
            )
        spec = V3_INTERVALS.get(request.timeframe)
        if spec is None:
            raise TerminalProviderError(
                f"upstox {request.symbol}: timeframe {request.timeframe} is not native",
                provider=self.name,
                symbol=request.symbol,
            )
        floor = MINUTES_FROM if spec[0] == "minutes" else DAYS_FROM
        start = max(request.start, floor)
        if start >= request.end:
            return empty_ohlcv()
        now = self.clock()
        first, last = session_dates(start, request.end, request.timeframe)
        today = now.astimezone(IST).date()
        seg = path_segment(key)
        parts = []
        if first < today:
            path = f"/v3/historical-candle/{seg}/{spec[0]}/{spec[1]}/{min(last, today)}/{first}"
            parts.append(self._candles(path, request, now))
        if last >= today and request.timeframe in ("1m", "30m", "1D"):
            path = f"/v3/historical-candle/intraday/{seg}/{spec[0]}/{spec[1]}"
            parts.append(self._candles(path, request, now))
        parts = [p for p in parts if not p.is_empty()]
        if not parts:
            return empty_ohlcv()
        return pl.concat(parts).unique(subset=["ts"], keep="last", maintain_order=True).sort("ts")

    def _candles(self, path: str, request: FetchRequest, now: datetime) -> pl.DataFrame:
        body = self.http.get_json(path, symbol=request.symbol)
        return parse_candles(
            body,
            symbol=request.symbol,
            timeframe=request.timeframe,
            now=now,
            start=request.start,
            end=request.end,
            provider=self.name,
        )

    def expired_candles(
        self, symbol: str, key: str, timeframe: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        """Candles of an expired contract in [start, end), one request per range Upstox
        allows (a month of minutes, a quarter of 30 minutes, a decade of days)."""
        interval = EXPIRED_INTERVALS.get(timeframe)
        if interval is None:
            raise TerminalProviderError(
                f"upstox {symbol}: expired contracts have no {timeframe} candles "
                f"(available: {', '.join(EXPIRED_INTERVALS)})",
                provider=self.name,
                symbol=symbol,
            )
        width = {"1m": 30, "15m": 30, "30m": 90}.get(timeframe, 3650)
        now = self.clock()
        first, last = session_dates(start, end, timeframe)
        parts = []
        lo = first
        while lo <= last:
            hi = min(last, lo + timedelta(days=width - 1))
            path = f"/v2/expired-instruments/historical-candle/{path_segment(key)}/{interval}/{hi}/{lo}"
            body = self.http.get_json(path, symbol=symbol)
            parts.append(
                parse_candles(
                    body, symbol=symbol, timeframe=timeframe, now=now, start=start, end=end
                )
            )
            lo = hi + timedelta(days=1)
        return pl.concat(parts).unique(subset=["ts"], keep="last").sort("ts")

    # -- F&O contracts --------------------------------------------------------------------------
    def expiries(self, underlying: str) -> list[date]:
        """Every expiry of ``underlying``'s expired contracts, ascending."""
        body = self.http.get_json(
            "/v2/expired-instruments/expiries",
            symbol=underlying,
            params={"instrument_key": underlying},
        )
        return parse_expiries(body, symbol=underlying)

    def expired_contracts(self, underlying: str, expiry: date) -> tuple[pl.DataFrame, list[str]]:
        """The option and future contracts of ``underlying`` that expired on ``expiry``."""
        today = self.clock().astimezone(IST).date()
        frames, problems = [], []
        for what in ("option", "future"):
            body = self.http.get_json(
                f"/v2/expired-instruments/{what}/contract",
                symbol=underlying,
                params={"instrument_key": underlying, "expiry_date": expiry.isoformat()},
            )
            frame, bad = parse_contracts(body, symbol=underlying, today=today, provider=self.name)
            frames.append(frame)
            problems += bad
        return pl.concat(frames), problems

    def option_contracts(self, underlying: str) -> tuple[pl.DataFrame, list[str]]:
        """The current option contracts of ``underlying`` (every listed expiry)."""
        body = self.http.get_json(
            "/v2/option/contract", symbol=underlying, params={"instrument_key": underlying}
        )
        today = self.clock().astimezone(IST).date()
        return parse_contracts(body, symbol=underlying, today=today, provider=self.name)

    def future_contracts(self, underlyings: list[str]) -> tuple[pl.DataFrame, list[str]]:
        """The current future contracts of ``underlyings``, from the instrument master of
        their exchanges (Upstox's API serves current options and expired contracts only; its
        documentation points to this file for active futures)."""
        wanted = set(underlyings)
        today = self.clock().astimezone(IST).date()
        frames, problems = [], []
        for exchange in sorted({u.split("|")[0].split("_")[0] for u in underlyings}):
            url = INSTRUMENTS_URL.format(exchange=exchange)
            if self.settings.base_url:
                url = with_origin(url, self.settings.base_url)
            raw = self.http.get(url, symbol=f"instruments {exchange}", rate_limited=False)
            records = instruments_file(
                raw.content,
                exchange=exchange,
                limit=INFLATE_FACTOR * self.settings.max_response_bytes,
            )
            futures = [
                r
                for r in records
                if isinstance(r, dict)
                and r.get("instrument_type") == "FUT"
                and r.get("underlying_key") in wanted
            ]
            frame, bad = contract_rows(futures, symbol=exchange, today=today, provider=self.name)
            frames.append(frame.filter(pl.col("active")))  # a stale file's expired futures
            problems += bad
        if not frames:
            return rows_frame("instruments", []), problems
        return pl.concat(frames), problems

    def current_contracts(self, underlyings: list[str]) -> tuple[pl.DataFrame, list[str]]:
        """Every current option and future contract of ``underlyings``."""
        frames, problems = [], []
        for u in underlyings:
            try:
                frame, bad = self.option_contracts(u)
            except InvalidSymbolError:
                continue  # an underlying without options (SENSEX weeklies come and go)
            frames.append(frame)
            problems += bad
        futures, bad = self.future_contracts(underlyings)
        frames.append(futures)
        problems += bad
        return pl.concat(frames), problems

    def _fetch_instruments(self, request: FetchRequest) -> pl.DataFrame:
        """The current F&O contracts (options and futures) of the underlyings named in
        ``request.instrument`` (``{"underlyings": [...]}``; default: the five indices)."""
        underlyings = list(request.instrument.get("underlyings") or INDICES)
        return self.current_contracts(underlyings)[0]

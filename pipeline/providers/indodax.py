"""Indodax: IDR/USDT crypto pairs and their TradingView candles.

Public API, no key, 180 requests/min. Candles come from ``/tradingview/history_v2`` (O/H/L/C
numbers, ``Volume`` a string, ``Time`` the bar open in seconds). Crypto trades around the clock,
so the session is the UTC day: daily bars are keyed at 00:00 UTC, weekly bars on Monday.
Symbols: ``BTC/IDR`` is ``BTCIDR`` for candles, ``btcidr`` for tickers and ``btc_idr`` on the
legacy paths. Indodax answers an unknown pair with HTTP 200 and ``{"error": "invalid_pair"}``:
that is an :class:`InvalidSymbolError`, never data.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import polars as pl

from marketlake.errors import BadResponseError, InvalidSymbolError, TerminalProviderError
from marketlake.pipeline.providers.base import (
    REJECT,
    Capabilities,
    FetchRequest,
    empty_ohlcv,
    frame_schema,
    profile_row,
    rows_frame,
)
from marketlake.pipeline.providers.http import HttpProvider
from marketlake.pipeline.providers.symbols import path_segment, provider_symbol
from marketlake.pipeline.timeframes import DURATION, floor

BASE_URL = "https://indodax.com"
TF = {"1m": "1", "15m": "15", "30m": "30", "1h": "60", "4h": "240", "1D": "1D", "1W": "1W"}
MAX_BARS = 1000  # no documented limit; ccxt asks for 1000 bars per request
_QUOTES = ("USDT", "IDR", "BTC", "ETH")
_SEP = re.compile(r"[/_\-:]")


def pair_parts(symbol: str) -> tuple[str, str]:
    """(base, quote) of ``BTC/IDR``, ``btc_idr`` or ``BTCIDR`` (a known quote suffix)."""
    parts = [p for p in _SEP.split(symbol) if p]
    if len(parts) == 2:
        return parts[0].upper(), parts[1].upper()
    s = symbol.upper()
    for quote in _QUOTES:
        if s.endswith(quote) and len(s) > len(quote):
            return s[: -len(quote)], quote
    return s, ""


class IndodaxProvider(HttpProvider):
    """Indodax's public REST API over the shared HTTP layer."""

    name = "indodax"
    base_url = BASE_URL
    capabilities = Capabilities(
        kinds=frozenset({"ohlcv", "profile", "instruments"}),
        timeframes=tuple(TF),
        max_range={tf: DURATION[tf] * MAX_BARS for tf in TF},
        rate_limit_per_s=3.0,  # 180 requests/min
        default_concurrency=4,
        asset_types=frozenset({"crypto"}),
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        self._pairs: dict[str, dict[str, Any]] | None = None
        self._pairs_lock = threading.Lock()

    # -- symbols --------------------------------------------------------------------------
    @staticmethod
    def pair_id(symbol: str, instrument: Mapping[str, Any] | None = None) -> str:
        """Indodax's market id: ``provider_symbols["indodax"]``, else ``BTC/IDR`` → ``BTCIDR``."""
        mapped = provider_symbol(instrument, "indodax")
        if mapped:
            return mapped
        base, quote = pair_parts(symbol)
        return base + quote

    @staticmethod
    def legacy_pair(symbol: str) -> str:
        """``BTC/IDR`` → ``btc_idr`` (the old ``/api/{pair}/ticker`` form)."""
        base, quote = pair_parts(symbol)
        return f"{base}_{quote}".lower() if quote else base.lower()

    def _check(self, body: Any, symbol: str) -> Any:
        """Turn an error body (Indodax sends some with HTTP 200) into the right error."""
        if isinstance(body, dict) and (body.get("error") or body.get("is_error")):
            code = str(body.get("error_code") or body.get("error") or "")
            text = body.get("error_description") or body.get("error") or code
            cls = InvalidSymbolError if "pair" in code.lower() else TerminalProviderError
            raise cls(f"indodax {symbol}: {text}", provider=self.name, symbol=symbol)
        return body

    # -- candles ----------------------------------------------------------------------------
    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        """Bars with ts in [start, end); the bar still forming at ``now`` is not final.

        A candle without a usable time is a malformed response; a candle whose prices or
        volume are not numbers (``"Volume": "abc"``) is kept with its reason in
        :data:`REJECT`, to be quarantined, and the other candles land."""
        tf = TF.get(request.timeframe)
        if tf is None:
            raise TerminalProviderError(
                f"indodax {request.symbol}: unknown timeframe {request.timeframe}",
                provider=self.name,
                symbol=request.symbol,
            )
        pair = request.provider_symbol or self.pair_id(request.symbol, request.instrument)
        body = self._check(
            self.http.get_json(
                "/tradingview/history_v2",
                symbol=request.symbol,
                params={
                    "from": int(request.start.timestamp()),
                    "to": int(request.end.timestamp()),
                    "tf": tf,
                    "symbol": pair,
                },
            ),
            request.symbol,
        )
        if not isinstance(body, list):
            raise BadResponseError(
                f"indodax {request.symbol}: candles are not a JSON array",
                provider=self.name,
                symbol=request.symbol,
            )
        if not body:
            return empty_ohlcv()
        step = DURATION[request.timeframe]
        now = self.clock()
        rows = []
        for bar in body:
            try:
                opened = datetime.fromtimestamp(int(bar["Time"]), UTC)
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise BadResponseError(
                    f"indodax {request.symbol}: malformed candle time: {type(exc).__name__}",
                    provider=self.name,
                    symbol=request.symbol,
                ) from exc
            ts = floor(opened, request.timeframe) if request.timeframe in ("1D", "1W") else opened
            values, reason = _numbers(bar)
            rows.append(
                {
                    "symbol": request.symbol,
                    "timeframe": request.timeframe,
                    "ts": ts,
                    **values,
                    "adj_close": values["close"],
                    "provider": self.name,
                    "is_final": ts + step <= now,
                    REJECT: reason,
                }
            )
        schema = {**frame_schema("ohlcv"), REJECT: pl.String}
        out = pl.DataFrame(rows, schema=schema)
        if out.get_column(REJECT).null_count() == out.height:
            out = out.drop(REJECT)
        return (
            out.filter((pl.col("ts") >= request.start) & (pl.col("ts") < request.end))
            .unique(subset=["ts"], keep="last", maintain_order=True)
            .sort("ts")
        )

    # -- pairs, tickers, profiles -------------------------------------------------------------
    def pairs(self) -> dict[str, dict[str, Any]]:
        """``/api/pairs`` by market id (``BTCIDR``); fetched once per provider instance."""
        with self._pairs_lock:
            if self._pairs is None:
                body = self._check(self.http.get_json("/api/pairs", symbol="pairs"), "pairs")
                if not isinstance(body, list):
                    raise BadResponseError(
                        "indodax pairs: expected a JSON array", provider=self.name, symbol="pairs"
                    )
                self._pairs = {
                    str(p.get("symbol") or p.get("id") or "").upper(): p
                    for p in body
                    if isinstance(p, dict)
                }
            return self._pairs

    def _fetch_instruments(self, request: FetchRequest) -> pl.DataFrame:
        now = self.clock()
        rows = []
        for pid, p in self.pairs().items():
            base = str(p.get("traded_currency") or "").upper()
            quote = str(p.get("base_currency") or "").upper()
            if not pid or not base or not quote:
                continue
            rows.append(
                {
                    "symbol": f"{base}/{quote}",
                    "name": p.get("description") or f"{base}/{quote}",
                    "asset_type": "crypto",
                    "exchange": "INDODAX",
                    "timezone": "UTC",
                    "currency": quote,
                    "is_etf": False,
                    "active": not (p.get("is_maintenance") or p.get("is_market_suspended")),
                    "provider": self.name,
                    "provider_symbols": json.dumps(
                        {"indodax": pid, "ticker_id": p.get("ticker_id")}
                    ),
                    "updated_at": now,
                }
            )
        return rows_frame("instruments", rows)

    def fetch_ticker(
        self, symbol: str, instrument: Mapping[str, Any] | None = None, *, legacy: bool = False
    ) -> dict[str, Any]:
        """Last/high/low/bid/ask, 24 h volumes per currency and the server time.

        Every number arrives as a string (``server_time`` too, on some paths)."""
        if legacy:
            path = f"/api/{path_segment(self.legacy_pair(symbol))}/ticker"
        else:
            path = f"/api/ticker/{path_segment(self.pair_id(symbol, instrument).lower())}"
        body = self._check(self.http.get_json(path, symbol=symbol), symbol)
        t = body.get("ticker") if isinstance(body, dict) else None
        if not isinstance(t, dict):
            raise BadResponseError(
                f"indodax {symbol}: ticker response without 'ticker'",
                provider=self.name,
                symbol=symbol,
            )
        try:
            out: dict[str, Any] = {
                k: float(t[k])
                for k in ("last", "high", "low", "buy", "sell")
                if t.get(k) is not None
            }
            out["volume"] = {k[4:].upper(): float(v) for k, v in t.items() if k.startswith("vol_")}
            out["server_time"] = (
                datetime.fromtimestamp(int(t["server_time"]), UTC)
                if t.get("server_time") is not None
                else None
            )
        except (TypeError, ValueError) as exc:
            raise BadResponseError(
                f"indodax {symbol}: malformed ticker: {exc}", provider=self.name, symbol=symbol
            ) from exc
        return out

    def _fetch_profile(self, request: FetchRequest) -> pl.DataFrame:
        """Name and logo from the pair list, 24 h volume (quote currency) from the ticker."""
        symbol, instrument = request.symbol, request.instrument
        pid = self.pair_id(symbol, instrument)
        pair = self.pairs().get(pid.upper())
        if pair is None:
            raise InvalidSymbolError(
                f"indodax {symbol}: not an Indodax pair ({pid})", provider=self.name, symbol=symbol
            )
        ticker = self.fetch_ticker(symbol, instrument)
        quote = str(pair.get("base_currency") or "").upper()
        return profile_row(
            symbol=symbol,
            provider=self.name,
            name=pair.get("description") or symbol,
            sector="Digital Assets",
            country="ID",
            website="https://indodax.com",
            volume_24h=ticker["volume"].get(quote),
            icon_url=pair.get("url_logo_png") or pair.get("url_logo"),
            raw=json.dumps({"pair": pair, "ticker": ticker}, default=str, sort_keys=True),
            fetched_at=self.clock(),
        )


def _numbers(bar: Mapping[str, Any]) -> tuple[dict[str, float | None], str | None]:
    """A candle's prices and volume as floats, and why one is not a number (else None)."""
    out: dict[str, float | None] = {}
    reason = None
    for key in ("Open", "High", "Low", "Close", "Volume"):
        value = bar.get(key) if isinstance(bar, Mapping) else None
        try:
            out[key.lower()] = float(value)
        except (TypeError, ValueError):
            out[key.lower()] = None
            reason = reason or f"{key} {str(value)[:40]!r} is not a number"
    return out, reason

"""Financial Modeling Prep: DCF valuations and the ETF list.

Only the current ``/stable`` API is used (keys issued after 2025-08-31 get HTTP 403 "Legacy
Endpoint" from every ``/api/v3`` path). The key travels as the ``apikey`` query parameter and
is redacted from every message. FMP's errors are JSON objects with an ``"Error Message"``
key, sometimes with HTTP 200 (the quota message "Limit Reach"), so every body is checked for
it before it is read as data: an invalid key or a legacy endpoint stops the provider
(:class:`AuthError`), an exhausted quota is a :class:`RateLimitedError`.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import polars as pl

from marketlake.errors import (
    AuthError,
    BadResponseError,
    RateLimitedError,
    TerminalProviderError,
)
from marketlake.pipeline.providers.base import Capabilities, FetchRequest, rows_frame
from marketlake.pipeline.providers.http import DEFAULT_RETRY_AFTER_S, HttpProvider
from marketlake.pipeline.providers.symbols import provider_symbol

BASE_URL = "https://financialmodelingprep.com"
ERROR_KEY = "Error Message"


def error_of(body: Any, *, symbol: str, provider: str = "fmp") -> Exception | None:
    """The error an FMP body carries (an object with ``"Error Message"``), or None."""
    if not isinstance(body, dict) or ERROR_KEY not in body:
        return None
    text = " ".join(str(body.get(ERROR_KEY) or "").split())[:200]
    where = f"{provider} {symbol}".rstrip()
    low = text.lower()
    if "limit reach" in low:
        return RateLimitedError(
            f"{where}: quota exhausted: {text}",
            retry_after=DEFAULT_RETRY_AFTER_S,
            provider=provider,
            symbol=symbol,
        )
    if "api key" in low or "legacy endpoint" in low or "subscription" in low:
        return AuthError(f"{where}: {text}", provider=provider, symbol=symbol)
    return TerminalProviderError(f"{where}: {text}", provider=provider, symbol=symbol)


def parse_dcf(body: Any, *, symbol: str, provider: str = "fmp") -> pl.DataFrame:
    """``/stable/discounted-cash-flow`` → ``valuations`` rows of ``symbol`` (the canonical
    symbol; FMP's own spelling may differ). The price arrives under ``"Stock Price"`` (with
    a space); an empty array means FMP has no valuation for the symbol."""
    err = error_of(body, symbol=symbol, provider=provider)
    if err is not None:
        raise err
    if not isinstance(body, list):
        raise BadResponseError(
            f"{provider} {symbol}: discounted-cash-flow is not a JSON array",
            provider=provider,
            symbol=symbol,
        )
    rows = []
    for item in body:
        if not isinstance(item, dict):
            continue
        try:
            when = date.fromisoformat(str(item.get("date"))[:10])
        except ValueError as exc:
            raise BadResponseError(
                f"{provider} {symbol}: valuation date {item.get('date')!r} is not a date",
                provider=provider,
                symbol=symbol,
            ) from exc
        price = item.get("Stock Price", item.get("stockPrice", item.get("price")))
        rows.append(
            {
                "symbol": symbol,
                "date": when,
                "provider": provider,
                "dcf": _number(item.get("dcf")),
                "price": _number(price),
            }
        )
    return rows_frame("valuation", rows)


def parse_etf_list(body: Any, *, provider: str = "fmp") -> pl.DataFrame:
    """``/stable/etf-list`` → ``instruments`` rows (ETFs; bars come from the default
    provider of ETFs, FMP's spelling is kept in ``provider_symbols``)."""
    err = error_of(body, symbol="etf-list", provider=provider)
    if err is not None:
        raise err
    if not isinstance(body, list):
        raise BadResponseError(
            f"{provider} etf-list: expected a JSON array", provider=provider, symbol="etf-list"
        )
    rows = [
        {
            "symbol": str(item["symbol"]).strip(),
            "name": item.get("name"),
            "asset_type": "etf",
            "exchange": item.get("exchangeShortName") or item.get("exchange"),
            "is_etf": True,
            "active": True,
            "provider_symbols": json.dumps({provider: str(item["symbol"]).strip()}),
        }
        for item in body
        if isinstance(item, dict) and str(item.get("symbol") or "").strip()
    ]
    return rows_frame("instruments", rows)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class FmpProvider(HttpProvider):
    """FMP's ``/stable`` REST API over the shared HTTP layer."""

    name = "fmp"
    base_url = BASE_URL
    capabilities = Capabilities(
        kinds=frozenset({"valuation", "instruments"}),
        timeframes=(),
        rate_limit_per_s=4.0,  # paid plans allow 300/min; the free plan 250/day
        default_concurrency=4,
        asset_types=frozenset({"equity", "etf"}),
        needs_secret=True,
    )

    def _params(self, **params: Any) -> dict[str, Any]:
        if self.settings.secret:
            params["apikey"] = self.settings.secret
        return params

    def fetch(self, request: FetchRequest) -> pl.DataFrame:
        """Refuse at once without an API key: an :class:`AuthError` stops only this provider."""
        if not self.settings.secret:
            raise AuthError(
                f"{self.name} {request.symbol}".rstrip()
                + ": no API key: set MARKETLAKE_FMP_API_KEY",
                provider=self.name,
                symbol=request.symbol,
            )
        return super().fetch(request)

    def _fetch_valuation(self, request: FetchRequest) -> pl.DataFrame:
        remote = provider_symbol(request.instrument, self.name) or request.symbol
        body = self.http.get_json(
            "/stable/discounted-cash-flow",
            symbol=request.symbol,
            params=self._params(symbol=remote),
        )
        frame = parse_dcf(body, symbol=request.symbol, provider=self.name)
        return frame.with_columns(
            pl.lit(self.clock()).cast(frame.schema["fetched_at"]).alias("fetched_at")
        )

    def _fetch_instruments(self, request: FetchRequest) -> pl.DataFrame:
        """The ETF list (the universe source ``fmp-etf``)."""
        body = self.http.get_json("/stable/etf-list", symbol="etf-list", params=self._params())
        frame = parse_etf_list(body, provider=self.name)
        return frame.with_columns(
            pl.lit(self.clock()).cast(frame.schema["updated_at"]).alias("updated_at")
        )

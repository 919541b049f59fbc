"""Named segments: the default set (mirroring the Indian system, plus the US and crypto
ones) merged with those configured in ``marketlake.toml``, and which instruments each holds.

A configured segment replaces the default of the same name. A segment selects instruments by
asset type, symbol and trading calendar (``XBOM`` for NSE/BSE listings, ``XNYS``/``XNAS`` for
US ones; see :mod:`marketlake.pipeline.freshness`), and says which provider serves each kind
(``routes``) and what ``sync SEGMENT`` runs (``task``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import polars as pl

from marketlake.pipeline.config import SegmentSettings, Settings

NSE_INDICES = ("NSE_INDEX|Nifty 50", "NSE_INDEX|Nifty Bank", "NSE_INDEX|Nifty Fin Service")
BSE_INDICES = ("BSE_INDEX|SENSEX", "BSE_INDEX|BANKEX")
FO_UNDERLYINGS = (*NSE_INDICES, "BSE_INDEX|SENSEX")


def _seg(name: str, description: str, **kw: Any) -> SegmentSettings:
    if "routes" in kw:
        kw["routes"] = MappingProxyType(dict(kw["routes"]))
    return SegmentSettings(name=name, description=description, **kw)


DEFAULT_SEGMENTS: Mapping[str, SegmentSettings] = MappingProxyType(
    {
        s.name: s
        for s in (
            _seg("equity", "equities, each from its own provider", asset_types=("equity",)),
            _seg(
                "indices_nse",
                "NSE indices (Upstox)",
                asset_types=("index",),
                symbols=NSE_INDICES,
                provider="upstox",
            ),
            _seg(
                "indices_bse",
                "BSE indices (Upstox)",
                asset_types=("index",),
                symbols=BSE_INDICES,
                provider="upstox",
            ),
            _seg(
                "fo_current",
                "current F&O contracts, daily bars (Upstox)",
                asset_types=("option", "future"),
                calendars=("XBOM",),
                provider="upstox",
            ),
            _seg(
                "fo_historical",
                "current F&O contracts, minute history and its gaps (Upstox)",
                asset_types=("option", "future"),
                calendars=("XBOM",),
                provider="upstox",
                timeframes=("1m",),
            ),
            _seg(
                "fo_expired",
                "expired F&O contracts by expiry, checkpointed per expiry (Upstox)",
                symbols=FO_UNDERLYINGS,
                provider="upstox",
                task="fo_expired",
            ),
            _seg(
                "indicators",
                "indicators over the equities' and indices' daily bars",
                asset_types=("equity", "index"),
                task="indicators",
            ),
            _seg(
                "us_equity",
                "US equities: bars, corporate actions, DCF valuations (FMP)",
                asset_types=("equity",),
                calendars=("XNYS", "XNAS"),
                kinds=("ohlcv", "actions", "valuation"),
                routes={"valuation": "fmp"},
            ),
            _seg("etf", "ETFs", asset_types=("etf",), kinds=("ohlcv", "actions")),
            _seg(
                "crypto",
                "crypto pairs: bars from their exchange, profiles from CoinGecko",
                asset_types=("crypto",),
                kinds=("ohlcv", "profile"),
                routes={"profile": "coingecko"},
            ),
        )
    }
)


def named(settings: Settings) -> dict[str, SegmentSettings]:
    """Every named segment: the defaults, replaced or extended by the configured ones."""
    return {**DEFAULT_SEGMENTS, **settings.segments}


def select(seg: SegmentSettings, instruments: pl.DataFrame) -> pl.DataFrame:
    """The instruments ``seg`` holds."""
    from marketlake.pipeline.freshness import calendar_for

    sel = instruments
    if seg.asset_types:
        sel = sel.filter(pl.col("asset_type").is_in(list(seg.asset_types)))
    if seg.symbols and seg.task != "fo_expired":  # fo_expired's symbols are underlyings
        sel = sel.filter(pl.col("symbol").is_in(list(seg.symbols)))
    if seg.calendars and not sel.is_empty():
        wanted = set(seg.calendars)
        keep = [
            calendar_for(r.get("exchange"), r.get("asset_type"), r.get("timezone")) in wanted
            for r in sel.select("exchange", "asset_type", "timezone").iter_rows(named=True)
        ]
        sel = sel.filter(pl.Series(keep, dtype=pl.Boolean))
    return sel

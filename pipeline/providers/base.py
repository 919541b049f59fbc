"""The one provider interface.

A provider declares what it can do (:class:`Capabilities`) and answers fetches with polars
frames already in the lake's schema (see ``OHLCV_COLUMNS``). It never writes to the lake, never
plans, never validates: the ingest stage does that, the same way for every provider.
Foreign errors (HTTP, JSON, library exceptions) are converted into ``pipeline.errors`` at the
provider boundary: ``InvalidSymbolError`` skips a symbol, ``AuthError`` stops the provider,
``Transient`` errors are retried.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import polars as pl

from marketlake.pipeline.config import ProviderSettings

KINDS = ("ohlcv", "actions", "profile", "fundamentals", "market")

OHLCV_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "timeframe": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "adj_close": pl.Float64(),
    "provider": pl.String(),
    "is_final": pl.Boolean(),
}
ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ex_date": pl.Date(),
    "kind": pl.String(),
    "ratio": pl.Float64(),
    "amount": pl.Float64(),
    "currency": pl.String(),
    "provider": pl.String(),
}


PROFILE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "provider": pl.String(),
    "name": pl.String(),
    "description": pl.String(),
    "sector": pl.String(),
    "industry": pl.String(),
    "country": pl.String(),
    "website": pl.String(),
    "market_cap": pl.Float64(),
    "volume_24h": pl.Float64(),
    "icon_url": pl.String(),
    "icon_path": pl.String(),
    "raw": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
}


def profile_row(**fields: object) -> pl.DataFrame:
    """One ``profiles`` row; fields left out are null, every column typed as the lake's."""
    return pl.DataFrame([{c: fields.get(c) for c in PROFILE_SCHEMA}], schema=PROFILE_SCHEMA)


def empty_ohlcv() -> pl.DataFrame:
    return pl.DataFrame(schema=OHLCV_SCHEMA)


def empty_actions() -> pl.DataFrame:
    return pl.DataFrame(schema=ACTIONS_SCHEMA)


@dataclass(frozen=True)
class Capabilities:
    """What a provider offers.

    ``max_range`` is the widest [start, end) one request may cover per native timeframe
    (None: unlimited); ``history`` how far back a timeframe reaches (None: unlimited).
    """

    kinds: frozenset[str]
    timeframes: tuple[str, ...]
    max_range: Mapping[str, timedelta | None] = field(default_factory=dict)
    history: Mapping[str, timedelta | None] = field(default_factory=dict)
    rate_limit_per_s: float | None = None
    default_concurrency: int = 8
    asset_types: frozenset[str] = frozenset()
    needs_secret: bool = False


@dataclass(frozen=True)
class FetchRequest:
    """One provider request: a symbol's native-timeframe bars in [start, end)."""

    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    provider_symbol: str | None = None
    instrument: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def remote_symbol(self) -> str:
        return self.provider_symbol or self.symbol


class Provider(ABC):  # noqa: B024 - a base with optional methods, not all abstract
    """Base of every provider; subclasses set ``name`` and ``capabilities`` and implement the
    fetch methods for the kinds they declare."""

    name: str = "base"
    capabilities: Capabilities = Capabilities(kinds=frozenset(), timeframes=())
    #: True when the provider retries transient errors itself (the shared HTTP layer does);
    #: the ingest stage then does not retry on top of it.
    retries_transient: bool = False

    def __init__(
        self,
        settings: ProviderSettings | None = None,
        *,
        home: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings or ProviderSettings(name=self.name)
        self.home = home
        self.clock = clock or (lambda: datetime.now(UTC))
        import time

        self.sleep = sleep or time.sleep

    # --- kinds -------------------------------------------------------------------
    def fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        """Bars of ``request.timeframe`` (a native one) with ts in [start, end)."""
        raise NotImplementedError(f"{self.name} does not provide ohlcv")

    def fetch_actions(
        self, symbol: str, instrument: Mapping[str, Any], start: datetime, end: datetime
    ) -> pl.DataFrame:
        """Splits, dividends and capital gains with ex_date in [start, end)."""
        raise NotImplementedError(f"{self.name} does not provide corporate actions")

    def fetch_profile(self, symbol: str, instrument: Mapping[str, Any]) -> pl.DataFrame:
        """One profiles row (lake schema)."""
        raise NotImplementedError(f"{self.name} does not provide profiles")

    def fetch_fundamentals(
        self, symbol: str, instrument: Mapping[str, Any], data_types: tuple[str, ...] | None = None
    ) -> pl.DataFrame:
        """Rows of the ``fundamentals`` table (tidy long form)."""
        raise NotImplementedError(f"{self.name} does not provide fundamentals")

    def list_instruments(self) -> pl.DataFrame:
        """Instruments the provider knows (``instruments`` schema), for universe refresh."""
        raise NotImplementedError(f"{self.name} cannot list instruments")

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_REGISTRY: dict[str, str] = {
    "synthetic": "marketlake.pipeline.providers.synthetic:SyntheticProvider",
    "files": "marketlake.pipeline.providers.files:FilesProvider",
    "fake": "marketlake.pipeline.providers.fake:FakeProvider",
    "yahoo": "marketlake.pipeline.providers.yahoo:YahooProvider",
    "coingecko": "marketlake.pipeline.providers.coingecko:CoinGeckoProvider",
    "indodax": "marketlake.pipeline.providers.indodax:IndodaxProvider",
    "upstox": "marketlake.pipeline.providers.upstox:UpstoxProvider",
    "fmp": "marketlake.pipeline.providers.fmp:FmpProvider",
}


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name``."""
    from importlib import import_module

    from marketlake.errors import ConfigError

    target = _REGISTRY.get(name)
    if target is None:
        raise ConfigError(f"unknown provider {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    module, _, attr = target.partition(":")
    try:
        return getattr(import_module(module), attr)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"provider {name!r} is not available in this build") from exc


def register(name: str, target: str) -> None:
    """Register a provider class as ``"module:Class"`` (tests, plug-ins)."""
    _REGISTRY[name] = target

"""The one provider interface: ``fetch(request) -> frame``.

A provider declares what it can do (:class:`Capabilities`) and answers a :class:`FetchRequest`
with a polars frame in the lake's schema (derived from :mod:`marketlake.lake.tables`, never
written out again here). :meth:`Provider.fetch` dispatches on ``request.kind`` to the
provider's ``_fetch_<kind>`` method and applies the one retry policy
(:func:`marketlake.pipeline.providers.retry.retrying`); HTTP providers apply it per request
instead (:class:`marketlake.pipeline.providers.http.HttpProvider`). A provider never writes to
the lake, never plans, never validates: the ingest stage does that, the same way for every
provider. Foreign errors are converted into :mod:`marketlake.errors` where they enter:
``InvalidSymbolError`` skips a symbol, ``AuthError`` stops the provider, ``Transient`` errors
are retried.

A bars frame may carry a :data:`REJECT` column: rows a provider could not parse (a volume of
``"abc"``) keep their reason there and are quarantined by the ingest stage, while the other
bars of the symbol land (:func:`split_rejects`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import polars as pl

from marketlake.lake.tables import polars_schema
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers.retry import retrying

#: kinds a sync plans (one unit each)
KINDS = ("ohlcv", "actions", "profile", "fundamentals", "valuation", "market")
#: every kind a request may ask for
REQUEST_KINDS = (*KINDS, "instruments")
#: the lake table each kind's frame is shaped after
KIND_TABLES = {
    "ohlcv": "ohlcv",
    "actions": "corporate_actions",
    "profile": "profiles",
    "fundamentals": "fundamentals",
    "valuation": "valuations",
    "market": "market_cache",
    "instruments": "instruments",
}
# columns the lake adds itself (bookkeeping and derived partitions), never a provider
_LAKE_ADDED = frozenset({"run_id", "ingested_at", "period", "expires_at"})
#: reason a provider could not parse a row (null for good rows); see :func:`split_rejects`
REJECT = "_reject"


@cache
def frame_schema(kind: str) -> pl.Schema:
    """The polars schema of a provider frame of ``kind``: the lake table's columns without
    those the lake adds itself (``run_id``, ``ingested_at``, ``period``, ``expires_at``)."""
    schema = polars_schema(KIND_TABLES[kind])  # not via pyarrow: that would import pandas
    return pl.Schema({c: t for c, t in schema.items() if c not in _LAKE_ADDED})


# columns a provider may leave out of its frame: they are added as nulls (a market without
# open interest, a provider written before the column existed)
OPTIONAL_COLUMNS = {"ohlcv": ("open_interest",)}


def with_optional_columns(kind: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the kind's :data:`OPTIONAL_COLUMNS` it lacks as typed nulls, each at
    its place in :func:`frame_schema`."""
    missing = [c for c in OPTIONAL_COLUMNS.get(kind, ()) if c not in frame.columns]
    if not missing or not isinstance(frame, pl.DataFrame):
        return frame
    schema = frame_schema(kind)
    added = frame.with_columns([pl.lit(None, schema[c]).alias(c) for c in missing])
    order = [c for c in schema if c in added.columns]
    return added.select(order + [c for c in added.columns if c not in schema])


def empty_frame(kind: str) -> pl.DataFrame:
    return pl.DataFrame(schema=frame_schema(kind))


def rows_frame(kind: str, rows: list[Mapping[str, Any]]) -> pl.DataFrame:
    """Rows as a frame of ``kind``: every column typed as the lake's, missing fields null."""
    schema = frame_schema(kind)
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def profile_row(**fields: object) -> pl.DataFrame:
    """One ``profiles`` row; fields left out are null, every column typed as the lake's."""
    return rows_frame("profile", [fields])


def empty_ohlcv() -> pl.DataFrame:
    return empty_frame("ohlcv")


def empty_actions() -> pl.DataFrame:
    return empty_frame("actions")


def split_rejects(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows to land, rows a provider rejected with a ``reason``); drops :data:`REJECT`."""
    # direct frame calls, not queries: fetch threads call this per chunk, and a query would
    # queue on polars' thread pool behind a commit's work
    if REJECT not in frame.columns:
        none = frame.clear()
        none.insert_column(none.width, pl.Series("reason", [], pl.String))
        return frame, none
    if frame.get_column(REJECT).null_count() == frame.height:  # all good: no filtering
        good = frame.clone()
        good.drop_in_place(REJECT)
        none = frame.clear()
        at = none.get_column_index(REJECT)
        none.insert_column(at, none.drop_in_place(REJECT).rename("reason"))
        return good, none
    bad = pl.col(REJECT).is_not_null()
    return (
        frame.filter(~bad).drop(REJECT),
        frame.filter(bad).rename({REJECT: "reason"}),
    )


@dataclass(frozen=True)
class Capabilities:
    """What a provider offers.

    ``max_range`` is the widest [start, end) one request may cover per native timeframe
    (None: unlimited); ``history`` how far back a timeframe reaches (None: unlimited).
    ``local``: answers are computed or read on this machine, not awaited from a service, so
    fetch threads beyond the CPU count only contend. ``batched``: :meth:`Provider.fetch_many`
    answers many bars requests in one call (one frame built, not one per symbol);
    ``pack_bars``: per timeframe, the most bars such a call should cover, counted as a plan
    bounds a range (its length over the bar's; absent: the sync's default, ``PACK_BARS``).
    """

    kinds: frozenset[str]
    timeframes: tuple[str, ...]
    max_range: Mapping[str, timedelta | None] = field(default_factory=dict)
    history: Mapping[str, timedelta | None] = field(default_factory=dict)
    rate_limit_per_s: float | None = None
    default_concurrency: int = 8
    asset_types: frozenset[str] = frozenset()
    needs_secret: bool = False
    local: bool = False
    batched: bool = False
    pack_bars: Mapping[str, int] = field(default_factory=dict)


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class FetchRequest:
    """One provider request. ``kind`` says what is asked (:data:`REQUEST_KINDS`); the
    constructors :meth:`bars`, :meth:`actions`, :meth:`profile`, :meth:`fundamentals`,
    :meth:`market` and :meth:`instruments` fill the fields each kind reads.

    Bars and actions cover [start, end); ``symbol`` is the canonical symbol (for a market
    request, the ``market_cache`` key such as ``status:US``).
    """

    symbol: str = ""
    timeframe: str = ""
    start: datetime | None = None
    end: datetime | None = None
    provider_symbol: str | None = None
    instrument: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    kind: str = "ohlcv"
    data_types: tuple[str, ...] | None = None

    @property
    def remote_symbol(self) -> str:
        return self.provider_symbol or self.symbol

    @classmethod
    def bars(
        cls,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        provider_symbol: str | None = None,
        instrument: Mapping[str, Any] | None = None,
    ) -> FetchRequest:
        return cls(symbol, timeframe, start, end, provider_symbol, instrument or _EMPTY)

    @classmethod
    def actions(
        cls,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        instrument: Mapping[str, Any] | None = None,
    ) -> FetchRequest:
        return cls(symbol, "", start, end, instrument=instrument or _EMPTY, kind="actions")

    @classmethod
    def profile(cls, symbol: str, *, instrument: Mapping[str, Any] | None = None) -> FetchRequest:
        return cls(symbol, instrument=instrument or _EMPTY, kind="profile")

    @classmethod
    def fundamentals(
        cls,
        symbol: str,
        data_types: tuple[str, ...] | None = None,
        *,
        instrument: Mapping[str, Any] | None = None,
    ) -> FetchRequest:
        return cls(
            symbol, instrument=instrument or _EMPTY, kind="fundamentals", data_types=data_types
        )

    @classmethod
    def valuation(cls, symbol: str, *, instrument: Mapping[str, Any] | None = None) -> FetchRequest:
        return cls(symbol, instrument=instrument or _EMPTY, kind="valuation")

    @classmethod
    def market(cls, key: str) -> FetchRequest:
        return cls(key, kind="market")

    @classmethod
    def instruments(cls) -> FetchRequest:
        return cls(kind="instruments")


_NOTES_LOCK = threading.Lock()


class Provider(ABC):  # noqa: B024 - a base with optional kind methods, not all abstract
    """Base of every provider; subclasses set ``name`` and ``capabilities`` and implement
    ``_fetch_<kind>(request) -> frame`` for the kinds they offer."""

    name: str = "base"
    capabilities: Capabilities = Capabilities(kinds=frozenset(), timeframes=())
    #: True when the provider retries each of its requests itself (HTTP providers); then
    #: :meth:`fetch` does not retry the whole call on top of it.
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
        self.sleep = sleep or time.sleep

    def fetch(self, request: FetchRequest) -> pl.DataFrame:
        """Answer ``request`` with a frame of its kind (:func:`frame_schema`).

        Bars: ``request.timeframe`` (a native one) with ts in [start, end). Actions: splits,
        dividends and capital gains with ex_date in [start, end). Profile: one ``profiles``
        row. Fundamentals: ``fundamentals`` rows (tidy long form). Valuation: ``valuations``
        rows (DCF value and price per date). Market: one row with the
        JSON ``value`` of a ``market_cache`` key. Instruments: the instruments the provider
        knows. A kind the provider does not offer raises ``NotImplementedError``.
        """
        method = getattr(self, f"_fetch_{request.kind}", None)
        if request.kind not in REQUEST_KINDS or method is None:
            raise NotImplementedError(f"{self.name} does not provide {request.kind}")
        if self.retries_transient:
            return with_optional_columns(request.kind, method(request))
        frame = retrying(lambda: method(request), self.settings, sleep=self.sleep)
        return with_optional_columns(request.kind, frame)

    def fetch_many(self, requests: Sequence[FetchRequest]) -> list[pl.DataFrame]:
        """The answers to ``requests``, in order, as :meth:`fetch` gives them; a provider
        whose capabilities say ``batched`` answers bars requests in one call."""
        return [self.fetch(r) for r in requests]

    def prepare(self, timeframes: Sequence[str] = ()) -> None:  # noqa: B027 - optional hook
        """Do ahead of the first request what every request needs (a local file read), so a
        run can overlap it with its planning; errors are left to the requests.
        ``timeframes``: those the run asked for, when it named them (empty: not known)."""

    def note_asset_type(self, symbol: str, asset_type: str) -> None:
        """Record the instrument type the provider's own answer gave ``symbol`` (Yahoo's
        ``instrumentType: ETF``); the sync stores it on the instrument."""
        with _NOTES_LOCK:
            self.__dict__.setdefault("_asset_types", {})[symbol] = asset_type

    def take_asset_type(self, symbol: str) -> str | None:
        """The type noted for ``symbol`` since the last call, if any."""
        with _NOTES_LOCK:
            return self.__dict__.get("_asset_types", {}).pop(symbol, None)

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

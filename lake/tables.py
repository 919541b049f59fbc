"""Every lake table, defined once: schema, key, partitions, and which columns count as a change.

``period`` is a derived partition column: the year (``"2024"``) for daily and longer bars, the
month (``"2024-05"``) for intraday bars, so a daily upsert touches one small partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
TIMEFRAMES = ("1m", "15m", "30m", "1h", "4h", "1D", "1W", "1mo")
INTRADAY = frozenset({"1m", "15m", "30m", "1h", "4h"})
ASSET_TYPES = ("equity", "etf", "index", "crypto", "fx", "future", "option", "mutualfund")


@dataclass(frozen=True)
class TableDef:
    """A lake table: its arrow schema, unique key and partition columns."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    partitions: tuple[str, ...] = ()
    # columns that do not make a row "changed" (bookkeeping written on every touch)
    bookkeeping: tuple[str, ...] = ("run_id",)
    evolving: bool = False  # new columns may appear (indicators)
    # parquet codec of its data files: zstd (smaller) unless the table is rewritten in bulk
    # often enough that write speed matters more than size
    codec: str = "zstd"

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    @property
    def value_columns(self) -> list[str]:
        skip = set(self.key) | set(self.partitions) | set(self.bookkeeping)
        return [c for c in self.schema.names if c not in skip]


def _s(*fields: tuple[str, pa.DataType] | tuple[str, pa.DataType, bool]) -> pa.Schema:
    out = []
    for f in fields:
        name, typ, *nullable = f
        out.append(pa.field(name, typ, nullable=nullable[0] if nullable else True))
    return pa.schema(out)


INSTRUMENTS = TableDef(
    "instruments",
    _s(
        ("symbol", pa.string(), False),
        ("name", pa.string()),
        ("asset_type", pa.string()),
        ("exchange", pa.string()),
        ("timezone", pa.string()),
        ("currency", pa.string()),
        ("sector", pa.string()),
        ("industry", pa.string()),
        ("is_etf", pa.bool_()),
        ("underlying", pa.string()),
        ("expiry", pa.date32()),
        ("strike", pa.float64()),
        ("option_type", pa.string()),
        ("lot_size", pa.int64()),
        ("active", pa.bool_()),
        ("delisted_at", TS),
        ("provider", pa.string()),
        ("provider_symbols", pa.string()),  # JSON object provider -> provider's spelling
        # JSON object kind -> provider serving that kind for this instrument (BTC/IDR's
        # profile from coingecko); null: the instrument's provider or its segment's route
        ("routes", pa.string()),
        # the universe source whose refresh listed it (file, fmp-etf, coingecko, indodax,
        # upstox): a refresh marks inactive only what its own source listed; null: by hand
        ("listed_by", pa.string()),
        ("updated_at", TS),
        ("run_id", pa.string()),
    ),
    key=("symbol",),
    bookkeeping=("run_id", "updated_at"),
)

OHLCV = TableDef(
    "ohlcv",
    _s(
        ("symbol", pa.string(), False),
        ("timeframe", pa.string(), False),
        ("ts", TS, False),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("adj_close", pa.float64()),
        ("provider", pa.string()),
        ("is_final", pa.bool_()),
        ("ingested_at", TS),
        ("run_id", pa.string()),
        ("period", pa.string(), False),
        # contracts open at the bar's close (F&O); null where a market has none. Added after
        # the first release: existing lakes gain it in a metadata-only commit (lake/evolve.py)
        ("open_interest", pa.float64()),
    ),
    key=("symbol", "timeframe", "ts"),
    partitions=("timeframe", "period"),
    bookkeeping=("run_id", "ingested_at"),
)

CORPORATE_ACTIONS = TableDef(
    "corporate_actions",
    _s(
        ("symbol", pa.string(), False),
        ("ex_date", pa.date32(), False),
        ("kind", pa.string(), False),
        ("ratio", pa.float64()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("provider", pa.string()),
        ("ingested_at", TS),
        ("run_id", pa.string()),
    ),
    key=("symbol", "ex_date", "kind"),
    bookkeeping=("run_id", "ingested_at"),
)

PROFILES = TableDef(
    "profiles",
    _s(
        ("symbol", pa.string(), False),
        ("provider", pa.string(), False),
        ("name", pa.string()),
        ("description", pa.string()),
        ("sector", pa.string()),
        ("industry", pa.string()),
        ("country", pa.string()),
        ("website", pa.string()),
        ("market_cap", pa.float64()),
        ("volume_24h", pa.float64()),
        ("icon_url", pa.string()),
        ("icon_path", pa.string()),
        ("raw", pa.string()),  # JSON
        ("fetched_at", TS),
        ("run_id", pa.string()),
    ),
    key=("symbol", "provider"),
    bookkeeping=("run_id", "fetched_at"),
)

FUNDAMENTALS = TableDef(
    "fundamentals",
    _s(
        ("symbol", pa.string(), False),
        ("data_type", pa.string(), False),
        ("period_end", pa.date32(), False),
        ("item", pa.string(), False),
        ("value", pa.float64()),
        ("text", pa.string()),
        ("raw", pa.string()),  # JSON, for types that are not tabular
        ("provider", pa.string()),
        ("fetched_at", TS),
        ("run_id", pa.string()),
    ),
    key=("symbol", "data_type", "period_end", "item"),
    partitions=("data_type",),
    bookkeeping=("run_id", "fetched_at"),
)

MARKET_CACHE = TableDef(
    "market_cache",
    _s(
        ("key", pa.string(), False),
        ("value", pa.string()),  # JSON
        ("provider", pa.string()),
        ("fetched_at", TS),
        ("expires_at", TS),
        ("run_id", pa.string()),
    ),
    key=("key",),
    bookkeeping=("run_id",),
)

INDICATORS = TableDef(
    "indicators",
    _s(
        ("symbol", pa.string(), False),
        ("timeframe", pa.string(), False),
        ("ts", TS, False),
        ("computed_at", TS),
        ("run_id", pa.string()),
        ("period", pa.string(), False),
    ),
    key=("symbol", "timeframe", "ts"),
    partitions=("timeframe", "period"),
    bookkeeping=("run_id", "computed_at"),
    evolving=True,
    # lz4: its full rewrites (a few dozen float columns of derived, recomputable values) cost
    # about 35% less CPU to encode than with zstd, for files about 10% larger; a float column
    # lz4 cannot shrink is stored uncompressed (writes._stored_plain)
    codec="lz4",
)

VALUATIONS = TableDef(
    "valuations",
    _s(
        ("symbol", pa.string(), False),
        ("date", pa.date32(), False),
        ("provider", pa.string(), False),
        ("dcf", pa.float64()),
        ("price", pa.float64()),
        ("fetched_at", TS),
        ("run_id", pa.string()),
    ),
    key=("symbol", "date", "provider"),
    bookkeeping=("run_id", "fetched_at"),
)

SYNC_STATUS = TableDef(
    "sync_status",
    _s(
        ("segment", pa.string(), False),
        ("symbol", pa.string(), False),
        ("timeframe", pa.string(), False),
        ("kind", pa.string(), False),
        ("provider", pa.string()),
        ("first_ts", TS),
        ("last_ts", TS),
        ("rows", pa.int64()),
        ("checked_from", TS),  # earliest start a provider was asked for and answered
        ("last_attempt_at", TS),
        ("last_success_at", TS),
        ("status", pa.string()),
        ("error", pa.string()),
        ("consecutive_failures", pa.int64()),
        ("run_id", pa.string()),
    ),
    key=("segment", "symbol", "timeframe", "kind"),
    bookkeeping=("run_id",),
)

SYNC_LOGS = TableDef(
    "sync_logs",
    _s(
        ("run_id", pa.string(), False),
        ("task_name", pa.string(), False),
        ("stage", pa.string()),
        ("status", pa.string()),
        ("rows_updated", pa.int64()),
        ("error_message", pa.string()),
        ("started_at", TS),
        ("completed_at", TS),
        ("duration_seconds", pa.float64()),
        ("trigger", pa.string()),
        ("metadata", pa.string()),  # JSON
    ),
    key=("run_id", "task_name"),
    bookkeeping=(),
)

QUARANTINE = TableDef(
    "quarantine",
    _s(
        ("run_id", pa.string(), False),
        ("table", pa.string(), False),
        ("symbol", pa.string(), False),
        ("ts", TS),
        ("reason", pa.string()),
        ("source", pa.string()),
        ("row", pa.string()),  # JSON of the rejected row
        ("quarantined_at", TS),
    ),
    key=("run_id", "table", "symbol", "ts"),
    bookkeeping=("quarantined_at",),
)

SYNC_SETTINGS = TableDef(
    "sync_settings",
    _s(
        ("key", pa.string(), False),
        ("value", pa.string()),  # JSON
        ("updated_at", TS),
    ),
    key=("key",),
    bookkeeping=("updated_at",),
)

TABLES: dict[str, TableDef] = {
    t.name: t
    for t in (
        INSTRUMENTS,
        OHLCV,
        CORPORATE_ACTIONS,
        PROFILES,
        FUNDAMENTALS,
        MARKET_CACHE,
        INDICATORS,
        VALUATIONS,
        SYNC_STATUS,
        SYNC_LOGS,
        QUARANTINE,
        SYNC_SETTINGS,
    )
}


def _polars_type(t: pa.DataType):
    import polars as pl

    if pa.types.is_timestamp(t):
        return pl.Datetime(t.unit, t.tz)
    simple = {
        pa.string(): pl.String(),
        pa.float64(): pl.Float64(),
        pa.bool_(): pl.Boolean(),
        pa.int64(): pl.Int64(),
        pa.date32(): pl.Date(),
    }
    return simple[t]


@cache
def _polars_schemas(name: str) -> MappingProxyType:
    return MappingProxyType({f.name: _polars_type(f.type) for f in TABLES[name].schema})


def polars_schema(name: str) -> dict:
    """The table's columns as polars types (derived from its arrow schema; a fresh dict)."""
    return dict(_polars_schemas(name))


def value_columns(name: str) -> list[str]:
    """The columns whose change makes a row changed (not key, partition or bookkeeping)."""
    return TABLES[name].value_columns


def period_expr(timeframe_col: str = "timeframe", ts_col: str = "ts"):
    """Polars expression for the ``period`` partition value of a bar."""
    import polars as pl

    return (
        pl.when(pl.col(timeframe_col).is_in(list(INTRADAY)))
        .then(pl.col(ts_col).dt.strftime("%Y-%m"))
        .otherwise(pl.col(ts_col).dt.strftime("%Y"))
        .alias("period")
    )


def period_code():
    """Polars expression: the ``period`` partition as an integer (2024, or 202405 for
    intraday bars) — far cheaper to compute and partition by than the string."""
    import polars as pl

    year = pl.col("ts").dt.year().cast(pl.Int32)
    return (
        pl.when(pl.col("timeframe").is_in(list(INTRADAY)))
        .then(year * 100 + pl.col("ts").dt.month().cast(pl.Int32))
        .otherwise(year)
        .alias("_pcode")
    )


def single_timeframe(frame) -> str | None:
    """The frame's timeframe when it has exactly one (the bulk-load case), else None. Asked
    by a query: a column made from a literal is never expanded to one value per row."""
    import polars as pl

    if frame.height == 0:
        return None
    tf = pl.col("timeframe")
    first, same = frame.select(tf.first(), (tf == tf.first()).all().alias("same")).row(0)
    return first if first is not None and same else None


def with_period_code(frame, timeframe: str | None = None):
    """``frame`` plus its integer ``_pcode`` (kept if already there); when the frame has one
    ``timeframe`` (bulk loads; pass it if known) without any per-row string work."""
    import polars as pl

    if "_pcode" in frame.columns:
        return frame
    first = timeframe or single_timeframe(frame)
    if first is not None:
        codes = _day_codes(frame, monthly=first in INTRADAY)
        if codes is not None:
            return frame.with_columns(codes)
        year = pl.col("ts").dt.year().cast(pl.Int32)
        code = year * 100 + pl.col("ts").dt.month().cast(pl.Int32) if first in INTRADAY else year
        return frame.with_columns(code.alias("_pcode"))
    return frame.with_columns(period_code())


_DAY = {"ns": 86_400_000_000_000, "us": 86_400_000_000, "ms": 86_400_000}


def _day_codes(frame, monthly: bool):
    """The ``_pcode`` series of ``frame``'s UTC ``ts`` (monthly: 202405, else 2024) by the
    day each falls on, looked up in a table of the days between the first and the last: a
    division and a gather per row, where polars' year and month convert every timestamp to
    a calendar date (about five times the CPU for a bulk load's batch). None for a ``ts``
    this does not cover (another time zone, nulls, no rows)."""
    import numpy as np
    import polars as pl

    ts = frame.get_column("ts")
    dtype = ts.dtype
    if (
        not isinstance(dtype, pl.Datetime)
        or dtype.time_zone not in (None, "UTC")
        or ts.is_empty()
        or ts.null_count()
    ):
        return None
    # the per-row work in polars: numpy's arrays of a batch's rows are fresh pages each
    # time, asked as huge pages (a bulk load's batches faulted them in again and again)
    days = ts.to_physical() // _DAY[dtype.time_unit]
    lo, hi = int(days.min()), int(days.max())
    span = np.arange(lo, hi + 1).astype("datetime64[D]")  # the table: one entry a day
    if monthly:
        months = span.astype("datetime64[M]").astype(np.int64)  # since 1970-01
        table = (months // 12 + 1970) * 100 + months % 12 + 1
    else:
        table = span.astype("datetime64[Y]").astype(np.int64) + 1970
    return pl.Series("_pcode", table.astype(np.int32)).gather(days - lo)


def period_of_code(code: int) -> str:
    """``2024`` -> ``"2024"``; ``202405`` -> ``"2024-05"``."""
    return f"{code // 100}-{code % 100:02d}" if code > 9999 else str(code)


def with_period(frame):
    """``frame`` with its ``period`` partition column (cheaper than :func:`period_expr` when
    no bar is intraday, the common case for bulk loads)."""
    import polars as pl

    tfs = set(frame.get_column("timeframe").unique().to_list())
    if not tfs & INTRADAY:
        return frame.with_columns(pl.col("ts").dt.year().cast(pl.String).alias("period"))
    return frame.with_columns(period_expr())

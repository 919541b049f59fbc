"""The universe: the ``instruments`` table, imported from CSV or added one by one.

Symbols are data: anything printable up to 64 characters is kept as given (``BRK.B``,
``BTC/IDR``, ``NSE_INDEX|Nifty 50``), only surrounding whitespace is stripped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from marketlake.errors import UnknownSymbolError, ValidationError
from marketlake.lake.lock import writer
from marketlake.lake.store import Lake, WriteResult
from marketlake.lake.tables import ASSET_TYPES

DEFAULT_PROVIDER = {
    "equity": "yahoo",
    "etf": "yahoo",
    "index": "yahoo",
    "fx": "yahoo",
    "future": "yahoo",
    "mutualfund": "yahoo",
    "crypto": "indodax",
    "option": "upstox",
}
_ALIASES = {
    "symbol": ("symbol", "ticker", "tickers", "code", "kode", "代码", "symbol_id"),
    "name": ("name", "company", "company_name", "security", "description", "名称"),
    "asset_type": ("asset_type", "type", "asset_class", "assettype"),
    "exchange": ("exchange", "market", "venue"),
    "is_etf": ("is_etf", "etf"),
    "currency": ("currency",),
    "timezone": ("timezone", "tz"),
    "sector": ("sector",),
    "industry": ("industry",),
    "provider": ("provider",),
    "underlying": ("underlying", "underlying_symbol", "underlying_key"),
    "expiry": ("expiry", "expiry_date", "expiration", "expiration_date"),
    "strike": ("strike", "strike_price"),
    "option_type": ("option_type", "right", "call_put", "put_call"),
    "lot_size": ("lot_size", "lotsize", "lot", "contract_size"),
}
# option fields and their lake types: text in a CSV, parsed here
OPTION_FIELDS: dict[str, pl.DataType] = {
    "underlying": pl.String(),
    "expiry": pl.Date(),
    "strike": pl.Float64(),
    "option_type": pl.String(),
    "lot_size": pl.Int64(),
}
_TRUE = {"1", "true", "yes", "y", "t", "etf"}


def check_symbol(symbol: object) -> str:
    """A clean symbol, or ValidationError naming the problem."""
    if symbol is None:
        raise ValidationError("symbol is missing")
    s = str(symbol).strip()
    if not s:
        raise ValidationError("symbol is empty")
    if len(s) > 64:
        raise ValidationError(f"symbol {s[:20]!r}... is longer than 64 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in s):
        raise ValidationError(f"symbol {s!r} contains control characters")
    return s


def _normalise(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    lower = {c.strip().lower(): c for c in frame.columns}
    picked: dict[str, str] = {}
    for target, names in _ALIASES.items():
        for n in names:
            if n in lower:
                picked[target] = lower[n]
                break
    if "symbol" not in picked:
        if not frame.columns:
            raise ValidationError(f"{source}: no columns")
        raise ValidationError(
            f"{source}: no symbol column (expected one of: {', '.join(_ALIASES['symbol'])}); "
            f"found {frame.columns}"
        )
    out = frame.select([pl.col(src).cast(pl.String).alias(t) for t, src in picked.items()])
    return out


def _parsed(values: pl.Series, dtype: pl.DataType) -> pl.Series:
    text = values.cast(pl.String).str.strip_chars().replace("", None)
    if dtype == pl.Date():
        return text.str.to_date(strict=False)
    if dtype == pl.Int64():
        n = pl.col(values.name)
        whole = pl.when(n.round(0) == n).then(n).cast(pl.Int64)  # 75.0 is 75; 7.5 is not
        return text.cast(pl.Float64, strict=False).to_frame().select(whole).to_series()
    return text.cast(dtype, strict=False)


def option_fields(rows: pl.DataFrame) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """``rows`` with the option fields (underlying, expiry, strike, option_type, lot_size)
    in their lake types, and ``(row index, problem)`` for each value that does not parse
    (kept empty)."""
    problems: list[tuple[int, str]] = []
    out = []
    for name, dtype in OPTION_FIELDS.items():
        if name not in rows.columns:
            continue
        raw = rows.get_column(name)
        if raw.dtype == dtype:
            continue
        parsed = _parsed(raw, dtype)
        given = raw.cast(pl.String).str.strip_chars().replace("", None)
        for i in (given.is_not_null() & parsed.is_null()).arg_true().to_list():
            problems.append((i, f"{name} {given[i]!r} is not a valid {dtype} (left empty)"))
        out.append(parsed.alias(name))
    return rows.with_columns(out), problems


def instruments_frame(rows: pl.DataFrame, run_id: str, now: datetime | None = None) -> pl.DataFrame:
    """Fill defaults (asset type, ETF flag, provider, timezone) for an instruments frame;
    ``now`` (the settings' clock) stamps ``updated_at``."""
    n = rows.height

    def col(name: str, default=None) -> pl.Series:
        if name in rows.columns:
            return rows.get_column(name)
        return pl.Series(name, [default] * n, dtype=pl.String)

    asset = col("asset_type").fill_null("equity").str.to_lowercase().str.strip_chars()
    bad = sorted(set(asset.to_list()) - set(ASSET_TYPES))
    if bad:
        raise ValidationError(f"unknown asset type(s) {bad}; valid: {', '.join(ASSET_TYPES)}")
    etf_raw = col("is_etf")
    is_etf = etf_raw.cast(pl.String).str.to_lowercase().is_in(list(_TRUE)).fill_null(False) | (
        asset == "etf"
    )
    provider = col("provider")
    provider = pl.Series(
        [
            p if p else DEFAULT_PROVIDER[a]
            for p, a in zip(provider.to_list(), asset.to_list(), strict=True)
        ],
        dtype=pl.String,
    )
    now = now or datetime.now(UTC)  # library use without settings: the wall clock
    typed, _ = option_fields(rows)

    def option(name: str) -> pl.Series:
        if name in typed.columns:
            return typed.get_column(name)
        return pl.Series(name, [None] * n, dtype=OPTION_FIELDS[name])

    return pl.DataFrame(
        {
            "symbol": rows.get_column("symbol"),
            "name": col("name"),
            "asset_type": asset,
            "exchange": col("exchange"),
            "timezone": col("timezone").fill_null(
                pl.Series(
                    [("UTC" if a == "crypto" else "America/New_York") for a in asset.to_list()],
                    dtype=pl.String,
                )
            ),
            "currency": col("currency"),
            "sector": col("sector"),
            "industry": col("industry"),
            "is_etf": is_etf,
            **{name: option(name) for name in OPTION_FIELDS},
            "active": pl.Series([True] * n),
            "provider": provider,
            "provider_symbols": col("provider_symbols").fill_null("{}"),
            "routes": col("routes"),
            "listed_by": col("listed_by"),
            "updated_at": pl.Series([now] * n, dtype=pl.Datetime("us", "UTC")),
        }
    )


def _routing(raw: pl.DataFrame) -> list[pl.Series]:
    """``provider_symbols`` JSON from the columns ``<provider>_symbol`` (each provider's own
    spelling, e.g. ``coingecko_symbol = bitcoin``) and ``routes`` JSON from the columns
    ``<kind>_provider`` (the provider of one kind, e.g. ``profile_provider = coingecko``)."""
    from marketlake.pipeline.config import PROVIDER_NAMES
    from marketlake.pipeline.providers.base import KINDS

    lower = {c.strip().lower(): c for c in raw.columns}
    names = {p: lower[f"{p}_symbol"] for p in PROVIDER_NAMES if f"{p}_symbol" in lower}
    routes = {k: lower[f"{k}_provider"] for k in KINDS if f"{k}_provider" in lower}
    ids: list[str] = []
    kinds: list[str | None] = []
    for row in raw.select([*names.values(), *routes.values()]).iter_rows(named=True):
        doc = {p: str(row[c]).strip() for p, c in names.items() if row[c] and str(row[c]).strip()}
        r = {k: str(row[c]).strip() for k, c in routes.items() if row[c] and str(row[c]).strip()}
        ids.append(json.dumps(doc, sort_keys=True))
        kinds.append(json.dumps(r, sort_keys=True) if r else None)
    out = []
    if names:
        out.append(pl.Series("provider_symbols", ids, dtype=pl.String))
    if routes:
        out.append(pl.Series("routes", kinds, dtype=pl.String))
    return out


def read_csv(
    path: Path, *, asset_type: str | None = None, provider: str | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """The instruments a CSV lists (text columns, option fields typed), and one line per
    bad row or value (left out or left empty)."""
    if path.is_file() and path.stat().st_size == 0:
        raise ValidationError(f"{path}: empty file (no instruments)")
    try:
        raw = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
    except FileNotFoundError as exc:
        raise ValidationError(f"{path}: file not found") from exc
    except (pl.exceptions.NoDataError, pl.exceptions.ComputeError) as exc:
        raise ValidationError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from exc
    if raw.height == 0:
        raise ValidationError(f"{path}: empty file (no instruments)")
    rows = _normalise(raw, str(path))
    routing = _routing(raw)
    if routing:
        rows = rows.with_columns(routing)
    problems: list[str] = []
    keep: list[bool] = []
    for i, sym in enumerate(rows.get_column("symbol").to_list(), start=2):
        try:
            check_symbol(sym)
            keep.append(True)
        except ValidationError as exc:
            problems.append(f"{path}:{i}: {exc}")
            keep.append(False)
    rows = rows.filter(pl.Series(keep)).with_columns(pl.col("symbol").str.strip_chars())
    if asset_type:
        rows = rows.with_columns(pl.lit(asset_type).alias("asset_type"))
    if provider:
        rows = rows.with_columns(pl.lit(provider).alias("provider"))
    rows, bad_values = option_fields(rows)
    lines = [i for i, ok in enumerate(keep, start=2) if ok]  # the CSV line of each kept row
    problems += [f"{path}:{lines[i]}: {rows['symbol'][i]}: {msg}" for i, msg in bad_values]
    return rows, problems


def import_csv(
    lake: Lake,
    path: Path,
    *,
    run_id: str,
    asset_type: str | None = None,
    provider: str | None = None,
    wait: float | bool = False,
    now: datetime | None = None,
) -> tuple[WriteResult, list[str]]:
    """Upsert the instruments listed in a CSV (under the lake's writer lock; ``wait`` as for
    :meth:`WriterLock.acquire`); returns the write and one line per bad row."""
    rows, problems = read_csv(path, asset_type=asset_type, provider=provider)
    dupes = rows.filter(pl.col("symbol").is_duplicated()).get_column("symbol").unique().to_list()
    problems += [f"{path}: symbol {s!r} listed more than once (last row kept)" for s in dupes]
    frame = instruments_frame(rows, run_id, now)
    with writer(lake.root, run_id, "universe", wait=wait):
        return lake.upsert("instruments", frame, run_id=run_id, stage="universe"), problems


def add(
    lake: Lake,
    symbol: str,
    *,
    run_id: str,
    wait: float | bool = False,
    now: datetime | None = None,
    **fields: object,
) -> WriteResult:
    """Add or update one instrument (under the lake's writer lock)."""
    return add_many(lake, [symbol], run_id=run_id, wait=wait, now=now, **fields)


def add_many(
    lake: Lake,
    symbols: list[str],
    *,
    run_id: str,
    wait: float | bool = False,
    now: datetime | None = None,
    **fields: object,
) -> WriteResult:
    """Add or update instruments sharing ``fields``, in one commit (under the lake's writer
    lock)."""
    shared = {
        k: (None if v is None else str(v))
        for k, v in fields.items()
        if k not in ("provider_symbols", "routes")
    }
    for doc in ("provider_symbols", "routes"):  # JSON objects
        if fields.get(doc):
            shared[doc] = json.dumps(fields[doc], sort_keys=True)
    rows = [{"symbol": check_symbol(s), **shared} for s in symbols]
    schema = {k: pl.String for k in ("symbol", *shared)}
    frame = instruments_frame(pl.DataFrame(rows, schema=schema), run_id, now)
    with writer(lake.root, run_id, "universe", wait=wait):
        return lake.upsert("instruments", frame, run_id=run_id, stage="universe")


def load(
    lake: Lake,
    *,
    symbols: list[str] | None = None,
    asset_types: list[str] | None = None,
    active_only: bool = True,
) -> pl.DataFrame:
    """The universe (optionally filtered); unknown ``symbols`` raise UnknownSymbolError."""
    frame = lake.read("instruments")
    if active_only and "active" in frame.columns:
        frame = frame.filter(pl.col("active").fill_null(True))
    if asset_types:
        frame = frame.filter(pl.col("asset_type").is_in(asset_types))
    if symbols:
        wanted = [check_symbol(s) for s in symbols]
        known = set(frame.get_column("symbol").to_list())
        missing = [s for s in wanted if s not in known]
        if missing:
            raise UnknownSymbolError(
                f"unknown symbol(s) {', '.join(repr(m) for m in missing)}: not in the universe "
                "(add with `marketlake universe add SYMBOL` or `universe import FILE`)"
            )
        frame = frame.filter(pl.col("symbol").is_in(wanted))
    return frame.sort("symbol")

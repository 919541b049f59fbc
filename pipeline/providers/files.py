"""CSV and parquet import with a column mapping.

Options (``[providers.files]`` in marketlake.toml): ``path`` (a file or a directory of
``*.csv``/``*.parquet``), ``mapping`` (lake column -> file column), ``timezone`` for naive
timestamps (a file with naive timestamps and no timezone is rejected, never guessed),
``timeframe`` (default ``1D``) and ``symbol`` (for files without a symbol column; otherwise the
file's stem). Dates without a time are session dates (00:00 UTC, as the lake keys daily bars).
A file that cannot be used (corrupt, empty, missing columns) is reported by :meth:`problems`
and skipped; every other file still imports. A row with a value that does not parse (a
volume of ``abc``, a date of ``soon``) keeps its reason in the ``REJECT`` column and is
quarantined by the ingest stage; the other rows of its symbol land. Files are read whole when
the sync plans, except a parquet export too large for that, read a block of row groups at a
time as its symbols are asked (:mod:`.file_groups`); there a damaged block fails the requests
of the symbols it holds, and the others land.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from marketlake.errors import ConfigError, InvalidSymbolError, ValidationError
from marketlake.pipeline.providers import file_groups
from marketlake.pipeline.providers.base import (
    REJECT,
    Capabilities,
    FetchRequest,
    Provider,
    empty_ohlcv,
    frame_schema,
)
from marketlake.pipeline.providers.file_groups import GroupedParquet, symbol_spans

REQUIRED = ("ts", "open", "high", "low", "close")
_DEFAULT_NAMES = {
    "symbol": ("symbol", "ticker"),
    "ts": ("ts", "timestamp", "datetime", "date", "time"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "adj_close": ("adj_close", "adj close", "adjclose"),
    "open_interest": ("open_interest", "open interest", "openinterest", "oi"),
}


class FilesProvider(Provider):
    name = "files"
    capabilities = Capabilities(
        kinds=frozenset({"ohlcv"}),
        timeframes=("1m", "15m", "30m", "1h", "4h", "1D", "1W"),
        default_concurrency=1,
        local=True,
        batched=True,
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        opts = self.settings.options
        path = opts.get("path")
        if not path:
            raise ConfigError("files provider needs a path ([providers.files] path = ...)")
        self.path = Path(str(path)).expanduser()
        self.mapping = dict(opts.get("mapping", {}))
        self.timezone = opts.get("timezone")
        self.timeframe = opts.get("timeframe", "1D")
        self.fixed_symbol = opts.get("symbol")
        self._lock = threading.Lock()
        self._frame: pl.DataFrame | None = None
        self._by_symbol: dict[str, pl.DataFrame] = {}
        self._streamed: dict[str, GroupedParquet] = {}  # symbol -> the file read as asked
        self._problems: list[dict] = []

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(
                p
                for p in self.path.iterdir()
                if p.suffix.lower() in (".csv", ".parquet") and p.is_file()
            )
        raise ConfigError(f"files provider: {self.path} does not exist")

    def _column(self, columns: Sequence[str], target: str) -> str | None:
        if target in self.mapping:
            return self.mapping[target] if self.mapping[target] in columns else None
        lower = {c.lower().strip(): c for c in columns}
        for n in _DEFAULT_NAMES[target]:
            if n in lower:
                return lower[n]
        return None

    def read_file(self, path: Path) -> pl.DataFrame:
        """One file as lake-shaped bars, or ValidationError naming the file and problem."""
        if path.stat().st_size == 0:
            raise ValidationError(f"{path.name}: empty file")
        try:
            if path.suffix.lower() == ".parquet":
                raw = pl.read_parquet(path)
            else:
                raw = pl.read_csv(path, try_parse_dates=True)
        except Exception as exc:  # polars/arrow raise many types for a corrupt file
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValidationError(f"{path.name}: unreadable file ({first})") from exc
        if raw.height == 0:
            raise ValidationError(f"{path.name}: empty file")
        return self._shaped(raw, path)

    def _columns(self, path: Path, columns: Sequence[str]) -> dict[str, str | None]:
        """The file column of each lake column (None: absent), or ValidationError naming
        the file and the required columns it lacks."""
        cols = {t: self._column(columns, t) for t in _DEFAULT_NAMES}
        missing = [t for t in REQUIRED if cols[t] is None]
        if missing:
            raise ValidationError(f"{path.name}: missing column(s) {missing}; found {columns}")
        return cols

    def _shaped(self, raw: pl.DataFrame, path: Path) -> pl.DataFrame:
        """The rows of ``raw`` (read from ``path``) as lake-shaped bars."""
        cols = self._columns(path, raw.columns)
        reasons: list[pl.Expr] = []
        ts = raw.get_column(cols["ts"])
        if ts.dtype == pl.String:
            given = ts
            try:
                dates = given.str.to_date(strict=False)
                ts = given.str.to_datetime(time_unit="us", strict=False)
                if dates.null_count() == ts.null_count():  # dates only: session dates
                    ts = dates
            except Exception as exc:  # mixed formats polars cannot infer one format for
                raise ValidationError(
                    f"{path.name}: cannot parse timestamps in {cols['ts']!r}"
                ) from exc
            if ts.null_count() == ts.len():
                raise ValidationError(f"{path.name}: cannot parse timestamps in {cols['ts']!r}")
            reasons += _unparsed(given, ts, cols["ts"])
        if ts.dtype == pl.Date:
            ts = ts.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        elif isinstance(ts.dtype, pl.Datetime):
            if ts.dtype.time_zone is None:
                if not self.timezone:
                    raise ValidationError(
                        f"{path.name}: timestamps have no timezone; set "
                        '[providers.files] timezone = "Area/City" to import them'
                    )
                ts = ts.dt.replace_time_zone(
                    self.timezone, ambiguous="earliest", non_existent="null"
                )
            ts = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        else:
            raise ValidationError(f"{path.name}: column {cols['ts']!r} is not a timestamp")
        columns = [ts.alias("ts")]
        # one value for every row: a literal, never a column of copies (seconds on 10M rows)
        constants = [
            pl.lit(self.timeframe).alias("timeframe"),
            pl.lit(self.name).alias("provider"),
            pl.lit(True).alias("is_final"),
        ]
        if cols["symbol"] is not None:
            columns.append(raw.get_column(cols["symbol"]).cast(pl.String).alias("symbol"))
        else:
            constants.append(pl.lit(self.fixed_symbol or path.stem).alias("symbol"))
        for c in ("open", "high", "low", "close", "volume", "adj_close", "open_interest"):
            if cols[c] is None:
                continue
            given = raw.get_column(cols[c])
            columns.append(given.cast(pl.Float64, strict=False).alias(c))
            reasons += _unparsed(given, columns[-1], cols[c])
        out = pl.DataFrame(columns).with_columns(constants)
        out = out.select(
            [
                (pl.col(c) if c in out.columns else pl.lit(None)).cast(t).alias(c)
                for c, t in frame_schema("ohlcv").items()
            ]
        )
        return out.with_columns(
            pl.coalesce(reasons).alias(REJECT) if reasons else pl.lit(None, pl.String).alias(REJECT)
        )

    def _load(self) -> pl.DataFrame:
        """The rows of the files read whole (those :meth:`_grouped` does not stream), once;
        the streamed files indexed beside them."""
        with self._lock:
            if self._frame is None:
                paths = self._files()
                grouped = {p: g for p in paths if (g := self._grouped(p)) is not None}
                read = {p: self._read(p) for p in paths if p not in grouped}
                streamed: dict[str, GroupedParquet] = {}
                for g in grouped.values():
                    for symbol in g.spans:
                        streamed.setdefault(symbol, g)
                frame = _joined([f for f in read.values() if f is not None])
                by_symbol = _by_symbol(frame)
                seen = len(by_symbol) + sum(len(g.spans) for g in grouped.values())
                if len(by_symbol.keys() | streamed.keys()) < seen:
                    # a symbol in more than one file: every file read whole, its rows joined
                    # in the files' order
                    read.update({p: self._read(p) for p in grouped})
                    frame = _joined([f for p in paths if (f := read[p]) is not None])
                    by_symbol, streamed = _by_symbol(frame), {}
                self._frame, self._by_symbol, self._streamed = frame, by_symbol, streamed
            return self._frame

    def _read(self, path: Path) -> pl.DataFrame | None:
        """``path`` read whole (:meth:`read_file`), its undated rows reported; None (and the
        reason reported) for a file that cannot be used."""
        try:
            frame = self.read_file(path)
        except ValidationError as exc:
            self._problems.append(
                {"symbol": self.fixed_symbol or "", "reason": str(exc), "source": str(path)}
            )
            return None
        # a row without a time belongs to no request: reported with the file
        if frame.get_column("ts").null_count():
            undated = frame.filter(pl.col("ts").is_null())
            for sym, reason in undated.select("symbol", REJECT).iter_rows():
                self._problems.append(
                    {
                        "symbol": sym or self.fixed_symbol or "",
                        "reason": f"{path.name}: {reason or 'a row without a time'}",
                        "source": str(path),
                    }
                )
            frame = frame.filter(pl.col("ts").is_not_null())
        return frame

    def _grouped(self, path: Path) -> GroupedParquet | None:
        """``path`` as a file read a row group at a time (:mod:`.file_groups`) when it can
        be, with the rows it would give read whole: a parquet file with a symbol column,
        dates or timestamps with a time zone, none missing (its statistics say),
        each symbol's rows together, and too many rows to read whole comfortably
        (:func:`~.file_groups.streams`). None otherwise (read whole, which reports its
        faults)."""
        if path.suffix.lower() != ".parquet":
            return None
        try:
            meta = pq.read_metadata(path)
            if not meta.num_rows or not file_groups.streams(meta.num_rows):
                return None
            schema = pl.read_parquet_schema(path)
            cols = self._columns(path, list(schema))
            ts, symbol = cols["ts"], cols["symbol"]
            if symbol is None or not _proven_dated(meta, ts):
                return None
            dtype = schema[ts]
            if not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
                return None
            if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
                return None  # local times: a nonexistent one is reported as the file is read
            spans = symbol_spans(path, symbol)
        except Exception:  # noqa: BLE001 - read whole: that reports what is wrong
            return None
        if spans is None:
            return None
        return GroupedParquet(path, meta, spans, lambda raw: self._shaped(raw, path))

    def prepare(self, timeframes: Sequence[str] = ()) -> None:
        """Read the files now (a sync does it while it plans)."""
        self._load()
        for grouped in dict.fromkeys(self._streamed.values()):
            grouped.warm()

    def problems(self) -> list[dict]:
        """Files that could not be imported: ``{symbol, reason, source}`` each."""
        self._load()
        return list(self._problems)

    def symbols(self) -> list[str]:
        read = self._load().get_column("symbol").unique().drop_nulls().to_list()
        return sorted({*read, *self._streamed})

    def fetch_many(self, requests: Sequence[FetchRequest]) -> list[pl.DataFrame]:
        """Each request's rows as :meth:`fetch` gives them (slices of the file's frame or of
        its decoded row groups, no copies), without the reject column where no row was rejected: the sync then takes
        them as they are, with no frame rebuilt per symbol."""
        out = []
        for frame in (self.fetch(r) for r in requests):
            if REJECT in frame.columns and frame.get_column(REJECT).null_count() == frame.height:
                frame = frame.clone()  # a direct call, not a query (fetch threads run this)
                frame.drop_in_place(REJECT)
            out.append(frame)
        return out

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        frame = self._load()
        if request.timeframe != self.timeframe:
            return frame.clear()
        grouped = self._streamed.get(request.remote_symbol)
        if grouped is not None:
            sel = grouped.rows(request.remote_symbol)
        else:
            sel = self._by_symbol.get(request.remote_symbol)
        if sel is None:
            raise InvalidSymbolError(
                f"files: no rows for symbol {request.symbol!r} in {self.path}",
                provider=self.name,
                symbol=request.symbol,
            )
        ts = sel.get_column("ts")
        if not (request.start <= ts.min() and ts.max() < request.end):  # not all asked for
            sel = sel.filter((pl.col("ts") >= request.start) & (pl.col("ts") < request.end))
        if request.symbol == request.remote_symbol:
            return sel
        return sel.with_columns(pl.lit(request.symbol).alias("symbol"))


def _by_symbol(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The rows of each symbol, split in one pass, not one scan of every row per request:
    zero-copy slices when each symbol's rows are contiguous (files sorted or grouped by
    symbol, the usual export), else one partitioning copy."""
    runs = frame.select(pl.col("symbol").rle()).unnest("symbol")
    if runs.get_column("value").n_unique() == runs.height:  # one run per symbol
        starts = runs.get_column("len").cum_sum() - runs.get_column("len")
        return {
            sym: frame.slice(start, n)
            for sym, start, n in zip(
                runs.get_column("value").to_list(),
                starts.to_list(),
                runs.get_column("len").to_list(),
                strict=True,
            )
        }
    return {
        k[0]: part
        for k, part in frame.partition_by("symbol", as_dict=True, maintain_order=True).items()
    }


def _unparsed(given: pl.Series, parsed: pl.Series, column: str) -> list[pl.Expr]:
    """Per row, why ``given`` did not parse (null where it did or was empty); no expression
    when every value parsed (the common case: no column is turned into text)."""
    if given.dtype == parsed.dtype or given.null_count() == parsed.null_count():
        return []  # nothing was cast, or the cast kept every value
    text = given.cast(pl.String)
    bad = given.is_not_null() & parsed.is_null()
    return [
        pl.when(pl.lit(bad)).then(
            pl.format("{} {} does not parse", pl.lit(column), pl.lit(text).str.slice(0, 40))
        )
    ]


def _proven_dated(meta: pq.FileMetaData, column: str) -> bool:
    """Whether every row group's statistics of ``column`` count no nulls (rows without a
    time are reported as the file is read whole)."""
    first = meta.row_group(0)
    leaf = [i for i in range(first.num_columns) if first.column(i).path_in_schema == column]
    if len(leaf) != 1:
        return False
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(leaf[0]).statistics
        if stats is None or stats.null_count is None or stats.null_count > 0:
            return False
    return True


def _joined(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Frames of :meth:`FilesProvider.read_file` as one (an empty one for none)."""
    if len(frames) == 1:
        return frames[0]
    if frames:
        return pl.concat(frames)
    return empty_ohlcv().with_columns(pl.lit(None, pl.String).alias(REJECT))

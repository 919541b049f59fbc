"""Polars adapter: ``compute(frame, indicators)`` -> frame sorted by (symbol, ts) + indicator columns.

Steps: (1) find symbol runs once (``rle_id``) and check whether the frame is already sorted by
(symbol, ts) -- lake reads usually are -- so the sort is skipped when it would be a no-op;
otherwise sort once. (2) Take OHLCV as zero-copy float64 numpy views (other dtypes are cast,
nulls become NaN). (3) One parallel numba call (``kernels.driver.run_plan``) computes all
requested indicators for all symbols into one preallocated ``(n_columns, n_rows)`` block.
(4) Each block row becomes a Float64 column without a copy. Session ids for VWAP/pivots (local
calendar dates) are computed inside the driver from small UTC-offset tables
(``kernels.sessions``), not by converting every timestamp. Warm-up rows are NaN (not null).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl

from kernels.driver import CODES, SESSION_CODES, run_plan, scan_runs
from kernels.registry import IndicatorSpec, resolve
from kernels.sessions import DAY_S, check_tz, tz_tables

_UNITS_PER_SECOND = {"ns": 1_000_000_000, "us": 1_000_000, "ms": 1_000}


def _readonly(a: np.ndarray) -> np.ndarray:
    # one numba specialisation: inputs are always read-only C-contiguous views
    a = np.ascontiguousarray(a).view()
    a.flags.writeable = False
    return a


def _float_column(df: pl.DataFrame, name: str) -> np.ndarray:
    s = df.get_column(name)
    if s.dtype != pl.Float64:
        s = s.cast(pl.Float64)
    if s.null_count():
        s = s.fill_null(float("nan"))
    return _readonly(s.to_numpy())


def _runs(df: pl.DataFrame, ts: np.ndarray) -> tuple[np.ndarray, bool]:
    rid = df.get_column("symbol").rle_id().to_numpy()
    return scan_runs(rid, ts)


def _timestamps(df: pl.DataFrame) -> np.ndarray:
    return _readonly(df.get_column("ts").to_physical().to_numpy())


def sort_frame(frame: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """``frame`` sorted by (symbol, ts) (unchanged if it already is) and its symbol offsets."""
    if frame.height == 0:
        return frame, np.zeros(1, np.int64)
    offsets, ascending = _runs(frame, _timestamps(frame))
    if ascending:
        firsts = frame.get_column("symbol").gather(offsets[:-1])
        ascending = firsts.n_unique() == len(firsts) and firsts.equals(firsts.sort())
    if ascending:
        return frame, offsets
    frame = frame.sort(["symbol", "ts"], maintain_order=True)
    offsets, _ = _runs(frame, _timestamps(frame))
    return frame, offsets


def _zones(
    session_tz: str | Mapping[str, str] | None, symbols: pl.Series
) -> tuple[list[str], np.ndarray]:
    if session_tz is None:
        session_tz = "UTC"
    if isinstance(session_tz, str):
        check_tz(session_tz)
        return [session_tz], np.zeros(len(symbols), np.int64)
    if not isinstance(session_tz, Mapping):
        raise TypeError("session_tz must be None, an IANA zone name or a {symbol: zone} mapping")
    names = ["UTC"]
    index = {"UTC": 0}
    for tz in session_tz.values():
        if tz not in index:
            check_tz(tz)
            index[tz] = len(names)
            names.append(tz)
    zone = np.fromiter(
        (index[session_tz.get(str(s), "UTC")] for s in symbols.to_list()),
        dtype=np.int64,
        count=len(symbols),
    )
    return names, zone


def _plan(specs: list[IndicatorSpec]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    ops = np.zeros((len(specs), 5), np.int64)
    fparams = np.zeros(len(specs), np.float64)
    columns: list[str] = []
    for k, spec in enumerate(specs):
        ops[k, 0] = CODES[spec.name]
        ops[k, 1] = len(columns)
        ints = [int(p) for p, d in zip(spec.params, spec.definition.params) if d.kind is int]
        floats = [float(p) for p, d in zip(spec.params, spec.definition.params) if d.kind is float]
        ops[k, 2 : 2 + len(ints)] = ints
        if floats:
            fparams[k] = floats[0]
        columns.extend(spec.columns)
    return ops, fparams, columns


def compute(
    frame: pl.DataFrame,
    indicators: Iterable[str | IndicatorSpec] | str | None = None,
    *,
    session_tz: str | Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Append indicator columns to an OHLCV frame, per symbol.

    ``frame`` has ``symbol``, ``ts`` (Datetime; tz-aware UTC, a naive one is read as UTC) and the
    price/volume columns the indicators need (``open, high, low, close, volume``); rows may be in
    any order and extra columns are kept. Returns the frame sorted by (symbol, ts) with one
    Float64 column per output (see ``kernels.output_columns``); an existing column of the same
    name is replaced. ``indicators``: spec strings (``None`` = ``DEFAULT_INDICATORS``).
    ``session_tz``: IANA zone for all symbols or a ``{symbol: zone}`` mapping (missing symbols:
    UTC); a bar's session is its local calendar date there (VWAP reset, pivots). Symbols shorter
    than an indicator's warm-up get NaN.
    """
    specs = resolve(indicators)
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"compute expects a polars DataFrame, got {type(frame).__name__}")
    needed = ["symbol", "ts"] + sorted({c for s in specs for c in s.inputs})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing column(s) {missing} needed for {list(map(str, specs))}")
    ts_dtype = frame.schema["ts"]
    if not isinstance(ts_dtype, pl.Datetime):
        raise ValueError(f"column 'ts' must be a polars Datetime, got {ts_dtype}")
    for c in ("symbol", "ts"):
        if frame.get_column(c).null_count():
            raise ValueError(f"column {c!r} has nulls")

    df, offsets = sort_frame(frame)
    ops, fparams, columns = _plan(specs)
    n = df.height
    if n == 0 or not specs:
        return df.with_columns(pl.lit(None, pl.Float64).alias(c) for c in columns)

    close = _float_column(df, "close")
    have = set(c for s in specs for c in s.inputs)
    high = _float_column(df, "high") if "high" in have else close
    low = _float_column(df, "low") if "low" in have else close
    volume = _float_column(df, "volume") if "volume" in have else close
    ts = _timestamps(df)

    nsym = offsets.shape[0] - 1
    ups = _UNITS_PER_SECOND[ts_dtype.time_unit]
    if any(ops[k, 0] in SESSION_CODES for k in range(len(specs))):
        firsts = df.get_column("symbol").gather(offsets[:-1])
        names, sym_zone = _zones(session_tz, firsts)
        t_min = int(ts[offsets[:-1]].min())
        t_max = int(ts[offsets[1:] - 1].max())
        tz_ptr, tz_starts, tz_offsets = tz_tables(names, t_min, t_max, ups)
    else:
        if session_tz is not None and not isinstance(session_tz, (str, Mapping)):
            raise TypeError("session_tz must be None, an IANA zone name or a mapping")
        sym_zone = np.zeros(nsym, np.int64)
        tz_ptr = np.array([0, 1], np.int64)
        tz_starts = np.array([np.iinfo(np.int64).min], np.int64)
        tz_offsets = np.zeros(1, np.int64)

    out = np.empty((len(columns), n), np.float64)
    run_plan(
        offsets,
        high,
        low,
        close,
        volume,
        ts,
        sym_zone,
        tz_ptr,
        tz_starts,
        tz_offsets,
        ups * DAY_S,
        ops,
        fparams,
        out,
    )
    return df.with_columns([pl.Series(name, out[j]) for j, name in enumerate(columns)])


__all__ = ["compute", "sort_frame"]

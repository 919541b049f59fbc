"""A full recompute's new rows written straight from the kernels' output block.

When nothing is stored for a timeframe (its first compute, or after its indicators were
dropped) every computed row is inserted: there is nothing to diff against, so the rows never
need to become a polars frame that is then split by period and copied column by column into
Arrow. Instead the block's columns are gathered once into period order (``kernels.layout``:
each period's rows one contiguous slice, NaN turned into a cleared validity bit in the same
pass), and each period's file is an Arrow table of zero-copy views of those slices: the
symbol as codes into a dictionary of the batch's names, ``ts``, the computed columns, the
stored columns this run does not compute as nulls, the ``computed_at`` stamp and the run id
(a one-entry dictionary). The rows, their order within a file and the values are those of the
frame path (``compute._computed`` then ``Rewrite.write``): sorted by (symbol, ts), warm-up
values null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import numpy as np
import polars as pl
import pyarrow as pa

from marketlake.lake.tables import INTRADAY, TS, period_of_code
from marketlake.pipeline.stages.compute_increment import symbol_enum

_UNITS_PER_DAY = {"ns": 86_400_000_000_000, "us": 86_400_000_000, "ms": 86_400_000}

File = tuple[dict[str, str], Callable[[], pa.Table]]


def new_files(
    bars: pl.DataFrame,
    tf: str,
    syms: list[str],
    indicators,
    tz: dict[str, str],
    other: list[str],
    computed_at: datetime,
    run_id: str,
) -> tuple[list[str], list[File]]:
    """The file columns and, per period of ``bars`` (on timeframe ``tf``), its partition
    values and a function building its Arrow table: the indicator rows of ``bars`` as new rows
    (``other``: stored columns not computed, written as nulls)."""
    from marketlake.kernels import aot
    from marketlake.kernels.adapter import (
        POOL,
        _readonly,  # the kernels' one input signature
        compute_block,
    )

    df, columns, block = compute_block(
        bars, indicators, session_tz={s: tz.get(s, "UTC") for s in syms}
    )
    body = ["symbol", "ts", *columns, *other, "computed_at", "run_id"]
    n = df.height
    if n == 0:
        return body, []
    if not isinstance(df.schema["symbol"], pl.Enum):
        df = symbol_enum(df)  # codes in the order of the sorted names
    ts_type = df.schema["ts"]
    ts = _readonly(df.get_column("ts").to_physical().to_numpy())
    assert isinstance(ts_type, pl.Datetime)
    # one thread, without numba, for a small batch (kernels.aot); numba's parallel gathers else
    period_order, take_valid, take = (
        aot.entry(f, n) for f in ("period_order", "take_valid", "take")
    )
    order, codes, bounds = period_order(ts, _UNITS_PER_DAY[ts_type.time_unit], tf in INTRADAY)
    order = _readonly(order)
    values = POOL.take(len(columns), n)
    bits = np.empty((len(columns), (n + 7) // 8), np.uint8)
    take_valid(_readonly(block), order, values, bits)
    del block  # back to the pool for the next batch
    ts_out = np.empty(n, np.int64)
    take(ts, order, ts_out)
    sym = df.get_column("symbol")
    sym_out = np.empty(n, np.int32)
    take(_readonly(sym.to_physical().cast(pl.Int32).to_numpy()), order, sym_out)
    names = _text(sym.dtype.categories)
    stamp = pl.select(pl.lit(computed_at).cast(pl.Datetime("us", "UTC"))).to_series()
    laid = _Laid(
        columns=[(values[j], bits[j]) for j in range(len(columns))],
        ts=ts_out,
        symbols=sym_out,
        names=names,
        stamp=_filled(stamp.to_physical().item(), n, np.int64),
        zeros=_filled(0, n, np.int32),
        run_id=_text(pl.Series([run_id])),
        other=len(other),
        body=body,
        ts_type=pa.timestamp(ts_type.time_unit, ts_type.time_zone),
    )
    files = []
    for k in range(codes.shape[0]):
        a, b = int(bounds[k]), int(bounds[k + 1])
        values_of = {"timeframe": tf, "period": period_of_code(int(codes[k]))}
        files.append((values_of, partial(laid.table, a, b)))
    return body, files


@dataclass(frozen=True)
class _Laid:
    """A batch's columns in period order, as Arrow tables of any row range."""

    columns: list[tuple[np.ndarray, np.ndarray]]  # computed values and their validity bits
    ts: np.ndarray
    symbols: np.ndarray  # codes into ``names``
    names: pa.Array
    stamp: np.ndarray  # computed_at
    zeros: np.ndarray  # the run id's codes into ``run_id``
    run_id: pa.Array
    other: int  # stored columns not computed: nulls
    body: list[str]
    ts_type: pa.DataType

    def table(self, a: int, b: int) -> pa.Table:
        n = b - a
        symbols = pa.DictionaryArray.from_arrays(_plain(pa.int32(), self.symbols, a, n), self.names)
        arrays = [symbols, _plain(self.ts_type, self.ts, a, n)]
        for values, bits in self.columns:
            buffers = [pa.py_buffer(bits), pa.py_buffer(values)]
            arrays.append(pa.Array.from_buffers(pa.float64(), n, buffers, -1, a))
        arrays += [pa.nulls(n, pa.float64()) for _ in range(self.other)]
        arrays.append(_plain(TS, self.stamp, a, n))
        run_ids = _plain(pa.int32(), self.zeros, a, n)
        arrays.append(pa.DictionaryArray.from_arrays(run_ids, self.run_id))
        return pa.Table.from_arrays(arrays, names=self.body)


_FILLED: dict[tuple[int, str], np.ndarray] = {}


def _filled(value: int, n: int, dtype: type) -> np.ndarray:
    """A read-only array of at least ``n`` copies of ``value``: a batch's stamp and run-id
    codes, kept from one batch to the next (each batch filling fresh pages cost a full
    recompute of 5M rows about 25 ms); only the latest value of each type is kept."""
    key = (value, np.dtype(dtype).str)
    have = _FILLED.get(key)
    if have is None or have.shape[0] < n:
        have = np.full(n, value, dtype)
        have.flags.writeable = False
        for old in [k for k in _FILLED if k[1] == key[1]]:  # one value per type kept
            _FILLED.pop(old, None)
        _FILLED[key] = have
    return have


def _plain(typ: pa.DataType, values: np.ndarray, a: int, n: int) -> pa.Array:
    """Rows ``a:a + n`` of ``values`` (no nulls) as an Arrow array of ``typ``, zero-copy
    (``pa.array`` of numpy values would import pandas)."""
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(values)], 0, a)


def _text(values: pl.Series) -> pa.Array:
    return values.cast(pl.String).to_arrow(compat_level=pl.CompatLevel.oldest()).cast(pa.string())


__all__ = ["new_files"]

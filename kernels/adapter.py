"""Polars adapter: ``compute(frame, indicators)`` -> sorted frame + one column per output.

1. Symbol runs are found once, in one compiled pass over the Arrow string views of ``symbol``
   (categorical codes / ``rle_id`` otherwise) that also checks ts ascends within each run; a
   frame already sorted by (symbol, ts) -- lake reads usually are -- is not sorted again.
2. OHLCV become zero-copy float64 numpy views (other dtypes are cast, nulls become NaN).
3. One call of the driver (``run_plan``) computes every requested indicator for every symbol
   into one ``(n_columns, n_rows)`` block: numba's parallel driver, or for a frame of up to
   ``kernels.aot.SERIAL_ROWS`` bars the one compiled ahead of time (one thread, no numba to
   load; :func:`engine`). Session ids for VWAP/pivots (local calendar dates) come from small
   UTC-offset tables (``kernels.zones``) inside that call.
4. Each block row becomes a Float64 column without a copy. Blocks whose columns the caller has
   dropped are recycled (``BlockPool``) rather than page-faulting fresh memory on every call.

Warm-up rows are NaN (not null).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from marketlake.kernels import aot
from marketlake.kernels.plan import ADX_ATR, CODES, SESSION_CODES, lane_groups, split_ops
from marketlake.kernels.registry import IndicatorSpec, resolve
from marketlake.kernels.zones import DAY_S, check_tz, tz_tables

_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only; elsewhere pages fault on use
_UNITS_PER_SECOND = {"ns": 1_000_000_000, "us": 1_000_000, "ms": 1_000}
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14: fault pages in writable, in one call, without a trap
_SPLIT_BYTES = 64 << 20  # blocks of at least twice this are populated by several threads


class Engine(NamedTuple):
    """The compiled entry points a call runs on, and the threads it may use."""

    run_plan: Callable
    scan_runs: Callable
    scan_string_views: Callable
    run_gather_index: Callable
    threads: int
    parallel: bool


def engine(rows: int) -> Engine:
    """The entry points for a call over ``rows`` bars: the module compiled ahead of time
    (``kernels.aot``, one thread, no numba to load) up to ``aot.SERIAL_ROWS`` bars when it is
    built, else numba's, with its parallel driver on numba's threads."""
    names = ("run_plan", "scan_runs", "scan_string_views", "run_gather_index")
    fns = [aot.entry(n, rows) for n in names]
    if rows <= aot.SERIAL_ROWS and aot.built():
        return Engine(*fns, threads=1, parallel=False)
    import numba

    return Engine(*fns, threads=numba.get_num_threads(), parallel=True)


def in_parts(part: Callable[[int], None], parts: int) -> None:
    """``part(i)`` for ``i`` in ``range(parts)``: the first on the calling thread, the others
    on threads of their own, all finished on return."""
    threads = [threading.Thread(target=part, args=(i,)) for i in range(1, parts)]
    for t in threads:
        t.start()
    part(0)
    for t in threads:
        t.join()


def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def fresh_block(n: int) -> np.ndarray:
    """``n`` float64 of fresh memory in base pages (an anonymous private mapping, unmapped
    when the last view is gone), its pages already faulted in.

    numpy advises transparent huge pages for large arrays; where the kernel then compacts
    memory to find them on first touch (THP ``defrag=madvise``, the common default) a first
    call in a fresh process took 0.72 s against 0.58 s in base pages (2,000 x 2,520 bars, the
    8 TA-Lib indicators, medians of 5, load average 6 on 2 cores; touching a bare 564 MB
    block: 2.0-6.6 s against 0.6-1.1 s). Huge pages pay back on reuse (fewer TLB misses:
    steady calls recycling one pooled block took 203 ms against 265 ms), i.e. after two or
    three calls; a ``compute`` run, a fresh process computing a few batches, is the case
    chosen here.

    The pages are faulted in by system calls (``MADV_POPULATE_WRITE``, else ``MAP_POPULATE``),
    not by the kernels' first writes: one call instead of a trap per 4 KB page (a bare 564 MB
    block: 0.20-0.22 s wall and CPU against 0.24-0.82 s wall and 0.37-0.57 s CPU touched by
    two threads). Faulting in -- zeroing -- a first call's block costs more than the kernels
    themselves, so a large block is split among the threads ``compute`` may use, each
    populating its part (564 MB: 0.18 s CPU either way, 0.23 s wall against 0.31 s, medians
    of 6 alternated fresh processes at load average 6 on 2 cores)."""
    nbytes = n * 8
    parts = nbytes // _SPLIT_BYTES
    if parts >= 2:
        import numba  # a block this large is a parallel call's: numba is loaded

        parts = min(numba.get_num_threads(), parts)
    if _MADVISE is None or parts < 2:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE
        return np.frombuffer(mmap.mmap(-1, nbytes, flags=flags), np.float64)
    raw = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    block = np.frombuffer(raw, np.float64)
    _populate(block, parts)
    return block


def _populate(block: np.ndarray, parts: int) -> None:
    """Fault in the pages of ``block`` (page-aligned, from ``mmap``) with ``parts`` threads."""
    page = mmap.PAGESIZE
    nbytes = block.nbytes
    bounds = [min(nbytes, (nbytes * i // parts + page - 1) // page * page) for i in range(parts)]
    bounds.append(nbytes)
    failed: list[int] = []

    def part(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        if b > a and _MADVISE(block.ctypes.data + a, b - a, _MADV_POPULATE_WRITE) != 0:
            failed.append(i)  # older kernel: fall back to touching one value per page

    in_parts(part, parts)
    step = page // 8
    for i in failed:
        block[bounds[i] // 8 : bounds[i + 1] // 8 : step] = 0.0


class BlockPool:
    """Recycles output blocks whose columns the caller has dropped.

    A fresh multi-hundred-MB block costs the kernel zeroing every page on first touch (about a
    third of a default-size ``compute``). The returned polars columns are zero-copy views of
    the block, so the block is free again once no column references it (its reference count
    drops back to the pool's own). Only blocks of at least ``min_bytes`` are pooled and at most
    ``max_bytes`` are kept (least recently used first out); set ``POOL.max_bytes = 0`` to
    disable, or call ``clear()``.
    """

    def __init__(self, max_bytes: int, min_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()

    @staticmethod
    def _free(raw: np.ndarray) -> bool:
        # references when nobody else holds the block: the pool's list, the caller's local
        # variable, this function's parameter and getrefcount's own argument
        return sys.getrefcount(raw) <= 4

    def take(self, ncols: int, nrows: int) -> np.ndarray:
        """An uninitialised C-contiguous float64 ``(ncols, nrows)`` block."""
        need = ncols * nrows
        if need * 8 < self.min_bytes:
            return np.empty((ncols, nrows), np.float64)
        if self.max_bytes <= 0:
            return fresh_block(need).reshape(ncols, nrows)
        with self._lock:
            for i in range(len(self._blocks)):  # (no enumerate: its tuple holds a reference)
                raw = self._blocks[i]
                if need <= raw.size <= 2 * need and self._free(raw):
                    self._blocks.append(self._blocks.pop(i))  # most recently used last
                    return raw[:need].reshape(ncols, nrows)
            raw = fresh_block(need)
            self._blocks.append(raw)
            total = sum(b.nbytes for b in self._blocks)
            i = 0
            while total > self.max_bytes and i < len(self._blocks) - 1:
                b = self._blocks[i]
                if self._free(b):
                    del self._blocks[i]
                    total -= b.nbytes
                else:
                    i += 1
                del b
            if total > self.max_bytes:  # everything else is in use: do not keep this one
                self._blocks.pop()
            return raw.reshape(ncols, nrows)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()


POOL = BlockPool(2048 << 20)


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


def _runs(df: pl.DataFrame, ts: np.ndarray, eng: Engine | None = None) -> tuple[np.ndarray, bool]:
    """Symbol run offsets and whether ts ascends within each run, in one pass over the rows
    (on ``eng``, by default the one for ``df``'s size)."""
    eng = eng or engine(df.height)
    sym = df.get_column("symbol")
    if sym.dtype == pl.String:
        # zero-copy Arrow string views: compare the 16-byte views (~2x faster than rle_id)
        arr = sym.to_arrow(compat_level=pl.CompatLevel.newest())
        if isinstance(arr, pa.StringViewArray) and arr.null_count == 0:
            buf = arr.buffers()[1]
            rows = slice(arr.offset, arr.offset + len(arr))
            offsets, ascending, ok = _split_scan(
                eng.scan_string_views,
                eng.threads,
                np.frombuffer(buf, np.int64).reshape(-1, 2)[rows],
                np.frombuffer(buf, np.int32).reshape(-1, 4)[rows],
                np.frombuffer(buf, np.uint8).reshape(-1, 16)[rows],
                ts,
            )
            if ok:
                return offsets, ascending
    elif isinstance(sym.dtype, (pl.Categorical, pl.Enum)):
        return _split_scan(eng.scan_runs, eng.threads, _run_ids(sym.to_physical()), ts)[:2]
    return _split_scan(eng.scan_runs, eng.threads, _run_ids(sym.rle_id()), ts)[:2]


_SPLIT_ROWS = 1 << 20  # frames of at least twice this many rows are scanned by several threads


def _split_scan(scan, threads: int, *columns: np.ndarray) -> tuple[np.ndarray, bool, bool]:
    """``scan`` (``scan_runs`` or ``scan_string_views``: run offsets, whether ts ascends within
    runs[, ok]) over row ranges on up to ``threads`` threads, merged.

    The scan reads every row once, before the kernels can start: 8 ms CPU of the 12 ms a
    2,000 x 2,520-bar call spends outside them (medians of 10, one thread). Each part is scanned
    from the last row of the part before it, so a run starting at its first row is found and ts
    is compared across the cut; the parts' inner boundaries are the frame's."""
    n = columns[-1].shape[0]
    parts = min(threads, n // _SPLIT_ROWS)
    if parts < 2:
        found = scan(*columns)
        return found[0], found[1], found[2] if len(found) > 2 else True
    cuts = [n * i // parts for i in range(parts + 1)]
    found: list = [None] * parts

    def part(i: int) -> None:
        a = max(cuts[i] - 1, 0)
        found[i] = scan(*(c[a : cuts[i + 1]] for c in columns))

    in_parts(part, parts)
    inner = [f[0][1:-1] + max(cuts[i] - 1, 0) for i, f in enumerate(found)]
    offsets = np.concatenate([np.zeros(1, np.int64), *inner, np.full(1, n, np.int64)])
    ascending = all(f[1] for f in found)
    ok = all(f[2] for f in found) if len(found[0]) > 2 else True
    return offsets, ascending, ok


def _run_ids(ids: pl.Series) -> np.ndarray:
    # one numba signature (read-only uint32), whatever the physical type polars picked
    return _readonly(ids.cast(pl.UInt32).to_numpy())


def _timestamps(df: pl.DataFrame) -> np.ndarray:
    return _readonly(df.get_column("ts").to_physical().to_numpy())


def sort_frame(frame: pl.DataFrame, eng: Engine | None = None) -> tuple[pl.DataFrame, np.ndarray]:
    """``frame`` sorted by (symbol, ts) (unchanged if it already is) and its symbol offsets."""
    if frame.height == 0:
        return frame, np.zeros(1, np.int64)
    eng = eng or engine(frame.height)
    order, offsets = _order(frame, eng)
    if order is None:
        return frame, offsets
    frame = frame[order]
    offsets, _ = _runs(frame, _timestamps(frame), eng)
    return frame, offsets


def sort_order(frame: pl.DataFrame) -> np.ndarray | None:
    """The row order of a stable sort of ``frame`` by (symbol, ts); None when it is sorted.

    A frame of pieces each sorted -- a lake read, one file per period -- is ordered by
    gathering its runs (:func:`_run_order`), without a full sort."""
    return _order(frame, engine(frame.height))[0] if frame.height else None


def _order(frame: pl.DataFrame, eng: Engine | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """:func:`sort_order` and the offsets of the runs of equal symbol (one pass over a
    sorted frame)."""
    eng = eng or engine(frame.height)
    offsets, within = _runs(frame, _timestamps(frame), eng)
    if within:
        firsts = frame.get_column("symbol").gather(offsets[:-1])
        if firsts.n_unique() == len(firsts) and firsts.equals(firsts.sort()):
            return None, offsets
        order = _run_order(frame, offsets, eng)
        if order is not None:
            return order, offsets
    by = pl.arg_sort_by("symbol", "ts", maintain_order=True)
    return frame.select(by).to_series().to_numpy(), offsets


def _run_order(
    frame: pl.DataFrame, offsets: np.ndarray, eng: Engine | None = None
) -> np.ndarray | None:
    """The row order that sorts ``frame`` by (symbol, ts) when it is a concatenation of pieces
    each sorted by (symbol, ts) -- a lake read returns one such piece per file, period after
    period -- else None; ``offsets`` are its runs of equal symbol, within which ts ascends.
    The runs of equal symbol (a few per symbol) are ordered by (symbol,
    first ts); the result equals a stable sort when, within a symbol, each run's last ts is
    below the next run's first (else None: sort in full)."""
    ts = _timestamps(frame)
    starts, ends = offsets[:-1], offsets[1:]
    runs = pl.DataFrame(
        {
            "symbol": frame.get_column("symbol").gather(starts),
            "first": ts[starts],
            "last": ts[ends - 1],
            "start": starts,
            "len": ends - starts,
        }
    )
    runs = runs.sort("symbol", "first", maintain_order=True)
    same = runs.get_column("symbol") == runs.get_column("symbol").shift(1)
    overlap = same & (runs.get_column("first") <= runs.get_column("last").shift(1))
    if overlap.any():
        return None
    eng = eng or engine(frame.height)
    starts = _readonly(runs.get_column("start").to_numpy())
    return eng.run_gather_index(starts, _readonly(runs.get_column("len").to_numpy()))


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
        ints = [
            int(p)
            for p, d in zip(spec.params, spec.definition.params, strict=True)
            if d.kind is int
        ]
        floats = [
            float(p)
            for p, d in zip(spec.params, spec.definition.params, strict=True)
            if d.kind is float
        ]
        ops[k, 2 : 2 + len(ints)] = ints
        if floats:
            fparams[k] = floats[0]
        columns.extend(spec.columns)
    return *_fuse_adx_atr(ops, fparams), columns


def _fuse_adx_atr(ops: np.ndarray, fparams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An ADX op and an ATR op of the same period become one ``ADX_ATR`` op (they share
    each row's true range and inputs; the same values, one pass fewer)."""
    atr = {int(ops[k, 2]): k for k in range(ops.shape[0]) if ops[k, 0] == CODES["atr"]}
    drop = []
    for k in range(ops.shape[0]):
        if ops[k, 0] == CODES["adx"] and int(ops[k, 2]) in atr:
            j = atr.pop(int(ops[k, 2]))
            ops[k, 0] = ADX_ATR
            ops[k, 3] = ops[j, 1]  # the ATR column's row
            drop.append(j)
    if not drop:
        return ops, fparams
    keep = np.setdiff1d(np.arange(ops.shape[0]), drop)
    return ops[keep].copy(), fparams[keep].copy()


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
    df, columns, out = compute_block(frame, indicators, session_tz=session_tz)
    return df.with_columns([pl.Series(name, out[j]) for j, name in enumerate(columns)])


def compute_block(
    frame: pl.DataFrame,
    indicators: Iterable[str | IndicatorSpec] | str | None = None,
    *,
    session_tz: str | Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, list[str], np.ndarray]:
    """:func:`compute`'s parts before they become columns: the frame sorted by (symbol, ts),
    the output column names and the ``(n_columns, n_rows)`` float64 block holding them (NaN
    in warm-up rows), for callers that lay the values out themselves (a full recompute
    writes them period by period: ``kernels.layout``)."""
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

    eng = engine(frame.height)
    df, offsets = sort_frame(frame, eng)
    ops, fparams, columns = _plan(specs)
    n = df.height
    if n == 0 or not specs:
        return df, columns, np.full((len(columns), n), np.nan)

    close = _float_column(df, "close")
    have = set(c for s in specs for c in s.inputs)
    high = _float_column(df, "high") if "high" in have else close
    low = _float_column(df, "low") if "low" in have else close
    volume = _float_column(df, "volume") if "volume" in have else close
    ts = _timestamps(df)

    nsym = offsets.shape[0] - 1
    ups = _UNITS_PER_SECOND[ts_dtype.time_unit]
    if any(ops[k, 0] in SESSION_CODES for k in range(ops.shape[0])):
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

    out = POOL.take(len(columns), n)
    groups = lane_groups(offsets)
    args = (offsets, groups, high, low, close, volume, ts, sym_zone, tz_ptr, tz_starts)
    args += (tz_offsets, ups * DAY_S, ops, fparams, out)
    if not eng.parallel:  # one thread: each group runs its whole plan
        eng.run_plan(*args, 1)
        return df, columns, out
    import numba

    tasks = split_ops(groups.shape[0], ops.shape[0], eng.threads)
    # dynamic scheduling in chunks of a few tasks: on a shared machine a thread that loses its
    # core takes fewer chunks instead of holding up the whole call
    with numba.parallel_chunksize(4 if tasks == 1 else 1):
        eng.run_plan(*args, tasks)
    return df, columns, out


__all__ = [
    "POOL",
    "BlockPool",
    "Engine",
    "compute",
    "compute_block",
    "engine",
    "fresh_block",
    "sort_frame",
    "sort_order",
]

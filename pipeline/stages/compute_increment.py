"""The incremental compute of one timeframe: the series whose bars changed, in one read and
one commit.

Indicators are causal, so only each series' rows from its first changed bar on can change.
A series with enough history before that bar is resumed (:mod:`marketlake.kernels.resume`):
only the last window of bars before it is read and computed, EMA, ATR and OBV continue from
the values stored at the row before it (bit for bit a full recompute's), RSI, MACD, ADX and
Supertrend from the states the last increment kept (:mod:`marketlake.pipeline.kept_states`;
where none are kept, they are windowed and their states kept), the other indicators'
window is long enough for their seed to be forgotten (equal to a full recompute's to rounding:
SMA's and BBANDS' running sums may differ in the last bits), and the window's values at that
stored row are checked against the stored ones first. The others (short series, history
rewritten from the start as a split adjustment does, or a failed check) are recomputed over
their whole history: read in one scan (a few scans only when they exceed :data:`READ_ROWS`),
grouped by symbol with a linear stable sort instead of a string sort, computed in slices of at
most :data:`KERNEL_ROWS` bars (the kernels' output block is recycled between slices). Either
way only each series' rows from its first changed bar on are kept. When the lake's file
statistics prove none of those rows is stored yet (the usual nightly case: one new bar per
series) they are appended without reading the stored indicators; otherwise they are diffed
against the stored rows from the earliest changed bar on and only rows that differ are merged.
One commit either way, carrying the compute watermark.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from marketlake.lake.runs import code_runs, sorted_distinct
from marketlake.lake.store import PUSHED_SYMBOLS, Lake
from marketlake.lake.tables import with_period
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.kept_states import ROWS, KeptStates, Tracker, column

READ_ROWS = 8_000_000  # bars read in one scan (7 columns: about 0.5 GB)
KERNEL_ROWS = 2_500_000  # bars per kernels call (its output block: ~40 float columns)
SEAM_ROWS = 200_000  # window bars per kernels call of a resume (see _from_seam)
# calendar time a window of bars spans, per bar: trading days (252 a year) and sessions
CALENDAR_DAILY = 1.5
CALENDAR_INTRADAY = 6.0
SEAM_TOL = 1e-9  # the kernels' parity tolerance (relative)
# a kernels call's fixed cost (planning, the symbol runs, session tables, the window's
# gather), in cells of bars x columns computed: about 5 ms
CALL_CELLS = 1_500_000
_BARS = ["symbol", "ts", "open", "high", "low", "close", "volume"]
_KEY = ["symbol", "timeframe", "ts"]


def increment(
    lake: Lake,
    version: int,
    tf: str,
    syms: list[str],
    indicators,
    columns: list[str],
    tz: dict[str, str],
    run_id: str,
    *,
    meta: dict[str, str] | None,
    computed_at: datetime,
    from_ts: dict[str, datetime],
    states: Tracker | None = None,
) -> dict[str, int]:
    """Recompute ``syms`` on ``tf`` (bars of ohlcv ``version``) and write the rows from each
    series' first changed bar (``from_ts``; a series without one is compared whole) that
    differ from the stored ones, in one commit; returns the counts. ``states``: the run's
    kept indicator states, continued from and updated after the commit."""
    from marketlake import kernels

    kept = states.start if states is not None else None
    parts, rest, new_states = _resumed(
        lake, version, tf, syms, indicators, columns, tz, from_ts, kept
    )

    def committed(res: dict[str, int]) -> dict[str, int]:
        """``res``, once its commit (or its lack of one) stands: the states follow its rows."""
        if states is not None:
            left = set(rest)
            floors = {s: _micros(from_ts[s]) for s in syms if s not in left}
            states.update(tf, syms, floors, new_states)
        return res

    for bars in _reads(lake, version, tf, rest, _bar_columns(indicators)):
        bars = _grouped(bars)
        for lo, hi in _slices(bars):
            part = bars.slice(lo, hi - lo)
            zones = {s: tz.get(s, "UTC") for s in part.get_column("symbol").unique().to_list()}
            out = kernels.compute(part, indicators, session_tz=zones)
            parts.append(_tail(out, from_ts, tf, columns))
            del out, part  # frees the output block for the next slice
    if not parts:
        return committed(_nothing(lake, meta, run_id))
    new = with_period(pl.concat(parts))
    if new.is_empty():
        return committed(_nothing(lake, meta, run_id))
    stamp = pl.lit(computed_at).cast(pl.Datetime("us", "UTC"))
    if not lake.may_overlap("indicators", new, tf):  # none stored yet: a blind append
        write = new.with_columns(stamp.alias("computed_at"), pl.lit(run_id).alias("run_id"))
        res = lake.upsert(
            "indicators", write, run_id=run_id, stage="compute", metadata=meta, assume_new=True
        )
        return committed(
            {"inserted": res.inserted, "updated": res.updated, "unchanged": res.unchanged}
        )
    old = lake.scan("indicators").filter(
        (pl.col("timeframe") == tf)
        & pl.col("symbol").is_in(syms)
        & (pl.col("ts") >= new.get_column("ts").min())
    )
    old = old.select([c for c in old.collect_schema().names() if c in (*_KEY, *columns)])
    from marketlake.pipeline.stages.compute import _diff

    j = _diff(new, old.collect(), columns)
    write = (
        j.filter(~pl.col("__same"))
        .select(new.columns)
        .with_columns(stamp.alias("computed_at"), pl.lit(run_id).alias("run_id"))
    )
    unchanged = j.height - write.height
    if write.is_empty():
        return committed(_nothing(lake, meta, run_id, unchanged))
    res = lake.upsert("indicators", write, run_id=run_id, stage="compute", metadata=meta)
    return committed(
        {"inserted": res.inserted, "updated": res.updated, "unchanged": unchanged + res.unchanged}
    )


def _resumed(
    lake: Lake,
    version: int,
    tf: str,
    syms: list[str],
    indicators,
    columns: list[str],
    tz: dict[str, str],
    from_ts: dict[str, datetime],
    kept: KeptStates | None = None,
) -> tuple[list[pl.DataFrame], list[str], list[pl.DataFrame]]:
    """The new rows of the series that resume from their stored rows (see
    :mod:`marketlake.kernels.resume`), the series to recompute whole, and the states to keep
    of the resumed ones (rows of :class:`~marketlake.pipeline.kept_states.KeptStates`).

    A series whose states ``kept`` holds at the row before its first changed bar continues
    RSI, MACD, ADX and Supertrend from them, so only the window of the other indicators is
    read (:func:`_resume`); the others resume over the window of all of them."""
    from marketlake.kernels import resume

    wanted = [s for s in syms if s in from_ts]
    parts: list[pl.DataFrame] = []
    states: list[pl.DataFrame] = []
    done: set[str] = set()
    if kept is not None and wanted and resume.stateful(indicators):
        have = kept.holding(tf, wanted)
        if have:
            p, d, st = _resume(lake, version, tf, have, indicators, columns, tz, from_ts, kept)
            parts, states, done = parts + p, states + st, done | d
    left = [s for s in wanted if s not in done]
    if left:
        p, d, st = _resume(lake, version, tf, left, indicators, columns, tz, from_ts, None)
        parts, states, done = parts + p, states + st, done | d
    return parts, [s for s in syms if s not in done], states


def _resume(
    lake: Lake,
    version: int,
    tf: str,
    wanted: list[str],
    indicators,
    columns: list[str],
    tz: dict[str, str],
    from_ts: dict[str, datetime],
    kept: KeptStates | None,
) -> tuple[list[pl.DataFrame], set[str], list[pl.DataFrame]]:
    """The new rows of the series of ``wanted`` that resume, those series, and their states
    to keep.

    Only the last :func:`~marketlake.kernels.resume.window` bars before each series' first
    changed bar are read, and each group of indicators (:func:`_groups`) is computed over the
    bars its memory needs; the seeded indicators then continue from the values stored at the
    row before that bar (the seam), and, with ``kept``, RSI, MACD, ADX and Supertrend from
    the states kept at the seam (without them they are windowed, and their states at each
    series' last rows are computed over the same windows). A series is recomputed whole
    instead when it has no first changed bar or fewer bars before it than the window (short
    series; history rewritten from the start, as an adjustment for a split does), when no
    state is kept at its seam (with ``kept``), or when the window's values at the seam
    differ from the stored ones beyond :data:`SEAM_TOL` (the stored rows are not what this
    computation continues)."""
    from marketlake.kernels import resume

    stateful = resume.stateful(indicators)
    fed_names = resume.SEEDED + (tuple(resume.STATEFUL) if kept is not None else ())
    sessions = 0
    if tfs.is_intraday(tf) and resume.sessions_needed(indicators):
        sessions = 3 * (timedelta(days=1) // tfs.DURATION[tf])
    groups = _groups(indicators, sessions, len(wanted), fed_names)
    width = max(w for _, w in groups)
    first = min(from_ts[s] for s in wanted)
    per_bar = CALENDAR_INTRADAY if tfs.is_intraday(tf) else CALENDAR_DAILY
    since = first - tfs.DURATION[tf] * math.ceil(width * per_bar) - timedelta(days=7)
    read = _bar_columns(indicators)
    bars = _scan_bars(lake, version, tf, wanted, pl.col("ts") >= since, read)
    if bars.is_empty():
        return [], set(), []
    # the windows are gathered from the read in (symbol, ts) order through ``order``: the
    # read itself is never put in that order (a gather of every column of every row)
    bars, order = _keyed(bars, sorted(wanted))
    names = bars.get_column("symbol").dtype.categories.to_list()
    codes = bars.get_column("symbol").to_physical().to_numpy()
    ts = bars.get_column("ts").dt.cast_time_unit("us").to_physical().to_numpy()
    if order is not None:
        codes, ts = codes[order], ts[order]
    bounds = np.searchsorted(codes, np.arange(len(names) + 1))
    floor = np.array([_micros(from_ts[n]) for n in names], dtype=np.int64)
    # each series' first row at or after its first changed bar (ts ascends within a series)
    pos = bounds[:-1] + np.add.reduceat((ts < floor[codes]).astype(np.int64), bounds[:-1])
    ok = np.flatnonzero((pos - bounds[:-1] >= width) & (pos < bounds[1:]))
    if ok.size == 0:
        return [], set(), []
    pos, end = pos[ok], bounds[1:][ok]
    done = [names[j] for j in ok]
    zones = {n: tz.get(n, "UTC") for n in done}
    # per group, its window's rows from the seam on: one seam row + the changed rows a series
    parts = [
        _from_seam(bars, order, pos, end, specs, w, zones, first=g == 0)
        for g, (specs, w) in enumerate(groups)
    ]
    out = pl.concat(parts, how="horizontal")
    lengths = end - pos + 1
    seam_rows = np.cumsum(lengths) - lengths
    seam = pl.DataFrame(
        {"symbol": done, "ts": ts[pos - 1]}, schema={"symbol": pl.String, "ts": pl.Int64}
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    stored = _stored_at(lake, tf, seam, columns)
    good = np.ones(ok.size, dtype=bool)
    fed = {s.columns[0]: s for s in resume.seeded(indicators)}
    carried = {c for s in stateful for c in s.columns} if kept is not None else set()
    for c in columns:
        if c not in stored.columns:
            return [], set(), []
        if c in carried:  # continued from its kept state (checked below)
            continue
        kept_values = stored.get_column(c).to_numpy()
        if c in fed:  # the seed: a stored value to continue from
            good &= np.isfinite(kept_values)
            continue
        at_seam = out.get_column(c).to_numpy()[seam_rows]
        rel = np.abs(at_seam - kept_values) / np.maximum(np.abs(kept_values), 1e-12)
        good &= (np.isnan(at_seam) == np.isnan(kept_values)) & (
            np.isnan(kept_values) | (rel <= SEAM_TOL)
        )
    seeds = {}
    if kept is not None:
        at_seam = kept.seeds(tf, done, ts[pos - 1])
        seeds = {spec: at_seam[str(spec)] for spec in stateful}
        for seed in seeds.values():
            good &= np.isfinite(seed).all(axis=1)
    if not good.any():
        return [], set(), []
    inputs = {
        c: np.array(out.get_column(c).cast(pl.Float64).to_numpy(), dtype=np.float64)
        for c in ("high", "low", "close", "volume")
        if c in out.columns
    }
    starts, stops = seam_rows[good] + 1, seam_rows[good] + lengths[good]
    for c, spec in fed.items():  # not computed over the windows: only continued
        values = np.full(out.height, np.nan)
        seed = np.ascontiguousarray(stored.get_column(c).to_numpy()[good], dtype=np.float64)
        resume.resume_into(spec, inputs, starts, stops, seed, values)
        out = out.with_columns(pl.Series(c, values))
    new_states: dict[str, np.ndarray] = {}
    for spec, seed in seeds.items():  # continued from their kept states
        values = {c: np.full(out.height, np.nan) for c in spec.columns}
        after = np.full((out.height, resume.width(spec)), np.nan)
        resume.continue_into(spec, inputs, starts, stops, seed[good], values, after)
        out = out.with_columns(pl.Series(c, v) for c, v in values.items())
        new_states[str(spec)] = after
    part = out[_spans(starts, stops - starts)].select(
        pl.col("symbol").cast(pl.String),
        pl.lit(tf).alias("timeframe"),
        "ts",
        *[pl.col(c).fill_nan(None) for c in columns],
    )
    resumed = [done[j] for j in np.flatnonzero(good)]
    if not stateful:
        states = []
    elif kept is not None:  # the states after each resumed series' last new rows
        n = np.minimum(stops - starts, ROWS)
        last = _spans(stops - n, n)
        out_ts = out.get_column("ts").dt.cast_time_unit("us").to_physical().to_numpy()
        states = [_states_frame(tf, resumed, n, out_ts[last], new_states, last)]
    else:  # the states after each series' last rows, over the windows of their groups
        states = [_window_states(tf, bars, order, pos[good], end[good], ts, resumed, groups)]
    return [part], set(resumed), states


def _spans(lo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The rows ``lo[j]:lo[j] + n[j]`` of each span, concatenated."""
    return np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))


def _states_frame(
    tf: str,
    symbols: list[str],
    n: np.ndarray,
    ts: np.ndarray,
    states: dict[str, np.ndarray],
    take: np.ndarray,
) -> pl.DataFrame:
    """Kept-state rows: ``n[j]`` of ``symbols[j]`` at ``ts``, the states of each spec (rows x
    width arrays) at rows ``take``."""
    cols = {
        "timeframe": pl.Series([tf], dtype=pl.String).gather(np.zeros(len(ts), np.int64)),
        "symbol": pl.Series(symbols, dtype=pl.String).gather(np.repeat(np.arange(len(n)), n)),
        "ts": pl.Series(ts, dtype=pl.Int64),
    }
    for spec, values in states.items():
        for k in range(values.shape[1]):
            cols[column(spec, k)] = pl.Series(np.ascontiguousarray(values[take, k]))
    return pl.DataFrame(cols)


def _window_states(
    tf: str,
    bars: pl.DataFrame,
    order: np.ndarray | None,
    pos: np.ndarray,
    end: np.ndarray,
    ts: np.ndarray,
    symbols: list[str],
    groups: list[tuple[list, int]],
) -> pl.DataFrame:
    """The states of the windowed RSI, MACD, ADX and Supertrend after the last :data:`ROWS`
    rows of each series (rows ``pos - w:end`` of ``bars`` in (symbol, ts) order, ``w`` the
    window of the indicator's group), computed over the same windows as their values."""
    from marketlake.kernels import resume

    def sorted_column(c: str) -> np.ndarray:
        values = bars.get_column(c).cast(pl.Float64).to_numpy()
        return np.array(values if order is None else values[order], dtype=np.float64)

    need = {c for specs, _ in groups for s in specs if s.name in resume.STATEFUL for c in s.inputs}
    cols = {c: sorted_column(c) for c in sorted(need)}
    n = np.minimum(end - pos + 1, ROWS)  # rows from the seam on: all within every window
    keep = end - n
    base = np.cumsum(n) - n
    states: dict[str, np.ndarray] = {}
    for specs, w in groups:
        for spec in specs:
            if spec.name in resume.STATEFUL:
                out = np.empty((int(n.sum()), resume.width(spec)), np.float64)
                resume.states_into(spec, cols, pos - w, end, keep, base, out)
                states[str(spec)] = out
    return _states_frame(tf, symbols, n, ts[_spans(keep, n)], states, np.arange(int(n.sum())))


def series_states(tf: str, bars: pl.DataFrame, specs: list) -> pl.DataFrame:
    """The states of ``specs`` (those of ``kernels.resume.stateful``) after the last
    :data:`ROWS` rows of each whole series of ``bars`` (sorted by symbol, ts): what a full
    recompute leaves for the next increment to continue from, each series computed from its
    first bar as the full pass computes it (the same seed and steps: the same state)."""
    from marketlake.kernels import resume

    if bars.is_empty() or not specs:
        return KeptStates({str(s): resume.width(s) for s in specs}).frame
    symbols = bars.get_column("symbol")
    codes = (
        symbols.to_physical()
        if isinstance(symbols.dtype, (pl.Enum, pl.Categorical))
        else symbols.rle_id()
    ).to_numpy()
    lo, lengths = code_runs(codes)
    hi = lo + lengths
    names = symbols.gather(lo).cast(pl.String).to_list()
    need = sorted({c for spec in specs for c in spec.inputs})
    # writable float64 copies: the kernels' signature (as the windows pass them)
    cols = {c: np.array(bars.get_column(c).cast(pl.Float64).to_numpy(), np.float64) for c in need}
    n = np.minimum(hi - lo, ROWS)
    keep = hi - n
    base = np.cumsum(n) - n
    states: dict[str, np.ndarray] = {}
    for spec in specs:
        out = np.empty((int(n.sum()), resume.width(spec)), np.float64)
        resume.states_into(spec, cols, lo, hi, keep, base, out)
        states[str(spec)] = out
    ts = bars.get_column("ts").dt.cast_time_unit("us").to_physical().to_numpy()
    return _states_frame(tf, names, n, ts[_spans(keep, n)], states, np.arange(int(n.sum())))


def _groups(
    indicators, sessions: int, series: int = 1, fed: tuple[str, ...] | None = None
) -> list[tuple[list, int]]:
    """The indicators in groups, each computed over a window of its longest memory (plus
    ``sessions`` bars for intraday session indicators, plus the seam bar), longest first,
    with that window in bars. The split is the cheapest for ``series`` series: a call's cost
    grows with its window x (its output columns + the bar columns gathered), plus a fixed
    cost per call
    (:data:`CALL_CELLS`); its output block is fresh memory to fault in, so a short group of
    many columns (pivots, Fibonacci levels) is best not computed over MACD's or RSI's
    window. Indicators continued from a stored value or state (``fed``, by default the
    seeded ones) are in none; without others, one group of no indicator over the seam bar."""
    from marketlake.kernels import registry, resume

    fed = resume.SEEDED if fed is None else fed
    specs = [s for s in registry.resolve(indicators) if s.name not in fed]
    if not specs:
        return [([], 1)]
    # one bar more than the memory: the seam row's own value is checked against the stored
    # one, and it needs as many bars before it as the first new row does
    need = {s: resume.memory(s) + sessions + 1 for s in specs}
    specs.sort(key=lambda s: -need[s])  # stable: ties keep the caller's order
    n = len(specs)
    # best[i], cut[i]: the cheapest split of specs[i:] into runs, the end of its first run
    best, cut = [0.0] * (n + 1), [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i] = math.inf
        cols = 0
        for j in range(i, n):
            cols += len(specs[j].columns)
            cost = series * (need[specs[i]] + 1) * (cols + len(_BARS) - 1) + CALL_CELLS
            if cost + best[j + 1] < best[i]:
                best[i], cut[i] = cost + best[j + 1], j + 1
    groups, i = [], 0
    while i < n:
        groups.append((specs[i : cut[i]], need[specs[i]]))
        i = cut[i]
    return groups


def _from_seam(
    bars: pl.DataFrame,
    order: np.ndarray | None,
    pos: np.ndarray,
    end: np.ndarray,
    specs: list,
    width: int,
    zones: dict[str, str],
    *,
    first: bool,
) -> pl.DataFrame:
    """``specs`` computed over the ``width`` bars before each series' row ``pos`` and its rows
    up to ``end`` (rows of ``bars`` in (symbol, ts) order: ``bars[order]``, or ``bars`` when
    ``order`` is None); returned from the row before ``pos`` (the seam) on, with the bars'
    columns when ``first``.

    The series go to the kernels in chunks of about :data:`SEAM_ROWS` window bars: each
    call's output block is recycled by the next (``kernels.adapter.POOL``), where one call
    over every window faults in a block of the whole (2,600 series x 664 bars x 10 columns:
    138 MB, about 0.4 s of CPU to zero) only to keep one row in 665."""
    from marketlake import kernels

    lengths = end - pos + width
    names = [c for s in specs for c in s.columns]
    parts = []
    for lo, hi in _chunks(lengths, SEAM_ROWS):
        size = lengths[lo:hi]
        rows = _spans(pos[lo:hi] - width, size)
        out = kernels.compute(bars[rows if order is None else order[rows]], specs, session_tz=zones)
        tail = end[lo:hi] - pos[lo:hi] + 1
        # a copy: frees the block for the next chunk
        out = out[_spans(np.cumsum(size) - tail, tail)]
        parts.append(out if first else out.select(names))
    return parts[0] if len(parts) == 1 else pl.concat(parts, rechunk=True)


def _chunks(lengths: np.ndarray, most: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) ranges of ``lengths``, each summing to at most ``most`` (or one
    longer item alone), cut greedily."""
    ends = np.cumsum(lengths)
    out, lo, n = [], 0, lengths.shape[0]
    while lo < n:
        done = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, done + most, "right")))
        out.append((lo, hi))
        lo = hi
    return out


def _stored_at(lake: Lake, tf: str, seam: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The stored indicator values at ``seam``'s (symbol, ts) rows, in its order (null where
    no row is stored)."""
    stored = lake.scan("indicators")
    names = set(stored.collect_schema().names())  # once: each call resolves the scan's schema
    have = [c for c in columns if c in names]
    lo, hi = seam.get_column("ts").min(), seam.get_column("ts").max()
    stored = (
        stored.filter(
            (pl.col("timeframe") == tf)
            & pl.col("symbol").is_in(seam.get_column("symbol").implode())
            & pl.col("ts").is_between(lo, hi)
        )
        .select("symbol", "ts", *have)
        .collect()
    )
    return seam.join(stored, on=["symbol", "ts"], how="left", maintain_order="left")


def _nothing(lake: Lake, meta, run_id: str, unchanged: int = 0) -> dict[str, int]:
    if meta:
        lake.mark("indicators", run_id=run_id, stage="compute", metadata=meta)
    return {"inserted": 0, "updated": 0, "unchanged": unchanged}


def _reads(
    lake: Lake, version: int, tf: str, syms: list[str], columns: list[str] = _BARS
) -> Iterator[pl.DataFrame]:
    """The ``columns`` of the bars of ``syms`` on ``tf``: one scan when the timeframe's files
    hold at most :data:`READ_ROWS` rows (their log statistics tell), else symbol batches of
    about that."""
    if not syms:  # every series resumed
        return
    series = lake.scan("ohlcv", version=version)
    wanted = (pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms)
    if _stored_rows(lake, version, tf) <= READ_ROWS:
        yield _scan_bars(lake, version, tf, syms, columns=columns)
        return
    counts = dict(series.filter(wanted).group_by("symbol").len().collect().iter_rows())
    batch: list[str] = []
    rows = 0
    for s in syms:
        if batch and rows + counts.get(s, 0) > READ_ROWS:
            yield (
                series.filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(batch))
                .select(columns)
                .collect()
            )
            batch, rows = [], 0
        batch.append(s)
        rows += counts.get(s, 0)
    if batch:
        yield (
            series.filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(batch))
            .select(columns)
            .collect()
        )


def _scan_bars(
    lake: Lake,
    version: int,
    tf: str,
    syms: list[str],
    where: pl.Expr | None = None,
    columns: list[str] = _BARS,
) -> pl.DataFrame:
    """The ``columns`` of the bars of ``syms`` on ``tf`` (and ``where``). A long symbol list
    is applied after the read: pushed into the scan, it becomes one pyarrow expression of
    thousands of terms, slower than reading the timeframe's other symbols too."""
    pred = pl.col("timeframe") == tf
    if where is not None:
        pred = pred & where
    if len(syms) <= PUSHED_SYMBOLS:
        pred = pred & pl.col("symbol").is_in(syms)
        return lake.scan("ohlcv", version=version).filter(pred).select(columns).collect()
    # symbol (and timeframe) read as dictionaries: a string per page, not per row
    bars = lake.scan("ohlcv", version=version, dictionary=("symbol", "timeframe"))
    return bars.filter(pred).select(columns).collect().filter(pl.col("symbol").is_in(syms))


def _stored_rows(lake: Lake, version: int, tf: str | None = None) -> int:
    """Rows in the files of ``tf`` (None: of every timeframe) from the Delta log's
    statistics, no data read; more than :data:`READ_ROWS` when the log cannot tell."""
    dt = lake.table("ohlcv", version)
    if dt is None:
        return 0
    files = pl.DataFrame(dt.get_add_actions(flatten=True))  # pa.table would import pandas
    if "partition.timeframe" not in files.columns or "num_records" not in files.columns:
        return READ_ROWS + 1  # cannot tell: read in batches
    if tf is not None:
        files = files.filter(pl.col("partition.timeframe") == tf)
    return int(files.get_column("num_records").sum() or 0)


def _grouped(bars: pl.DataFrame) -> pl.DataFrame:
    """``bars`` sorted by (symbol, ts), ``symbol`` (String or Categorical) as an Enum of the
    sorted symbols (gathering codes is far cheaper than gathering strings)."""
    if bars.height == 0:
        return bars.with_columns(pl.col("symbol").cast(pl.String))
    bars, order = _keyed(bars)
    return bars if order is None else bars[order]


def _keyed(
    bars: pl.DataFrame, names: list[str] | None = None
) -> tuple[pl.DataFrame, np.ndarray | None]:
    """``bars`` (not empty) in one chunk with ``symbol`` as an Enum of the sorted symbols
    (:func:`symbol_enum`), and the order of its rows by (symbol, ts) (None: already so).
    One chunk: polars gathers from a read's many chunks at a tenth of the speed."""
    bars = symbol_enum(bars, names)
    codes = bars.get_column("symbol").to_physical().to_numpy()
    ts = bars.get_column("ts").to_physical().to_numpy()
    return bars.rechunk(), _key_order(codes, ts)


def _bar_columns(indicators) -> list[str]:
    """The bar columns a read for ``indicators`` needs: ``symbol``, ``ts`` and their inputs
    (none of the defaults reads ``open``)."""
    from marketlake.kernels.registry import resolve

    need = {c for spec in resolve(indicators) for c in spec.inputs}
    return [c for c in _BARS if c in ("symbol", "ts") or c in need]


# polars 2 makes a Categorical or Enum column of its codes (``cat.to``); with an older one
# the columns are cast from their text instead
FROM_CODES = hasattr(type(pl.Series(dtype=pl.Categorical).cat), "to")


def symbol_enum(bars: pl.DataFrame, names: list[str] | None = None) -> pl.DataFrame:
    """``bars`` with ``symbol`` (String or Categorical) as an Enum of its sorted names (or of
    ``names``, sorted and holding every symbol of ``bars``: no pass over the rows to find
    them): sorts, gathers and splits into series then work on integer codes in the symbols'
    order."""
    col = bars.get_column("symbol")
    if FROM_CODES and isinstance(col.dtype, pl.Categorical) and col.len() and not col.null_count():
        recoded = _recoded(col, names)
        if recoded is not None:
            return bars.with_columns(recoded)
    if names is None:
        names = col.unique().cast(pl.String).sort().to_list()
    return bars.with_columns(pl.col("symbol").cast(pl.Enum(names)))


def _recoded(col: pl.Series, names: list[str] | None) -> pl.Series | None:
    """The Categorical ``col`` as an Enum of its sorted names (or of ``names``) by renumbering
    its codes: the few distinct codes are looked up and ranked, then every row's code is
    mapped run by run (:func:`~marketlake.lake.runs.code_runs`; a cast instead goes through
    each row's text); None when a name is missing from ``names`` (the cast then says which)."""
    ids = col.to_physical().to_numpy()
    starts, lengths = code_runs(ids)
    firsts = ids[starts]
    present = sorted_distinct(firsts)
    labels = pl.Series(present).cat.to(col.dtype).cast(pl.String).to_list()
    if names is None:
        names = sorted(labels)
    rank = {name: i for i, name in enumerate(names)}
    enum = pl.Enum(names)
    kind = pl.Series(dtype=enum).to_physical().to_numpy().dtype  # uint8/16/32 by size
    remap = np.zeros(int(present[-1]) + 1, kind)
    for code, label in zip(present, labels, strict=True):
        if label not in rank:
            return None
        remap[code] = rank[label]
    # each run's new code repeated: no pass indexing every row's code into the table
    return pl.Series(col.name, np.repeat(remap[firsts], lengths)).cat.to(enum)


def _key_order(codes: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """The order sorting rows by (code, ts) stably, None when they already are.

    A lake read is a few pieces (one per file) each sorted by (symbol, ts): its runs (the
    rows of one code in one piece, ts ascending) are ordered by (code, first ts) and taken
    whole, a sort of a few thousand runs instead of every row (2-5x cheaper than sorting a
    packed key). When runs of one code overlap in ts, every row is sorted
    (:func:`_sorted_key_order`)."""
    n = codes.shape[0]
    cut = np.flatnonzero((codes[1:] != codes[:-1]) | (ts[1:] <= ts[:-1])) + 1
    if cut.size == 0:
        return None
    starts = np.concatenate((np.zeros(1, np.int64), cut))
    lengths = np.diff(np.append(starts, n))
    runs = np.lexsort((ts[starts], codes[starts]))
    code, first, last = codes[starts][runs], ts[starts][runs], ts[starts + lengths - 1][runs]
    if ((code[1:] == code[:-1]) & (first[1:] <= last[:-1])).any():
        return _sorted_key_order(codes, ts)
    if (runs[1:] > runs[:-1]).all():
        return None
    return _spans(starts[runs], lengths[runs])


def _sorted_key_order(codes: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """:func:`_key_order` by sorting every row: (code, ts) packed into one int64 key when
    they fit, sorted stable (runs a merge sort takes whole; 4x faster than a lexsort, whose
    order is taken when the key does not fit)."""
    lo = int(ts.min())
    bits = (int(ts.max()) - lo).bit_length()
    if int(codes.max()).bit_length() + bits > 62:
        return np.lexsort((ts, codes))
    key = (codes.astype(np.int64) << bits) | (ts - lo)
    if (key[1:] >= key[:-1]).all():
        return None
    return np.argsort(key, kind="stable")


def _slices(bars: pl.DataFrame) -> list[tuple[int, int]]:
    """[lo, hi) row ranges of at most :data:`KERNEL_ROWS` bars (or one whole series) that
    never split a series (``bars`` grouped by symbol)."""
    runs = bars.select(pl.col("symbol").rle()).unnest("symbol").get_column("len").to_numpy()
    ends = np.cumsum(runs)
    out, lo = [], 0
    while lo < bars.height:
        i = int(np.searchsorted(ends, lo + KERNEL_ROWS, "right"))
        hi = (
            int(ends[i - 1])
            if i and ends[i - 1] > lo
            else int(ends[np.searchsorted(ends, lo, "right")])
        )
        out.append((lo, hi))
        lo = hi
    return out


def _tail(
    out: pl.DataFrame, starts: dict[str, datetime], tf: str, columns: list[str]
) -> pl.DataFrame:
    """The rows of each series from its first changed bar on (all rows of a series without
    one), as indicator rows (warm-up values null)."""
    sym = out.get_column("symbol")
    names = sym.dtype.categories.to_list()
    floor = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
    for i, name in enumerate(names):
        if name in starts:
            floor[i] = _micros(starts[name])
    ts = out.get_column("ts").dt.cast_time_unit("us").to_physical().to_numpy()
    keep = ts >= floor[sym.to_physical().to_numpy()]
    return out.filter(pl.Series(keep)).select(
        pl.col("symbol").cast(pl.String),
        pl.lit(tf).alias("timeframe"),
        "ts",
        *[pl.col(c).fill_nan(None) for c in columns],
    )


def _micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond

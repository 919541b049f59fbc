"""The compute stage: indicators for every series whose bars changed since the last compute.

Changed (symbol, timeframe) pairs come from the lake's own history: the change data feed of
``ohlcv`` since the version recorded by the last complete compute (kept in the ``indicators``
commit metadata, so the watermark lands atomically with the data). Those series are resumed
from their stored rows or recomputed whole in one read and one commit per timeframe
(:mod:`.compute_increment`): the rows from each series' first changed bar are appended when
the lake's statistics prove them new, else diffed against the stored rows and only rows that
changed are merged. A full recompute (``--full``, the first compute, or any run whose series
cover every stored series of a timeframe) instead rewrites the timeframe's partitions: batches
of series stream into new files and one commit swaps them for the old ones, far cheaper than
MERGEing millions of changed rows; indicator columns not computed in the run are carried over
from the stored rows, and when nothing differs nothing is committed. A re-run changes 0 rows.
Warm-up values are stored as nulls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

from marketlake.errors import ConfigError, LakeCorruptError, LakeError
from marketlake.lake.runs import code_counts, code_runs, sorted_distinct
from marketlake.lake.store import PUSHED_SYMBOLS, Lake
from marketlake.lake.tables import with_period, with_period_code
from marketlake.pipeline import kept_states
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import Settings
from marketlake.pipeline.runs import StageResult, Stopwatch, TaskLog, exclusive, new_run_id
from marketlake.pipeline.stages.compute_increment import (
    FROM_CODES,
    _stored_rows,
    increment,
    series_states,
    symbol_enum,
)
from marketlake.pipeline.stages.compute_layout import new_files

log = logging.getLogger("marketlake.compute")

WATERMARK = "compute_ohlcv_version"
BATCH_SYMBOLS = 400
# bars per batch of a rewrite (memory: ~40 output columns each); batch k is written while
# k+1 computes, and 1M-bar batches finished 2,000 x 2,520 bars in 2.0 s against 3.8 s with
# 2.5M (medians of 5, interleaved): a shorter last write, a smaller working set
BATCH_ROWS = 1_000_000
READ_ONCE_ROWS = 10_000_000  # a rewrite reads and sorts up to this many bars at once
BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
KEY = ["symbol", "timeframe", "ts"]


def last_watermark(lake: Lake) -> int | None:
    """The ohlcv version the last complete compute saw, from the indicators' commit log."""
    for entry in lake.history("indicators"):
        if WATERMARK in entry:
            return int(entry[WATERMARK])
    return None


def changed_series(lake: Lake, since: int | None, upto: int) -> pl.DataFrame | None:
    """(symbol, timeframe, from_ts) of the series whose bars changed in ohlcv versions
    (since, upto], ``from_ts`` their earliest changed bar; None when the history cannot tell
    (no watermark, or the change feed was vacuumed)."""
    empty = pl.DataFrame(
        schema={"symbol": pl.String, "timeframe": pl.String, "from_ts": pl.Datetime("us", "UTC")}
    )
    if since is None:
        return None
    if since >= upto:
        return empty
    try:
        cdf = lake.changes("ohlcv", since + 1, upto)
    except Exception:  # change feed files vacuumed or unreadable: fall back to everything
        return None
    if cdf.is_empty():
        return empty
    return cdf.group_by("symbol", "timeframe").agg(
        pl.col("ts").min().cast(pl.Datetime("us", "UTC")).alias("from_ts")
    )


def _preload_kernels(lake, version: int) -> None:
    """Start loading numba's kernels beside a full run's read when its calls are larger than
    the kernels compiled ahead of time take (``kernels.aot``): the Delta log's row counts
    tell, without reading data."""
    from marketlake import kernels
    from marketlake.kernels import aot

    if _stored_rows(lake, version) > aot.SERIAL_ROWS or not aot.built():
        kernels.preload()


def _tracker(lake: Lake, indicators, resumes: bool) -> kept_states.Tracker | None:
    """The run's kept indicator states (:mod:`marketlake.pipeline.kept_states`), None when
    ``indicators`` has none that are kept; those kept before are read only when the run
    ``resumes`` series (it has each series' first changed bar)."""
    from marketlake.kernels import resume

    specs = {str(s): resume.width(s) for s in resume.stateful(indicators)}
    if not specs:
        return None
    return kept_states.Tracker(specs, kept_states.load(lake, specs) if resumes else None)


def begin(settings: Settings, indicators, timeframes, run_id: str | None, trigger: str):
    """What every compute run starts from: the lake, its run id and task log, the output
    columns, the checked timeframes and the ohlcv version it computes up to (None: no bars).
    Shared by the single-process and the cluster compute."""
    from marketlake import kernels

    lake = settings.open_lake()
    run_id = run_id or new_run_id(settings.clock())
    log = TaskLog(run_id, "compute", trigger, settings.secrets(), clock=settings.clock)
    try:
        columns = kernels.output_columns(indicators)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if timeframes:
        timeframes = list(tfs.check(timeframes))
    return lake, run_id, log, columns, timeframes, lake.version("ohlcv")


@exclusive("compute")
def run_compute(
    settings: Settings,
    *,
    indicators: list[str] | None = None,
    timeframes: list[str] | None = None,
    symbols: list[str] | None = None,
    full: bool = False,
    progress: Callable[..., None] | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
) -> StageResult:
    """Recompute indicators where bars changed and merge the rows that differ (under the
    lake's writer lock)."""

    progress = progress or (lambda *a, **k: None)
    watch = Stopwatch()
    lake, run_id, log, columns, timeframes, upto = begin(
        settings, indicators, timeframes, run_id, trigger
    )
    if upto is None:
        return StageResult(run_id, "compute", duration_seconds=watch.elapsed)
    since = None if (full or symbols or timeframes or indicators) else last_watermark(lake)
    todo = changed_series(lake, since, upto)

    @cache
    def coded() -> pl.LazyFrame:
        """The bars a full read or a rewrite scans (an increment reads its own), symbol and
        timeframe as dictionaries: decoded once per page, sorted and split into series by
        code (a third of the cost of reading them as strings)."""
        return lake.scan("ohlcv", version=upto, dictionary=("symbol", "timeframe"))

    every = False  # whether each timeframe's series are all the scan holds
    if todo is None:
        every = not symbols
        _preload_kernels(lake, upto)
        todo = _all_series(lake, upto, coded)
    if timeframes:
        todo = todo.filter(pl.col("timeframe").is_in(timeframes))
    if symbols:
        todo = todo.filter(pl.col("symbol").is_in(symbols))
    todo = todo.sort("timeframe", "symbol")
    # from whole columns (rows as Python tuples cost about 10 ms per 2,600 series)
    inst = lake.read("instruments")
    tz = {
        s: z or "UTC"
        for s, z in zip(
            inst.get_column("symbol").to_list(), inst.get_column("timezone").to_list(), strict=True
        )
    }
    totals = {"inserted": 0, "updated": 0, "unchanged": 0}
    ok = failed = 0
    errors: list[str] = []
    progress("start", total=todo.height)
    # indicators are causal: rows before a series' first changed bar cannot change
    since_ts = (
        dict(
            zip(
                zip(
                    todo.get_column("symbol").to_list(),
                    todo.get_column("timeframe").to_list(),
                    strict=True,
                ),
                todo.get_column("from_ts").to_list(),
                strict=True,
            )
        )
        if "from_ts" in todo.columns
        else {}
    )
    groups = todo.group_by("timeframe", maintain_order=True).agg(pl.col("symbol"))
    states = _tracker(lake, indicators, resumes=bool(since_ts))
    rewrite = {tf: since is None and _covers(lake, tf, syms) for tf, syms in groups.iter_rows()}
    # one unit of work per timeframe: a rewrite, or an increment of its changed series
    units = list(groups.iter_rows())
    for n, (tf, syms) in enumerate(units):
        started = settings.clock()
        meta = {WATERMARK: str(upto)} if n == len(units) - 1 else None
        try:
            if rewrite[tf]:
                res = _rewrite(
                    lake,
                    coded(),  # built above: a rewrite reads everything (no watermark)
                    tf,
                    syms,
                    indicators,
                    columns,
                    tz,
                    run_id,
                    meta=meta,
                    computed_at=settings.clock(),
                    progress=progress,
                    every=every,
                    states=states,
                )
            else:
                res = increment(
                    lake,
                    upto,
                    tf,
                    syms,
                    indicators,
                    columns,
                    tz,
                    run_id,
                    meta=meta,
                    computed_at=settings.clock(),
                    from_ts={s: since_ts[(s, tf)] for s in syms if (s, tf) in since_ts},
                    states=states,
                )
                progress("advance", advance=len(syms), symbol=f"{tf}", rows=0)
            for k in totals:
                totals[k] += res[k]
            ok += len(syms)
            log.add(
                f"compute:{tf}:{len(syms)} symbols",
                status="success",
                rows_updated=res["inserted"] + res["updated"] + res.get("deleted", 0),
                started_at=started,
                metadata={"symbols": len(syms), **res},
            )
        except LakeCorruptError:
            raise  # a damaged data file stops the stage with one line naming it
        except (LakeError, ValueError) as exc:
            failed += len(syms)
            errors.append(f"{tf} {syms[0]}..: {exc}")
            log.add(
                f"compute:{tf}:{len(syms)} symbols",
                status="failed",
                error=str(exc),
                started_at=started,
            )
            if rewrite[tf]:
                progress("advance", advance=0, symbol=f"{tf}", rows=0)
    if not units and since is not None and since < upto and not failed:
        lake.mark("indicators", run_id=run_id, stage="compute", metadata={WATERMARK: str(upto)})
    if states is not None:  # after the run's last commit to indicators, for its version
        if failed or states.broken:  # a failure may follow a commit: they cannot vouch
            kept_states.forget(lake)
        else:
            kept_states.save(lake, states.now)
    log.flush(lake)
    return StageResult(
        run_id,
        "compute",
        tasks_ok=ok,
        tasks_failed=failed,
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
        details={"ohlcv_version": upto, "series": todo.height},
        **totals,
    )


def _all_series(lake: Lake, version: int, coded: Callable[[], pl.LazyFrame]) -> pl.DataFrame:
    """(symbol, timeframe) of every series of ``ohlcv`` at ``version``, as text: listed from
    each data file's symbol dictionary (``Lake.distinct``), else from the dictionary scan
    ``coded()`` (:func:`_scanned_series`)."""
    listed = lake.distinct("ohlcv", "symbol", "timeframe", version)
    if listed is not None:
        return listed.select("symbol", "timeframe")
    return _scanned_series(coded())


def _scanned_series(coded: pl.LazyFrame) -> pl.DataFrame:
    """(symbol, timeframe) of every series of the dictionary scan ``coded``, as text: each
    timeframe's symbol codes listed run by run (``lake.runs.code_runs``)."""
    keys = coded.select("symbol", "timeframe").collect()
    if not FROM_CODES or keys.is_empty() or keys.null_count().sum_horizontal().item():
        return keys.unique().select(pl.col("symbol", "timeframe").cast(pl.String))
    sym, tf = (keys.get_column(c).to_physical() for c in ("symbol", "timeframe"))
    codes, timeframes, frames = sym.to_numpy(), tf.unique(), []
    for t in timeframes:
        mine = codes if timeframes.len() == 1 else codes[(tf == t).to_numpy()]
        held = sorted_distinct(mine[code_runs(mine)[0]])
        names = pl.Series("symbol", held).cat.to(keys.schema["symbol"])
        frames.append(pl.DataFrame([names]).with_columns(timeframe=pl.lit(t, tf.dtype)))
    return pl.concat(frames).with_columns(
        pl.col("symbol").cast(pl.String),
        pl.col("timeframe").cat.to(keys.schema["timeframe"]).cast(pl.String),
    )


def _covers(lake: Lake, tf: str, syms: list[str]) -> bool:
    """Whether ``syms`` include every series of ``tf`` that has stored indicators (then the
    timeframe's partitions can be rewritten whole)."""
    stored = (
        lake.scan("indicators", dictionary=("symbol",))
        .filter(pl.col("timeframe") == tf)
        .select(pl.col("symbol").unique())
        .collect()
        .get_column("symbol")
        .cast(pl.String)
    )
    return bool(stored.is_in(syms).all())


def _indicators(
    series: pl.LazyFrame, tf: str, syms: list[str], indicators, columns, tz: dict[str, str]
) -> pl.DataFrame:
    """The indicator rows of ``syms`` on ``tf`` (warm-up values null), with ``period``."""
    bars = _bars(series, tf, syms)
    return _computed(bars, tf, syms, indicators, columns, tz)


def _computed(
    bars: pl.DataFrame,
    tf: str,
    syms: list[str],
    indicators,
    columns,
    tz: dict[str, str],
    *,
    period_code: bool = False,
) -> pl.DataFrame:
    """The indicator rows of ``bars`` (warm-up values null) with ``period``, or with the
    integer ``_pcode`` of the period (``period_code``: no per-row strings, for rewrites)."""
    from marketlake import kernels

    out = kernels.compute(bars, indicators, session_tz={s: tz.get(s, "UTC") for s in syms})
    out = out.select(
        pl.col("symbol").cast(pl.String),
        pl.lit(tf).alias("timeframe"),
        "ts",
        *[pl.col(c).fill_nan(None) for c in columns],
    )
    return with_period_code(out, tf) if period_code else with_period(out)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (symbol, ts); stored rows, read file after file, are sorted pieces
    that are gathered rather than sorted in full (:func:`~marketlake.kernels.adapter.sort_order`)."""
    from marketlake.kernels.adapter import sort_order

    order = sort_order(frame)
    return frame if order is None else frame[order]


def _unchanged(lake: Lake, tf: str, part: list[str], new: pl.DataFrame, columns: list[str]) -> bool:
    """Whether the stored rows of ``part`` on ``tf`` equal ``new`` (sorted by symbol, ts):
    the same keys and every computed column equal (nulls alike), i.e. what ``_diff`` would
    call unchanged throughout. The stored rows stream in file by file, in record batches,
    each compared with the rows of ``new`` it keys to (found by each symbol run's first ts),
    so no table of stored rows is built (on a no-change re-run memory stays flat); stops at
    the first difference, and at once when a computed column is not stored yet."""
    from marketlake.kernels.adapter import _readonly, _runs, _timestamps
    from marketlake.kernels.driver import run_gather_index, same_runs

    checked = lake.dataset("indicators")
    if checked is None or new.is_empty():
        return False
    if any(c not in checked.schema.names for c in columns):
        return False
    # only here: pyarrow's dataset module and its expressions import pandas (0.3-0.5 s of a
    # fresh process), which a first compute has no use for
    import pyarrow.dataset as pds

    ts_new = _timestamps(new)
    offsets, _ = _runs(new, ts_new)
    firsts = new.get_column("symbol").gather(offsets[:-1]).to_list()
    where = {sym: (int(offsets[i]), int(offsets[i + 1])) for i, sym in enumerate(firsts)}
    covered = np.zeros(new.height, np.bool_)
    values = {c: _float_buffers(new.get_column(c).to_arrow()) for c in columns}
    span = (
        (pds.field("timeframe") == tf)
        & (pds.field("symbol") >= min(part))
        & (pds.field("symbol") <= max(part))
    )
    for batch in checked.to_batches(
        columns=["symbol", "ts", *columns], filter=span, batch_size=1 << 17
    ):
        old = pl.from_arrow(batch)
        if old.is_empty():
            continue
        ts_old = _timestamps(old)
        runs, ascending = _runs(old, ts_old)
        if not ascending:
            return False
        starts = np.empty(runs.shape[0] - 1, np.int64)
        for r, sym in enumerate(old.get_column("symbol").gather(runs[:-1]).to_list()):
            if sym not in where:  # a stored series this run does not have: deleted
                return False
            a, b = where[sym]
            starts[r] = a + np.searchsorted(ts_new[a:b], ts_old[runs[r]])
            if starts[r] + runs[r + 1] - runs[r] > b:
                return False
        # read-only, as the build-time cache compiled it (writable ones compile again)
        idx = run_gather_index(_readonly(starts), _readonly(np.diff(runs)))
        if not np.array_equal(ts_new[idx], ts_old) or covered[idx].any():
            return False
        covered[idx] = True
        for c in columns:  # stored runs against the computed rows they key to, in place
            if not same_runs(*values[c], *_float_buffers(batch.column(c)), starts, runs):
                return False
    return bool(covered.all())


def _float_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """A float64 Arrow array's values (zero-copy), its validity bitmap (empty: no nulls) and
    the bitmap's first bit."""
    if arr.type != pa.float64():
        arr = arr.cast(pa.float64())
    bits, data = arr.buffers()[:2]
    if data is None:  # a column an older file lacks, read as nulls
        return np.zeros(len(arr)), np.zeros((len(arr) + 7) // 8, np.uint8), 0
    values = np.frombuffer(data, np.float64)[arr.offset : arr.offset + len(arr)]
    if arr.null_count == 0:
        return values, np.zeros(0, np.uint8), 0
    if bits is None:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return values, np.packbits(valid, bitorder="little"), 0
    return values, np.frombuffer(bits, np.uint8), arr.offset


def _diff(new: pl.DataFrame, old: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``new`` joined with the stored rows: ``__exists`` and ``__same`` per row, the stored
    values of computed columns as ``<column>__old`` and of the other columns as they are."""
    have = [c for c in columns if c in old.columns]
    keep = [c for c in old.columns if c not in columns and c not in KEY and c != "period"]
    old = old.select(
        *KEY, *keep, *[pl.col(c).alias(f"{c}__old") for c in have], pl.lit(True).alias("__exists")
    )
    old = _sorted(old)
    if old.height == new.height and all(
        old.get_column(k).equals(new.get_column(k)) for k in ("symbol", "ts")
    ):  # the same rows in the same order (re-runs, new columns): no join needed
        j = pl.concat([new, old.drop(KEY)], how="horizontal")
    else:
        j = new.join(old, on=KEY, how="left").with_columns(pl.col("__exists").fill_null(False))
    same = pl.col("__exists") & pl.all_horizontal(
        [
            pl.col(c).eq_missing(pl.col(f"{c}__old")) if c in have else pl.col(c).is_null()
            for c in columns
        ]
    )
    return j.with_columns(same.alias("__same"))


def _rewrite(
    lake: Lake,
    series: pl.LazyFrame,
    tf: str,
    syms: list[str],
    indicators,
    columns,
    tz: dict[str, str],
    run_id: str,
    *,
    meta: dict[str, str] | None,
    computed_at: datetime,
    progress: Callable[..., None],
    every: bool = False,
    states: kept_states.Tracker | None = None,
) -> dict[str, int]:
    """Recompute every series of ``tf`` in batches and swap the timeframe's partitions for the
    result in one commit; unchanged rows keep their ``computed_at`` and ``run_id``, stored
    indicator columns this run does not compute are carried over. Nothing is written nor
    committed (only ``meta``, if given) when no row differs: batches are only diffed until
    the first that differs, and the unchanged ones before it are then recomputed and written
    (the swap replaces their files too). Batch k is written while batch k+1 computes (the
    kernels and pyarrow's writer release the GIL). ``states``: the run's kept states, whose
    states of ``tf`` become those of the recomputed series (the next increment continues
    from them, :mod:`marketlake.pipeline.kept_states`)."""
    from marketlake.kernels import resume

    counts = {"inserted": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    kept: list[pl.DataFrame] | None = [] if states is not None else None
    stateful = resume.stateful(indicators)

    def keep(bars: pl.DataFrame) -> None:
        """The batch's series' last states, for the next increment (never fails the run)."""
        nonlocal kept
        if kept is None:
            return
        try:
            kept.append(series_states(tf, bars, stateful))
        except Exception as exc:  # noqa: BLE001 - a cache: the next increment uses windows
            log.warning("could not keep the indicator states of %s: %s", tf, exc)
            kept = None

    stored = lake.scan("indicators").filter(pl.col("timeframe") == tf)
    other = [
        c
        for c in stored.collect_schema().names()
        if c not in (*KEY, "period", "computed_at", "run_id", *columns)
    ]
    stamp = pl.lit(computed_at).cast(pl.Datetime("us", "UTC"))

    def batch(
        part: list[str], bars: pl.DataFrame, check: bool = True
    ) -> tuple[dict[str, int], Callable]:
        """The batch's counts and a function building its rows to write; ``check``: first
        check, streaming, whether the stored rows are all the same (cheaper than diffing)."""
        new = _computed(bars, tf, part, indicators, columns, tz, period_code=True)
        # the range lets the read skip files of other batches (their symbol statistics)
        span = (pl.col("symbol") >= min(part)) & (pl.col("symbol") <= max(part))
        read = stored.filter(span).filter(pl.col("symbol").is_in(part))
        if check and _unchanged(lake, tf, part, new, columns):  # a re-run: nothing to write,
            got = {"inserted": 0, "updated": 0, "unchanged": new.height, "deleted": 0}
            return got, lambda: stamped(_diff(new, read.collect(), columns))  # unless later
        old = read.collect()
        if old.is_empty():
            got = {"inserted": new.height, "updated": 0, "unchanged": 0, "deleted": 0}
            return got, lambda: new.with_columns(
                *[pl.lit(None, pl.Float64).alias(c) for c in other],
                stamp.alias("computed_at"),
                pl.lit(run_id).alias("run_id"),
            )
        j = _diff(new, old, columns)
        exists, same = j.get_column("__exists"), j.get_column("__same")
        got = {
            "inserted": int((~exists).sum()),
            "updated": int((exists & ~same).sum()),
            "unchanged": int(same.sum()),
            "deleted": old.height - int(exists.sum()),
        }
        return got, lambda: stamped(j)

    def stamped(j: pl.DataFrame) -> pl.DataFrame:
        return j.with_columns(
            pl.when("__same").then("computed_at").otherwise(stamp).alias("computed_at"),
            pl.when("__same").then("run_id").otherwise(pl.lit(run_id)).alias("run_id"),
        )

    inputs = _bar_columns(indicators)
    rw = lake.rewrite("indicators", "timeframe", tf)
    held: list[list[str]] = []  # unchanged batches not written (yet)
    changed = False
    writing: Future | None = None

    def submit(job: Callable[[], None]) -> None:
        """Run ``job`` (a batch's write) on the writer thread, while the next batch computes."""
        nonlocal writing
        if writing is not None:
            writing.result()  # one batch in flight: bounded memory, errors surface here
        writing = writer.submit(job)

    def write(rows: Callable[[], pl.DataFrame]) -> None:
        """Build and write the batch's rows on the writer thread."""
        submit(
            lambda: rw.write(
                rows().select(*KEY, "_pcode", *columns, *other, "computed_at", "run_id")
            )
        )

    writer = ThreadPoolExecutor(max_workers=1)
    try:
        fresh = rw.replaces_nothing()  # nothing stored: every row is new, no diff to make
        for part, bars in _rewrite_batches(lake, series, tf, syms, inputs, every) if fresh else ():
            body, parts = new_files(bars, tf, part, indicators, tz, other, computed_at, run_id)
            keep(bars)
            counts["inserted"] += bars.height
            progress("advance", advance=len(part), symbol=tf, rows=bars.height)
            if parts:
                changed = True
                submit(lambda body=body, parts=parts: rw.write_arrow(body, parts))
        for part, bars in () if fresh else _rewrite_batches(lake, series, tf, syms, inputs, every):
            got, rows = batch(part, bars, check=not changed)
            keep(bars)
            for k in counts:
                counts[k] += got[k]
            progress("advance", advance=len(part), symbol=tf, rows=bars.height)
            if not changed and got["inserted"] + got["updated"] + got["deleted"] == 0:
                held.append(part)
                continue
            if not changed:
                changed = True
                for p in held:
                    write(batch(p, _bars(series, tf, p, inputs), check=False)[1])
            write(rows)
        if writing is not None:
            writing.result()
        if not changed:
            rw.abandon()
            if meta:
                lake.mark("indicators", run_id=run_id, stage="compute", metadata=meta)
        else:
            rw.commit(run_id=run_id, stage="compute", metadata=meta)
    except BaseException:
        writer.shutdown(wait=True)  # the batch in flight lands before its file is removed
        rw.abandon()
        raise
    finally:
        writer.shutdown(wait=True)
    if states is not None:
        if kept is None:
            states.drop(tf)
        else:
            states.rewritten(tf, kept)
    return counts


def _bars(
    series: pl.LazyFrame,
    tf: str,
    syms: list[str],
    columns: Iterable[str] = BAR_COLUMNS,
    every: bool = False,
) -> pl.DataFrame:
    """The ``columns`` of the bars of ``syms`` on ``tf``. A long symbol list is applied after
    the read (pushed into the scan it becomes one pyarrow expression of thousands of terms,
    slower than reading the timeframe's other symbols too); only its range is pushed, which
    skips the files of other symbols (their statistics). ``every``: ``syms`` are all the
    symbols ``series`` holds on ``tf`` (nothing to filter them by)."""
    if not syms:
        return series.select(*columns).clear().collect()
    pred = pl.col("timeframe") == tf
    pushed = every or len(syms) <= PUSHED_SYMBOLS
    if not every and pushed:
        pred = pred & pl.col("symbol").is_in(syms)
    elif not pushed:
        pred = pred & pl.col("symbol").is_between(pl.lit(min(syms)), pl.lit(max(syms)))
    bars = series.filter(pred).select(*columns).collect()
    if not pushed:
        bars = bars.filter(pl.col("symbol").is_in(syms))
    # a dictionary read's symbols as codes in their sorted order (see symbol_enum)
    return symbol_enum(bars) if bars.schema["symbol"] == pl.Categorical else bars


def _bar_columns(indicators) -> list[str]:
    """The bar columns the kernels read for ``indicators`` (no indicator reads ``open``)."""
    from marketlake.kernels.registry import resolve

    need = {c for spec in resolve(indicators) for c in spec.inputs}
    return [c for c in BAR_COLUMNS if c in ("symbol", "ts") or c in need]


def _rewrite_batches(
    lake: Lake,
    series: pl.LazyFrame,
    tf: str,
    syms: list[str],
    columns: Iterable[str] = BAR_COLUMNS,
    every: bool = False,
) -> Iterator[tuple[list[str], pl.DataFrame]]:
    """The bars of ``syms`` on ``tf`` in batches of whole series of about
    :data:`BATCH_ROWS` bars, sorted by (symbol, ts): ``(symbols, bars)``.

    When the timeframe holds at most :data:`READ_ONCE_ROWS` bars (counted from the Delta
    file statistics, no data read) its bars are read once and ordered by one index (a lake
    read is one sorted piece per file: its runs are gathered, not sorted), each batch then
    gathered when it is asked for (the first computes while the others are not yet copied)
    or, when the read is already sorted, sliced; the batches are of about equal size. Larger
    timeframes are read batch by batch (bounded memory)."""
    from marketlake.kernels.adapter import sort_order

    total = _timeframe_rows(lake, tf)
    if total is None or total > READ_ONCE_ROWS:
        for part in _row_batches(series, tf, syms):
            yield part, _bars(series, tf, part, columns)
        return
    # one chunk first: gathers from one chunk are several times faster, and the order is
    # then found on the columns as they are (of a read's pieces, on copies: 2,000 x 2,520
    # bars 66 ms against 103)
    bars = _bars(series, tf, syms, columns, every).rechunk()
    order = sort_order(bars)
    offsets, names = _series_bounds(bars.get_column("symbol"), order)
    # series without bars still belong to a batch: their stored rows are to be deleted
    gone = sorted(set(syms) - set(names))
    if not names:
        yield gone, bars
        return
    if order is not None and bars.height <= np.iinfo(np.uint32).max:
        # polars' own index type: an int64 index is checked for negatives and converted
        # per gather (about 25 ms of 5M rows' batches)
        order = order.astype(np.uint32)
    n = -(-bars.height // BATCH_ROWS)
    cuts = np.searchsorted(offsets, [bars.height * k / n for k in range(1, n)])
    bounds = sorted({0, len(names), *(int(c) for c in cuts)})
    for i, j in zip(bounds, bounds[1:], strict=False):
        a, b = int(offsets[i]), int(offsets[j])
        rows = bars.slice(a, b - a) if order is None else bars[order[a:b]]
        yield names[i:j] + (gone if j == len(names) else []), rows


def _series_bounds(symbols: pl.Series, order: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """Where each series starts in ``symbols`` sorted by ``order`` (None: as they are), its
    length at the end, and the series' names. An Enum's rows sort by code, so each code's
    rows are counted where they lie (no gather of the column into sorted order)."""
    if isinstance(symbols.dtype, pl.Enum):
        counts = code_counts(
            symbols.to_physical().to_numpy(), minlength=len(symbols.dtype.categories)
        )
        held = np.flatnonzero(counts)
        offsets = np.concatenate([[0], np.cumsum(counts[held])]).astype(np.int64)
        return offsets, symbols.dtype.categories.gather(held).to_list()
    if order is not None:
        symbols = symbols.gather(order)
    offsets = _series_offsets(symbols)
    return offsets, symbols.gather(offsets[:-1]).cast(pl.String).to_list()


def _series_offsets(symbols: pl.Series) -> np.ndarray:
    """Where each run of equal ``symbols`` starts, and their length at the end."""
    if isinstance(symbols.dtype, (pl.Enum, pl.Categorical)):
        codes = symbols.to_physical().to_numpy()
    else:
        codes = symbols.rle_id().to_numpy()
    starts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    return np.concatenate([[0], starts, [codes.shape[0]]]).astype(np.int64)


def _timeframe_rows(lake: Lake, tf: str) -> int | None:
    """Bars stored for ``tf`` in the latest ohlcv version, from its files' statistics (None:
    not recorded); only sizes the reads."""
    dt = lake.table("ohlcv")
    if dt is None:
        return 0
    files = pl.DataFrame(dt.get_add_actions(flatten=True))  # pa.table would import pandas
    if "num_records" not in files.columns or "partition.timeframe" not in files.columns:
        return None
    total = 0
    for n, t in zip(
        files.get_column("num_records").to_list(),
        files.get_column("partition.timeframe").to_list(),
        strict=True,
    ):
        if t == tf:
            if n is None:
                return None
            total += n
    return total


def _row_batches(series: pl.LazyFrame, tf: str, syms: list[str]) -> list[list[str]]:
    """``syms`` in consecutive batches of about :data:`BATCH_ROWS` bars (few scans of the
    lake for short series, bounded memory for long ones)."""
    counts = dict(
        series.filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms))
        .group_by("symbol")
        .len()
        .collect()
        .iter_rows()
    )
    batches: list[list[str]] = [[]]
    rows = 0
    for s in syms:
        if batches[-1] and rows + counts.get(s, 0) > BATCH_ROWS:
            batches.append([])
            rows = 0
        batches[-1].append(s)
        rows += counts.get(s, 0)
    return batches


def _batch(
    lake: Lake,
    series: pl.LazyFrame,
    tf: str,
    syms: list[str],
    indicators,
    columns,
    tz: dict[str, str],
    run_id: str,
    *,
    meta: dict[str, str] | None,
    computed_at: datetime,
    from_ts: dict[str, datetime] | None = None,
) -> dict[str, int]:
    """Recompute ``syms`` on ``tf`` and MERGE the rows that differ from the stored ones;
    with ``from_ts`` (each symbol's first changed bar) only rows from there on are compared
    (indicators are causal: earlier rows cannot have changed)."""
    new = _indicators(series, tf, syms, indicators, columns, tz)
    old = lake.scan("indicators").filter((pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms))
    if from_ts and len(from_ts) == len(syms):
        starts = pl.DataFrame(
            {"symbol": list(from_ts), "from_ts": list(from_ts.values())},
            schema={"symbol": pl.String, "from_ts": pl.Datetime("us", "UTC")},
        )
        new = new.join(starts, on="symbol").filter(pl.col("ts") >= pl.col("from_ts"))
        new = new.drop("from_ts")
        old = old.filter(pl.col("ts") >= starts.get_column("from_ts").min())
    old = old.collect()
    j = _diff(new, old.select([c for c in old.columns if c in (*KEY, *columns)]), columns)
    write = (
        j.filter(~pl.col("__same"))
        .select(new.columns)
        .with_columns(
            pl.lit(computed_at).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
            pl.lit(run_id).alias("run_id"),
        )
    )
    unchanged = j.height - write.height
    if write.is_empty():
        if meta:
            lake.mark("indicators", run_id=run_id, stage="compute", metadata=meta)
        return {"inserted": 0, "updated": 0, "unchanged": unchanged}
    res = lake.upsert("indicators", write, run_id=run_id, stage="compute", metadata=meta)
    return {
        "inserted": res.inserted,
        "updated": res.updated,
        "unchanged": unchanged + res.unchanged,
    }

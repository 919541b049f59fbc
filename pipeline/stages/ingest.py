"""The sync stage: run a plan against providers and land the bars in the lake.

Units (one symbol x timeframe x kind) are fetched with bounded concurrency; results are
committed in batches (tens of commits for thousands of symbols), and at least every
``commit_every_s`` seconds while fetching goes on, so a slow request never holds finished
work back. Batches commit in order on a thread of their own while the next one is fetched
(never more than one commit running, never more than one batch waiting); the waiting batch's
bars are validated and keyed on another thread meanwhile, as that needs no lake. For each
batch the fetched bars are validated (rejects go to ``quarantine``), diffed against the lake
in one query (new / changed / unchanged per row), and only new and changed rows are written: a blind
append when every row is new, else one MERGE. Bars that changed although both the stored and
the fetched bar are final mean the provider re-adjusted history (a split or dividend): the
symbol's whole history is re-fetched and replaced in one commit. Then ``sync_status`` and
``sync_logs`` are written. Coverage is re-read from the lake on the next run, so a run killed
at any point resumes exactly where its last commit ended.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import polars as pl

from marketlake.errors import (
    AuthError,
    ConfigError,
    MarketlakeError,
)
from marketlake.lake.frames import series_runs
from marketlake.lake.store import Lake, Written
from marketlake.lake.tables import (
    INTRADAY,
    polars_schema,
    single_timeframe,
    value_columns,
    with_period,
    with_period_code,
)
from marketlake.lake.validate import check_ohlcv, quarantine_rows
from marketlake.pipeline import kept_coverage
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import Settings
from marketlake.pipeline.planning import (
    NO_TIMEFRAME,
    Planned,
    SyncRequest,
    Unit,
    coverage,
    plan_with_coverage,
    split_range,
)
from marketlake.pipeline.providers.base import (
    REJECT,
    FetchRequest,
    Provider,
    provider_class,
    split_rejects,
    with_optional_columns,
)
from marketlake.pipeline.redact import redact
from marketlake.pipeline.runs import (
    StageResult,
    Stopwatch,
    TaskLog,
    freeze_imports,
    new_run_id,
    writing,
)

Progress = Callable[..., None]
_VALUES = tuple(value_columns("ohlcv"))
READJUST_RTOL = 1e-6
_STATUS_KEY = ("segment", "symbol", "timeframe", "kind")
_STATUS_KEPT = ("checked_from", "consecutive_failures", "rows", "last_success_at")
PACK_UNITS = 500  # bars units answered by one fetch_many call of a batched provider
# the most bars a pack may span (each unit's range over its bar length, an upper bound): a
# pack is one work item, answered on one thread and committed once all of it is in, so long
# ranges go one unit each, fetched in parallel and committed while the next are fetched
PACK_BARS = 100_000
# a local bulk load's batch of this many rows of series the lake lacked is written ahead
WRITE_AHEAD_ROWS = 100_000
# a local bulk load's batch holding this many rows ends where the next timeframe's begin
SPLIT_ROWS = 100_000
# batches handed over and not yet committed while the next fills: one commits, one has its
# files written ahead (a local bulk load), one is checked -- each stage on a thread of its own
PIPELINED_BATCHES = 2
# a batch's bars make a file per partition they span: one spanning many (ten years of hourly
# bars, a partition per month) holds up to twice batch_rows, for files of this many rows
FILE_ROWS = 32_768


@dataclass
class Outcome:
    """What fetching one unit produced."""

    unit: Unit
    frame: pl.DataFrame | None = None
    rejected: pl.DataFrame | None = None  # rows the provider could not parse, with a reason
    error: str | None = None
    error_kind: str | None = None
    asset_type: str | None = None  # the type the provider's own answer gave the instrument
    started_at: datetime | None = None
    completed_at: datetime | None = None


class _Providers:
    """One provider instance per name, shared by all workers; remembers aborted providers.
    ``adapt`` is applied to each new instance (a cluster run shares its rate limit)."""

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        adapt: Callable[[Provider], None] | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.adapt = adapt
        self._lock = threading.Lock()
        self._instances: dict[str, Provider] = {}
        self.aborted: dict[str, str] = {}
        self._unavailable: dict[str, ConfigError] = {}

    def get(self, name: str) -> Provider:
        """The shared instance; a provider that cannot be loaded raises the same
        ConfigError for each of its tasks (which fail; other providers' tasks run)."""
        with self._lock:
            if name in self._unavailable:
                raise self._unavailable[name]
            if name not in self._instances:
                try:
                    cls = provider_class(name)
                except ConfigError as exc:
                    self._unavailable[name] = exc
                    raise
                prov = cls(
                    self.settings.provider(name),
                    home=self.settings.home,
                    clock=self.settings.clock,
                )
                if self.adapt is not None:
                    self.adapt(prov)
                self._instances[name] = prov
            return self._instances[name]

    def prepare(self, name: str, timeframes: Sequence[str] = ()) -> None:
        """Start :meth:`Provider.prepare` of ``name`` on a thread of its own; whatever fails
        there fails again, and is reported, with the requests."""

        def run() -> None:
            try:
                self.get(name).prepare(timeframes)
            except Exception:  # noqa: BLE001, S110 - the requests report it
                pass

        threading.Thread(target=run, name="marketlake-prepare", daemon=True).start()

    def instances(self) -> dict[str, Provider]:
        with self._lock:
            return dict(self._instances)

    def close(self) -> None:
        for p in self.instances().values():
            p.close()


def _fetch(unit: Unit, providers: _Providers) -> Outcome:
    return guarded(
        unit, providers, lambda prov: _fetch_unit(unit, prov, unit.chunks, providers.now)
    )


def _fetch_pack(units: list[Unit], providers: _Providers) -> list[Outcome]:
    """The outcomes of ``units``, bars units of one provider whose capabilities say
    ``batched``, each one chunk in its own timeframe: one :meth:`Provider.fetch_many` call.
    Should that call fail (or a frame carry rejects), each unit is fetched on its own, so
    each gets its own rows or error as :func:`_fetch` gives them."""
    if len(units) == 1:
        return [_fetch(units[0], providers)]
    started = providers.settings.clock()
    if units[0].provider in providers.aborted:
        return [_fetch(u, providers) for u in units]
    try:
        prov = providers.get(units[0].provider)
        frames = prov.fetch_many([_bars_request(u, *u.chunks[0]) for u in units])
        if len(frames) != len(units) or any(REJECT in f.columns for f in frames):
            raise ValueError("not one clean frame per request")
    except Exception:  # noqa: BLE001 - one by one: each unit its own outcome or error
        return [_fetch(u, providers) for u in units]
    completed = providers.settings.clock()
    return [
        Outcome(
            u,
            frame=f,
            asset_type=prov.take_asset_type(u.symbol),
            started_at=started,
            completed_at=completed,
        )
        for u, f in zip(units, frames, strict=True)
    ]


def _packs(units: list[Unit], bars: Callable[[str, str], int], size: int) -> list[list[Unit]]:
    """``units`` in order as work items: runs of up to ``size`` bars units of one provider
    and timeframe, spanning at most ``bars(provider, timeframe)`` bars together (0: one
    request at a time), that :func:`_fetch_pack` answers in one call, else one unit each."""
    out: list[list[Unit]] = []
    packable = False
    spanned = 0
    for u in units:
        ok = (
            u.kind == "ohlcv"
            and len(u.chunks) == 1
            and (u.fetch_timeframe or u.timeframe) == u.timeframe
            and bars(u.provider, u.timeframe) > 0
        )
        span = (u.end - u.start) // tfs.DURATION[u.timeframe] + 1 if ok else 0
        last = out[-1][-1] if out else None
        if (
            ok
            and packable
            and len(out[-1]) < size
            and spanned + span <= bars(u.provider, u.timeframe)
            and (last.provider, last.timeframe) == (u.provider, u.timeframe)
        ):
            out[-1].append(u)
            spanned += span
        else:
            out.append([u])
            packable, spanned = ok, span
    return out


def guarded(
    unit: Unit,
    providers: _Providers,
    work: Callable[[Provider], tuple[pl.DataFrame, pl.DataFrame | None]],
) -> Outcome:
    """``work(provider)`` for ``unit`` as an :class:`Outcome`: (rows, rejects) or the error,
    never raising (an auth failure stops the provider for the rest of the run)."""
    out = Outcome(unit, started_at=providers.settings.clock())
    try:
        if unit.provider in providers.aborted:
            raise AuthError(
                f"skipped: {providers.aborted[unit.provider]}",
                provider=unit.provider,
                symbol=unit.symbol,
            )
        prov = providers.get(unit.provider)
        out.frame, out.rejected = work(prov)
        out.asset_type = prov.take_asset_type(unit.symbol)
    except AuthError as exc:
        providers.aborted.setdefault(unit.provider, str(exc))
        out.error, out.error_kind = str(exc), "auth"
    except MarketlakeError as exc:
        out.error, out.error_kind = str(exc), type(exc).__name__
    except NotImplementedError as exc:
        out.error, out.error_kind = str(exc), "unsupported"
    except Exception as exc:  # a provider bug must not stop other symbols
        out.error, out.error_kind = f"{type(exc).__name__}: {exc}", "internal"
    out.completed_at = providers.settings.clock()
    return out


def _fetch_unit(
    unit: Unit, prov: Provider, chunks, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The unit's rows, and the bars its provider could not parse (None when not bars);
    bars resampled from a finer timeframe are final only once their period has closed by
    ``now`` (the run's clock)."""
    inst = dict(unit.instrument)
    if unit.kind == "actions":
        s, e = chunks[0][0], chunks[-1][1]
        return prov.fetch(FetchRequest.actions(unit.symbol, s, e, instrument=inst)), None
    if unit.kind == "profile":
        return prov.fetch(FetchRequest.profile(unit.symbol, instrument=inst)), None
    if unit.kind == "fundamentals":
        return prov.fetch(FetchRequest.fundamentals(unit.symbol, instrument=inst)), None
    if unit.kind == "valuation":
        return prov.fetch(FetchRequest.valuation(unit.symbol, instrument=inst)), None
    pieces = [fetch_chunk(unit, prov, s, e) for s, e in chunks]
    return finish_bars(unit, [g for g, _ in pieces], [b for _, b in pieces if b is not None], now)


def fetch_chunk(
    unit: Unit, prov: Provider, start: datetime, end: datetime
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """One request of a bars unit: the rows as the provider sent them (its native timeframe)
    and the rows it could not parse (with the symbol), or None."""
    good, bad = split_rejects(prov.fetch(_bars_request(unit, start, end)))
    return good, None if bad.is_empty() else bad.with_columns(pl.lit(unit.symbol).alias("symbol"))


def _bars_request(unit: Unit, start: datetime, end: datetime) -> FetchRequest:
    return FetchRequest.bars(
        unit.symbol,
        unit.fetch_timeframe or unit.timeframe,
        start,
        end,
        provider_symbol=unit.provider_symbol,
        instrument=dict(unit.instrument),
    )


def finish_bars(
    unit: Unit, parts: list[pl.DataFrame], rejects: list[pl.DataFrame], now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A bars unit's chunks (in order) as one frame of its timeframe, and its rejects."""
    fetch_tf = unit.fetch_timeframe or unit.timeframe
    if not parts:
        frame = pl.DataFrame().with_columns(
            pl.lit(unit.symbol).alias("symbol"), pl.lit(unit.timeframe).alias("timeframe")
        )
        return frame, pl.concat(rejects, how="diagonal_relaxed") if rejects else None
    frame = parts[0] if len(parts) == 1 else pl.concat(parts)
    if fetch_tf != unit.timeframe and not frame.is_empty():
        frame = tfs.resample(frame, unit.timeframe, now=now)
    frame = constant_columns(frame, symbol=unit.symbol, timeframe=unit.timeframe)
    return frame, pl.concat(rejects, how="diagonal_relaxed") if rejects else None


def constant_columns(frame: pl.DataFrame, **values: str) -> pl.DataFrame:
    """``frame`` with each of ``values``' columns set to its one string (replaced in place,
    else appended). Built from series, not a query: fetch threads run this per unit and a
    query would queue on polars' thread pool behind the commit's work."""
    n = frame.height
    new = {c: pl.Series(c, [v], pl.String).new_from_index(0, n) for c, v in values.items()}
    cols = [new.pop(c) if c in new else frame.get_column(c) for c in frame.columns]
    return pl.DataFrame([*cols, *new.values()])


# -- committing a batch ------------------------------------------------------------------


def _diff(lake: Lake, bars: pl.DataFrame, version: int | None = None) -> pl.DataFrame:
    """Tag each fetched bar new / changed / unchanged against the lake (one scan)."""
    keys = ["symbol", "timeframe", "ts"]
    periods = bars.get_column("period").unique().to_list()
    timeframes = bars.get_column("timeframe").unique().to_list()
    symbols = bars.get_column("symbol").unique().to_list()
    old = (
        lake.scan("ohlcv", version)
        .filter(
            pl.col("timeframe").is_in(timeframes)
            & pl.col("period").is_in(periods)
            & pl.col("symbol").is_in(symbols)
            & (pl.col("ts") >= bars["ts"].min())
        )
        .select(*keys, *[pl.col(c).alias(f"{c}__old") for c in _VALUES])
        .collect()
    )
    j = bars.join(old, on=keys, how="left")
    same = pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"{c}__old")) for c in _VALUES])
    rel = (pl.col("close") - pl.col("close__old")).abs() / pl.col("close__old").abs()
    return j.with_columns(
        pl.when(pl.col("provider__old").is_null() & pl.col("close__old").is_null())
        .then(pl.lit("new"))
        .when(same)
        .then(pl.lit("unchanged"))
        .otherwise(pl.lit("changed"))
        .alias("_state"),
        (pl.col("is_final") & pl.col("is_final__old").fill_null(False) & (rel > READJUST_RTOL))
        .fill_null(False)
        .alias("_readjusted"),
    ).drop([f"{c}__old" for c in _VALUES])


@dataclass
class Landed:
    """What :func:`land_bars` did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: pl.DataFrame = field(default_factory=pl.DataFrame)
    readjusted: set[tuple[str, str]] = field(default_factory=set)
    per_series: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    # per series: first and last ts and the number of the rows inserted
    spans: dict[tuple[str, str], tuple[datetime, datetime, int]] = field(default_factory=dict)


def _series_counts(
    tagged: pl.DataFrame, timeframe: str | None
) -> dict[tuple[str, str], dict[str, int]]:
    """Rows per (symbol, timeframe) and state; a linear run-length pass when the batch is all
    new and of one timeframe (bulk loads), a group-by otherwise."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    if timeframe is not None and (tagged.get_column("_state") == "new").all():
        runs = tagged.select(pl.col("symbol").rle()).unnest("symbol")
        for n, sym in runs.iter_rows():
            cell = out.setdefault((sym, timeframe), {})
            cell["new"] = cell.get("new", 0) + n
        return out
    for s, tf, state, n in tagged.group_by("symbol", "timeframe", "_state").len().iter_rows():
        out.setdefault((s, tf), {})[state] = n
    return out


@dataclass
class Checked:
    """Fetched bars validated and keyed for the lake (what :func:`check_bars` gives), not
    yet compared with it."""

    good: pl.DataFrame  # with its integer partition code ``_pcode``
    rejected: pl.DataFrame
    timeframe: str | None  # the only timeframe of ``good``, if it has one
    # first and last ts and rows per series of ``good`` (:func:`_spans`), when taken ahead:
    # the spans of what a commit inserts when every row is new
    spans: dict[tuple[str, str], tuple[datetime, datetime, int]] | None = None
    # a bulk load's rows stamped at ``now`` and written ahead as files of ohlcv, committed
    # once the lake proves them all new (else the files are dropped and the rows written)
    written: Written | None = None
    now: datetime | None = None


def check_bars(frame: pl.DataFrame, timeframe: str | None = None) -> Checked:
    """The work on fetched bars that needs no lake: validation (rejects with a reason) and
    the partition codes. ``timeframe``: the frame's only timeframe, when the caller knows it.
    A sync runs it for the next batch while the previous one commits."""
    good, bad = check_ohlcv(with_optional_columns("ohlcv", frame))
    if good.is_empty():
        return Checked(good, bad, timeframe)
    timeframe = timeframe or single_timeframe(good)
    return Checked(with_period_code(good, timeframe), bad, timeframe)


def land_bars(
    lake: Lake, frame: pl.DataFrame, *, run_id: str, now: datetime, timeframe: str | None = None
) -> Landed:
    """Validate fetched bars, diff them against the lake and write new/changed rows in one
    commit (a blind append when all are new). Series whose final bars changed are reported in
    ``readjusted`` and not written: the caller re-fetches and replaces them whole.
    ``timeframe``: the batch's only timeframe when the caller knows it (saves a scan)."""
    return land_checked(lake, check_bars(frame, timeframe), run_id=run_id, now=now)


def land_checked(lake: Lake, checked: Checked, *, run_id: str, now: datetime) -> Landed:
    """:func:`land_bars` of bars :func:`check_bars` already checked."""
    good, timeframe = checked.good, checked.timeframe
    out = Landed(rejected=checked.rejected)
    if good.is_empty():
        return out
    read = lake.version("ohlcv")  # the proof, the diff and the append's commit share it
    if checked.spans is None:  # one pass of runs (cheaper than the proof's min and max)
        checked.spans = _spans(good, timeframe)
    # the spans name the batch's symbols: the proof's bounds without a pass over the rows
    names = [s for s, _ in checked.spans]
    bounds = (min(names), max(names)) if names else None
    suspect = lake.overlap_suspects("ohlcv", good, timeframe, version=read, symbols=bounds)
    # file statistics prove every row of the other symbols new: no scan of the lake for them
    proven = good if suspect is not None else good.clear()
    if suspect:
        is_suspect = pl.col("symbol").is_in(sorted(suspect))
        proven, good = good.filter(~is_suspect), good.filter(is_suspect)
    tagged = proven.with_columns(pl.lit("new").alias("_state"), pl.lit(False).alias("_readjusted"))
    if suspect is None or suspect:
        diffed = _diff(lake, with_period(good.drop("_pcode")), read).drop("period")
        tagged = pl.concat([tagged, with_period_code(diffed, timeframe)], how="diagonal")
    if suspect is not None and not suspect:  # all new (bulk loads): one pass for the counts
        out.spans = checked.spans  # taken above, of exactly these rows
        out.per_series = {k: {"new": n} for k, (_, _, n) in out.spans.items()}
        if checked.written is not None:
            res = lake.commit_written(
                checked.written, run_id=run_id, stage="sync", read_version=read
            )
            if res is not None:
                out.inserted = res.inserted
                return out
            # another writer committed since ``read``: the rows are written again below
        return _upsert(lake, tagged, now, run_id, read, out, assume_new=True)
    if checked.written is not None:
        lake.discard(checked.written)
    out.readjusted = {
        tuple(r)
        for r in tagged.filter(pl.col("_readjusted"))
        .select("symbol", "timeframe")
        .unique()
        .iter_rows()
    }
    out.per_series = _series_counts(tagged, timeframe)
    write = tagged.filter(pl.col("_state") != "unchanged")
    if out.readjusted:
        skip = pl.DataFrame(sorted(out.readjusted), schema=["symbol", "timeframe"], orient="row")
        write = write.join(skip, on=["symbol", "timeframe"], how="anti")
    out.unchanged = int((tagged.get_column("_state") == "unchanged").sum())
    if write.is_empty():
        return out
    out.spans = _spans(write.filter(pl.col("_state") == "new"), None)
    all_new = bool((write.get_column("_state") == "new").all())
    return _upsert(lake, write, now, run_id, read, out, assume_new=all_new)


def _spans(
    new: pl.DataFrame, timeframe: str | None
) -> dict[tuple[str, str], tuple[datetime, datetime, int]]:
    """First and last ts and the number of ``new`` rows per (symbol, timeframe);
    ``timeframe``: the frame's only one, when known (a group-by on the symbol alone)."""
    keys = ["symbol"] if timeframe is not None else ["symbol", "timeframe"]
    agg = series_runs(new, keys)  # bars as fetched: series after series, ts rising
    if agg is None:
        agg = new.group_by(keys).agg(pl.col("ts").min(), pl.col("ts").max().alias("hi"), pl.len())
    if timeframe is not None:
        return {(s, timeframe): (lo, hi, n) for s, lo, hi, n in agg.iter_rows()}
    return {(s, tf): (lo, hi, n) for s, tf, lo, hi, n in agg.iter_rows()}


def _upsert(
    lake: Lake,
    write: pl.DataFrame,
    now: datetime,
    run_id: str,
    read: int | None,
    out: Landed,
    *,
    assume_new: bool,
) -> Landed:
    """Commit ``write`` (stamped with the run) to ohlcv against version ``read``; ``out`` gets
    the counts. ``assume_new``: every row is proven new, so no key is looked up."""
    res = lake.upsert(
        "ohlcv",
        _stamped(write, now, run_id),
        run_id=run_id,
        stage="sync",
        assume_new=assume_new,
        read_version=read,
    )
    out.inserted, out.updated = res.inserted, res.updated
    return out


def _stamped(write: pl.DataFrame, now: datetime, run_id: str) -> pl.DataFrame:
    """Rows to write, without the diff's columns, stamped with the run."""
    return write.drop("_state", "_readjusted").with_columns(
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
        pl.lit(run_id).alias("run_id"),
    )


class Fetcher(Protocol):
    """Fetches units elsewhere (:mod:`marketlake.pipeline.stages.fanout`): ``submit`` returns a
    future of the unit's :class:`Outcome`; ``window`` units are kept in flight."""

    window: int

    def submit(self, unit: Unit) -> Future: ...

    def close(self) -> None: ...


def _provider_class(name: str) -> type | None:
    try:
        return provider_class(name)
    except ConfigError:
        return None


def _capable(name: str, flag: str) -> bool:
    """Whether provider ``name`` (when known) has the capability ``flag`` (local, batched)."""
    cls = _provider_class(name)
    return cls is not None and getattr(cls.capabilities, flag)


def _pack_bars(name: str, timeframe: str) -> int:
    """The most bars (as the plan bounds them) of ``timeframe`` one call of provider ``name``
    answers for a pack of requests: its own bound, else ``PACK_BARS``; 0 when it answers
    one request at a time."""
    if not _capable(name, "batched"):
        return 0
    return _provider_class(name).capabilities.pack_bars.get(timeframe) or PACK_BARS


def _serialized(progress: Progress) -> Progress:
    """``progress`` called by one thread at a time (fetch results are reported while the
    previous batch commits on its own thread)."""
    lock = threading.Lock()

    def report(*args: Any, **info: Any) -> None:
        with lock:
            progress(*args, **info)

    return report


def _period(t: datetime, monthly: bool) -> int:
    """The number of ``t``'s partition: its month (intraday bars) or its year (daily)."""
    return t.year * 12 + t.month - 1 if monthly else t.year


class _Batch:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.rows = 0
        self.spans: dict[str, tuple[int, int]] = {}  # per timeframe: first and last partition

    def add(self, o: Outcome) -> None:
        self.outcomes.append(o)
        self.rows += 0 if o.frame is None else o.frame.height
        u = o.unit
        if u.kind == "ohlcv" and o.frame is not None and not o.frame.is_empty():
            monthly = u.timeframe in INTRADAY
            a = _period(u.start, monthly)
            b = _period(u.end - timedelta(microseconds=1), monthly)
            lo, hi = self.spans.get(u.timeframe, (a, b))
            self.spans[u.timeframe] = (min(lo, a), max(hi, b))

    def full(self, tasks: int, rows: int) -> bool:
        """Whether the batch holds ``tasks`` units, or ``rows`` rows and enough for files of
        ``FILE_ROWS`` rows in the partitions its bars span (at most twice ``rows``): a bulk
        load of ten years of hourly bars in batches of ``rows`` wrote 121 files of 16k rows
        per batch, each file a fixed cost (its creation, its writer, its statistics)."""
        if len(self.outcomes) >= tasks:
            return True
        if self.rows < rows:
            return False
        parts = sum(hi - lo + 1 for lo, hi in self.spans.values())
        return self.rows >= min(2 * rows, FILE_ROWS * parts)

    def ends_before(self, unit: Unit) -> bool:
        """Whether ``unit`` starts the bars of another timeframe after at least ``SPLIT_ROWS``
        of this batch's: a bulk load's batches then hold one timeframe each (checked,
        partitioned and diffed on the cheaper single-timeframe paths)."""
        if self.rows < SPLIT_ROWS or unit.kind != "ohlcv" or not self.outcomes:
            return False
        last = self.outcomes[-1].unit
        return last.kind == "ohlcv" and last.timeframe != unit.timeframe


class Sync:
    """One sync run: plan, fetch, commit in batches."""

    def __init__(
        self,
        settings: Settings,
        req: SyncRequest,
        *,
        progress: Progress | None,
        trigger: str,
        stage: str = "sync",
        run_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.req = req
        self.progress = _serialized(progress or (lambda *a, **k: None))
        self.lake = settings.open_lake()
        self.now = settings.clock()
        self.run_id = run_id or new_run_id(self.now)
        self.stage = stage
        self.log = TaskLog(
            self.run_id,
            stage,
            trigger,
            settings.secrets(),
            clock=settings.clock,
            fresh_run=run_id is None,
        )
        self.providers = _Providers(settings, self.now)
        # coverage per (symbol, timeframe) as of ohlcv version ``cov_version``: the plan's,
        # then kept up to date with this run's own commits (it holds the writer lock)
        self.cov: dict[tuple[str, str], dict[str, Any]] = {}
        self.cov_version: int | None = None
        # whether ``cov`` is the exact coverage of the plan's series at ``cov_version``:
        # kept for the next plan when the run ends so (:mod:`..kept_coverage`)
        self.cov_exact = False
        self.planned: Planned | None = None
        self.totals = dict(inserted=0, updated=0, unchanged=0, quarantined=0)
        self.ok = self.failed = self.skipped = 0
        self.errors: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.local = False  # every unit's provider local (set by :meth:`run`)
        self._ahead: list[Written] = []  # files written ahead, not yet committed or removed
        self._ahead_lock = threading.Lock()

    def run(
        self, units: list[Unit], fetcher: Fetcher | None = None, planned: Planned | None = None
    ) -> StageResult:
        """Fetch ``units`` (on this process's threads, or through ``fetcher``: a cluster) and
        commit them in batches; ``planned``: the plan's coverage, kept up to date for
        ``sync_status``."""
        watch = Stopwatch()
        if planned is not None:
            self.cov, self.cov_version = dict(planned.coverage), planned.version
            self.cov_exact, self.planned = True, planned
        self.progress("start", total=len(units))
        workers = max(1, self.settings.concurrency)
        # local providers answer in moments: their units are batched in plan order, so
        # consecutive batches hold consecutive symbols and file statistics prove each new
        local = bool(units) and all(_capable(n, "local") for n in {u.provider for u in units})
        self.local = local and fetcher is None
        if local:
            workers = min(workers, os.cpu_count() or 1)
            # one timeframe per batch where possible (the single-timeframe write is cheaper),
            # symbols in plan order within it
            groups: dict[tuple[str, str], int] = {}
            units = sorted(
                units, key=lambda u: groups.setdefault((u.kind, u.timeframe), len(groups))
            )
        window = fetcher.window if fetcher is not None else workers * 4
        items = [[u] for u in units]
        if local and fetcher is None:  # bars a provider answers many at a time: in packs
            bars = {key: _pack_bars(*key) for key in {(u.provider, u.timeframe) for u in units}}
            size = max(1, min(PACK_UNITS, self.settings.batch_tasks))
            items = _packs(units, lambda *key: bars[key], size)
        seq: dict[Future, int] = {}
        arrived: dict[int, list[Outcome]] = {}
        submitted = taken = 0
        batch = _Batch()
        every = self.settings.commit_every_s
        next_commit = time.monotonic() + every
        # batches are committed in order on one thread while fetching goes on: one batch
        # commits while the next fills, is checked on a thread of its own and has its files
        # written ahead on another (neither needs the lake; numpy, polars and pyarrow
        # release the GIL), so one batch's checks run while the one before is encoded
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="marketlake-commit")
        checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="marketlake-check")
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="marketlake-write")
        committing: deque[Future] = deque()
        stopped = threading.Event()

        def commit_in_turn(full: _Batch, checked: Future) -> None:
            if stopped.is_set():
                return  # a batch before this one failed to commit: the run stops there
            try:
                self.commit(full, checked)
            except BaseException:
                stopped.set()
                raise

        def hand_over(full: _Batch) -> None:
            """Queue ``full``'s check, files and commit; an empty batch waits for them all."""
            if full.outcomes:
                checked = writer.submit(self.write_ahead, full, checker.submit(self.check, full))
                committing.append(committer.submit(commit_in_turn, full, checked))
            # a bounded pipeline: one batch commits, one has its files written, one is checked
            # while the next fills; a failed commit stops the run
            while len(committing) > (PIPELINED_BATCHES if full.outcomes else 0):
                committing.popleft().result()

        try:
            with ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="marketlake-fetch"
            ) as pool:
                pending: set[Future] = set()
                it = iter(items)
                exhausted = False
                while pending or not exhausted:
                    while not exhausted and len(pending) + len(arrived) < window:
                        item = next(it, None)
                        if item is None:
                            exhausted = True
                            break
                        if fetcher is not None:
                            fut = fetcher.submit(item[0])
                        else:
                            fut = pool.submit(_fetch_pack, item, self.providers)
                        seq[fut] = submitted
                        submitted += 1
                        pending.add(fut)
                    if not pending:
                        break
                    timeout = max(0.0, next_commit - time.monotonic())
                    done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
                    for fut in done:
                        res = fut.result()
                        arrived[seq.pop(fut)] = res if isinstance(res, list) else [res]
                    if local:
                        ready = []
                        while taken in arrived:
                            ready.extend(arrived.pop(taken))
                            taken += 1
                    else:  # as they come: a slow request never holds finished work back
                        ready = [o for outs in arrived.values() for o in outs]
                        arrived.clear()
                    for o in ready:  # a batch never holds more than batch_tasks units
                        if local and batch.ends_before(o.unit):
                            hand_over(batch)
                            batch = _Batch()
                        batch.add(o)
                        self.progress(
                            "advance",
                            symbol=o.unit.symbol,
                            timeframe=o.unit.timeframe,
                            error=o.error,
                            rows=0 if o.frame is None else o.frame.height,
                        )
                        if batch.full(self.settings.batch_tasks, self.settings.batch_rows):
                            hand_over(batch)
                            batch = _Batch()
                    # the plan's order says where a timeframe's bars end: the batch goes
                    # now, not once the next timeframe's first answer is in
                    if local and taken < len(items) and batch.ends_before(items[taken][0]):
                        hand_over(batch)
                        batch = _Batch()
                    due = time.monotonic() >= next_commit
                    if due and batch.outcomes:
                        hand_over(batch)
                        batch = _Batch()
                    if due or not batch.outcomes:
                        next_commit = time.monotonic() + every
            hand_over(batch)
            hand_over(_Batch())  # the last commit done (or its error raised)
            self._keep_coverage()
            if fetcher is not None:  # read the files providers' problems here, as one run does
                for name in sorted({u.provider for u in units}):
                    if callable(getattr(_provider_class(name), "problems", None)):
                        self.providers.get(name)
            self._file_problems()
        finally:
            stopped.set()  # a run that failed commits nothing more
            committer.shutdown(wait=True)  # never leave the lock with a commit running
            checker.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
            for written in self._ahead:  # checked, never committed (the run failed)
                self.lake.discard(written)
            self._ahead.clear()
            if fetcher is not None:
                fetcher.close()
            self.providers.close()
        return StageResult(
            run_id=self.run_id,
            stage=self.stage,
            tasks_ok=self.ok,
            tasks_failed=self.failed,
            tasks_skipped=self.skipped,
            duration_seconds=watch.elapsed,
            errors=tuple(self.errors[:100]),
            details={"events": self.events} if self.events else {},
            **self.totals,
        )

    # -- the commit of one batch ------------------------------------------------------
    def check(self, batch: _Batch) -> Checked | None:
        """The batch's bars as one frame, checked (:func:`check_bars`); None without bars.
        Needs no lake: runs while the previous batch commits."""
        units = [o for o in batch.outcomes if o.error is None and o.unit.kind == "ohlcv"]
        bars = [o.frame for o in units if o.frame is not None and not o.frame.is_empty()]
        if not bars:
            return None
        timeframes = {o.unit.timeframe for o in units}
        checked = check_bars(
            # one contiguous frame: every pass over thousands of per-unit chunks costs
            # several times a single copy
            pl.concat(bars, how="diagonal_relaxed").rechunk(),
            timeframes.pop() if len(timeframes) == 1 else None,
        )
        if not checked.good.is_empty():  # a bulk load's counts, off the commit's path
            checked.spans = _spans(checked.good, checked.timeframe)
        return checked

    def write_ahead(self, batch: _Batch, checked: Future) -> Checked | None:
        """The batch's bars checked by ``checked`` (a future of :meth:`check`), written
        ahead as files of ohlcv when :meth:`_writes_ahead` says so. Runs on a thread of its
        own: the next batch is checked while this one's files are encoded."""
        bars = checked.result()
        units = [o for o in batch.outcomes if o.error is None and o.unit.kind == "ohlcv"]
        if bars is not None and self._writes_ahead(bars, units):
            bars.now = self.settings.clock()
            stamped = bars.good.with_columns(
                pl.lit(bars.now).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
                pl.lit(self.run_id).alias("run_id"),
            )
            bars.written = self.lake.write_ahead("ohlcv", stamped)
            with self._ahead_lock:
                self._ahead.append(bars.written)
        return bars

    def _writes_ahead(self, checked: Checked, units: list[Outcome]) -> bool:
        """Whether ``checked``'s rows are written as files here, ahead of their commit: a
        bulk load's batch (of one timeframe, of local providers) whose series had no rows in
        the lake when the run began; its files are then encoded while the previous batch
        commits, and committed once the lake's statistics prove every row new."""
        return (
            self.local
            and checked.timeframe is not None
            and checked.good.height >= WRITE_AHEAD_ROWS
            and not any((o.unit.symbol, o.unit.timeframe) in self.cov for o in units)
        )

    def commit(self, batch: _Batch, checked: Future | None = None) -> None:
        """Land the batch (its bars checked by ``checked``, a future of :meth:`write_ahead`,
        or here), then its other kinds, ``sync_status`` and ``sync_logs``."""
        if not batch.outcomes:
            return
        bars = checked.result() if checked is not None else self.check(batch)
        now = bars.now if bars is not None and bars.now is not None else self.settings.clock()
        good_units = [o for o in batch.outcomes if o.error is None]
        per_unit: dict[tuple[str, str], dict[str, int]] = {}
        readjusted: set[tuple[str, str]] = set()
        if bars is not None:
            read = self._coverage_at_latest(batch)
            try:
                landed = land_checked(self.lake, bars, run_id=self.run_id, now=now)
            except BaseException as exc:
                if bars.written is not None:  # unless its commit landed before the error
                    self.lake.discard(bars.written, exc)
                raise
            finally:
                if bars.written is not None:  # committed or removed
                    with self._ahead_lock:
                        self._ahead.remove(bars.written)
            if not landed.rejected.is_empty():
                self._quarantine(landed.rejected, "ohlcv", "provider")
            readjusted = landed.readjusted
            per_unit = landed.per_series
            wrote = landed.inserted + landed.updated > 0
            after = self.lake.version("ohlcv")
            # only this write committed since ``read`` (no table yet: it created it)
            if self.cov_version == read and (read is None or after == read + int(wrote)):
                if self._provisional(bars, batch):
                    self.cov_exact = False  # its first provisional bar is not followed
                self._cover(landed.spans)
                self.cov_version = after
            else:
                self.cov_exact = False
            self.totals["inserted"] += landed.inserted
            self.totals["updated"] += landed.updated
            self.totals["unchanged"] += landed.unchanged
        rejected = [o.rejected for o in good_units if o.rejected is not None]
        if rejected:
            self._quarantine(pl.concat(rejected, how="diagonal_relaxed"), "ohlcv", "provider")
        for key in sorted(readjusted):
            self._replace_history(key, batch, now)
        if readjusted:
            self.cov_exact = False
        if readjusted and self.cov_version is not None:
            version = self.lake.version("ohlcv")
            c = coverage(
                self.lake,
                sorted({s for s, _ in readjusted}),
                sorted({t for _, t in readjusted}),
                version,
            )
            for r in c.iter_rows(named=True):
                self.cov[(r["symbol"], r["timeframe"])] = r
            self.cov_version = version
        self._other_kinds(good_units, now)
        self._provider_types(good_units, now)
        self._status_and_logs(batch, per_unit, now)

    def _coverage_at_latest(self, batch: _Batch) -> int | None:
        """The ohlcv version the next write reads; when the kept coverage is not of that
        version (another writer's commit came between the plan and the lock), the batch's
        series are read from the lake again."""
        read = self.lake.version("ohlcv")
        if self.cov_version != read:
            self.cov_exact = False  # another writer's commit: only this batch's series re-read
            keys = {(o.unit.symbol, o.unit.timeframe) for o in batch.outcomes}
            c = coverage(
                self.lake, sorted({s for s, _ in keys}), sorted({t for _, t in keys}), read
            )
            for key in keys:
                self.cov.pop(key, None)
            for r in c.iter_rows(named=True):
                self.cov[(r["symbol"], r["timeframe"])] = r
            self.cov_version = read
        return read

    def _provisional(self, bars: Checked, batch: _Batch) -> bool:
        """Whether the batch wrote or may have finalized provisional bars: then the kept
        coverage's first provisional bar of its series is not known without a read."""
        if not bars.good.get_column("is_final").fill_null(True).all():
            return True
        return any(
            (self.cov.get((o.unit.symbol, o.unit.timeframe)) or {}).get("first_provisional")
            is not None
            for o in batch.outcomes
        )

    def _keep_coverage(self) -> None:
        """Keep the coverage for the next plan when it is exactly the table's now (this run
        was the only writer since its plan) and not already kept at this version."""
        p = self.planned
        if p is None or not self.cov_exact or self.cov_version is None:
            return
        if p.kept and self.cov_version == p.version:
            return
        if self.lake.version("ohlcv") != self.cov_version:
            return
        kept_coverage.save(self.lake, self.cov_version, p.symbols, p.timeframes, self.cov)

    def _cover(self, spans: dict[tuple[str, str], tuple[datetime, datetime, int]]) -> None:
        """Extend the kept coverage by the rows a commit inserted."""
        for key, (lo, hi, n) in spans.items():
            c = self.cov.get(key)
            if c is None:
                self.cov[key] = {"first_ts": lo, "last_ts": hi, "rows": n}
            else:
                first, last = c["first_ts"], c["last_ts"]
                self.cov[key] = {
                    **c,
                    "first_ts": min(first, lo),
                    "last_ts": max(last, hi),
                    "rows": c["rows"] + n,
                }

    def _provider_types(self, outcomes: list[Outcome], now: datetime) -> None:
        """Instruments a provider's own answer called an ETF (Yahoo's ``instrumentType``
        or ``quoteType``) become one: ``is_etf`` true and ``asset_type`` etf."""
        etfs = {o.unit.symbol for o in outcomes if o.asset_type == "etf"}
        if not etfs or self.lake.table("instruments") is None:
            return
        rows = (
            self.lake.scan("instruments")
            .filter(
                pl.col("symbol").is_in(sorted(etfs))
                & ~(pl.col("is_etf").fill_null(False) & (pl.col("asset_type") == "etf"))
            )
            .collect()
        )
        if rows.is_empty():
            return
        rows = rows.with_columns(
            pl.lit(True).alias("is_etf"),
            pl.lit("etf").alias("asset_type"),
            pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("updated_at"),
            pl.lit(self.run_id).alias("run_id"),
        )
        self.lake.upsert("instruments", rows, run_id=self.run_id, stage="sync")

    def _replace_history(self, key: tuple[str, str], batch: _Batch, now: datetime) -> None:
        symbol, tf = key
        unit = next(o.unit for o in batch.outcomes if (o.unit.symbol, o.unit.timeframe) == key)
        cov = coverage(self.lake, [symbol], [tf])
        start = cov["first_ts"][0] if cov.height else unit.start
        start = min(start, unit.start)
        try:
            prov = self.providers.get(unit.provider)
            caps = prov.capabilities
            chunks = split_range(start, unit.end, caps.max_range.get(unit.fetch_timeframe or tf))
            frame, rejected = _fetch_unit(unit, prov, chunks, self.now)
            good, bad = check_ohlcv(frame)
            if rejected is not None:
                bad = pl.concat([bad, rejected], how="diagonal_relaxed")
            if not bad.is_empty():
                self._quarantine(bad, "ohlcv", "provider")
            good = with_period(good).with_columns(
                pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
                pl.lit(self.run_id).alias("run_id"),
            )
            res = self.lake.replace(
                "ohlcv",
                good,
                scope=pl.DataFrame({"symbol": [symbol], "timeframe": [tf]}),
                run_id=self.run_id,
                stage="sync",
            )
            self.totals["inserted"] += res.inserted
            self.totals["updated"] += res.updated
            event = {
                "event": "history_replaced",
                "symbol": symbol,
                "timeframe": tf,
                "reason": "stored final bars differ from the provider's (re-adjusted)",
                "rows": good.height,
                "updated": res.updated,
                "deleted": res.deleted,
            }
        except MarketlakeError as exc:
            event = {
                "event": "history_replace_failed",
                "symbol": symbol,
                "timeframe": tf,
                "error": redact(exc, self.settings.secrets()),
            }
        self.events.append(event)
        self.log.add(
            f"sync:replace:{tf}:{symbol}",
            status="success" if "rows" in event else "failed",
            rows_updated=event.get("updated", 0),
            error=event.get("error"),
            started_at=now,
            metadata=event,
        )

    def _other_kinds(self, outcomes: list[Outcome], now: datetime) -> None:
        tables = {
            "actions": "corporate_actions",
            "profile": "profiles",
            "fundamentals": "fundamentals",
            "valuation": "valuations",
        }
        stamp = {
            "actions": "ingested_at",
            "profile": "fetched_at",
            "fundamentals": "fetched_at",
            "valuation": "fetched_at",
        }
        for kind, table in tables.items():
            frames = [
                o.frame
                for o in outcomes
                if o.unit.kind == kind and o.frame is not None and not o.frame.is_empty()
            ]
            if not frames:
                continue
            frame = pl.concat(frames, how="diagonal_relaxed").with_columns(
                pl.lit(now).cast(pl.Datetime("us", "UTC")).alias(stamp[kind]),
                pl.lit(self.run_id).alias("run_id"),
            )
            res = self.lake.upsert(table, frame, run_id=self.run_id, stage="sync")
            self.totals["inserted"] += res.inserted
            self.totals["updated"] += res.updated
            self.totals["unchanged"] += res.unchanged

    def _quarantine(self, bad: pl.DataFrame, table: str, source: str) -> None:
        q = quarantine_rows(
            bad, run_id=self.run_id, table=table, source=source, now=self.settings.clock()
        )
        if q.is_empty():
            return
        self.lake.upsert("quarantine", q, run_id=self.run_id, stage="sync")
        self.totals["quarantined"] += bad.height
        for sym, reason in bad.select("symbol", "reason").unique().head(20).iter_rows():
            self.errors.append(f"{sym}: quarantined bar ({reason})")

    def _file_problems(self) -> None:
        for name, prov in self.providers.instances().items():
            problems = getattr(prov, "problems", None)
            if not callable(problems):
                continue
            for p in problems():
                q = pl.DataFrame(
                    {
                        "symbol": [p.get("symbol", "")],
                        "reason": [p["reason"]],
                        "ts": pl.Series([None], dtype=pl.Datetime("us", "UTC")),
                    }
                )
                self._quarantine(q, "ohlcv", p.get("source", name))
                self.errors.append(p["reason"])

    def _status_and_logs(self, batch: _Batch, per_unit, now: datetime) -> None:
        units = [o.unit for o in batch.outcomes]
        bar_units = [u for u in units if u.kind == "ohlcv"]
        if bar_units and self.cov_version != self.lake.version("ohlcv"):
            self._coverage_at_latest(batch)
        cov = self.cov
        # only the columns a new row carries over (each value becomes a Python object)
        old = {
            (r["segment"], r["symbol"], r["timeframe"], r["kind"]): r
            for r in self.lake.scan("sync_status")
            .filter(pl.col("symbol").is_in(sorted({u.symbol for u in units})))
            .select(*_STATUS_KEY, *_STATUS_KEPT)
            .collect()
            .iter_rows(named=True)
        }
        rows = []
        finished = []
        for o in batch.outcomes:
            u = o.unit
            prev = old.get((u.segment, u.symbol, u.timeframe, u.kind), {})
            c = cov.get((u.symbol, u.timeframe), {})
            counts = per_unit.get((u.symbol, u.timeframe), {}) if u.kind == "ohlcv" else {}
            fetched = 0 if o.frame is None else o.frame.height
            changed = (
                counts.get("new", 0) + counts.get("changed", 0) if u.kind == "ohlcv" else fetched
            )
            if o.error is None:
                self.ok += 1
                status = "ok"
                checked = min(x for x in (prev.get("checked_from"), u.start) if x is not None)
                failures = 0
            else:
                self.failed += 1
                status = "failed"
                checked = prev.get("checked_from")
                failures = int(prev.get("consecutive_failures") or 0) + 1
                self.errors.append(
                    redact(f"{u.symbol} {u.timeframe} {u.kind}: {o.error}", self.settings.secrets())
                )
            err = redact(o.error, self.settings.secrets()) if o.error else None
            finished.append((u, status, changed, err))
            rows.append(
                {
                    "segment": u.segment,
                    "symbol": u.symbol,
                    "timeframe": u.timeframe,
                    "kind": u.kind,
                    "provider": u.provider,
                    "first_ts": c.get("first_ts"),
                    "last_ts": c.get("last_ts"),
                    "rows": c.get("rows")
                    if u.kind == "ohlcv"
                    else (fetched if o.error is None else prev.get("rows")),
                    "checked_from": checked,
                    "last_attempt_at": now,
                    "last_success_at": now if o.error is None else prev.get("last_success_at"),
                    "status": status,
                    "error": err,
                    "consecutive_failures": failures,
                    "run_id": self.run_id,
                }
            )
            self.log.add(
                u.task_name,
                status="success" if o.error is None else "failed",
                rows_updated=changed,
                error=err,
                started_at=o.started_at,
                completed_at=o.completed_at,
                metadata={
                    "provider": u.provider,
                    "reason": u.reason,
                    "start": u.start.isoformat(),
                    "end": u.end.isoformat(),
                    "fetched": fetched,
                    "segment": u.segment,
                    **counts,
                },
            )
        frame = pl.DataFrame(rows, schema=polars_schema("sync_status"))
        self.lake.upsert("sync_status", frame, run_id=self.run_id, stage="sync")
        self.log.flush(self.lake)
        for u, status, changed, err in finished:  # committed: tell watchers task by task
            self.progress(
                "task",
                symbol=u.symbol,
                timeframe=u.timeframe,
                kind=u.kind,
                status=status,
                rows=changed,
                error=err,
            )


def run_sync(
    settings: Settings,
    *,
    segments: tuple[str, ...] | list[str] = (),
    provider: str | None = None,
    symbols: list[str] | tuple[str, ...] | None = None,
    timeframes: list[str] | tuple[str, ...] | None = None,
    kinds: list[str] | tuple[str, ...] | None = None,
    scope: str = "all",
    limit: int | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    trigger: str = "cli",
    stage: str = "sync",
    run_id: str | None = None,
    cluster: str | None = None,
    client: Any = None,
) -> StageResult:
    """Fetch what the lake is missing and commit it, holding the lake's writer lock;
    ``dry_run`` only plans. ``stage`` names the run in its result and ``sync_logs``
    (``backfill`` for a backfill). ``cluster`` (``tcp://host:8786`` or ``local:N``) fans the
    fetches out over Dask workers under one rate limit per provider (``client``: an open Dask
    client to use instead); this process still plans and commits.

    The kind ``market`` (market status and calendars, not per symbol) is served by the
    market stage from ``market_cache`` within its TTL; the other kinds are planned per symbol.
    """
    from marketlake.pipeline.planning import parse_when
    from marketlake.pipeline.segments import named

    # before the plan, not at the lock: planning and a files import's read allocate enough
    # for full collections, each walking every object the imports made
    freeze_imports()
    special = [s for s in segments if (seg := named(settings).get(s)) and seg.task != "sync"]
    if special:
        from marketlake.pipeline.stages.segment_tasks import run_segment_task

        results = [
            run_segment_task(
                settings,
                name,
                timeframes=timeframes,
                symbols=symbols,
                start=start,
                dry_run=dry_run,
                progress=progress,
                trigger=trigger,
            )
            for name in special
        ]
        rest = [s for s in segments if s not in special]
        if rest:
            results.insert(
                0,
                run_sync(
                    settings,
                    segments=rest,
                    provider=provider,
                    symbols=symbols,
                    timeframes=timeframes,
                    kinds=kinds,
                    scope=scope,
                    limit=limit,
                    start=start,
                    end=end,
                    force=force,
                    dry_run=dry_run,
                    progress=progress,
                    trigger=trigger,
                    stage=stage,
                    cluster=cluster,
                    client=client,
                ),
            )
        out = results[0]
        for r in results[1:]:
            out = _merged(out, r)
        return out

    kinds = list(dict.fromkeys(kinds or ()))
    if "market" in kinds:
        kinds.remove("market")
        market = _sync_market(settings, provider, trigger, dry_run)
        if not kinds:
            return market
        rest = run_sync(
            settings,
            segments=segments,
            provider=provider,
            symbols=symbols,
            timeframes=timeframes,
            kinds=kinds,
            scope=scope,
            limit=limit,
            start=start,
            end=end,
            force=force,
            dry_run=dry_run,
            progress=progress,
            trigger=trigger,
            stage=stage,
            run_id=run_id,
            cluster=cluster,
            client=client,
        )
        return _merged(rest, market)
    req = SyncRequest(
        segments=tuple(segments),
        provider=provider,
        symbols=tuple(symbols or ()),
        timeframes=tuple(timeframes or ()),
        kinds=tuple(kinds or ()),
        scope=scope,
        limit=limit,
        start=parse_when(start, "--start"),
        end=parse_when(end, "--end"),
        force=force,
    )
    if provider is not None:
        provider_class(provider)  # unknown provider: a usage error before anything runs
    sync = Sync(settings, req, progress=progress, trigger=trigger, stage=stage, run_id=run_id)
    t0 = time.perf_counter()
    if provider is not None and not dry_run and cluster is None and client is None:
        # e.g. a files import reads its file while we plan
        sync.providers.prepare(provider, req.timeframes)
    # usage errors before any lock or write
    planned = plan_with_coverage(settings, sync.lake, req, sync.now)
    units = planned.units
    if not dry_run:
        # a plan made before waiting for another writer may re-fetch what it landed: the
        # diff under the lock marks those bars unchanged
        if (cluster is None and client is None) or not units:
            with writing(settings, sync.run_id, stage):
                return sync.run(units, planned=planned)
        from marketlake.pipeline.stages.fanout import cluster_fetcher

        with cluster_fetcher(sync, cluster, client) as fetcher:
            with writing(settings, sync.run_id, stage):
                return sync.run(units, fetcher, planned=planned)
    tasks = [t for u in units for t in u.tasks()]
    return StageResult(
        run_id=sync.run_id,
        stage=stage,
        tasks_skipped=len(units),
        duration_seconds=time.perf_counter() - t0,
        details={"dry_run": True, "tasks": tasks},
    )


def _sync_market(
    settings: Settings, provider: str | None, trigger: str, dry_run: bool
) -> StageResult:
    from marketlake.pipeline.stages import market

    now = settings.clock()
    run_id = new_run_id(now)
    if dry_run:
        lake = settings.open_lake()
        name = provider or market.market_provider(lake) or "yahoo"
        tasks = [
            {
                "symbol": key,
                "timeframe": NO_TIMEFRAME,
                "kind": "market",
                "start": now.isoformat(),
                "end": (now + market.ttl(key)).isoformat(),
                "provider": name,
                "reason": "expired or never fetched",
                "segment": "market",
            }
            for key in market.stale_keys(lake, market.DEFAULT_KEYS, now)
        ]
        return StageResult(run_id=run_id, stage="sync", details={"dry_run": True, "tasks": tasks})
    res = market.run_market(settings, provider=provider, trigger=trigger, run_id=run_id)
    assert res is not None  # required=True never returns None
    return replace(res, stage="sync")


def _merged(a: StageResult, b: StageResult) -> StageResult:
    """One sync result of two parts (the per-symbol kinds and market data)."""
    details = {**b.details, **a.details}
    if "tasks" in a.details or "tasks" in b.details:
        details["tasks"] = [*a.details.get("tasks", []), *b.details.get("tasks", [])]
    return StageResult(
        run_id=a.run_id,
        stage="sync",
        tasks_ok=a.tasks_ok + b.tasks_ok,
        tasks_failed=a.tasks_failed + b.tasks_failed,
        tasks_skipped=a.tasks_skipped + b.tasks_skipped,
        inserted=a.inserted + b.inserted,
        updated=a.updated + b.updated,
        unchanged=a.unchanged + b.unchanged,
        quarantined=a.quarantined + b.quarantined,
        duration_seconds=a.duration_seconds + b.duration_seconds,
        errors=a.errors + b.errors,
        details=details,
    )


__all__ = ["run_sync", "Sync", "NO_TIMEFRAME"]

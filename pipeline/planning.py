"""What to fetch: wanted coverage minus what the lake holds, plus an overlap window.

Coverage is computed from the lake itself in one query (first/last bar, rows and the first
provisional bar per symbol and timeframe), or taken from the coverage the last sync kept while
the table is still at the version it was kept for (:mod:`.kept_coverage`), so a plan can
never disagree with the data, and a run killed at any point re-plans exactly what is missing.
Each unit of work is one
(symbol, timeframe, kind), split into chunks no wider than the provider allows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.store import PUSHED_SYMBOLS, Lake
from marketlake.pipeline import freshness, kept_coverage, universe
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import SegmentSettings, Settings
from marketlake.pipeline.providers.base import KINDS, provider_class

DEFAULT_LOOKBACK = {
    "1m": timedelta(days=7),
    "15m": timedelta(days=59),
    "30m": timedelta(days=59),
    "1h": timedelta(days=365),
    "4h": timedelta(days=365),
    "1D": timedelta(days=5 * 365),
    "1W": timedelta(days=10 * 365),
    "1mo": timedelta(days=20 * 365),
}
SCOPES = ("all", "never", "stale")
NO_TIMEFRAME = "-"


@dataclass(frozen=True)
class Unit:
    """One (symbol, timeframe, kind) to fetch, as ``chunks`` of [start, end)."""

    segment: str
    symbol: str
    timeframe: str
    kind: str
    provider: str
    reason: str
    chunks: tuple[tuple[datetime, datetime], ...]
    fetch_timeframe: str | None = None
    provider_symbol: str | None = None
    instrument: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def start(self) -> datetime:
        return self.chunks[0][0]

    @property
    def end(self) -> datetime:
        return self.chunks[-1][1]

    @property
    def task_name(self) -> str:
        return f"sync:{self.kind}:{self.timeframe}:{self.symbol}"

    def tasks(self) -> list[dict[str, Any]]:
        """The plan rows of ``sync --dry-run --json``, one per chunk."""
        return [
            {
                "symbol": self.symbol,
                "timeframe": self.timeframe,
                "kind": self.kind,
                "start": s.isoformat(),
                "end": e.isoformat(),
                "provider": self.provider,
                "reason": self.reason,
                "segment": self.segment,
            }
            for s, e in self.chunks
        ]


@dataclass(frozen=True)
class SyncRequest:
    """The user's ask, as parsed from the command line."""

    segments: tuple[str, ...] = ()
    provider: str | None = None
    symbols: tuple[str, ...] = ()
    timeframes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    scope: str = "all"
    limit: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    force: bool = False

    def __post_init__(self) -> None:
        """Validate the ask before anything runs; timeframe aliases become canonical names."""
        if self.scope not in SCOPES:
            raise ConfigError(f"--scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        bad_kinds = [k for k in self.kinds if k not in KINDS]
        if bad_kinds:
            raise ConfigError(f"--kinds: unknown kind(s) {bad_kinds}; valid: {', '.join(KINDS)}")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"--limit must be >= 0, got {self.limit}")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ConfigError(
                f"--start ({self.start:%Y-%m-%d %H:%M}) must be before --end"
                f" ({self.end:%Y-%m-%d %H:%M})"
            )
        object.__setattr__(self, "timeframes", tfs.check(self.timeframes))


def parse_when(value: str | datetime | None, name: str) -> datetime | None:
    """ISO date or datetime (naive means UTC) -> aware UTC datetime."""
    if value is None or isinstance(value, datetime):
        return (
            value.astimezone(UTC)
            if isinstance(value, datetime) and value.tzinfo
            else (value.replace(tzinfo=UTC) if isinstance(value, datetime) else None)
        )
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a date like 2024-01-31, got {value!r}") from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def coverage(
    lake: Lake, symbols: list[str], timeframes: list[str], version: int | None = None
) -> pl.DataFrame:
    """Per (symbol, timeframe): first_ts, last_ts, rows, first_provisional — one lake query
    (of ``version``, default the latest). A few symbols filter inside the scan (file
    statistics skip the files without them); for many, every row of the timeframes is read
    anyway, so the symbol and timeframe columns are read as dictionaries (no string per row)
    and the symbols picked from the result."""
    pushed = 0 < len(symbols) <= PUSHED_SYMBOLS
    scan = lake.scan("ohlcv", version, dictionary=() if pushed else ("symbol", "timeframe"))
    scan = scan.filter(pl.col("timeframe").is_in(timeframes))
    if pushed:
        scan = scan.filter(pl.col("symbol").is_in(symbols))
    out = (
        scan.group_by("symbol", "timeframe")
        .agg(
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").max().alias("last_ts"),
            pl.len().alias("rows"),
            pl.col("ts")
            .filter(~pl.col("is_final").fill_null(True))
            .min()
            .alias("first_provisional"),
        )
        .collect()
        .with_columns(pl.col("symbol", "timeframe").cast(pl.String))
    )
    return out.filter(pl.col("symbol").is_in(symbols)) if symbols and not pushed else out


def select_segments(
    settings: Settings, req: SyncRequest, instruments: pl.DataFrame
) -> list[tuple[SegmentSettings, pl.DataFrame]]:
    """The segments a request covers, each with its instruments (by default one segment per
    asset type, using the configured segment of that name when there is one)."""
    from marketlake.pipeline import segments as named_segments

    out = []
    if req.segments:
        known_segments = named_segments.named(settings)
        for name in req.segments:
            seg = known_segments.get(name)
            if seg is None:
                if name in set(instruments.get_column("asset_type").to_list()) or name in (
                    "equity",
                    "etf",
                    "index",
                    "crypto",
                    "fx",
                    "future",
                    "option",
                ):
                    seg = SegmentSettings(name=name, asset_types=(name,))
                else:
                    known = sorted(
                        set(known_segments)
                        | set(instruments.get_column("asset_type").unique().to_list())
                    )
                    raise ConfigError(f"unknown segment {name!r}; known: {', '.join(known)}")
            out.append((seg, named_segments.select(seg, instruments)))
        return out
    for asset in sorted(set(instruments.get_column("asset_type").to_list())):
        seg = settings.segments.get(asset) or SegmentSettings(name=asset, asset_types=(asset,))
        out.append((seg, instruments.filter(pl.col("asset_type") == asset)))
    return out


def split_range(
    start: datetime, end: datetime, width: timedelta | None
) -> tuple[tuple[datetime, datetime], ...]:
    if width is None or end - start <= width:
        return ((start, end),)
    out = []
    s = start
    while s < end:
        e = min(s + width, end)
        out.append((s, e))
        s = e
    return tuple(out)


def _provider_symbol(row: Mapping[str, Any], provider: str) -> str | None:
    raw = row.get("provider_symbols")
    if not raw:
        return None
    return _symbols_of(raw).get(provider)


@lru_cache(maxsize=4096)
def _symbols_of(raw: str) -> Mapping[str, Any]:
    """An instrument's ``provider_symbols`` JSON, parsed once per text (instruments imported
    together share it)."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return MappingProxyType({})
    return MappingProxyType(parsed if isinstance(parsed, dict) else {})


def instrument_routes(row: Mapping[str, Any]) -> dict[str, str]:
    """The instrument's own per-kind providers (its ``routes``, set on import), e.g.
    ``{"profile": "coingecko"}``."""
    raw = row.get("routes")
    try:
        routes = json.loads(raw) if raw else None
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in routes.items()} if isinstance(routes, dict) else {}


def route(kind: str, row: Mapping[str, Any], seg: SegmentSettings, forced: str | None) -> str:
    """The provider serving ``kind`` for one instrument: ``--provider``, else the
    instrument's own route for the kind, else the segment's route (when the instrument has
    that provider's symbol, or its own provider does not serve the kind), else the segment's
    provider, else the instrument's."""
    if forced:
        return forced
    own = instrument_routes(row).get(kind)
    if own:
        return own
    default = seg.provider or row.get("provider") or "synthetic"
    routed = seg.routes.get(kind)
    if routed and routed != default:
        if _provider_symbol(row, routed) is not None:
            return routed
        try:
            if kind not in provider_class(default).capabilities.kinds:
                return routed
        except ConfigError:
            return routed
    return default


@dataclass
class Planned:
    """A plan's units and the coverage it was made from: per (symbol, timeframe) the row of
    :func:`coverage`, as of ohlcv ``version`` (the sync keeps it up to date with its own
    commits, so writing ``sync_status`` needs no second scan of the lake)."""

    units: list[Unit]
    coverage: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    version: int | None = None
    # the series ``coverage`` holds every one of (those absent have no bars), and whether
    # it came from the coverage the last sync kept (:mod:`.kept_coverage`)
    symbols: tuple[str, ...] = ()
    timeframes: tuple[str, ...] = ()
    kept: bool = False


def plan(settings: Settings, lake: Lake, req: SyncRequest, now: datetime) -> list[Unit]:
    """Every unit the request needs, ordered by symbol."""
    return plan_with_coverage(settings, lake, req, now).units


def plan_with_coverage(settings: Settings, lake: Lake, req: SyncRequest, now: datetime) -> Planned:
    """:func:`plan`, with the coverage it read."""
    end = min(req.end or now, now)
    if req.start is not None and req.start >= end:
        raise ConfigError(
            f"--start ({req.start:%Y-%m-%d %H:%M}) is not before now ({end:%Y-%m-%d %H:%M})"
        )
    instruments = universe.load(lake, symbols=list(req.symbols) or None)
    if instruments.is_empty():
        return Planned([])
    segs = select_segments(settings, req, instruments)
    all_symbols = sorted({s for _, f in segs for s in f.get_column("symbol").to_list()})
    all_tfs = sorted({tf for seg, _ in segs for tf in (req.timeframes or seg.timeframes)})
    version = lake.version("ohlcv")
    cov = kept_coverage.load(lake, version, all_symbols, all_tfs)
    kept = cov is not None
    if cov is None:
        cov = {
            (r["symbol"], r["timeframe"]): r
            for r in coverage(lake, all_symbols, all_tfs, version).iter_rows(named=True)
        }
    status = {
        (r["segment"], r["symbol"], r["timeframe"], r["kind"]): r
        for r in lake.scan("sync_status")
        .filter(pl.col("symbol").is_in(all_symbols))
        .collect()
        .iter_rows(named=True)
    }
    stale_before = now - timedelta(hours=settings.stale_after_hours)
    caps_of: dict[str, Any] = {}  # a provider's capabilities, or the error loading it

    def capabilities(name: str) -> Any:
        if name not in caps_of:
            try:
                caps_of[name] = provider_class(name).capabilities
            except ConfigError as exc:
                caps_of[name] = exc
        if isinstance(caps_of[name], ConfigError):
            raise caps_of[name]
        return caps_of[name]

    units: list[Unit] = []
    for seg, frame in segs:
        kinds = req.kinds or seg.kinds
        seg_tfs = req.timeframes or seg.timeframes
        for row in frame.iter_rows(named=True):
            for kind in kinds:
                if kind == "market":  # market is not per symbol
                    continue
                pname = route(kind, row, seg, req.provider)
                try:
                    caps = capabilities(pname)
                except ConfigError:  # only this provider's tasks fail (at fetch time)
                    units += _unavailable(seg, row, pname, (kind,), seg_tfs, req, end)
                    continue
                if kind not in caps.kinds:
                    continue
                psym = _provider_symbol(row, pname)
                if kind != "ohlcv":
                    st = status.get((seg.name, row["symbol"], NO_TIMEFRAME, kind))
                    fresh = (
                        st
                        and st["status"] == "ok"
                        and st["last_success_at"]
                        and st["last_success_at"] >= stale_before
                    )
                    if req.scope == "never" and st and st["last_success_at"]:
                        continue
                    if fresh and not req.force:
                        continue
                    start = (
                        req.start
                        or parse_when(seg.start, "segment start")
                        or now - DEFAULT_LOOKBACK["1D"]
                    )
                    if start >= end:
                        continue
                    units.append(
                        Unit(
                            seg.name,
                            row["symbol"],
                            NO_TIMEFRAME,
                            kind,
                            pname,
                            "forced" if req.force else ("refresh" if st else "never"),
                            ((start, end),),
                            None,
                            psym,
                            row,
                        )
                    )
                    continue
                for tf in seg_tfs:
                    fetch_tf = tfs.source_for(tf, caps.timeframes)
                    if fetch_tf is None:
                        continue
                    u = _plan_bars(
                        seg.name,
                        row,
                        tf,
                        fetch_tf,
                        pname,
                        psym,
                        caps,
                        req,
                        settings,
                        cov.get((row["symbol"], tf)),
                        status.get((seg.name, row["symbol"], tf, "ohlcv")),
                        end,
                        now,
                        stale_before,
                    )
                    if u is not None:
                        units.append(u)
    units.sort(key=lambda u: (u.symbol, u.timeframe, u.kind))
    if req.limit is not None:  # after the scope, so `--scope never --limit 1` plans one symbol
        keep = set(sorted({u.symbol for u in units})[: req.limit])
        units = [u for u in units if u.symbol in keep]
    return Planned(units, cov, version, tuple(all_symbols), tuple(all_tfs), kept)


def _unavailable(seg, row, pname, kinds, seg_tfs, req, end) -> list[Unit]:
    """Units for an instrument whose provider cannot be loaded: planned so that they fail,
    are logged and leave every other provider's tasks running."""
    out = []
    for kind in kinds:
        if kind == "market":
            continue
        for tf in seg_tfs if kind == "ohlcv" else (NO_TIMEFRAME,):
            lookback = DEFAULT_LOOKBACK.get(tf, DEFAULT_LOOKBACK["1D"])
            start = req.start or end - lookback
            if start < end:
                chunk = ((start, end),)
                reason = "provider unavailable"
                out.append(
                    Unit(seg.name, row["symbol"], tf, kind, pname, reason, chunk, None, None, row)
                )
    return out


def _plan_bars(
    segment,
    row,
    tf,
    fetch_tf,
    pname,
    psym,
    caps,
    req: SyncRequest,
    settings: Settings,
    cov,
    st,
    end,
    now,
    stale_before,
) -> Unit | None:
    lookback = DEFAULT_LOOKBACK[tf]
    start = req.start or parse_when(None, "") or end - lookback
    hist = caps.history.get(fetch_tf)
    if hist is not None:
        start = max(start, now - hist)
    start = tfs.floor(start, tf)
    if start >= end:
        return None
    if req.force or cov is None:
        if req.scope == "stale" and cov is not None and cov["last_ts"] >= stale_before:
            return None
        if (
            cov is None
            and st is not None
            and st.get("checked_from") is not None
            and st["checked_from"] <= start
            and st["status"] == "ok"
            and not req.force
        ):
            # asked before and the provider had nothing: only the tail can be new
            start = max(start, tfs.floor(st["last_attempt_at"] or start, tf))
            if start >= end:
                return None
        reason = "forced" if req.force else "never synced"
        return _unit(segment, row, tf, fetch_tf, pname, psym, caps, reason, start, end)
    if req.scope == "never":
        return None
    if req.scope == "stale" and cov["last_ts"] >= stale_before and cov["first_provisional"] is None:
        return None
    chunks: list[tuple[datetime, datetime]] = []
    reason = []
    checked = st.get("checked_from") if st else None
    if start < cov["first_ts"] and (checked is None or start < checked):
        chunks.append((start, cov["first_ts"]))
        reason.append("backfill")
    tail = tfs.shift(cov["last_ts"], tf, -settings.overlap_bars)
    if cov["first_provisional"] is not None:
        tail = min(tail, cov["first_provisional"])
        reason.append("provisional")
    tail = max(tail, cov["first_ts"])
    if (
        tfs.shift(cov["last_ts"], tf, 1) < end
        and _session_missing(row, tf, cov["last_ts"], min(end, now))
    ) or cov["first_provisional"] is not None:
        chunks.append((tail, end))
        reason.append("update")
    chunks = [(s, e) for s, e in chunks if s < e]
    if not chunks:
        return None
    unit_chunks: list[tuple[datetime, datetime]] = []
    for s, e in chunks:
        unit_chunks.extend(split_range(s, e, caps.max_range.get(fetch_tf)))
    return Unit(
        segment,
        row["symbol"],
        tf,
        "ohlcv",
        pname,
        "+".join(dict.fromkeys(reason)),
        tuple(unit_chunks),
        fetch_tf,
        psym,
        row,
    )


def _session_missing(row: Mapping[str, Any], tf: str, last_ts: datetime, at: datetime) -> bool:
    """Whether a session of the instrument's exchange calendar (exchange-calendars, as
    ``status`` uses) has closed after the series' last bar by ``at``: days the exchange was
    closed (weekends, holidays) are not a gap to re-request, a missing session is."""
    if tf not in tfs.DURATION:
        return True
    try:
        cal = freshness.calendar_for(
            row.get("exchange"), row.get("asset_type"), row.get("timezone")
        )
        return last_ts < freshness.expected_last_bar(cal, tf, at)
    except Exception:  # noqa: BLE001 - a calendar the library cannot build: ask, as before
        return True


def _unit(segment, row, tf, fetch_tf, pname, psym, caps, reason, start, end) -> Unit:
    return Unit(
        segment,
        row["symbol"],
        tf,
        "ohlcv",
        pname,
        reason,
        split_range(start, end, caps.max_range.get(fetch_tf)),
        fetch_tf,
        psym,
        row,
    )

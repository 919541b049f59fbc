"""Expired F&O contracts, one expiry at a time, with a checkpoint per expiry.

For each underlying of the segment (``NSE_INDEX|Nifty 50`` …): the expiries Upstox lists,
oldest first; for each expiry not yet finished, its option and future contracts (into
``instruments``, inactive, lot size never null) and their candles (into ``ohlcv``). When an
expiry's candles have landed, a ``sync_status`` row (symbol ``<underlying>@<expiry>``, kind
``expiry``, one per timeframe) records it as done. A run killed mid-way therefore resumes at
the first unfinished expiry, and a re-run never downloads a finished one again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from marketlake.errors import AuthError, ConfigError, ProviderError
from marketlake.lake.store import Lake
from marketlake.lake.validate import quarantine_rows
from marketlake.pipeline import segments as named_segments
from marketlake.pipeline.config import SegmentSettings, Settings
from marketlake.pipeline.providers.base import provider_class, split_rejects
from marketlake.pipeline.providers.symbols import provider_symbol
from marketlake.pipeline.redact import redact
from marketlake.pipeline.runs import StageResult, Stopwatch, TaskLog, new_run_id, writing
from marketlake.pipeline.stages.ingest import land_bars

CHECKPOINT_KIND = "expiry"
# how far before its expiry a contract's candles are asked for, per timeframe
LIFETIME = {"1m": timedelta(days=30), "15m": timedelta(days=60), "30m": timedelta(days=90)}
DEFAULT_LIFETIME = timedelta(days=120)
Progress = Callable[..., None]


def checkpoint_symbol(underlying: str, expiry: date) -> str:
    return f"{underlying}@{expiry.isoformat()}"


def finished(lake: Lake, segment: str) -> set[tuple[str, str]]:
    """``(checkpoint symbol, timeframe)`` of every expiry already synced."""
    st = lake.scan("sync_status").filter(
        (pl.col("segment") == segment)
        & (pl.col("kind") == CHECKPOINT_KIND)
        & (pl.col("status") == "ok")
    )
    return {(s, tf) for s, tf in st.select("symbol", "timeframe").collect().iter_rows()}


def run_fo_expired(
    settings: Settings,
    *,
    segment: str = "fo_expired",
    underlyings: list[str] | None = None,
    timeframes: list[str] | None = None,
    start: str | datetime | None = None,
    progress: Progress | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
) -> StageResult:
    """Sync every unfinished expiry of the segment's underlyings (see the module docstring)."""
    from marketlake.pipeline import timeframes as tfs
    from marketlake.pipeline.planning import parse_when

    seg = named_segments.named(settings).get(segment)
    if seg is None or seg.task != "fo_expired":
        raise ConfigError(f"segment {segment!r} is not an expired-F&O segment")
    unders = list(underlyings or seg.symbols)
    if not unders:
        raise ConfigError(f"segment {segment!r} names no underlyings (symbols = [...])")
    tf_list = list(tfs.check(timeframes or seg.timeframes))
    since = parse_when(start, "--start") or parse_when(seg.start, f"segments.{segment}.start")
    now = settings.clock()
    run_id = run_id or new_run_id(now)
    with writing(settings, run_id, "sync"):
        return _Run(settings, seg, run_id, trigger, progress).run(unders, tf_list, since)


class _Run:
    def __init__(
        self,
        settings: Settings,
        seg: SegmentSettings,
        run_id: str,
        trigger: str,
        progress: Progress | None,
    ) -> None:
        self.settings = settings
        self.seg = seg
        self.run_id = run_id
        self.lake = settings.open_lake()
        self.log = TaskLog(run_id, "sync", trigger, settings.secrets(), clock=settings.clock)
        self.progress = progress or (lambda *a, **k: None)
        self.totals = dict(inserted=0, updated=0, unchanged=0, quarantined=0)
        self.ok = self.failed = self.skipped = 0
        self.errors: list[str] = []
        name = seg.provider or "upstox"
        self.provider = provider_class(name)(
            settings.provider(name), home=settings.home, clock=settings.clock
        )

    def run(self, underlyings: list[str], timeframes: list[str], since: datetime | None):
        watch = Stopwatch()
        done = finished(self.lake, self.seg.name)
        today = self.settings.clock().date()
        try:
            work: list[tuple[str, date]] = []
            for u in underlyings:
                try:
                    expiries = self.provider.expiries(u)
                except AuthError:
                    raise
                except ProviderError as exc:
                    self._failed(f"sync:expiries:{u}", exc)
                    continue
                for e in expiries:
                    if e >= today or (since is not None and e < since.date()):
                        continue
                    if all((checkpoint_symbol(u, e), tf) in done for tf in timeframes):
                        self.skipped += 1
                        continue
                    work.append((u, e))
            self.progress("start", total=len(work))
            for u, e in work:
                self._expiry(
                    u, e, [tf for tf in timeframes if (checkpoint_symbol(u, e), tf) not in done]
                )
                self.progress("advance", symbol=checkpoint_symbol(u, e))
        except AuthError as exc:
            self._failed("sync:fo_expired", exc)
        finally:
            self.provider.close()
            self.log.flush(self.lake)
        return StageResult(
            run_id=self.run_id,
            stage="sync",
            tasks_ok=self.ok,
            tasks_failed=self.failed,
            tasks_skipped=self.skipped,
            duration_seconds=watch.elapsed,
            errors=tuple(self.errors[:100]),
            **self.totals,
        )

    def _failed(self, task: str, exc: Exception) -> None:
        msg = redact(str(exc), self.settings.secrets())
        self.failed += 1
        self.errors.append(msg)
        self.log.add(task, status="failed", error=msg, started_at=self.settings.clock())

    def _expiry(self, underlying: str, expiry: date, timeframes: list[str]) -> None:
        """One expiry: contracts, then candles, then its checkpoint (last, so a kill before
        it redoes the expiry, which changes nothing already landed)."""
        started = self.settings.clock()
        task = f"sync:expiry:{checkpoint_symbol(underlying, expiry)}"
        try:
            contracts, problems = self.provider.expired_contracts(underlying, expiry)
            self.errors += problems[:20]
            if not contracts.is_empty():
                stamped = contracts.with_columns(
                    pl.lit(started).cast(pl.Datetime("us", "UTC")).alias("updated_at"),
                    pl.lit(self.run_id).alias("run_id"),
                )
                self.lake.upsert("instruments", stamped, run_id=self.run_id, stage="sync")
            self.progress("contracts", symbol=checkpoint_symbol(underlying, expiry))
            status_rows = []
            for tf in timeframes:
                frames = []
                for row in contracts.iter_rows(named=True):
                    key = provider_symbol(row, self.provider.name)
                    end = datetime(expiry.year, expiry.month, expiry.day, tzinfo=UTC)
                    end += timedelta(days=1)
                    begin = end - LIFETIME.get(tf, DEFAULT_LIFETIME)
                    bars = self.provider.expired_candles(row["symbol"], key, tf, begin, end)
                    frames.append(bars)
                landed = self._land(frames, tf)
                status_rows.append(self._checkpoint(underlying, expiry, tf, landed, started))
            self.lake.upsert(
                "sync_status",
                pl.DataFrame(status_rows, schema_overrides=_STATUS_TYPES),
                run_id=self.run_id,
                stage="sync",
            )
        except AuthError:
            raise
        except ProviderError as exc:
            self._failed(task, exc)
            return
        self.ok += 1
        self.log.add(
            task,
            status="success",
            rows_updated=sum(r["rows"] or 0 for r in status_rows),
            started_at=started,
            metadata={"contracts": contracts.height, "timeframes": timeframes},
        )

    def _land(self, frames: list[pl.DataFrame], tf: str) -> dict[str, Any]:
        frames = [f for f in frames if not f.is_empty()]
        if not frames:
            return {"rows": 0, "first_ts": None, "last_ts": None}
        bars, rejected = split_rejects(pl.concat(frames, how="diagonal_relaxed"))
        landed = land_bars(
            self.lake, bars, run_id=self.run_id, now=self.settings.clock(), timeframe=tf
        )
        bad = pl.concat([rejected, landed.rejected], how="diagonal_relaxed")
        if not bad.is_empty():
            q = quarantine_rows(
                bad, run_id=self.run_id, table="ohlcv", source="upstox", now=self.settings.clock()
            )
            self.lake.upsert("quarantine", q, run_id=self.run_id, stage="sync")
            self.totals["quarantined"] += bad.height
        self.totals["inserted"] += landed.inserted
        self.totals["updated"] += landed.updated
        self.totals["unchanged"] += landed.unchanged
        return {"rows": bars.height, "first_ts": bars["ts"].min(), "last_ts": bars["ts"].max()}

    def _checkpoint(
        self, underlying: str, expiry: date, tf: str, landed: dict[str, Any], started: datetime
    ) -> dict[str, Any]:
        now = self.settings.clock()
        return {
            "segment": self.seg.name,
            "symbol": checkpoint_symbol(underlying, expiry),
            "timeframe": tf,
            "kind": CHECKPOINT_KIND,
            "provider": self.provider.name,
            "first_ts": landed["first_ts"],
            "last_ts": landed["last_ts"],
            "rows": landed["rows"],
            "checked_from": started,
            "last_attempt_at": now,
            "last_success_at": now,
            "status": "ok",
            "error": None,
            "consecutive_failures": 0,
            "run_id": self.run_id,
        }


_STATUS_TYPES = {
    "first_ts": pl.Datetime("us", "UTC"),
    "last_ts": pl.Datetime("us", "UTC"),
    "checked_from": pl.Datetime("us", "UTC"),
    "last_attempt_at": pl.Datetime("us", "UTC"),
    "last_success_at": pl.Datetime("us", "UTC"),
    "rows": pl.Int64,
    "consecutive_failures": pl.Int64,
    "error": pl.String,
}

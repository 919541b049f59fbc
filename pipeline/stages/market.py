"""Market status and calendars into ``market_cache``, with time-to-live.

A key is fetched only when the lake holds no unexpired value for it: market status lives
30 minutes, the earnings/IPO/splits/economic calendars one hour. The provider answers
``fetch_market(key) -> JSON text`` (see :meth:`YahooProvider.fetch_market`); one failing key
never stops the others, and each key is one ``sync_logs`` task.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import polars as pl

from marketlake.errors import ProviderError
from marketlake.lake.store import Lake
from marketlake.pipeline.config import Settings
from marketlake.pipeline.redact import redact
from marketlake.pipeline.runs import StageResult, Stopwatch, TaskLog, new_run_id, utcnow

STAGE = "market"
DEFAULT_KEYS = (
    "status:US",
    "calendar:earnings",
    "calendar:ipo",
    "calendar:splits",
    "calendar:economic",
)
TTL = {"status": timedelta(minutes=30), "calendar": timedelta(hours=1)}


def ttl(key: str) -> timedelta:
    """How long a cached value of ``key`` stays fresh."""
    return TTL.get(key.partition(":")[0], timedelta(hours=1))


def fresh_keys(lake: Lake, keys: Iterable[str], now: datetime) -> set[str]:
    """The keys whose cached value has not expired at ``now``."""
    keys = list(keys)
    cached = (
        lake.scan("market_cache")
        .filter(pl.col("key").is_in(keys) & (pl.col("expires_at") > now))
        .select("key")
        .collect()
    )
    return set(cached.get_column("key").to_list())


def refresh_market(
    settings: Settings,
    lake: Lake,
    provider,
    keys: Iterable[str] = DEFAULT_KEYS,
    now: datetime | None = None,
    *,
    trigger: str = "cli",
) -> StageResult:
    """Fetch the expired or missing ``keys`` and upsert them into ``market_cache``."""
    watch = Stopwatch()
    now = now or utcnow()
    keys = list(dict.fromkeys(keys))
    run_id = new_run_id(now)
    tasks = TaskLog(run_id, STAGE, trigger, settings.secrets())
    skip = fresh_keys(lake, keys, now)
    rows, errors = [], []
    ok = failed = 0
    for key in keys:
        if key in skip:
            continue
        started = utcnow()
        try:
            value = provider.fetch_market(key)
        except ProviderError as exc:
            failed += 1
            message = redact(str(exc), settings.secrets())
            errors.append(message)
            tasks.add(f"market:{key}", status="failed", error=message, started_at=started)
            continue
        ok += 1
        rows.append(
            {
                "key": key,
                "value": value,
                "provider": provider.name,
                "fetched_at": now,
                "expires_at": now + ttl(key),
            }
        )
        tasks.add(f"market:{key}", status="ok", rows_updated=1, started_at=started)
    write = None
    if rows:
        frame = pl.DataFrame(
            rows,
            schema_overrides={
                "fetched_at": pl.Datetime("us", "UTC"),
                "expires_at": pl.Datetime("us", "UTC"),
            },
        )
        write = lake.upsert("market_cache", frame, run_id=run_id, stage=STAGE)
    tasks.flush(lake)
    return StageResult(
        run_id=run_id,
        stage=STAGE,
        tasks_ok=ok,
        tasks_failed=failed,
        tasks_skipped=len(skip),
        inserted=write.inserted if write else 0,
        updated=write.updated if write else 0,
        unchanged=write.unchanged if write else 0,
        duration_seconds=watch.elapsed,
        errors=tuple(errors),
    )

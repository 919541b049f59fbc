"""Market status and calendars into ``market_cache``, with time-to-live.

A key is fetched only when the lake holds no unexpired value for it: market status lives
30 minutes, the earnings/IPO/splits/economic calendars one hour. The provider answers
a market request (``FetchRequest.market(key)``) with the key's JSON ``value``; one failing key
never stops the others, and each key is one ``sync_logs`` task. :func:`run_market` is the
entry of ``sync --kinds market`` and of the daily run's ``market`` step.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import polars as pl

from marketlake.errors import ConfigError, TaskError
from marketlake.lake.store import Lake
from marketlake.lake.tables import polars_schema
from marketlake.pipeline.config import Settings
from marketlake.pipeline.providers.base import FetchRequest, provider_class
from marketlake.pipeline.runs import (
    StageResult,
    Stopwatch,
    TaskLog,
    exclusive,
    new_run_id,
    survivable,
    task_error,
)

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


@exclusive(STAGE)
def refresh_market(
    settings: Settings,
    lake: Lake,
    provider,
    keys: Iterable[str] = DEFAULT_KEYS,
    now: datetime | None = None,
    *,
    trigger: str = "cli",
    run_id: str | None = None,
) -> StageResult:
    """Fetch the expired or missing ``keys`` and upsert them into ``market_cache``."""
    watch = Stopwatch()
    now = now or settings.clock()
    keys = list(dict.fromkeys(keys))
    run_id = run_id or new_run_id(now)
    tasks = TaskLog(run_id, STAGE, trigger, settings.secrets(), clock=settings.clock)
    skip = fresh_keys(lake, keys, now)
    rows: list[dict] = []
    errors: list[TaskError] = []
    ok = failed = 0
    for key in keys:
        if key in skip:
            continue
        started = settings.clock()
        try:
            value = provider.fetch(FetchRequest.market(key)).get_column("value")[0]
        except BaseException as exc:
            if not survivable(exc):
                raise
            failed += 1
            err = task_error(exc, stage=STAGE, run_id=run_id, secrets=settings.secrets())
            errors.append(err)
            tasks.add(
                f"market:{key}",
                status="failed",
                error=str(err),
                started_at=started,
                metadata={"provider": provider.name, "cause": type(exc).__name__},
            )
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
        tasks.add(f"market:{key}", status="success", rows_updated=1, started_at=started)
    write = None
    if rows:
        frame = pl.DataFrame(
            rows,
            schema_overrides=polars_schema("market_cache"),
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


def offers_market(name: str) -> bool:
    """True when provider ``name`` exists and serves market status and calendars."""
    try:
        cls = provider_class(name)
    except ConfigError:
        return False
    return "market" in cls.capabilities.kinds and callable(getattr(cls, "_fetch_market", None))


def market_provider(lake: Lake) -> str | None:
    """The provider of market data for this universe: the first (by name) of the active
    instruments' providers that serves it, or None."""
    from marketlake.pipeline import universe

    names = sorted(set(universe.load(lake).get_column("provider").drop_nulls().to_list()))
    return next((n for n in names if offers_market(n)), None)


def stale_keys(lake: Lake, keys: Iterable[str], now: datetime) -> list[str]:
    """The keys a refresh at ``now`` would fetch (missing or expired), in order."""
    keys = list(dict.fromkeys(keys))
    fresh = fresh_keys(lake, keys, now)
    return [k for k in keys if k not in fresh]


def run_market(
    settings: Settings,
    *,
    provider: str | None = None,
    keys: Iterable[str] = DEFAULT_KEYS,
    trigger: str = "cli",
    run_id: str | None = None,
    required: bool = True,
) -> StageResult | None:
    """Refresh ``market_cache`` from ``provider`` (default: the universe's market provider,
    else yahoo). With ``required=False`` (the daily run) a universe none of whose providers
    serves market data is not an error: nothing runs and None is returned."""
    lake = settings.open_lake()
    name = provider or market_provider(lake)
    if name is None:
        if not required:
            return None
        name = "yahoo"
    if not offers_market(name):
        provider_class(name)  # an unknown provider is reported as such
        raise ConfigError(f"provider {name!r} does not serve market status and calendars")
    now = settings.clock()
    prov = provider_class(name)(settings.provider(name), home=settings.home, clock=settings.clock)
    try:
        return refresh_market(settings, lake, prov, keys, now=now, trigger=trigger, run_id=run_id)
    finally:
        prov.close()

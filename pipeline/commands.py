"""What the smaller commands do once their flags are parsed: open the lake, make a run id,
call the pipeline and convert a usage problem into :class:`ConfigError`.

The CLI stays a thin layer of parsing and rendering; everything it would otherwise need to
know about lakes, run ids, DuckDB or indicator specs lives here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from marketlake.errors import ConfigError, ValidationError
from marketlake.lake.store import WriteResult
from marketlake.pipeline import universe
from marketlake.pipeline.config import Settings
from marketlake.pipeline.runs import new_run_id

UNIVERSE_COLUMNS = (
    "symbol",
    "name",
    "asset_type",
    "exchange",
    "is_etf",
    "provider",
    "timezone",
    "active",
)


def split_indicators(text: str | None) -> list[str] | None:
    """``"sma(20),macd(12,26,9)"`` -> ``["sma(20)", "macd(12,26,9)"]`` (commas inside
    parentheses belong to the spec)."""
    if not text:
        return None
    return [s.strip() for s in re.split(r",(?![^()]*\))", text) if s.strip()]


def import_universe(
    settings: Settings, file: Path, *, asset_type: str | None, provider: str | None
) -> tuple[WriteResult, list[str]]:
    """Upsert the instruments of a CSV; a missing or unusable file is a usage error."""
    if not file.is_file():
        raise ConfigError(f"universe import: file not found: {file}")
    try:
        return universe.import_csv(
            settings.open_lake(),
            file,
            run_id=new_run_id(settings.clock()),
            now=settings.clock(),
            asset_type=asset_type,
            provider=provider,
            wait=settings.lock_wait,
        )
    except ValidationError as exc:
        raise ConfigError(f"universe import: {exc}") from exc


def add_instrument(settings: Settings, symbol: str, **fields: Any) -> WriteResult:
    """Add or update one instrument; a bad symbol or asset type is a usage error."""
    try:
        return universe.add(
            settings.open_lake(),
            symbol,
            run_id=new_run_id(settings.clock()),
            wait=settings.lock_wait,
            now=settings.clock(),
            **fields,
        )
    except ValidationError as exc:
        raise ConfigError(f"universe add: {exc}") from exc


def refresh_universe(settings: Settings, source: str, file: Path | None = None):
    """``universe refresh SOURCE``: fetch the source's list and apply it."""
    from marketlake.pipeline.refresh import fetch_source, refresh

    try:
        listed, problems = fetch_source(settings, source, file)
        out = refresh(
            settings.open_lake(),
            source,
            listed,
            run_id=new_run_id(settings.clock()),
            now=settings.clock(),
            wait=settings.lock_wait,
        )
    except ValidationError as exc:
        raise ConfigError(f"universe refresh {source}: {exc}") from exc
    out.problems = problems + out.problems
    return out


def list_universe(settings: Settings, asset_type: str | None) -> pl.DataFrame:
    frame = universe.load(
        settings.open_lake(), asset_types=[asset_type] if asset_type else None, active_only=False
    )
    return frame.select(*UNIVERSE_COLUMNS)


def status_rows(settings: Settings) -> list[dict]:
    """Per-segment status at the settings' clock."""
    from marketlake.pipeline.reports import status

    return status(settings, settings.open_lake(), settings.clock())


def segment_overview(settings: Settings, names: list[str] | None = None) -> list[dict]:
    """The named segments (defaults and configured) with their state; unknown names are a
    usage error."""
    from marketlake.pipeline.stages.segment_tasks import overview

    rows = overview(settings, settings.open_lake(), settings.clock())
    if names:
        unknown = sorted(set(names) - {r["segment"] for r in rows})
        if unknown:
            known = ", ".join(r["segment"] for r in rows)
            raise ConfigError(f"unknown segment(s) {unknown}; known: {known}")
        rows = [r for r in rows if r["segment"] in names]
    return rows


def recent_logs(settings: Settings, *, limit: int, failed: bool, task: str | None) -> pl.DataFrame:
    from marketlake.pipeline.reports import logs

    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    return logs(settings.open_lake(), limit=limit, failed=failed, task=task)


def query(settings: Settings, sql: str, *, out: Path | None = None) -> pl.DataFrame:
    """One read-only SELECT over every lake table (see :mod:`marketlake.pipeline.query`);
    ``out``, where the caller will write the result, must lie outside the lake."""
    from marketlake.pipeline.query import check_out, run_query

    lake = settings.open_lake()
    check_out(lake, out)
    return run_query(lake, sql)


def export(
    settings: Settings,
    table: str,
    out_dir: Path,
    *,
    fmt: str,
    symbols: list[str] | None,
    timeframes: list[str] | None,
    start: str | None,
    end: str | None,
) -> tuple[Path, int]:
    from marketlake.pipeline.planning import parse_when
    from marketlake.pipeline.stages.export import export_table

    return export_table(
        settings.open_lake(),
        table,
        out_dir,
        fmt=fmt,
        symbols=symbols,
        timeframes=timeframes,
        start=parse_when(start, "--start"),
        end=parse_when(end, "--end"),
    )


def maintain(
    settings: Settings, *, tables: list[str] | None, vacuum_hours: int, verify: bool = False
) -> dict[str, Any]:
    """Compact and vacuum (``verify``: only check every data file, raising on damage); flags
    are checked before any table is touched."""
    from marketlake.lake.maintenance import maintain as run
    from marketlake.lake.maintenance import raise_on_damage
    from marketlake.lake.maintenance import verify as check
    from marketlake.lake.tables import TABLES

    if vacuum_hours < 0:
        raise ConfigError(f"--vacuum-hours must be >= 0, got {vacuum_hours}")
    unknown = [t for t in tables or () if t not in TABLES]
    if unknown:
        raise ConfigError(f"--tables: unknown table(s) {unknown}; tables: {', '.join(TABLES)}")
    if verify:
        lake = settings.open_lake()
        problems = check(lake, tables)
        raise_on_damage(problems)
        return {"verified": {t: lake.check_files(t) for t in tables or TABLES}, "damaged": []}
    return run(
        settings.open_lake(),
        tables=tables,
        vacuum_hours=vacuum_hours,
        run_id=new_run_id(settings.clock()),
        wait=settings.lock_wait,
    )

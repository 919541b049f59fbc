"""The bars' coverage a sync leaves behind, kept for the next plan.

A plan needs each series' coverage (first and last bar, rows, first provisional bar), which
one query reads from every bar of the timeframes asked: about 0.2 s of CPU for 2,600 symbols
x 10 years of daily bars, for a nightly that adds one bar to each. A sync knows the coverage
its commits leave: its plan's, extended by the rows each commit inserted, while it was the
only writer of ``ohlcv``. It keeps it in the home's cache, keyed by the ``ohlcv`` table's id
and version; a plan uses it only while the table is still at that version (a Delta version
never changes), so it is exactly what the query would read there. Any other commit
(compaction, a replace, another writer) leaves it stale and the plan reads the lake.
Deleting it is always safe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from marketlake.lake.atomic import atomic_write_bytes
from marketlake.lake.store import Lake

log = logging.getLogger("marketlake.sync")

FIELDS = ("first_ts", "last_ts", "rows", "first_provisional")
Coverage = dict[tuple[str, str], dict[str, Any]]


def path(home: Path) -> Path:
    return Path(home) / "cache" / "coverage" / "ohlcv.json"


def save(
    lake: Lake,
    version: int,
    symbols: Collection[str],
    timeframes: Collection[str],
    coverage: Mapping[tuple[str, str], Mapping[str, Any]],
) -> None:
    """Keep ``coverage``: every series of ``symbols`` x ``timeframes`` holding bars in
    ``ohlcv`` at ``version`` (a series it lacks has none). Written whole or not at all; a
    failure is logged, never raised (the next plan reads the lake)."""
    try:
        dt = lake.table("ohlcv", version)
        if dt is None:
            return
        wanted_symbols, wanted_tfs = set(symbols), set(timeframes)  # a list's `in` is a scan
        series = [
            [s, tf, *(_text(c.get(f)) for f in FIELDS)]
            for (s, tf), c in sorted(coverage.items())
            if s in wanted_symbols and tf in wanted_tfs
        ]
        data = {
            "table_id": dt.metadata().id,
            "version": version,
            "symbols": sorted(symbols),
            "timeframes": sorted(timeframes),
            "series": series,
        }
        atomic_write_bytes(path(lake.home), json.dumps(data).encode())
    except Exception as exc:  # noqa: BLE001 - a cache: the sync's commits stand without it
        log.warning("could not keep the bars' coverage for the next plan: %s", exc)


def load(
    lake: Lake, version: int | None, symbols: Collection[str], timeframes: Collection[str]
) -> Coverage | None:
    """The coverage of ``symbols`` x ``timeframes`` at ``ohlcv`` ``version`` (rows as
    :func:`~marketlake.pipeline.planning.coverage` gives them), or None when none was kept
    for that table, version and these series."""
    if version is None:
        return None
    try:
        data = json.loads(path(lake.home).read_bytes())
        if data["version"] != version:
            return None
        if not (
            set(symbols) <= set(data["symbols"]) and set(timeframes) <= set(data["timeframes"])
        ):
            return None
        dt = lake.table("ohlcv", version)
        if dt is None or dt.metadata().id != data["table_id"]:
            return None
        wanted_symbols, wanted_tfs = set(symbols), set(timeframes)
        out: Coverage = {}
        for s, tf, first, last, rows, provisional in data["series"]:
            if s in wanted_symbols and tf in wanted_tfs:
                out[(s, tf)] = {
                    "symbol": s,
                    "timeframe": tf,
                    "first_ts": datetime.fromisoformat(first),
                    "last_ts": datetime.fromisoformat(last),
                    "rows": int(rows),
                    "first_provisional": _when(provisional),
                }
        return out
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # damaged: read the lake
        log.warning("ignoring the kept coverage of the bars: %s", exc)
        return None


def _text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)

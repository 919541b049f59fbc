"""``universe refresh SOURCE``: bring the universe in line with a source's current list.

Sources: ``file`` (a CSV such as a Russell 2000 list), ``fmp-etf`` (FMP's ETF list),
``coingecko`` (the coin list), ``indodax`` (the pairs) and ``upstox`` (the NSE/BSE indices and
the current F&O contracts, options and futures, of their underlyings). A refresh adds new
instruments, updates changed ones (fields the source does not know are kept), marks those the
source listed before but lists no more as inactive (``active`` false, ``delisted_at`` now;
their bars and history stay), and reports duplicates without creating them: one instrument
listed twice, or listed under a second symbol (the same provider id as an instrument already
in the universe). Each
instrument remembers the source that listed it (``listed_by``), so a refresh
never touches instruments another source or a manual import brought.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.lock import writer
from marketlake.lake.store import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import Settings
from marketlake.pipeline.providers.base import FetchRequest, provider_class

# source -> the provider whose id identifies an instrument (None: the symbol alone)
SOURCES: dict[str, str | None] = {
    "file": None,
    "fmp-etf": "fmp",
    "coingecko": "coingecko",
    "indodax": "indodax",
    "upstox": "upstox",
}


@dataclass
class Refreshed:
    """What one refresh did."""

    source: str
    listed: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    inactivated: int = 0
    duplicates: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "listed": self.listed,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "inactivated": self.inactivated,
            "duplicates": self.duplicates,
            "problems": self.problems,
        }


def _doc(raw: Any) -> dict[str, Any]:
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def fetch_source(
    settings: Settings, source: str, path: Path | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """The source's current list (instrument rows, text or typed) and problems found."""
    if source not in SOURCES:
        raise ConfigError(f"unknown universe source {source!r}; sources: {', '.join(SOURCES)}")
    if source == "file":
        file = path or settings.universe_file
        if file is None:
            raise ConfigError("universe refresh file: give --file PATH or set [universe] file")
        if not Path(file).is_file():
            raise ConfigError(f"universe refresh file: file not found: {file}")
        return universe.read_csv(Path(file))
    name = SOURCES[source]
    prov = provider_class(name)(settings.provider(name), home=settings.home, clock=settings.clock)
    try:
        if source == "upstox":
            from marketlake.pipeline.segments import BSE_INDICES, FO_UNDERLYINGS, NSE_INDICES

            contracts, problems = prov.current_contracts(list(FO_UNDERLYINGS))
            frames = [contracts]
            indices = pl.DataFrame(
                {
                    "symbol": [*NSE_INDICES, *BSE_INDICES],
                    "asset_type": "index",
                    "exchange": [k.split("|")[0] for k in (*NSE_INDICES, *BSE_INDICES)],
                    "timezone": "Asia/Kolkata",
                    "currency": "INR",
                    "provider": "upstox",
                    "provider_symbols": [
                        json.dumps({"upstox": k}) for k in (*NSE_INDICES, *BSE_INDICES)
                    ],
                }
            )
            frames.append(indices)
            return pl.concat(frames, how="diagonal_relaxed"), problems
        return prov.fetch(FetchRequest.instruments()), []
    finally:
        prov.close()


def refresh(
    lake: Lake,
    source: str,
    listed: pl.DataFrame,
    *,
    run_id: str,
    now: datetime,
    wait: float | bool = False,
) -> Refreshed:
    """Apply a source's list to the universe (see the module docstring), under the lake's
    writer lock; two commits at most (the upsert, then the inactive marks)."""
    out = Refreshed(source, listed=listed.height)
    id_provider = SOURCES[source]
    if listed.is_empty():
        raise ConfigError(f"universe refresh {source}: the source lists no instruments")
    # tag each row with its source (and keep its provider ids)
    docs = (
        [_doc(r) for r in listed.get_column("provider_symbols").to_list()]
        if ("provider_symbols" in listed.columns)
        else [{} for _ in range(listed.height)]
    )
    listed = listed.with_columns(
        pl.Series("provider_symbols", [json.dumps(d, sort_keys=True) for d in docs]),
        pl.lit(source).alias("listed_by"),
    )
    # duplicates inside the list: the same symbol, or the same provider id twice
    seen_sym: set[str] = set()
    seen_id: dict[str, str] = {}
    keep = []
    for sym, d in zip(listed.get_column("symbol").to_list(), docs, strict=True):
        pid = d.get(id_provider) if id_provider else None
        if sym in seen_sym:
            out.duplicates.append(f"{sym}: listed more than once by {source} (first kept)")
            keep.append(False)
        elif pid and pid in seen_id:
            out.duplicates.append(
                f"{sym}: same {id_provider} id {pid!r} as {seen_id[pid]} (not created)"
            )
            keep.append(False)
        else:
            seen_sym.add(sym)
            if pid:
                seen_id[pid] = sym
            keep.append(True)
    listed = listed.filter(pl.Series(keep, dtype=pl.Boolean))

    with writer(lake.root, run_id, "universe", wait=wait):
        existing = lake.read("instruments")
        # the same instrument already in the universe under another symbol
        if id_provider and not existing.is_empty():
            owner = {}
            for sym, raw in existing.select("symbol", "provider_symbols").iter_rows():
                pid = _doc(raw).get(id_provider)
                if isinstance(pid, str) and pid:
                    owner.setdefault(pid, sym)
            keep = []
            for sym, raw in listed.select("symbol", "provider_symbols").iter_rows():
                pid = _doc(raw).get(id_provider)
                other = owner.get(pid) if pid else None
                if other is not None and other != sym:
                    out.duplicates.append(
                        f"{sym}: already in the universe as {other} (same {id_provider} id "
                        f"{pid!r}; not created)"
                    )
                    keep.append(False)
                else:
                    keep.append(True)
            listed = listed.filter(pl.Series(keep, dtype=pl.Boolean))
        frame = _instruments(listed, existing, run_id, now)
        res = lake.upsert("instruments", frame, run_id=run_id, stage="universe")
        out.added, out.updated, out.unchanged = res.inserted, res.updated, res.unchanged
        # gone from the source: inactive, history kept
        if not existing.is_empty():
            mine = existing.filter(
                pl.col("active").fill_null(True)
                & pl.col("listed_by").eq(source)
                & ~pl.col("symbol").is_in(frame.get_column("symbol").to_list())
            )
            if not mine.is_empty():
                gone = mine.with_columns(
                    pl.lit(False).alias("active"),
                    pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("delisted_at"),
                    pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("updated_at"),
                    pl.lit(run_id).alias("run_id"),
                )
                lake.upsert("instruments", gone, run_id=run_id, stage="universe")
                out.inactivated = gone.height
    return out


def _instruments(
    listed: pl.DataFrame, existing: pl.DataFrame, run_id: str, now: datetime
) -> pl.DataFrame:
    """The listed rows as ``instruments`` rows: defaults filled, active unless the source
    says otherwise (an expired contract), and, for instruments already known, every field
    the source leaves empty kept from the lake (provider ids and routes merged)."""
    text = listed.with_columns(
        [
            pl.col(c).cast(pl.String)
            for c in listed.columns
            if c not in universe.OPTION_FIELDS
            and listed.schema[c] != pl.String
            and c not in ("active", "delisted_at", "updated_at")
        ]
    )
    frame = universe.instruments_frame(text, run_id, now)
    if "active" in listed.columns:
        frame = frame.with_columns(listed.get_column("active").fill_null(True).alias("active"))
    delisted = (
        listed.get_column("delisted_at")
        if "delisted_at" in listed.columns
        else pl.Series("delisted_at", [None] * listed.height, dtype=pl.Datetime("us", "UTC"))
    )
    frame = frame.with_columns(delisted.cast(pl.Datetime("us", "UTC")).alias("delisted_at"))
    if existing.is_empty():
        return frame
    old = existing.filter(pl.col("symbol").is_in(frame.get_column("symbol").to_list()))
    if old.is_empty():
        return frame
    given = set(listed.columns)
    old = old.select(
        "symbol",
        *[
            pl.col(c).alias(f"{c}__old")
            for c in frame.columns
            if c not in ("symbol", "active", "delisted_at", "updated_at", "run_id")
        ],
    )
    j = frame.join(old, on="symbol", how="left")
    fills = []
    for c in frame.columns:
        if f"{c}__old" not in j.columns:
            continue
        if c == "provider_symbols":
            merged = [
                json.dumps({**_doc(o), **_doc(n)}, sort_keys=True) if o else n
                for n, o in zip(j[c].to_list(), j[f"{c}__old"].to_list(), strict=True)
            ]
            fills.append(pl.Series(c, merged, dtype=pl.String))
        elif c == "is_etf":  # an ETF stays one, whoever said so
            fills.append((pl.col(c) | pl.col(f"{c}__old").fill_null(False)).alias(c))
        elif c not in given:  # a field the source does not carry: keep the stored one
            fills.append(pl.coalesce(pl.col(f"{c}__old"), pl.col(c)).alias(c))
    j = j.with_columns(fills)
    return j.select(frame.columns)

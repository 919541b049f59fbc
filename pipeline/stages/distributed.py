"""``compute --cluster``: the indicator recompute sharded over a Dask distributed cluster.

The driver plans as the single-process stage does (series whose bars changed since the last
compute), then recomputes every series of each touched timeframe: it shards the series over
the workers; each worker reads its symbols' bars (and their stored indicator rows) from the
lake at the versions the driver pinned, runs the kernels, writes the rows as parquet files
straight into the ``indicators`` table's storage and returns their add actions. The driver then
swaps the touched timeframes' partitions for those files in ONE Delta commit (pinned to the
version it read), so the result is atomic and equal to a single-process ``compute --full`` of
those timeframes. A worker killed mid-task: Dask reruns the task elsewhere; the files the dead
attempt wrote are in no commit, and ``maintain`` removes them. Nothing is committed when no
row differs.

Workers reach the lake with the driver's :class:`LakeLocation` (its storage options travel to
them with each task: use TLS between the driver and a remote scheduler), so a remote cluster
needs an ``s3://`` lake; ``local:N`` also works with a local lake.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from marketlake.errors import ConfigError, LakeError
from marketlake.lake.location import LakeLocation
from marketlake.lake.rewrites import Rewrite
from marketlake.lake.store import Lake
from marketlake.lake.swap import swap_partitions
from marketlake.lake.tables import TABLES
from marketlake.pipeline.config import Settings
from marketlake.pipeline.runs import StageResult, Stopwatch, exclusive
from marketlake.pipeline.stages.compute import (
    BAR_COLUMNS,
    KEY,
    WATERMARK,
    _computed,
    _diff,
    begin,
    changed_series,
    last_watermark,
)

SHARD_ROWS = 2_500_000  # at most this many bars a shard (each pays a read and a kernel launch)
RETRIES = 2  # a task that raised is retried this often (a dead worker's tasks always rerun)


def check_cluster(spec: str) -> int | None:
    """The number of local workers for ``local:N``, None for a scheduler address; a
    :class:`ConfigError` naming ``--cluster`` for anything else."""
    if spec.startswith("local:"):
        n = spec.removeprefix("local:")
        if not n.isdigit() or not 1 <= int(n) <= 256:
            raise ConfigError(f"--cluster {spec}: expected local:N with N workers, e.g. local:2")
        return int(n)
    if not spec.startswith(("tcp://", "tls://")) or ":" not in spec.split("://", 1)[1]:
        raise ConfigError(
            f"--cluster {spec!r}: expected a scheduler address tcp://host:8786 or local:N"
        )
    return None


def open_cluster(spec: str, threads_per_worker: int = 1):
    """A Dask client for ``tcp://host:port`` (a running scheduler) or ``local:N`` (N local
    worker processes, ``threads_per_worker`` threads each); the caller closes it with
    :func:`close_cluster`."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - the optional extra is not installed
        raise ConfigError(
            "--cluster needs Dask distributed: pip install 'marketlake[cluster]'"
        ) from None
    n = check_cluster(spec)
    if n is not None:
        # the kernels (numba) and polars each run a thread per core: N processes on one
        # machine share its cores instead of each starting one thread per core
        share = str(max(1, (os.cpu_count() or 1) // (n * threads_per_worker)))
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"NUMBA_NUM_THREADS": share, "POLARS_MAX_THREADS": share},
        )
        return Client(cluster)
    try:
        return Client(spec, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--cluster {spec}: no Dask scheduler answered ({exc})") from None


def close_cluster(client) -> None:
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def compute_shard(
    location: LakeLocation,
    upto: int,
    stored_version: int | None,
    tf: str,
    syms: list[str],
    indicators,
    columns: list[str],
    other: list[str],
    tz: dict[str, str],
    run_id: str,
    computed_at: datetime,
) -> dict[str, Any]:
    """On a worker: the indicator rows of ``syms`` on ``tf`` written as new files of the
    ``indicators`` table (not committed); returns their add actions, column types and counts."""
    lake = Lake(Path("."), create=False, location=location)
    # a shard is a run of sorted symbols: the range lets the scans skip files and row groups
    # by their statistics (a maintained lake is z-ordered by symbol), is_in then selects
    in_range = pl.col("symbol").is_between(pl.lit(syms[0]), pl.lit(syms[-1]))
    bars = (
        lake.scan("ohlcv", version=upto)
        .filter(in_range & (pl.col("timeframe") == tf) & pl.col("symbol").is_in(syms))
        .select(*BAR_COLUMNS)
        .collect()
    )
    # the period as its integer code: no per-row strings (the rewrite splits files by it)
    new = _computed(bars, tf, syms, indicators, columns, tz, period_code=True)
    stored = (
        lake.scan("indicators", version=stored_version)
        if stored_version is not None
        else lake.empty("indicators").lazy()
    )
    old = stored.filter(
        (pl.col("timeframe") == tf) & in_range & pl.col("symbol").is_in(syms)
    ).collect()
    stamp = pl.lit(computed_at).cast(pl.Datetime("us", "UTC"))
    counts = {"inserted": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    if old.is_empty():
        out = new.with_columns(
            *[pl.lit(None, pl.Float64).alias(c) for c in other],
            stamp.alias("computed_at"),
            pl.lit(run_id).alias("run_id"),
        )
        counts["inserted"] = new.height
    else:
        for c in other:
            if c not in old.columns:
                old = old.with_columns(pl.lit(None, pl.Float64).alias(c))
        j = _diff(new, old, columns)
        exists, same = j.get_column("__exists"), j.get_column("__same")
        counts["inserted"] = int((~exists).sum())
        counts["updated"] = int((exists & ~same).sum())
        counts["unchanged"] = int(same.sum())
        counts["deleted"] = old.height - int(exists.sum())
        out = j.with_columns(
            pl.when("__same").then("computed_at").otherwise(stamp).alias("computed_at"),
            pl.when("__same").then("run_id").otherwise(pl.lit(run_id)).alias("run_id"),
        )
    rw = Rewrite(None, location, TABLES["indicators"], "timeframe", tf)  # written, not committed
    rw.write(out.select(*KEY, "_pcode", *columns, *other, "computed_at", "run_id"))
    return {"adds": rw.adds, "columns": rw.columns, "counts": counts, "tf": tf, "n": len(syms)}


def _shards(
    groups: list[tuple[str, list[str], list[int]]], threads: int
) -> list[tuple[str, list[str]]]:
    """Consecutive runs of each timeframe's (sorted) symbols, about the same number of bars
    each: as few shards as keep every worker thread busy (one each when the bars split
    evenly), none over :data:`SHARD_ROWS` bars. Each shard pays a read of the lake, a
    kernel launch and a file per partition, so fewer, bigger shards cost less."""
    total = sum(sum(lens) for _, _, lens in groups)
    target = max(1, min(SHARD_ROWS, math.ceil(total / max(1, threads))))
    out: list[tuple[str, list[str]]] = []
    for tf, syms, lens in groups:
        start, rows = 0, 0
        for i, n in enumerate(lens):
            if i > start and rows + n > target:
                out.append((tf, syms[start:i]))
                start, rows = i, 0
            rows += n
        out.append((tf, syms[start:]))
    return out


@exclusive("compute")
def run_compute_cluster(
    settings: Settings,
    *,
    cluster: str,
    indicators: list[str] | None = None,
    timeframes: list[str] | None = None,
    full: bool = False,
    progress: Callable[..., None] | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
    client=None,
) -> StageResult:
    """Recompute the indicators of every timeframe with changed bars on a Dask cluster and
    commit them in one transaction (under the lake's writer lock). ``client``: an open Dask
    client to use instead of opening ``cluster``."""

    progress = progress or (lambda *a, **k: None)
    watch = Stopwatch()
    lake, run_id, log, columns, timeframes, upto = begin(
        settings, indicators, timeframes, run_id, trigger
    )
    if upto is None:
        return StageResult(run_id, "compute", duration_seconds=watch.elapsed)
    since = None if (full or timeframes or indicators) else last_watermark(lake)
    todo = changed_series(lake, since, upto)
    series = lake.scan("ohlcv", version=upto)
    touched = (todo if todo is not None else series.select("timeframe").unique().collect())[
        "timeframe"
    ].unique()
    if timeframes:
        touched = touched.filter(touched.is_in(timeframes))
    touched = sorted(touched.to_list())
    stored_dt = lake.table("indicators")
    stored_version = stored_dt.version() if stored_dt is not None else None
    if not touched:
        if since is not None and since < upto:
            lake.mark("indicators", run_id=run_id, stage="compute", metadata={WATERMARK: str(upto)})
        return StageResult(run_id, "compute", duration_seconds=watch.elapsed)
    lengths = (  # bars per series: shards are sized by rows
        series.filter(pl.col("timeframe").is_in(touched))
        .group_by("timeframe", "symbol")
        .len()
        .sort("timeframe", "symbol")
        .collect()
    )
    groups = (
        lengths.group_by("timeframe", maintain_order=True)
        .agg(pl.col("symbol"), pl.col("len"))
        .rows()
    )
    stored = lake.scan("indicators", version=stored_version) if stored_dt else None
    other: list[str] = []
    gone = 0  # stored rows of series that no longer have bars
    if stored is not None:
        other = [
            c
            for c in stored.collect_schema().names()
            if c not in (*KEY, "period", "computed_at", "run_id", *columns)
        ]
        live = lengths.select("timeframe", "symbol")
        gone = (
            stored.filter(pl.col("timeframe").is_in(touched))
            .select("timeframe", "symbol")
            .join(live.lazy(), on=["timeframe", "symbol"], how="anti")
            .select(pl.len())
            .collect()
            .item()
        )
    tz = {
        r[0]: r[1] or "UTC"
        for r in lake.read("instruments").select("symbol", "timezone").iter_rows()
    }
    owned = client is None
    client = client or open_cluster(cluster)
    try:
        threads = client.nthreads()
        workers = max(1, len(threads))
        shards = _shards(groups, max(1, sum(threads.values())))
        progress("start", total=sum(len(s) for _, s in shards))
        computed_at = settings.clock()
        futures = [
            client.submit(
                compute_shard,
                lake.location,
                upto,
                stored_version,
                tf,
                syms,
                indicators,
                columns,
                other,
                {s: tz.get(s, "UTC") for s in syms},
                run_id,
                computed_at,
                retries=RETRIES,
                pure=False,
            )
            for tf, syms in shards
        ]
        results = []
        from dask.distributed import as_completed

        for fut in as_completed(futures):
            res = fut.result()
            results.append(res)
            progress("advance", advance=res["n"], symbol=res["tf"], rows=0)
    except LakeError:
        raise
    except Exception as exc:
        _abandon(lake, futures if "futures" in locals() else [])
        raise LakeError(f"compute on {cluster}: {type(exc).__name__}: {exc}") from exc
    finally:
        if owned:
            close_cluster(client)
    adds = [a for r in results for a in r["adds"]]
    totals = {k: sum(r["counts"][k] for r in results) for k in ("inserted", "updated")}
    totals["unchanged"] = sum(r["counts"]["unchanged"] for r in results)
    deleted = gone + sum(r["counts"]["deleted"] for r in results)
    new_columns: dict = {}
    for r in results:
        for c, t in r["columns"].items():
            new_columns.setdefault(c, t)
    meta = {WATERMARK: str(upto)}
    started = settings.clock()
    if totals["inserted"] + totals["updated"] + deleted == 0:
        from marketlake.lake.writes import remove_files

        remove_files(lake.location, "indicators", [a.path for a in adds])
        lake.mark("indicators", run_id=run_id, stage="compute", metadata=meta)
    else:
        swap_partitions(
            stored_dt,
            lake.location,
            TABLES["indicators"],
            "timeframe",
            touched,
            adds,
            new_columns,
            run_id=run_id,
            stage="compute",
            metadata=meta,
        )
    n_series = lengths.height
    log.add(
        f"compute:cluster:{n_series} series",
        status="success",
        rows_updated=totals["inserted"] + totals["updated"] + deleted,
        started_at=started,
        metadata={"shards": len(shards), "workers": workers, "deleted": deleted, **totals},
    )
    log.flush(lake)
    return StageResult(
        run_id,
        "compute",
        tasks_ok=n_series,
        duration_seconds=watch.elapsed,
        details={
            "ohlcv_version": upto,
            "series": n_series,
            "timeframes": touched,
            "shards": len(shards),
            "workers": workers,
            "deleted": deleted,
        },
        **totals,
    )


def _abandon(lake: Lake, futures) -> None:
    """Delete the files of shards that finished before the run failed (never committed)."""
    from marketlake.lake.writes import remove_files

    for fut in futures:
        try:
            if fut.status == "finished":
                res = fut.result()
                remove_files(lake.location, "indicators", [a.path for a in res["adds"]])
        except Exception:  # noqa: S112 - best effort: maintain removes what is left
            continue

"""``backfill --cluster``: the fetches of a sync fanned out over Dask workers.

This process plans, holds the lake's writer lock and commits exactly as a single-process sync
does (:class:`~marketlake.pipeline.stages.ingest.Sync`: batches, validation, quarantine,
history replacement, ``sync_status`` and ``sync_logs``); only the fetching moves. Each bars
unit becomes one task per request chunk (symbol x chunk), other kinds one task per unit. A
worker runs the normal provider code and returns the rows it fetched; the driver puts a unit's
chunks back together in order (and resamples, as one process would) and hands the unit to the
batch. Nothing is written by workers, so a worker killed mid-task costs a re-fetch: Dask
reschedules its tasks on another worker and each unit still lands once.

One rate limit per provider holds across every worker and the driver: their HTTP providers take
each request's token from a bucket held by the Dask scheduler
(:mod:`marketlake.pipeline.providers.shared_limit`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from marketlake.pipeline.config import Settings
from marketlake.pipeline.planning import Unit
from marketlake.pipeline.providers.shared_limit import install, share
from marketlake.pipeline.stages.distributed import check_cluster, close_cluster, open_cluster
from marketlake.pipeline.stages.ingest import (
    Outcome,
    Sync,
    _fetch,
    _Providers,
    fetch_chunk,
    finish_bars,
    guarded,
)


@dataclass(frozen=True)
class _Run:
    """What a worker needs to fetch for a run (sent with each task)."""

    settings: Settings
    run_id: str
    now: datetime


# -- on a worker --------------------------------------------------------------------------

_RUNS: dict[str, _Providers] = {}
_RUNS_LOCK = threading.Lock()


def _providers(run: _Run) -> _Providers:
    """This worker's providers for ``run`` (one instance per provider, as in one process),
    each taking its tokens from the cluster's bucket."""
    from distributed import get_client

    with _RUNS_LOCK:
        found = _RUNS.get(run.run_id)
        if found is None:
            found = _RUNS[run.run_id] = _Providers(
                run.settings, run.now, adapt=partial(share, client=get_client)
            )
        return found


def fetch_piece(run: _Run, unit: Unit, chunk: tuple[datetime, datetime] | None) -> Outcome:
    """On a worker: one request chunk of a bars unit (its raw rows), or a whole unit of
    another kind; never raises (errors are part of the outcome)."""
    providers = _providers(run)
    if chunk is None:
        return _fetch(unit, providers)
    return guarded(unit, providers, lambda prov: fetch_chunk(unit, prov, *chunk))


def close_run(run_id: str) -> int:
    """On each worker at the end of a run: close and forget its providers."""
    with _RUNS_LOCK:
        providers = _RUNS.pop(run_id, None)
    if providers is not None:
        providers.close()
    return 0


# -- on the driver ------------------------------------------------------------------------


class ClusterFetcher:
    """Submits units as Dask tasks; each unit's future resolves to its assembled outcome."""

    def __init__(self, client: Any, sync: Sync) -> None:
        self.client = client
        self.sync = sync
        self.run = _Run(sync.settings, sync.run_id, sync.now)
        threads = sum(client.nthreads().values()) or 1
        self.window = max(4, threads * 2)  # units in flight: every worker thread kept busy
        self._lock = threading.Lock()
        self._inflight: dict[int, list[Any]] = {}

    def submit(self, unit: Unit) -> Future:
        out: Future = Future()
        providers = self.sync.providers
        if unit.provider in providers.aborted:  # stopped by an auth failure: skip, as one run
            out.set_result(_fetch(unit, providers))
            return out
        chunks: list[tuple[datetime, datetime] | None] = (
            list(unit.chunks) if unit.kind == "ohlcv" else [None]
        )
        futures = [self.client.submit(fetch_piece, self.run, unit, c, pure=False) for c in chunks]
        key = id(out)
        with self._lock:
            self._inflight[key] = futures
        state = {"left": len(futures), "pieces": [None] * len(futures)}
        for i, fut in enumerate(futures):
            fut.add_done_callback(partial(self._piece_done, out, unit, state, i))
        return out

    def _piece_done(self, out: Future, unit: Unit, state: dict, i: int, fut: Any) -> None:
        try:
            piece = fut.result()
        except Exception as exc:  # the task was lost (a worker died too often): the unit fails
            now = self.sync.settings.clock()
            piece = Outcome(
                unit,
                error=f"cluster task lost: {type(exc).__name__}: {exc}",
                error_kind="internal",
                started_at=now,
                completed_at=now,
            )
        with self._lock:
            state["pieces"][i] = piece
            state["left"] -= 1
            if state["left"]:
                return
            self._inflight.pop(id(out), None)
        try:
            out.set_result(self._assemble(unit, state["pieces"]))
        except Exception as exc:  # noqa: BLE001 - never leave the driver waiting
            now = self.sync.settings.clock()
            out.set_result(
                Outcome(
                    unit,
                    error=f"{type(exc).__name__}: {exc}",
                    error_kind="internal",
                    started_at=now,
                    completed_at=now,
                )
            )

    def _assemble(self, unit: Unit, pieces: list[Outcome]) -> Outcome:
        """The unit's outcome from its pieces (in chunk order): the first failed chunk fails
        it, as in one process; else its chunks' rows put together."""
        if unit.kind != "ohlcv":
            return pieces[0]
        out = Outcome(
            unit,
            started_at=min(p.started_at for p in pieces if p.started_at is not None),
            completed_at=max(p.completed_at for p in pieces if p.completed_at is not None),
        )
        failed = next((p for p in pieces if p.error is not None), None)
        if failed is not None:
            out.error, out.error_kind = failed.error, failed.error_kind
            if failed.error_kind == "auth":
                self.sync.providers.aborted.setdefault(unit.provider, failed.error)
            return out
        parts = [p.frame for p in pieces]
        rejects = [p.rejected for p in pieces if p.rejected is not None]
        out.frame, out.rejected = finish_bars(unit, parts, rejects, self.sync.now)
        out.asset_type = next((p.asset_type for p in pieces if p.asset_type), None)
        return out

    def close(self) -> None:
        with self._lock:
            left = [f for fs in self._inflight.values() for f in fs]
            self._inflight.clear()
        if left:  # the run stopped early: nothing more to fetch
            self.client.cancel(left)
        try:  # not waited for: a worker restarting after a crash must not hold the run
            self.client.run(close_run, self.run.run_id, wait=False)
        except Exception:  # noqa: S110 - a worker gone at the end holds nothing to close
            pass


@contextmanager
def cluster_fetcher(sync: Sync, cluster: str | None, client: Any = None) -> Iterator:
    """A :class:`ClusterFetcher` on ``client`` or a client opened for ``cluster`` (closed at
    the end); ``local:N`` workers get as many threads in all as one process would use."""
    owned = client is None
    if owned:
        n = check_cluster(cluster or "")
        threads = math.ceil(max(1, sync.settings.concurrency) / n) if n else 1
        client = open_cluster(cluster or "", threads_per_worker=threads)
    try:
        install(client, cluster or str(client.scheduler.address))
        sync.providers.adapt = partial(share, client=lambda: client)
        yield ClusterFetcher(client, sync)
    finally:
        if owned:
            close_cluster(client)

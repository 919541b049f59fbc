"""One token bucket per provider for a whole Dask cluster, held by the scheduler.

A fanned-out backfill fetches on many worker processes; each worker's providers would keep
their own :class:`~marketlake.pipeline.providers.http.RateLimiter`, so N workers would send N
times the provider's rate. Instead the buckets live in the Dask scheduler, the one process every
worker (and the driver) already talks to and that outlives any worker: :class:`RateBuckets` is a
scheduler plugin (the way distributed's own Lock, Semaphore and Variable are built) adding two
handlers. A request first asks the scheduler for a slot (``marketlake_rate_reserve``: one round
trip); the scheduler takes a token from the provider's bucket on its own event loop (atomic,
one clock) and answers how long to wait; the worker sleeps that long and sends. A 429 pauses
the provider on every worker (``marketlake_rate_block``). A killed worker loses nothing but the
tokens it had taken, so the limit is never exceeded; the buckets last as long as the scheduler
(a long-lived scheduler keeps one limit across runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from marketlake.errors import ConfigError
from marketlake.pipeline.providers.http import RateLimiter

PLUGIN = "marketlake-rate-buckets"


class RateBuckets(SchedulerPlugin):
    """On the scheduler: a :class:`RateLimiter` per provider, asked without sleeping."""

    name = PLUGIN
    idempotent = True  # registering again keeps the buckets (and their state) that exist

    def __init__(self) -> None:
        self.buckets: dict[str, RateLimiter] = {}

    async def start(self, scheduler: Any) -> None:
        scheduler.handlers["marketlake_rate_reserve"] = self.reserve
        scheduler.handlers["marketlake_rate_block"] = self.block

    def _bucket(self, name: str, rate: float | None, burst: float) -> RateLimiter:
        bucket = self.buckets.get(name)
        rate = rate if rate and rate > 0 else None
        if bucket is None:
            bucket = self.buckets[name] = RateLimiter(rate, burst)
        elif bucket.rate != rate or bucket.burst != burst:  # the settings changed: the new limit
            bucket.rate, bucket.burst = rate, max(1.0, burst)
        return bucket

    def reserve(self, name: str = "", rate: float | None = None, burst: float = 1.0) -> float:
        """Take a token of ``name``'s bucket; the seconds the caller waits before sending."""
        return self._bucket(name, rate, burst).reserve()

    def block(
        self, name: str = "", rate: float | None = None, burst: float = 1.0, seconds: float = 0.0
    ) -> None:
        """Pause every caller of ``name`` for ``seconds`` (the provider answered 429)."""
        self._bucket(name, rate, burst).block(seconds)


class SharedLimiter:
    """A provider's limiter on a worker or the driver: asks the scheduler's bucket.

    Same interface as :class:`RateLimiter` (``acquire``, ``block``, ``rate``, ``burst``), so the
    HTTP layer does not know which one it holds."""

    def __init__(
        self,
        name: str,
        rate: float | None,
        burst: float,
        client: Callable[[], Any],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name, self.rate, self.burst = name, rate, burst
        self._client = client
        self.sleep = sleep

    def _call(self, op: str, **kw: Any) -> Any:
        client = self._client()
        handler = getattr(client.scheduler, op)
        return client.sync(handler, name=self.name, rate=self.rate, burst=self.burst, **kw)

    def reserve(self) -> float:
        return float(self._call("marketlake_rate_reserve"))

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self.sleep(wait)
        return wait

    def block(self, seconds: float) -> None:
        self._call("marketlake_rate_block", seconds=seconds)


def install(client: Any, where: str) -> None:
    """Register the buckets on the scheduler of ``client`` (kept if already there); a scheduler
    that cannot load them is a :class:`ConfigError` naming ``where`` (the ``--cluster`` value)."""
    try:
        client.register_plugin(RateBuckets(), name=PLUGIN)
    except Exception as exc:  # the scheduler could not unpickle or start the plugin
        raise ConfigError(
            f"--cluster {where}: the scheduler cannot hold the shared rate limits (install "
            f"marketlake on the scheduler host too): {type(exc).__name__}: {exc}"
        ) from None


def share(provider: Any, client: Callable[[], Any]) -> None:
    """Make ``provider`` take its requests' tokens from the cluster's bucket of its name (HTTP
    providers; the others send no requests to limit)."""
    http = getattr(provider, "http", None)
    local = getattr(http, "limiter", None)
    if local is None:
        return
    http.limiter = SharedLimiter(provider.name, local.rate, local.burst, client, local.sleep)

"""A provider for tests: synthetic bars plus injected failures (like a mock transport).

``options``: ``fail`` maps a symbol (or a market key such as ``status:US``) to ``transient``
(fails ``fail_times`` times, then succeeds), ``invalid``, ``auth``, ``bad`` (a malformed
response) or ``corrupt`` (bars that break OHLC sanity); ``delay_s`` slows every fetch and
``hold`` maps a symbol to an event its bar fetch waits for (at most a minute);
``calls`` counts requests per symbol and market key.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import replace

import polars as pl

from marketlake.errors import (
    AuthError,
    BadResponseError,
    InvalidSymbolError,
    TransientProviderError,
)
from marketlake.pipeline.providers.base import FetchRequest, rows_frame
from marketlake.pipeline.providers.synthetic import SyntheticProvider


class FakeProvider(SyntheticProvider):
    name = "fake"
    capabilities = replace(
        SyntheticProvider.capabilities,
        kinds=SyntheticProvider.capabilities.kinds | {"market"},
        local=False,  # it stands in for a remote service: delays, held requests
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        self.fail = dict(self.settings.options.get("fail", {}))
        self.fail_times = int(self.settings.options.get("fail_times", 1))
        self.delay_s = float(self.settings.options.get("delay_s", 0.0))
        self.hold = dict(self.settings.options.get("hold", {}))
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        with self._lock:
            self.calls[request.symbol] += 1
            n = self.calls[request.symbol]
        if self.delay_s:
            time.sleep(self.delay_s)
        if request.symbol in self.hold:
            self.hold[request.symbol].wait(60.0)
        mode = self.fail.get(request.symbol)
        kw = {"provider": self.name, "symbol": request.symbol}
        if mode == "transient" and n <= self.fail_times:
            raise TransientProviderError(f"fake: HTTP 503 for {request.symbol}", **kw)
        if mode == "invalid":
            raise InvalidSymbolError(f"fake: HTTP 404 unknown symbol {request.symbol}", **kw)
        if mode == "auth":
            raise AuthError("fake: HTTP 401 invalid api key", **kw)
        if mode == "bad":
            raise BadResponseError(f"fake: truncated JSON body for {request.symbol}", **kw)
        out = super()._fetch_ohlcv(request)
        if mode == "corrupt" and out.height:
            out = out.with_columns(
                pl.when(pl.int_range(pl.len()) == 0)
                .then(-1.0)
                .otherwise(pl.col("low"))
                .alias("low"),
                pl.when(pl.int_range(pl.len()) == 1)
                .then(float("nan"))
                .otherwise(pl.col("close"))
                .alias("close"),
            )
        return out

    def _fetch_market(self, request: FetchRequest) -> pl.DataFrame:
        """A market_cache row for the key: JSON naming the key and the request count."""
        key = request.symbol
        with self._lock:
            self.calls[key] += 1
            n = self.calls[key]
        mode = self.fail.get(key)
        if mode == "transient" and n <= self.fail_times:
            raise TransientProviderError(f"fake: HTTP 503 for {key}", provider=self.name)
        if mode == "bad":
            raise BadResponseError(f"fake: truncated JSON body for {key}", provider=self.name)
        value = json.dumps({"key": key, "request": n, "at": self.clock().isoformat()})
        return rows_frame(
            "market",
            [{"key": key, "value": value, "provider": self.name, "fetched_at": self.clock()}],
        )

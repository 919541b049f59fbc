"""market_cache refresh: a key is fetched again only after its TTL (30 min status, 1 h
calendars); failures are per key and redacted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest

from marketlake.errors import TransientProviderError
from marketlake.lake.store import Lake
from marketlake.pipeline.config import ProviderSettings, Settings
from marketlake.pipeline.providers.base import FetchRequest, rows_frame
from marketlake.pipeline.providers.yahoo import YahooProvider
from marketlake.pipeline.stages.market import refresh_market, ttl

T0 = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
KEYS = ("status:US", "calendar:earnings")


class CountingProvider:
    name = "yahoo"

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()

    def fetch(self, request: FetchRequest) -> pl.DataFrame:
        key = request.symbol
        self.calls.append(key)
        if key in self.fail:
            raise TransientProviderError(f"yahoo {key}: HTTP 503 apikey=SECRETVALUE")
        value = json.dumps({"key": key, "n": len(self.calls)})
        return rows_frame("market", [{"key": key, "value": value, "provider": self.name}])


@pytest.fixture
def lake(home):
    return Lake(home)


def test_ttls():
    assert ttl("status:US") == timedelta(minutes=30)
    assert ttl("calendar:ipo") == timedelta(hours=1)


def test_no_request_while_cached_keys_are_fresh(home, lake):
    settings = Settings(home=home)
    p = CountingProvider()
    first = refresh_market(settings, lake, p, KEYS, now=T0)
    assert (first.tasks_ok, first.inserted) == (2, 2) and p.calls == list(KEYS)

    again = refresh_market(settings, lake, p, KEYS, now=T0 + timedelta(minutes=29))
    assert p.calls == list(KEYS) and again.tasks_skipped == 2 and again.tasks_ok == 0

    later = refresh_market(settings, lake, p, KEYS, now=T0 + timedelta(minutes=31))
    assert p.calls[2:] == ["status:US"] and later.updated == 1  # the calendar is still fresh

    refresh_market(settings, lake, p, KEYS, now=T0 + timedelta(minutes=60))
    assert p.calls[3:] == ["calendar:earnings"]  # status fetched at +31 min lives to +61

    rows = {r["key"]: r for r in lake.read("market_cache").iter_rows(named=True)}
    assert rows["status:US"]["expires_at"] == T0 + timedelta(minutes=61)
    assert rows["calendar:earnings"]["expires_at"] == T0 + timedelta(minutes=120)


def test_a_failing_key_does_not_stop_the_others(home, lake):
    settings = Settings(
        home=home, providers={"yahoo": ProviderSettings("yahoo", secret="SECRETVALUE")}
    )
    p = CountingProvider(fail={"status:US"})
    res = refresh_market(settings, lake, p, KEYS, now=T0)
    assert (res.tasks_ok, res.tasks_failed, res.status) == (1, 1, "partial")
    assert "SECRETVALUE" not in " ".join(map(str, res.errors))
    logs = lake.read("sync_logs")
    assert set(logs["task_name"]) == {"market:status:US", "market:calendar:earnings"}
    assert not any("SECRETVALUE" in (m or "") for m in logs["error_message"])
    # the failed key is retried on the next run, the fresh one is not
    refresh_market(settings, lake, CountingProvider(), KEYS, now=T0 + timedelta(minutes=1))
    assert lake.read("market_cache").height == 2


def test_yahoo_market_status_through_the_stage(home, lake):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        # written by hand in the shape of Yahoo's markettime answer (no recording exists)
        return httpx.Response(
            200,
            json={
                "finance": {
                    "marketTimes": [
                        {
                            "marketTime": [
                                {"id": "us", "status": "open", "open": "2025-03-03T14:30:00Z"}
                            ]
                        }
                    ],
                    "error": None,
                }
            },
        )

    provider = YahooProvider(
        ProviderSettings("yahoo", base_url="http://replay.invalid"),
        transport=httpx.MockTransport(handler),
    )
    res = refresh_market(Settings(home=home), lake, provider, ("status:US",), now=T0)
    refresh_market(Settings(home=home), lake, provider, ("status:US",), now=T0)
    assert res.tasks_ok == 1 and len(seen) == 1
    assert seen[0].host == "replay.invalid" and seen[0].path == "/v6/finance/markettime"
    value = json.loads(lake.read("market_cache")["value"][0])
    assert value["status"] == "open"

"""The one provider interface: ``fetch(request)`` dispatching on kind, schemas from the lake."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from marketlake.errors import TransientProviderError
from marketlake.lake.tables import TABLES
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers.base import (
    REJECT,
    FetchRequest,
    frame_schema,
    provider_class,
    split_rejects,
)
from marketlake.pipeline.providers.http import HttpProvider

NOW = datetime(2025, 3, 3, 12, tzinfo=UTC)


def synthetic():
    return provider_class("synthetic")(clock=lambda: NOW)


def test_registry_names_resolve_to_their_classes():
    yahoo = provider_class("yahoo")
    assert yahoo.__name__ == "YahooProvider" and issubclass(yahoo, HttpProvider)
    assert yahoo.__module__ == "marketlake.pipeline.providers.yahoo.provider"


def test_fetch_dispatches_on_the_request_kind():
    p = synthetic()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    bars = p.fetch(FetchRequest.bars("AAPL", "1D", start, NOW))
    actions = p.fetch(FetchRequest.actions("AAPL", datetime(2000, 1, 1, tzinfo=UTC), NOW))
    profile = p.fetch(FetchRequest.profile("AAPL"))
    assert bars.schema == frame_schema("ohlcv") and bars.height > 200
    assert actions.schema == frame_schema("actions")
    assert profile.schema == frame_schema("profile") and profile.height == 1


def test_a_kind_the_provider_lacks_is_unsupported():
    with pytest.raises(NotImplementedError, match="synthetic does not provide fundamentals"):
        synthetic().fetch(FetchRequest.fundamentals("AAPL"))
    with pytest.raises(NotImplementedError, match="does not provide nonsense"):
        synthetic().fetch(FetchRequest("AAPL", kind="nonsense"))


def test_frame_schemas_are_the_lake_tables_without_lake_columns():
    for kind, table in (("ohlcv", "ohlcv"), ("profile", "profiles"), ("market", "market_cache")):
        lake_cols = TABLES[table].columns
        cols = list(frame_schema(kind))
        assert cols == [
            c for c in lake_cols if c not in ("run_id", "ingested_at", "period", "expires_at")
        ]
    assert frame_schema("ohlcv")["ts"] == pl.Datetime("us", "UTC")


def test_a_provider_without_http_is_retried_by_the_one_loop():
    sleeps: list[float] = []
    settings = ProviderSettings(
        name="fake",
        max_retries=3,
        backoff_base_s=1.0,
        options={"fail": {"AAA": "transient"}, "fail_times": 2},
    )
    p = provider_class("fake")(settings, clock=lambda: NOW, sleep=sleeps.append)
    out = p.fetch(FetchRequest.bars("AAA", "1D", datetime(2025, 1, 1, tzinfo=UTC), NOW))
    assert out.height > 0 and len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 <= sleeps[1] <= 2.0
    settings = ProviderSettings(
        name="fake",
        max_retries=1,
        backoff_base_s=0.0,
        options={"fail": {"AAA": "transient"}, "fail_times": 5},
    )
    p = provider_class("fake")(settings, clock=lambda: NOW, sleep=sleeps.append)
    with pytest.raises(TransientProviderError, match="gave up after 2 tries; fake: HTTP 503"):
        p.fetch(FetchRequest.bars("AAA", "1D", datetime(2025, 1, 1, tzinfo=UTC), NOW))


def test_split_rejects_keeps_reasons_apart():
    frame = pl.DataFrame({"symbol": ["A", "A"], REJECT: [None, "volume 'abc' is not a number"]})
    good, bad = split_rejects(frame)
    assert good.columns == ["symbol"] and good.height == 1
    assert bad["reason"].to_list() == ["volume 'abc' is not a number"]

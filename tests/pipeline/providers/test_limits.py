"""What keeps one bad server from holding a sync or leaking a key: the per-exchange deadline,
the response size cap, the redirect policy, and error bodies redacted before they are cut."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

import pytest
from replay_server import FakeClock, ReplayServer, Reply, settings_for
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.errors import BadResponseError, TerminalProviderError, TransientProviderError
from marketlake.pipeline.providers.base import FetchRequest, provider_class
from marketlake.pipeline.providers.http import HttpClient

NOW = datetime(2024, 2, 1, tzinfo=UTC)
KEY = "CG-canary-7f3a9b21c4d5e6f708192a3b"
AAPL = "chart_AAPL_1d_2020-08-31_2020-11-07_split_and_dividends.cassette.json"


def client(settings, **kw) -> HttpClient:
    clock = FakeClock()
    return HttpClient(
        settings.name,
        settings,
        base_url=settings.base_url,
        clock=lambda: clock.now().timestamp(),
        sleep=clock.sleep,
        rng=random.Random(1),
        **kw,
    )


@pytest.fixture
def other():
    server = ReplayServer().start()
    yield server
    server.stop()


def test_a_dripping_server_hits_the_deadline(replay):
    # regression: a body sent 1 byte/s never tripped the 30 s read timeout and held the sync
    replay.add("/slow", Reply(200, b"x" * 1000, drip=0.1))
    http = client(settings_for("fake", replay, deadline_s=1.0, max_retries=0))
    t0 = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"fake AAA: no complete response within"):
        http.get("/slow", symbol="AAA")
    assert time.monotonic() - t0 < 3.0


def test_a_stalled_server_is_bounded_by_the_deadline_too(replay):
    replay.add("/stall", Reply(200, b"{}", delay=5.0))
    http = client(settings_for("fake", replay, deadline_s=0.5, timeout_s=30.0, max_retries=0))
    t0 = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"no complete response within deadline_s"):
        http.get("/stall", symbol="AAA")
    assert 0.45 <= time.monotonic() - t0 < 1.0


def test_a_server_dripping_its_headers_hits_the_deadline(replay):
    # regression: a status line and headers sent a byte at a time never tripped the per-read
    # timeout (each read got its byte), so only the body was bounded by the deadline
    replay.add("/hdr", Reply(200, b"{}", drip=0.05, drip_headers=True))
    http = client(settings_for("fake", replay, deadline_s=1.0, timeout_s=5.0, max_retries=0))
    t0 = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"fake AAA: no complete response within"):
        http.get("/hdr", symbol="AAA")
    took = time.monotonic() - t0
    assert 0.95 <= took < 1.3, took
    replay.add("/ok", Reply(200, b"{}"))
    assert http.get_json("/ok") == {}  # the client (and its pool) still works


def test_a_header_drip_fails_its_task_only_and_the_other_symbols_land(
    replay, provider_fixtures, home, tmp_path, monkeypatch
):
    replay.add_file(
        "/v8/finance/chart/AAPL", provider_fixtures / "yahoo" / AAPL, params={"interval": "1d"}
    )
    replay.add("/v8/finance/chart/MSFT", Reply(200, b"{}", drip=0.2, drip_headers=True))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "marketlake.toml").write_text(
        "[providers.yahoo]\ndeadline_s = 1.5\nmax_retries = 0\n"
    )
    env = {
        "MARKETLAKE_HOME": str(home),
        "MARKETLAKE_YAHOO_BASE_URL": replay.url,
        "MARKETLAKE_NOW": "2025-03-03T12:00:00+00:00",
    }
    runner = CliRunner()
    for sym in ("AAPL", "MSFT"):
        args = ["universe", "add", sym, "--provider", "yahoo", "--exchange", "NMS"]
        assert runner.invoke(app, args, env=env).exit_code == 0
    t0 = time.monotonic()
    synced = runner.invoke(
        app,
        ["sync", "--provider", "yahoo", "--symbols", "AAPL,MSFT", "--timeframes", "1D"]
        + ["--kinds", "ohlcv", "--start", "2020-08-31", "--end", "2020-11-07", "--json"],
        env=env,
    )
    took = time.monotonic() - t0
    summary = json.loads(synced.stdout.strip().splitlines()[-1])
    assert summary["rows"]["inserted"] == 49, summary  # AAPL landed
    assert summary["status"] == "partial" and summary["tasks"]["failed"] == 1, summary
    (error,) = summary["errors"]
    assert error.startswith("MSFT 1D ohlcv: yahoo MSFT: no complete response within deadline_s")
    assert took < 6, took  # the headers alone would drip for ~9 s


def test_an_endless_body_stops_at_the_size_cap(replay):
    # regression: a 50 MB body was read whole into memory
    replay.add("/big", Reply(200, b"y" * 65536, endless=True))
    http = client(settings_for("fake", replay, max_response_bytes=1_000_000, max_retries=3))
    with pytest.raises(BadResponseError, match=r"larger than max_response_bytes \(1000000"):
        http.get("/big", symbol="AAA")
    assert len(replay.requests_to("/big")) == 1  # terminal: not retried


def test_a_declared_oversize_body_is_refused_before_reading(replay):
    replay.add("/declared", Reply(200, b"z" * 200_000))
    http = client(settings_for("fake", replay, max_response_bytes=100_000))
    with pytest.raises(BadResponseError, match="larger than max_response_bytes"):
        http.get("/declared")


def test_per_provider_limits_come_from_its_settings(replay):
    replay.add("/v8/finance/chart/AAPL", Reply(200, b"{" * 5000))
    yahoo = provider_class("yahoo")(settings_for("yahoo", replay, max_response_bytes=4096))
    with pytest.raises(BadResponseError, match="yahoo AAPL: .*max_response_bytes"):
        yahoo.fetch(FetchRequest.bars("AAPL", "1D", datetime(2024, 1, 1, tzinfo=UTC), NOW))


def test_a_cross_origin_redirect_never_carries_the_key(replay, other):
    # regression: a 302 to another origin carried the x-cg-demo-api-key header there
    replay.add("/coins/bitcoin", Reply(302, b"", {"location": other.url + "/steal"}))
    settings = settings_for("coingecko", replay, secret=KEY)
    cg = provider_class("coingecko")(settings)
    with pytest.raises(TerminalProviderError) as err:
        cg.fetch(FetchRequest.profile("bitcoin"))
    assert "redirect" in str(err.value) and KEY not in str(err.value)
    assert other.seen == []


def test_a_provider_without_redirects_follows_none(replay):
    replay.add("/api/pairs", Reply(301, b"", {"location": "/api/pairs2"}))
    replay.add_json("/api/pairs2", [])
    indodax = provider_class("indodax")(settings_for("indodax", replay))
    with pytest.raises(TerminalProviderError, match="unexpected redirect .*not followed"):
        indodax.fetch(FetchRequest.instruments())
    assert replay.requests_to("/api/pairs2") == []


def test_redirects_follow_within_one_origin_and_never_to_another_with_a_key(replay, other):
    replay.add("/a", Reply(302, b"", {"location": "/b"}))
    replay.add_json("/b", {"ok": True})
    replay.add("/c", Reply(307, b"", {"location": other.url + "/d"}))
    other.add_json("/d", {"other": True})
    plain = client(settings_for("yahoo", replay), follow_redirects=True)
    assert plain.get_json("/a") == {"ok": True}
    assert plain.get_json("/c") == {"other": True}  # no credential: may leave
    keyed = client(settings_for("fmp", replay, secret=KEY), follow_redirects=True)
    keyed_h = client(
        settings_for("x", replay, secret=KEY), headers={"x-key": KEY}, follow_redirects=True
    )
    with pytest.raises(TerminalProviderError, match="another origin"):
        keyed.get("/c", params={"apikey": KEY})
    with pytest.raises(TerminalProviderError, match="another origin"):
        keyed_h.get("/c")
    assert len(other.requests_to("/d")) == 1


def test_an_echoed_key_is_redacted_before_the_body_is_cut(replay):
    # regression: the body was cut to 200 characters first, so a key cut in half escaped
    body = ("e" * 180 + " invalid key " + KEY + " was refused" * 5).encode()
    replay.add("/k", Reply(403, body, {"content-type": "text/plain"}))
    http = client(settings_for("coingecko", replay, secret=KEY))
    with pytest.raises(Exception) as err:
        http.get("/k", symbol="bitcoin")
    text = str(err.value)
    assert KEY[:4] not in text and "***" in text and text.endswith("…")

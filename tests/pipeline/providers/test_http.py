"""The shared HTTP layer: rate limiting, the SPEC §6 retry/abort policy, redaction.

Injected clock and sleep everywhere: nothing here really sleeps.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
from replay_server import FakeClock, Reply, load_recording, settings_for

from marketlake.errors import (
    AuthError,
    BadResponseError,
    InvalidSymbolError,
    RateLimitedError,
    TerminalProviderError,
    Transient,
    TransientProviderError,
)
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers.http import (
    HttpClient,
    RateLimiter,
    error_detail,
    retry_after_seconds,
    with_origin,
)
from marketlake.pipeline.providers.symbols import path_segment
from marketlake.pipeline.providers.yahoo import YahooProvider

SECRET = "sk-live-0123456789abcdef"


def client(settings: ProviderSettings, clock: FakeClock, **kw) -> HttpClient:
    return HttpClient(
        settings.name,
        settings,
        base_url=settings.base_url,
        clock=lambda: clock.now().timestamp(),
        sleep=clock.sleep,
        rng=random.Random(7),
        **kw,
    )


def mock(handler, **settings_kw) -> tuple[HttpClient, FakeClock]:
    clock = FakeClock()
    settings = ProviderSettings(
        name="fake",
        base_url="https://api.example.test",
        backoff_base_s=0.5,
        backoff_max_s=8.0,
        **settings_kw,
    )
    return client(settings, clock, transport=httpx.MockTransport(handler)), clock


# -- rate limiter ---------------------------------------------------------------------------
def test_token_bucket_spaces_requests_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=lambda: clock.now().timestamp(), sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([0.25] * 4)


def test_token_bucket_is_shared_by_threads():
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=lambda: clock.now().timestamp(), sleep=clock.sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 tokens at 10/s, one free: at least 1.9 s of waiting was handed out in total
    assert sum(clock.sleeps) >= 1.9 - 1e-9


def test_block_pauses_every_caller():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=lambda: clock.now().timestamp(), sleep=clock.sleep)
    limiter.block(30)
    assert limiter.acquire() == pytest.approx(30)
    assert limiter.acquire() == 0.0


def test_a_pinned_clock_never_freezes_the_rate_limiter():
    # regression: the sync stage pins the providers' clock (MARKETLAKE_NOW) but sleeps for
    # real; a bucket timed by the pinned clock never refilled and the k-th request waited
    # k/rate seconds (a 300-symbol bench ran 16x over its bound)
    pinned = datetime(2025, 1, 1, tzinfo=UTC)
    p = YahooProvider(ProviderSettings("yahoo", rate_limit_per_s=1000), clock=lambda: pinned)
    assert p.http.limiter.clock is time.monotonic
    t0 = time.perf_counter()
    for _ in range(50):
        p.http.limiter.acquire()
    assert time.perf_counter() - t0 < 0.5
    fake = FakeClock()
    q = YahooProvider(ProviderSettings("yahoo"), clock=fake.now, sleep=fake.sleep)
    assert q.http.limiter.clock() == fake.now().timestamp()  # fake time when both injected


def test_retry_after_forms():
    assert retry_after_seconds("119") == 119
    assert retry_after_seconds(None) == 10
    assert retry_after_seconds("garbage") == 10
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10


# -- policy over a real loopback socket -------------------------------------------------------
def test_429_then_200_honours_retry_after(replay, fake_clock):
    replay.add(
        "/x",
        [
            Reply(429, b'{"status": {"error_code": 429}}', {"retry-after": "7"}),
            Reply(200, b'{"ok": true}'),
        ],
    )
    http = client(settings_for("fake", replay), fake_clock)
    assert http.get_json("/x", symbol="AAA") == {"ok": True}
    assert fake_clock.sleeps == [7.0]
    assert len(replay.requests_to("/x")) == 2


def test_429_counts_toward_tries(replay, fake_clock):
    replay.add("/x", Reply(429, b"Edge: Too Many Requests", {"content-type": "text/plain"}))
    http = client(settings_for("fake", replay, max_retries=2), fake_clock)
    with pytest.raises(RateLimitedError, match="fake AAA: rate limited after 3 tries") as err:
        http.get("/x", symbol="AAA")
    assert isinstance(err.value, Transient) and err.value.retry_after == 10.0
    assert fake_clock.sleeps == [10.0, 10.0]


def test_500_storm_backs_off_with_jitter_then_gives_up(replay, fake_clock):
    replay.add("/x", Reply(503, b"<html>busy</html>", {"content-type": "text/html"}))
    settings = settings_for("fake", replay, max_retries=4, backoff_base_s=1.0, backoff_max_s=60)
    http = client(settings, fake_clock)
    with pytest.raises(TransientProviderError, match="gave up after 5 tries.*HTTP 503"):
        http.get("/x", symbol="AAA")
    assert len(replay.requests_to("/x")) == 5
    sleeps = fake_clock.sleeps
    assert len(sleeps) == 4
    for attempt, s in enumerate(sleeps):
        cap = 1.0 * 2**attempt
        assert cap / 2 <= s <= cap  # equal jitter: [d/2, d], so the waits never shrink
    assert sleeps == sorted(sleeps) and sleeps[-1] > 2 * sleeps[0]


def test_backoff_is_capped(replay, fake_clock):
    replay.add("/x", Reply(500, b"oops"))
    settings = settings_for("fake", replay, max_retries=6, backoff_base_s=1.0, backoff_max_s=3.0)
    with pytest.raises(TransientProviderError):
        client(settings, fake_clock).get("/x")
    assert len(fake_clock.sleeps) == 6 and max(fake_clock.sleeps) <= 3.0


def test_timeout_is_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"ok": 1})

    http, clock = mock(handler)
    assert http.get_json("/x", symbol="AAA") == {"ok": 1}
    assert len(calls) == 2 and len(clock.sleeps) == 1 and 0.25 <= clock.sleeps[0] <= 0.5


def test_dropped_connections_exhaust_into_transient():
    def handler(request):
        raise httpx.ConnectError("connection refused", request=request)

    http, clock = mock(handler, max_retries=2)
    with pytest.raises(TransientProviderError, match="ConnectError") as err:
        http.get("/x", symbol="AAA")
    assert isinstance(err.value.__cause__, httpx.ConnectError)
    assert len(clock.sleeps) == 2


def test_truncated_json_is_bad_response_naming_the_symbol(replay, fake_clock):
    replay.add(
        "/chart",
        Reply(
            200, b'{"chart": {"result": [{"timestamp": [1, 2', {"content-type": "application/json"}
        ),
    )
    http = client(settings_for("fake", replay), fake_clock)
    with pytest.raises(BadResponseError, match=r"^fake MSFT: unparseable JSON") as err:
        http.get_json("/chart", symbol="MSFT")
    assert err.value.symbol == "MSFT" and "\n" not in str(err.value)


def test_401_stops_this_provider_and_nothing_else(replay, fake_clock):
    replay.add("/p", Reply(200, b'{"ok": true}'))
    replay.add("/p", Reply(401, b'{"error": "bad key"}'), headers={"x-key": "bad"})
    bad = client(settings_for("fake", replay), fake_clock, headers={"x-key": "bad"})
    good = client(settings_for("fake", replay), fake_clock, headers={"x-key": "good"})
    with pytest.raises(AuthError, match="HTTP 401"):
        bad.get("/p", symbol="A")
    with pytest.raises(AuthError, match="provider stopped"):
        bad.get("/p", symbol="B")
    assert len(replay.requests_to("/p")) == 1  # the second call made no request
    assert bad.aborted and good.get_json("/p", symbol="B") == {"ok": True}


def test_403_aborts_too(replay, fake_clock):
    replay.add("/p", Reply(403, b'{"Error Message": "Legacy Endpoint"}'))
    http = client(settings_for("fake", replay), fake_clock)
    with pytest.raises(AuthError, match="Legacy Endpoint"):
        http.get("/p")
    assert http.aborted


@pytest.mark.parametrize("status", [400, 404])
def test_400_and_404_are_invalid_symbol_and_not_retried(replay, fake_clock, status):
    replay.add("/p", Reply(status, b'{"error": "nope"}'))
    http = client(settings_for("fake", replay), fake_clock)
    with pytest.raises(InvalidSymbolError, match=f"fake ZZZ: HTTP {status}.*nope"):
        http.get("/p", symbol="ZZZ")
    assert len(replay.requests_to("/p")) == 1 and not http.aborted and fake_clock.sleeps == []


def test_legacy_yahoo_download_400_text_body(replay, fake_clock, provider_fixtures):
    replay.add_file(
        "/v7/finance/download/SIMP",
        provider_fixtures / "yahoo" / "download_v7_400_data_doesnt_exist_SIMP_legacy.cassette.json",
    )
    http = client(settings_for("yahoo", replay), fake_clock)
    with pytest.raises(InvalidSymbolError, match="SIMP: HTTP 400.*Data doesn't exist"):
        http.get("/v7/finance/download/SIMP", symbol="SIMP")


def test_other_4xx_is_terminal(replay, fake_clock, provider_fixtures):
    replay.add(
        "/api/depth/btcidr",
        load_recording(
            provider_fixtures / "indodax" / "error_405_method_not_allowed.envelope.json"
        ),
    )
    http = client(settings_for("indodax", replay), fake_clock)
    with pytest.raises(TerminalProviderError, match="HTTP 405.*Method Not Allowed") as err:
        http.get("/api/depth/btcidr", symbol="BTC/IDR")
    assert not isinstance(err.value, InvalidSymbolError | AuthError)


def test_check_false_hands_4xx_back(replay, fake_clock):
    replay.add("/p", Reply(404, b"missing"))
    http = client(settings_for("fake", replay), fake_clock)
    assert http.get("/p", check=False).status_code == 404


def test_unsupported_url_is_terminal(fake_clock):
    settings = ProviderSettings(name="fake", base_url="ftp://example.test")
    http = client(settings, fake_clock)
    with pytest.raises(TerminalProviderError, match="request failed"):
        http.get("/x")


# -- secrets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 404, 500, 429])
def test_secrets_never_appear_in_errors(replay, fake_clock, status):
    replay.add("/q", Reply(status, b'{"error": "denied"}'))
    settings = settings_for("fmp", replay, secret=SECRET, max_retries=1)
    http = client(settings, fake_clock, headers={"x-api-key": SECRET})
    with pytest.raises(Exception) as err:  # noqa: B017 - every error class is checked below
        http.get("/q", params={"apikey": SECRET, "symbol": "AAPL"}, symbol="AAPL")
    text = f"{err.value} {err.value!r} {err.value.__cause__}"
    assert SECRET not in text and "apikey=***" in text
    assert SECRET not in (http.aborted or "")
    # the key did travel (query and header)
    assert replay.seen[-1].params["apikey"] == SECRET
    assert replay.seen[-1].headers["x-api-key"] == SECRET


def test_secret_in_a_dropped_connection_message():
    def handler(request):
        raise httpx.ConnectError(f"refused {request.url}", request=request)

    clock = FakeClock()
    settings = ProviderSettings(
        name="fmp", base_url="https://api.example.test", secret=SECRET, max_retries=0
    )
    http = client(settings, clock, transport=httpx.MockTransport(handler))
    with pytest.raises(TransientProviderError) as err:
        http.get("/q", params={"token": SECRET})
    assert SECRET not in str(err.value)


# -- helpers ----------------------------------------------------------------------------------
def test_with_origin_and_path_segments():
    assert (
        with_origin("https://query2.finance.yahoo.com/v8/x?a=1", "http://127.0.0.1:9/pfx")
        == "http://127.0.0.1:9/pfx/v8/x?a=1"
    )
    assert path_segment("BRK-B") == "BRK-B" and path_segment("^GSPC") == "^GSPC"
    assert path_segment("a/b?c#d") == "a%2Fb%3Fc%23d"
    assert (
        path_segment("..") == "%2E%2E"
        and path_segment("NSE_INDEX|Nifty 50") == "NSE_INDEX%7CNifty%2050"
    )


def test_error_detail_reads_provider_bodies():
    def resp(body):
        return httpx.Response(404, content=body)

    assert (
        error_detail(resp(b'{"chart": {"error": {"code": "Not Found", "description": "No data"}}}'))
        == "No data"
    )
    assert error_detail(resp(b'{"status": {"error_message": "slow down"}}')) == "slow down"
    assert error_detail(resp(b'{"Error Message": "Invalid API KEY"}')) == "Invalid API KEY"
    assert error_detail(resp(b"x" * 500)).endswith("…")


def test_every_recording_is_replayed_by_a_test(provider_fixtures):
    """Each real recording (cassette, body, envelope) of these providers is named by a test."""
    import ast
    from pathlib import Path

    here = Path(__file__).parent
    strings: set[str] = set()
    for source in here.glob("test_*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    text = "\n".join(strings)
    missing = []
    for provider in ("yahoo", "coingecko", "indodax"):
        for f in sorted((provider_fixtures / provider).glob("*.json")):
            if (
                f.name.endswith((".cassette.json", ".body.json", ".envelope.json"))
                and f.name not in text
            ):
                missing.append(f"{provider}/{f.name}")
    assert missing == []

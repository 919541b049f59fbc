"""The one HTTP layer of every httpx-based provider: a shared client, a shared token bucket and
the SPEC §6 error policy.

One :class:`HttpClient` per provider instance, shared by all of its worker threads:

- 5xx, timeouts and dropped connections: exponential backoff with jitter, at most
  ``settings.max_retries`` retries, then :class:`TransientProviderError`;
- 429: wait ``Retry-After`` seconds (10 s without one; the whole provider pauses, since the
  bucket is shared) and retry; these tries count toward ``max_retries``, then
  :class:`RateLimitedError`;
- 401/403: :class:`AuthError`, and the client is marked aborted: every later call raises
  :class:`AuthError` at once, without a request;
- 400/404: :class:`InvalidSymbolError` for that symbol; other 4xx: :class:`TerminalProviderError`;
- a body that is not JSON (truncated, HTML error page): :class:`BadResponseError`.

Messages are one line naming provider and symbol, and pass through :func:`redact`, so a key in
a query string or header never reaches a log, an exception or ``sync_logs``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from marketlake.errors import (
    AuthError,
    BadResponseError,
    InvalidSymbolError,
    RateLimitedError,
    TerminalProviderError,
    TransientProviderError,
)
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.redact import redact

DEFAULT_RETRY_AFTER_S = 10.0
MAX_RETRY_AFTER_S = 900.0
USER_AGENT = "marketlake/0.1 (+https://github.com/marketlake)"


class RateLimiter:
    """Thread-safe token bucket: ``rate_per_s`` requests per second, bursts up to ``burst``.

    A caller reserves a token under the lock and sleeps outside it, so N threads share the
    rate fairly. :meth:`block` pauses every caller (a 429 applies to the whole provider).
    """

    def __init__(
        self,
        rate_per_s: float | None,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate_per_s if rate_per_s and rate_per_s > 0 else None
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = clock()
        self._blocked_until = 0.0

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        with self._lock:
            now = self.clock()
            wait = max(0.0, self._blocked_until - now)
            if self.rate is not None:
                start = now + wait
                self._tokens = min(self.burst, self._tokens + (start - self._last) * self.rate)
                self._last = start
                self._tokens -= 1.0
                if self._tokens < 0:
                    wait += -self._tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait

    def block(self, seconds: float) -> None:
        """Make every caller wait until ``seconds`` from now."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self.clock() + seconds)


def limiter_clock(
    provider_clock: Callable[[], datetime] | None,
    sleep: Callable[[float], None] | None,
    now: Callable[[], datetime],
) -> Callable[[], float]:
    """The token bucket's time source: the provider's clock only when both clock and sleep
    are injected (a fake time that sleeping advances, in tests); otherwise real monotonic
    time, so a pinned clock (``MARKETLAKE_NOW``) pins dates but never freezes the bucket."""
    if provider_clock is not None and sleep is not None:
        return lambda: now().timestamp()
    return time.monotonic


def retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); 10 s when absent."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return DEFAULT_RETRY_AFTER_S
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def error_detail(response: httpx.Response, limit: int = 200) -> str:
    """The provider's own error text from a JSON or text body, on one short line."""
    text = response.text
    detail: Any = None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for outer in ("chart", "quoteSummary", "finance", "timeseries"):
            inner = body.get(outer)
            if isinstance(inner, dict) and isinstance(inner.get("error"), dict):
                err = inner["error"]
                detail = err.get("description") or err.get("code")
                break
        if detail is None:
            status = body.get("status")
            if isinstance(status, dict):
                detail = status.get("error_message")
        for key in ("error_description", "error", "message", "Error Message", "errors"):
            if detail is None and body.get(key):
                detail = body[key]
    if detail is None:
        detail = text
    line = " ".join(str(detail).split())
    return line[:limit] + ("…" if len(line) > limit else "")


def with_origin(url: str, base_url: str) -> str:
    """``url`` re-pointed at the scheme, host and path prefix of ``base_url`` (replay servers,
    proxies): ``https://query2.finance.yahoo.com/v8/x?a=1`` → ``http://127.0.0.1:9/v8/x?a=1``."""
    src = urlsplit(url)
    dst = urlsplit(base_url)
    path = dst.path.rstrip("/") + (src.path or "/")
    return urlunsplit((dst.scheme, dst.netloc, path, src.query, ""))


class HttpClient:
    """A provider's HTTP client: one ``httpx.Client`` (pooled, thread-safe), one token bucket,
    the retry policy, and the provider-wide abort after an auth failure."""

    def __init__(
        self,
        provider: str,
        settings: ProviderSettings,
        *,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit_per_s: float | None = None,
        concurrency: int = 8,
        secrets: tuple[str, ...] = (),
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.base_url = (base_url or "").rstrip("/")
        self.secrets = tuple(s for s in (*secrets, settings.secret) if s)
        self.sleep = sleep
        self.rng = rng or random.Random()
        rate = (
            settings.rate_limit_per_s if settings.rate_limit_per_s is not None else rate_limit_per_s
        )
        self.limiter = RateLimiter(rate, clock=clock, sleep=sleep)
        workers = max(1, settings.concurrency or concurrency)
        self.client = httpx.Client(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            timeout=httpx.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s)),
            # more connections than workers: the stage may run more threads than the
            # provider's own concurrency, and the token bucket, not the pool, is the bound
            limits=httpx.Limits(
                max_connections=max(32, workers * 4), max_keepalive_connections=max(8, workers * 2)
            ),
            transport=transport,
            follow_redirects=True,
        )
        self._abort_lock = threading.Lock()
        self._aborted: str | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def aborted(self) -> str | None:
        """Why the provider was stopped (an auth failure), or None."""
        return self._aborted

    def add_secret(self, value: str) -> None:
        """Redact ``value`` (e.g. a session token learned at runtime) from now on."""
        if value and value not in self.secrets:
            self.secrets = (*self.secrets, value)

    def abort(self, reason: str) -> None:
        with self._abort_lock:
            if self._aborted is None:
                self._aborted = self.clean(reason)

    def close(self) -> None:
        self.client.close()

    def clean(self, text: object) -> str:
        """``text`` with this provider's secrets and any key-looking values redacted."""
        return redact(text, self.secrets)

    def _where(self, symbol: str) -> str:
        return f"{self.provider} {symbol}".rstrip() if symbol else self.provider

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + (path_or_url if path_or_url.startswith("/") else "/" + path_or_url)

    def _backoff(self, attempt: int) -> float:
        """Equal jitter: a delay in [d/2, d] with d = min(max, base * 2**attempt), so delays
        never shrink from one attempt to the next."""
        d = min(self.settings.backoff_max_s, self.settings.backoff_base_s * (2**attempt))
        return d / 2 + self.rng.uniform(0, d / 2)

    # -- requests ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        json_body: Any = None,
        symbol: str = "",
        check: bool = True,
        abort_on_auth: bool = True,
        rate_limited: bool = True,
    ) -> httpx.Response:
        """Send one request under the policy; returns a 2xx/3xx response.

        ``check=False`` hands 4xx answers (401/403 included) back instead of raising, for
        callers such as the yfinance bridge that read error bodies themselves and decide at
        their own boundary; 5xx, timeouts and 429 are retried either way.
        ``abort_on_auth=False`` raises AuthError without stopping the provider (a stale session
        token the caller can refresh). ``rate_limited=False`` bypasses the token bucket (static
        assets on another host, e.g. coin icons).
        """
        where = self._where(symbol)
        if self._aborted is not None:
            raise AuthError(
                f"{where}: provider stopped after an auth failure ({self._aborted})",
                provider=self.provider,
                symbol=symbol,
            )
        url = self.url(path_or_url)
        tries = 1 + max(0, self.settings.max_retries)
        last: str = ""
        cause: BaseException | None = None
        for attempt in range(tries):
            final = attempt == tries - 1
            if rate_limited:
                self.limiter.acquire()
            try:
                resp = self.client.request(
                    method,
                    url,
                    params=params,
                    headers=headers,
                    content=content,
                    data=data,
                    json=json_body,
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                shown = self.clean(_request_url(exc, url))
                last = f"{type(exc).__name__} on {method} {shown}"
                cause = exc
                if not final:
                    self.sleep(self._backoff(attempt))
                continue
            except httpx.HTTPError as exc:  # bad URL, unsupported protocol, proxy misconfig
                raise TerminalProviderError(
                    f"{where}: request failed: {self.clean(exc)}",
                    provider=self.provider,
                    symbol=symbol,
                ) from exc
            status = resp.status_code
            shown = self.clean(resp.request.url)
            if status == 429:
                wait = retry_after_seconds(resp.headers.get("retry-after"))
                last = f"HTTP 429 from {method} {shown}: {self.clean(error_detail(resp))}"
                if final:
                    raise RateLimitedError(
                        f"{where}: rate limited after {tries} tries; {last}",
                        retry_after=wait,
                        provider=self.provider,
                        symbol=symbol,
                    )
                self.limiter.block(wait)
                self.sleep(wait)
                continue
            if status >= 500:
                last = f"HTTP {status} from {method} {shown}: {self.clean(error_detail(resp))}"
                cause = None
                if not final:
                    self.sleep(self._backoff(attempt))
                continue
            if status in (401, 403):
                if not check:
                    return resp
                detail = f"HTTP {status} from {method} {shown}: {self.clean(error_detail(resp))}"
                if abort_on_auth:
                    self.abort(detail)
                raise AuthError(f"{where}: {detail}", provider=self.provider, symbol=symbol)
            if status >= 400 and check:
                detail = f"HTTP {status} from {method} {shown}: {self.clean(error_detail(resp))}"
                if status in (400, 404):
                    raise InvalidSymbolError(
                        f"{where}: {detail}", provider=self.provider, symbol=symbol
                    )
                raise TerminalProviderError(
                    f"{where}: {detail}", provider=self.provider, symbol=symbol
                )
            return resp
        err = TransientProviderError(
            f"{where}: gave up after {tries} tries; {last}", provider=self.provider, symbol=symbol
        )
        if cause is not None:
            raise err from cause
        raise err

    def get(self, path_or_url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path_or_url, **kw)

    def get_json(self, path_or_url: str, *, symbol: str = "", **kw: Any) -> Any:
        """GET and parse JSON; a body that is not JSON is a :class:`BadResponseError`."""
        resp = self.request("GET", path_or_url, symbol=symbol, **kw)
        return self.parse_json(resp, symbol)

    def parse_json(self, resp: httpx.Response, symbol: str = "") -> Any:
        try:
            return json.loads(resp.content)
        except (ValueError, UnicodeDecodeError) as exc:
            shown = self.clean(resp.request.url)
            size = len(resp.content)
            raise BadResponseError(
                f"{self._where(symbol)}: unparseable JSON ({size} bytes) from {shown}: "
                f"{type(exc).__name__}: {exc}",
                provider=self.provider,
                symbol=symbol,
            ) from exc


def _request_url(exc: httpx.HTTPError, fallback: str) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # no request attached
        return fallback

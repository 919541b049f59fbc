"""The one HTTP layer of every httpx-based provider: a shared client, a shared token bucket,
the SPEC §6 error policy, and the limits that keep one bad server from holding a sync.

One :class:`HttpClient` per provider instance (built by :class:`HttpProvider`), shared by all
of its worker threads:

- httpx's own errors are converted where they enter, in one place (:func:`map_httpx_errors`,
  after httpx's ``map_exceptions``): timeouts, dropped connections and protocol errors are
  :class:`TransientProviderError`, anything else (a bad URL, an unsupported scheme)
  :class:`TerminalProviderError`;
- an answer's status becomes an error in one place (:func:`status_error`): 5xx transient,
  429 :class:`RateLimitedError` with its ``Retry-After``, 401/403 :class:`AuthError` (and the
  client is marked aborted: every later call raises at once, without a request), 400/404
  :class:`InvalidSymbolError`, other 4xx :class:`TerminalProviderError`;
- each request is retried by the one retry loop (:func:`retry.retrying`): a 429 pauses the
  whole provider (the bucket is shared);
- each exchange has a total deadline (``deadline_s``; httpx's timeouts are per read, so a
  server dripping a byte a second would otherwise hold it forever), enforced on the socket
  from connect through headers and body (:mod:`.deadline`), and a size cap
  (``max_response_bytes``) enforced while the body streams in;
- redirects are followed only where the provider's API has them, and never to another
  origin while the request carries a credential;
- a body that is not JSON (truncated, HTML error page): :class:`BadResponseError`.

Messages are one line naming provider and symbol; error bodies are redacted before they are
cut short (:func:`marketlake.pipeline.redact.redact`), so a key in a query string, a header or
an echoed body never reaches a log, an exception or ``sync_logs``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from marketlake.errors import (
    AuthError,
    BadResponseError,
    InvalidSymbolError,
    ProviderError,
    RateLimitedError,
    TerminalProviderError,
    TransientProviderError,
)
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers.base import Provider
from marketlake.pipeline.providers.deadline import DeadlineTransport, deadline
from marketlake.pipeline.providers.retry import backoff, retrying
from marketlake.pipeline.redact import clip, redact

DEFAULT_RETRY_AFTER_S = 10.0
MAX_RETRY_AFTER_S = 900.0
MAX_REDIRECTS = 5
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
        wait = self.reserve()
        if wait > 0:
            self.sleep(wait)
        return wait

    def reserve(self) -> float:
        """Take one token without sleeping; returns the seconds until it may be used (the
        cluster's shared bucket answers workers with this)."""
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


def error_detail(response: httpx.Response, limit: int = 200, secrets: tuple[str, ...] = ()) -> str:
    """The provider's own error text from a JSON or text body, on one short line: redacted
    first, then cut to ``limit`` characters (a key cut in half would escape redaction)."""
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
    return clip(redact(" ".join(str(detail).split()), secrets), limit)


def status_error(
    response: httpx.Response,
    *,
    provider: str,
    symbol: str = "",
    secrets: tuple[str, ...] = (),
) -> ProviderError | None:
    """The error an answer's status means (see the module docstring), or None for 1xx-3xx."""
    status = response.status_code
    if status < 400:
        return None
    where = f"{provider} {symbol}".rstrip() if symbol else provider
    shown = redact(response.request.url, secrets)
    detail = (
        f"HTTP {status} from {response.request.method} {shown}: "
        f"{error_detail(response, secrets=secrets)}"
    )
    kw = {"provider": provider, "symbol": symbol}
    if status == 429:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        return RateLimitedError(f"{where}: {detail}", retry_after=wait, **kw)
    if status >= 500:
        return TransientProviderError(f"{where}: {detail}", **kw)
    if status in (401, 403):
        return AuthError(f"{where}: {detail}", **kw)
    if status in (400, 404):
        return InvalidSymbolError(f"{where}: {detail}", **kw)
    return TerminalProviderError(f"{where}: {detail}", **kw)


@contextmanager
def map_httpx_errors(
    where: str, method: str, url: str, *, provider: str, symbol: str, secrets: tuple[str, ...]
) -> Iterator[None]:
    """Convert httpx's exceptions raised inside the block into the provider error tree."""
    try:
        yield
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        shown = redact(_request_url(exc, url), secrets)
        raise TransientProviderError(
            f"{where}: {type(exc).__name__} on {method} {shown}", provider=provider, symbol=symbol
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        # a bad URL, an unsupported protocol, a proxy misconfiguration: retrying cannot help
        raise TerminalProviderError(
            f"{where}: request failed: {redact(exc, secrets)}", provider=provider, symbol=symbol
        ) from exc


def with_origin(url: str, base_url: str) -> str:
    """``url`` re-pointed at the scheme, host and path prefix of ``base_url`` (replay servers,
    proxies): ``https://query2.finance.yahoo.com/v8/x?a=1`` → ``http://127.0.0.1:9/v8/x?a=1``."""
    src = urlsplit(url)
    dst = urlsplit(base_url)
    path = dst.path.rstrip("/") + (src.path or "/")
    return urlunsplit((dst.scheme, dst.netloc, path, src.query, ""))


class HttpClient:
    """A provider's HTTP client: one ``httpx.Client`` (pooled, thread-safe), one token bucket,
    the retry policy, the per-exchange deadline and size cap, the redirect policy, and the
    provider-wide abort after an auth failure."""

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
        follow_redirects: bool = False,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.base_url = (base_url or "").rstrip("/")
        self.secrets = tuple(s for s in (*secrets, settings.secret) if s)
        self.follow_redirects = follow_redirects
        self.sleep = sleep
        self.rng = rng or random.Random()
        rate = (
            settings.rate_limit_per_s if settings.rate_limit_per_s is not None else rate_limit_per_s
        )
        self.limiter = RateLimiter(rate, clock=clock, sleep=sleep)
        workers = max(1, settings.concurrency or concurrency)
        # more connections than workers: the stage may run more threads than the
        # provider's own concurrency, and the token bucket, not the pool, is the bound
        limits = httpx.Limits(
            max_connections=max(32, workers * 4), max_keepalive_connections=max(8, workers * 2)
        )
        self.client = httpx.Client(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            limits=limits,
            transport=transport or DeadlineTransport(limits),
            follow_redirects=False,  # followed here, under the policy above
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
        return backoff(self.settings, attempt, self.rng)

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
        """Send one request under the policy; returns a 2xx/3xx response (its body read).

        ``check=False`` hands 4xx answers (401/403 included) back instead of raising, for
        callers such as the yfinance bridge that read error bodies themselves and decide at
        their own boundary; 5xx, timeouts and 429 are retried either way.
        ``abort_on_auth=False`` raises AuthError without stopping the provider (a stale session
        token the caller can refresh). ``rate_limited=False`` bypasses the token bucket (static
        assets on another host, e.g. coin icons).
        """
        if self._aborted is not None:
            raise AuthError(
                f"{self._where(symbol)}: provider stopped after an auth failure ({self._aborted})",
                provider=self.provider,
                symbol=symbol,
            )
        kw = {"params": params, "headers": headers, "content": content, "data": data}
        kw["json"] = json_body

        def attempt() -> httpx.Response:
            if rate_limited:
                self.limiter.acquire()
            resp = self._exchange(method, self.url(path_or_url), symbol, kw)
            err = status_error(resp, provider=self.provider, symbol=symbol, secrets=self.secrets)
            if err is None or (not check and err.__class__ in _HANDED_BACK):
                return resp
            if isinstance(err, AuthError) and abort_on_auth:
                self.abort(str(err).removeprefix(f"{self._where(symbol)}: "))
            raise err

        return retrying(
            attempt, self.settings, sleep=self.sleep, rng=self.rng, on_rate_limit=self.limiter.block
        )

    def _exchange(self, method: str, url: str, symbol: str, kw: dict[str, Any]) -> httpx.Response:
        """One exchange (redirects included) within ``deadline_s``, its body read under the
        size cap."""
        where = self._where(symbol)
        deadline_s = self.settings.deadline_s
        deadline_at = time.monotonic() + deadline_s
        errors = {"provider": self.provider, "symbol": symbol, "secrets": self.secrets}
        try:
            with deadline(deadline_at), map_httpx_errors(where, method, url, **errors):
                return self._follow(method, url, where, symbol, deadline_at, kw)
        except TransientProviderError as exc:
            if (
                isinstance(exc.__cause__, httpx.TimeoutException)
                and time.monotonic() >= deadline_at
            ):
                raise self._past_deadline(where, url, symbol) from exc
            raise

    def _past_deadline(self, where: str, url: object, symbol: str) -> TransientProviderError:
        return TransientProviderError(
            f"{where}: no complete response within deadline_s "
            f"({self.settings.deadline_s:g} s) from {self.clean(url)}",
            provider=self.provider,
            symbol=symbol,
        )

    def _follow(
        self, method: str, url: str, where: str, symbol: str, deadline_at: float, kw: dict
    ) -> httpx.Response:
        deadline_s = self.settings.deadline_s
        timeout = httpx.Timeout(
            min(self.settings.timeout_s, deadline_s), connect=min(10.0, deadline_s)
        )
        request = self.client.build_request(method, url, timeout=timeout, **kw)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.client.send(request, stream=True)
            try:
                if resp.has_redirect_location:
                    request = self._redirect(request, resp, where, symbol)
                    continue
                body = self._read(resp, deadline_at, where, symbol)
            finally:
                resp.close()
            keep = {
                k: v
                for k, v in resp.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            }
            return httpx.Response(
                resp.status_code,
                headers=keep,
                content=body,
                request=request,
                extensions={"reason_phrase": resp.reason_phrase.encode()},
            )
        raise TerminalProviderError(
            f"{where}: more than {MAX_REDIRECTS} redirects from {self.clean(url)}",
            provider=self.provider,
            symbol=symbol,
        )

    def _redirect(
        self, request: httpx.Request, resp: httpx.Response, where: str, symbol: str
    ) -> httpx.Request:
        """The request a redirect leads to, if the policy allows following it."""
        shown = self.clean(request.url)
        if not self.follow_redirects:
            raise TerminalProviderError(
                f"{where}: unexpected redirect (HTTP {resp.status_code}) from {request.method} "
                f"{shown}; {self.provider} redirects are not followed",
                provider=self.provider,
                symbol=symbol,
            )
        target = request.url.join(resp.headers["location"])
        method = request.method
        if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
            method = "GET"
        following = self.client.build_request(
            method,
            target,
            timeout=httpx.Timeout(**request.extensions["timeout"]),
            content=request.content if method == request.method else None,
        )
        for k, v in request.headers.items():
            if k.lower() not in ("host", "cookie", "content-length"):
                following.headers.setdefault(k, v)
        same_origin = (target.scheme, target.host, target.port) == (
            request.url.scheme,
            request.url.host,
            request.url.port,
        )
        if not same_origin and (self._carries_secret(request) or self._carries_secret(following)):
            raise TerminalProviderError(
                f"{where}: refusing to follow a redirect (HTTP {resp.status_code}) from "
                f"{shown} to another origin ({target.scheme}://{target.host}) with credentials",
                provider=self.provider,
                symbol=symbol,
            )
        return following

    def _carries_secret(self, request: httpx.Request) -> bool:
        values = [str(request.url), *request.headers.values()]
        if request.url.userinfo:
            return True
        return any(s and s in v for s in self.secrets for v in values)

    def _read(self, resp: httpx.Response, deadline_at: float, where: str, symbol: str) -> bytes:
        """The body, streamed: at most ``max_response_bytes``, complete before ``deadline_at``."""
        limit = self.settings.max_response_bytes
        declared = resp.headers.get("content-length", "")
        too_large = BadResponseError(
            f"{where}: response from {self.clean(resp.request.url)} is larger than "
            f"max_response_bytes ({limit} bytes)",
            provider=self.provider,
            symbol=symbol,
        )
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large
            if time.monotonic() > deadline_at:
                raise self._past_deadline(where, resp.request.url, symbol)
            chunks.append(chunk)
        return b"".join(chunks)

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


# the answers ``check=False`` hands back to the caller instead of raising
_HANDED_BACK = (AuthError, InvalidSymbolError, TerminalProviderError)


class HttpProvider(Provider):
    """Base of the providers that speak HTTP: owns the :class:`HttpClient` (client, token
    bucket, retry policy, limits) and closes it. Subclasses set ``base_url`` (overridden by
    ``settings.base_url``), ``follow_redirects`` where their API redirects, and may pass
    ``headers`` (credentials) to :meth:`__init__`."""

    retries_transient = True  # each request runs the retry loop
    base_url: str = ""
    follow_redirects: bool = False

    def __init__(
        self,
        settings=None,
        *,
        home=None,
        clock=None,
        sleep=None,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        headers: Mapping[str, str] | None = None,
        base_url: str | None = None,
    ) -> None:
        super().__init__(settings, home=home, clock=clock, sleep=sleep)
        caps = self.capabilities
        self.http = HttpClient(
            self.name,
            self.settings,
            base_url=self.settings.base_url or base_url or self.base_url,
            headers=headers,
            rate_limit_per_s=caps.rate_limit_per_s,
            concurrency=self.settings.concurrency or caps.default_concurrency,
            follow_redirects=self.follow_redirects,
            transport=transport,
            clock=limiter_clock(clock, sleep, self.clock),
            sleep=self.sleep,
            rng=rng,
        )

    def close(self) -> None:
        self.http.close()


def _request_url(exc: httpx.HTTPError, fallback: str) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # no request attached
        return fallback

"""yfinance driven through marketlake's HTTP layer.

yfinance keeps one process-wide session (``yfinance.data.YfData`` is a singleton) and bakes
Yahoo's hosts into module constants (``const._BASE_URL_``, ``fc.yahoo.com``, ``guce.yahoo.com``,
``finance.yahoo.com``...). Rewriting the constants misses half of them, so instead yfinance gets
one :class:`BridgeSession` (a ``requests.Session`` subclass, a type yfinance accepts via
``Ticker(..., session=)``) whose ``request`` hands every call to the calling provider's
:class:`HttpClient`: the provider's token bucket, retry policy, cookies and base-URL override
(``MARKETLAKE_YAHOO_BASE_URL``) apply to yfinance too, and a request to any host that is not
Yahoo's is refused. The target client is per thread (set by :func:`route`), so two provider
instances with different base URLs can share the one yfinance session.

yfinance is also told to raise instead of logging-and-returning-empty (its logger is silenced:
the provider converts and raises), and to keep its tz and cookie caches under the marketlake
home instead of the user's cache directory.

A provider that already holds an answer (one batched quoteSummary carrying every module the
accessors read, its own cookie and crumb) passes a ``local`` answerer to :func:`route`: the
requests it answers never leave the process, so yfinance's parsers read the batch instead of
asking Yahoo once per accessor.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import requests
from requests.structures import CaseInsensitiveDict

from marketlake.errors import TerminalProviderError
from marketlake.pipeline.providers.http import HttpClient, with_origin

_local = threading.local()
_install_lock = threading.Lock()
_session: BridgeSession | None = None
_FORWARD_HEADERS = {"content-type", "accept", "referer"}

# (method, url, params) -> an answer already held, or None to ask Yahoo
LocalAnswer = Callable[[str, str, dict[str, str]], httpx.Response | None]


def _is_yahoo(host: str) -> bool:
    return host == "yahoo.com" or host.endswith(".yahoo.com")


class BridgeSession(requests.Session):
    """A ``requests.Session`` whose requests go through the active provider's HttpClient."""

    def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: Any = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        active: tuple[HttpClient, str | None, str, LocalAnswer | None] | None = getattr(
            _local, "active", None
        )
        if active is None:
            raise TerminalProviderError(
                "yahoo: yfinance request outside a provider call", provider="yahoo"
            )
        client, base_url, symbol, local = active
        host = urlsplit(url).hostname or ""
        if not _is_yahoo(host):
            raise TerminalProviderError(
                f"yahoo {symbol}: refusing request to non-Yahoo host {host!r}",
                provider="yahoo",
                symbol=symbol,
            )
        resp = None
        if local is not None:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
            query.update({str(k): str(v) for k, v in (params or {}).items()})
            resp = local(method.upper(), url, query)
        if resp is None:
            target = with_origin(url, base_url) if base_url else url
            fwd = {k: v for k, v in (headers or {}).items() if k.lower() in _FORWARD_HEADERS}
            content = data if isinstance(data, str | bytes) else None
            form = data if isinstance(data, dict) else None
            resp = client.request(
                method,
                target,
                params=params,
                headers=fwd or None,
                content=content,
                data=form,
                json_body=json,
                symbol=symbol,
                check=False,
            )
        out = requests.Response()
        out.status_code = resp.status_code
        out._content = resp.content
        out.headers = CaseInsensitiveDict(resp.headers)
        out.url = url  # the Yahoo URL yfinance asked for (its consent-page check reads it)
        out.reason = resp.reason_phrase
        out.encoding = resp.encoding
        return out


def as_httpx(resp: requests.Response | None) -> httpx.Response:
    """A ``requests`` answer yfinance raised on, as the httpx response it was built from
    (so the one status-to-error mapping reads it)."""
    if resp is None:
        return httpx.Response(0, request=httpx.Request("GET", "https://finance.yahoo.com"))
    request = httpx.Request(resp.request.method or "GET", resp.url) if resp.request else None
    return httpx.Response(
        resp.status_code,
        content=resp.content or b"",
        request=request or httpx.Request("GET", resp.url or "https://finance.yahoo.com"),
    )


def session(cache_dir: Path | None = None) -> BridgeSession:
    """The one bridge session, installed into yfinance on first use."""
    global _session
    with _install_lock:
        if _session is None:
            import yfinance as yf

            yf.config.debug.hide_exceptions = False
            # what yfinance would log, the provider raises (converted at its boundary)
            logging.getLogger("yfinance").setLevel(logging.CRITICAL)
            if cache_dir is None:  # never the user's own cache directory
                cache_dir = Path(tempfile.gettempdir()) / "marketlake-yfinance-cache"
            cache_dir.mkdir(parents=True, exist_ok=True)
            yf.set_tz_cache_location(str(cache_dir))
            _session = BridgeSession()
        return _session


@contextmanager
def route(
    client: HttpClient,
    base_url: str | None,
    symbol: str = "",
    local: LocalAnswer | None = None,
) -> Iterator[None]:
    """Send this thread's yfinance requests through ``client`` (to ``base_url`` if set),
    except those ``local`` answers from what the provider already holds."""
    previous = getattr(_local, "active", None)
    _local.active = (client, base_url, symbol, local)
    try:
        yield
    finally:
        _local.active = previous


def clear_caches() -> None:
    """Forget yfinance's in-process response cache (it is keyed by Yahoo URL, not by base
    URL, and would otherwise serve one replay server's answer to another)."""
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()

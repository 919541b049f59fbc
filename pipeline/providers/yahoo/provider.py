"""Yahoo Finance: equities, ETFs, funds, indices, FX, futures and crypto pairs.

Two engines, one HTTP layer (:mod:`marketlake.pipeline.providers.http`: shared client, token
bucket, SPEC §6 retry/abort policy, deadlines and size caps, ``MARKETLAKE_YAHOO_BASE_URL``
redirecting every request):

- bars, corporate actions, profiles and the seven financial statements are read from Yahoo's
  JSON endpoints directly (``/v8/finance/chart``, ``/v10/finance/quoteSummary``,
  ``/ws/fundamentals-timeseries``; the same requests and JSON yfinance uses). The lake's keys
  need what ``Ticker.history`` discards: the raw bar timestamps (to key daily bars by
  exchange-local session date and to tell a live bar from a final one) and each event's own
  ``date``. ``history`` also costs a time-zone request and ~10 ms of pandas per symbol and
  serves past ranges from an in-process cache, which would hide a re-adjusted history from
  the re-fetch that detects it;
- the other extended data types, market status and the calendars go through yfinance's
  accessors, whose HTTP is bridged into the same client (:mod:`.yfbridge`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import polars as pl

from marketlake.errors import (
    AuthError,
    BadResponseError,
    ConfigError,
    InvalidSymbolError,
    ProviderError,
    RateLimitedError,
    TerminalProviderError,
    TransientProviderError,
)
from marketlake.pipeline.providers.base import (
    REQUEST_KINDS,
    Capabilities,
    FetchRequest,
    profile_row,
    rows_frame,
)
from marketlake.pipeline.providers.http import HttpProvider, retry_after_seconds, status_error
from marketlake.pipeline.providers.symbols import path_segment, provider_symbol
from marketlake.pipeline.providers.yahoo import fundamentals as yfund
from marketlake.pipeline.providers.yahoo import yfbridge
from marketlake.pipeline.providers.yahoo.chart import INTERVALS, parse_bars, parse_events
from marketlake.pipeline.redact import clip

log = logging.getLogger("marketlake.providers.yahoo")

_HOSTS = {
    "query1": "https://query1.finance.yahoo.com",
    "query2": "https://query2.finance.yahoo.com",
    "fc": "https://fc.yahoo.com",
}
_EVENTS = "div,splits,capitalGains"
EVENTS_FROM = datetime(1970, 1, 2, tzinfo=UTC)  # the event history asks from here
HELD_EVENT_CHARTS = 1024  # event-history charts held per provider instance (~30 KB each)
_CLASS_SUFFIX = re.compile(r"^([A-Z0-9&]+)\.([A-Z])$")
_ONE_LETTER_EXCHANGES = frozenset({"L", "F", "V", "T"})  # London, Frankfurt, TSX-V, Tokyo
_US_EXCHANGES = frozenset(
    {
        "NYSE",
        "NASDAQ",
        "NMS",
        "NYQ",
        "NGM",
        "NCM",
        "AMEX",
        "ASE",
        "ARCA",
        "NYSEARCA",
        "PCX",
        "BATS",
        "CBOE",
        "OTC",
        "US",
    }
)
STATEMENT_START = datetime(2016, 12, 31, tzinfo=UTC)  # Yahoo keeps ~4 years / 5 quarters
MARKET_CALENDARS = ("earnings", "ipo", "splits", "economic")


def yahoo_symbol(symbol: str, instrument: Mapping[str, Any] | None = None) -> str:
    """Yahoo's spelling: the instrument's ``provider_symbols["yahoo"]`` if set, else
    ``BRK.B`` → ``BRK-B`` (share classes; ``VOD.L``-style exchange suffixes are kept),
    ``BTC/USD`` → ``BTC-USD``, FX ``EUR/USD`` → ``EURUSD=X``."""
    inst = instrument or {}
    mapped = provider_symbol(inst, "yahoo")
    if mapped:
        return mapped
    if "/" in symbol:
        base, _, quote = symbol.partition("/")
        return f"{base}{quote}=X" if inst.get("asset_type") == "fx" else f"{base}-{quote}"
    m = _CLASS_SUFFIX.match(symbol)
    if m:
        exchange = str(inst.get("exchange") or "").upper()
        if m.group(2) not in _ONE_LETTER_EXCHANGES or exchange in _US_EXCHANGES:
            return f"{m.group(1)}-{m.group(2)}"
    return symbol


class YahooProvider(HttpProvider):
    """Yahoo Finance through its chart/quoteSummary/timeseries JSON and yfinance."""

    name = "yahoo"
    follow_redirects = True  # Yahoo's cookie and consent pages redirect
    capabilities = Capabilities(
        kinds=frozenset(REQUEST_KINDS) - {"instruments", "valuation"},
        timeframes=("1m", "15m", "30m", "1h", "1D", "1W"),  # 4h is resampled from 1h
        max_range={
            "1m": timedelta(days=8),
            "15m": timedelta(days=60),
            "30m": timedelta(days=60),
            "1h": timedelta(days=730),
            "1D": None,
            "1W": None,
        },
        # how far back each interval reaches; one day inside Yahoo's edge (probes: 30 days
        # back fails for 1m, 29 works; likewise 59/60 and 729/730)
        history={
            "1m": timedelta(days=29),
            "15m": timedelta(days=59),
            "30m": timedelta(days=59),
            "1h": timedelta(days=729),
            "1D": None,
            "1W": None,
        },
        rate_limit_per_s=5.0,  # Yahoo publishes none; a conservative default, see marketlake.toml
        default_concurrency=4,
        asset_types=frozenset({"equity", "etf", "index", "fx", "future", "mutualfund", "crypto"}),
    )

    def __init__(self, settings=None, **kw) -> None:
        super().__init__(settings, **kw)
        self._crumb: str | None = None
        self._crumb_lock = threading.Lock()
        self._timeseries_chunked = False  # set once a long timeseries URL has failed
        self._events: OrderedDict[str, Any] = OrderedDict()  # ysym -> event-history chart
        self._events_locks: dict[str, threading.Lock] = {}
        self._events_lock = threading.Lock()

    def _url(self, host: str, path: str) -> str:
        return (self.settings.base_url or _HOSTS[host]) + path

    def _symbol(
        self, symbol: str, instrument: Mapping[str, Any] | None, remote: str | None = None
    ) -> str:
        return remote or yahoo_symbol(symbol, instrument)

    # -- bars and actions -----------------------------------------------------------------
    def _chart(self, symbol: str, ysym: str, params: dict[str, Any]) -> Any:
        url = self._url("query2", "/v8/finance/chart/" + path_segment(ysym))
        body = self.http.get_json(url, params=params, symbol=symbol)
        try:
            self._note_type(symbol, body["chart"]["result"][0]["meta"].get("instrumentType"))
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # no meta: parse_bars says what is wrong with the answer
        return body

    def _note_type(self, symbol: str, yahoo_type: Any) -> None:
        """Yahoo's own instrument type (chart ``instrumentType``, quoteSummary ``quoteType``):
        an ETF is noted so the sync marks the instrument one."""
        if isinstance(yahoo_type, str) and yahoo_type.upper() == "ETF":
            self.note_asset_type(symbol, "etf")

    def _fetch_ohlcv(self, request: FetchRequest) -> pl.DataFrame:
        """Native bars in [start, end); see :mod:`.chart`."""
        interval = INTERVALS.get(request.timeframe)
        if interval is None:
            raise TerminalProviderError(
                f"yahoo {request.symbol}: timeframe {request.timeframe} is not native "
                f"(native: {', '.join(self.capabilities.timeframes)})",
                provider=self.name,
                symbol=request.symbol,
            )
        ysym = self._symbol(request.symbol, request.instrument, request.provider_symbol)
        start, end = request.start, request.end
        if request.timeframe in ("1D", "1W"):
            # sessions of one local date can open on the previous UTC day (Sydney,
            # Auckland): ask a little wider, then filter on the session-date keys
            start, end = start - timedelta(days=2), end + timedelta(days=2)
        body = self._chart(
            request.symbol,
            ysym,
            {
                "period1": int(start.timestamp()),
                "period2": int(end.timestamp()),
                "interval": interval,
                "includePrePost": "false",
                "events": _EVENTS,
            },
        )
        return parse_bars(
            body,
            symbol=request.symbol,
            timeframe=request.timeframe,
            start=request.start,
            end=request.end,
            now=self.clock(),
            provider=self.name,
        )

    def _fetch_actions(self, request: FetchRequest) -> pl.DataFrame:
        """Splits, dividends and capital gains with ex_date in [start, end), from the
        symbol's event-history chart (:meth:`_event_history`)."""
        symbol, start, end = request.symbol, request.start, request.end
        body = self._event_history(symbol, self._symbol(symbol, request.instrument))
        return parse_events(body, symbol=symbol, start=start, end=end, provider=self.name)

    def _event_history(self, symbol: str, ysym: str) -> Any:
        """The symbol's whole event history: one chart since 1970 at 3-month granularity
        (Yahoo sends every event of the range with any interval; coarse bars keep the answer
        small), fetched once per provider instance (one run) and held for the last
        :data:`HELD_EVENT_CHARTS` symbols, so the ``actions`` kind and the fundamentals'
        ``dividends`` of one symbol share one request, whichever asks first."""
        with self._events_lock:
            lock = self._events_locks.setdefault(ysym, threading.Lock())
        with lock:
            with self._events_lock:
                if ysym in self._events:
                    self._events.move_to_end(ysym)
                    return self._events[ysym]
            body = self._chart(
                symbol,
                ysym,
                {
                    "period1": int(EVENTS_FROM.timestamp()),
                    "period2": int((self.clock() + timedelta(days=2)).timestamp()),
                    "interval": "3mo",
                    "includePrePost": "false",
                    "events": _EVENTS,
                },
            )
            with self._events_lock:
                self._events[ysym] = body
                while len(self._events) > HELD_EVENT_CHARTS:
                    old, _ = self._events.popitem(last=False)
                    self._events_locks.pop(old, None)
            return body

    # -- quoteSummary ---------------------------------------------------------------------------
    def _get_crumb(self, symbol: str) -> str:
        """Yahoo's session crumb (cookie from fc.yahoo.com, then ``getcrumb``); cached."""
        with self._crumb_lock:
            if self._crumb:
                return self._crumb
            try:
                self.http.get(
                    self._url("fc", "/"),
                    symbol=symbol,
                    check=False,
                    headers={"Accept": "text/html"},
                )
            except TransientProviderError:
                pass  # the cookie helps but is not required
            resp = self.http.get(
                self._url("query1", "/v1/test/getcrumb"),
                symbol=symbol,
                headers={"Accept": "text/plain"},
            )
            text = resp.text.strip()
            if "Too Many Requests" in text:
                raise RateLimitedError(
                    f"yahoo {symbol}: getcrumb answered {text!r}",
                    retry_after=retry_after_seconds(None),
                    provider=self.name,
                    symbol=symbol,
                )
            if not text or "<" in text or len(text) > 64:
                raise BadResponseError(
                    f"yahoo {symbol}: getcrumb returned no crumb", provider=self.name, symbol=symbol
                )
            self._crumb = text
            self.http.add_secret(text)  # a session token: never logged
            return text

    def quote_summary(
        self, symbol: str, modules: tuple[str, ...], instrument: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ``quoteSummary`` result for ``modules`` (a stale crumb is refreshed once)."""
        ysym = self._symbol(symbol, instrument)
        url = self._url("query2", "/v10/finance/quoteSummary/" + path_segment(ysym))
        params = {
            "modules": ",".join(modules),
            "formatted": "false",
            "crumb": self._get_crumb(symbol),
        }
        try:
            resp = self.http.get(url, params=params, symbol=symbol, abort_on_auth=False)
        except AuthError:
            with self._crumb_lock:
                self._crumb = None
            params["crumb"] = self._get_crumb(symbol)
            resp = self.http.get(url, params=params, symbol=symbol)
        body = self.http.parse_json(resp, symbol)
        qs = body.get("quoteSummary") if isinstance(body, dict) else None
        if not isinstance(qs, dict):
            raise BadResponseError(
                f"yahoo {symbol}: quoteSummary response without 'quoteSummary'",
                provider=self.name,
                symbol=symbol,
            )
        err = qs.get("error")
        result = qs.get("result")
        if err or not result:
            desc = err.get("description") if isinstance(err, dict) else err
            raise InvalidSymbolError(
                f"yahoo {symbol}: quoteSummary: {desc or 'no result'}",
                provider=self.name,
                symbol=symbol,
            )
        return result[0]

    def quote(self, symbol: str, instrument: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The v7 ``quote`` of one symbol (name, exchange, market cap); an empty result is an
        unknown symbol."""
        ysym = self._symbol(symbol, instrument)
        body = self.http.get_json(
            self._url("query1", "/v7/finance/quote"),
            symbol=symbol,
            params={"symbols": ysym, "crumb": self._get_crumb(symbol)},
        )
        resp = body.get("quoteResponse") if isinstance(body, dict) else None
        if not isinstance(resp, dict):
            raise BadResponseError(
                f"yahoo {symbol}: quote response without 'quoteResponse'",
                provider=self.name,
                symbol=symbol,
            )
        result = [r for r in resp.get("result") or [] if isinstance(r, dict)]
        if not result:
            raise InvalidSymbolError(
                f"yahoo {symbol}: unknown symbol (empty quote result)",
                provider=self.name,
                symbol=symbol,
            )
        return result[0]

    def _fetch_profile(self, request: FetchRequest) -> pl.DataFrame:
        """One ``profiles`` row from quoteSummary ``assetProfile`` + ``price`` (officers and
        everything else stay in ``raw``). Indices, FX and futures have no quoteSummary
        profile: for them the v7 quote supplies the name and exchange."""
        symbol, instrument = request.symbol, request.instrument
        try:
            res = self.quote_summary(symbol, ("assetProfile", "price"), instrument)
        except InvalidSymbolError as first:
            try:
                res = {"price": self.quote(symbol, instrument)}
            except InvalidSymbolError:
                raise first from None
        asset = res.get("assetProfile") or res.get("summaryProfile") or {}
        price = res.get("price") or {}
        self._note_type(symbol, price.get("quoteType"))

        def num(v: Any) -> float | None:
            v = v.get("raw") if isinstance(v, dict) else v
            return float(v) if isinstance(v, int | float) else None

        return profile_row(
            symbol=symbol,
            provider=self.name,
            name=price.get("longName") or price.get("shortName") or instrument.get("name"),
            description=asset.get("longBusinessSummary"),
            sector=asset.get("sector"),
            industry=asset.get("industry"),
            country=asset.get("country"),
            website=asset.get("website"),
            market_cap=num(price.get("marketCap")),
            volume_24h=None,
            icon_url=None,
            icon_path=None,
            raw=json.dumps(res, sort_keys=True),
            fetched_at=self.clock(),
        )

    # -- fundamentals -------------------------------------------------------------------------
    def _timeseries(self, symbol: str, ysym: str, types: list[str], now: datetime) -> Any:
        """One fundamentals-timeseries answer for ``types`` (full keys, timescale included)."""
        body = self.http.get_json(
            self._url(
                "query2", "/ws/fundamentals-timeseries/v1/finance/timeseries/" + path_segment(ysym)
            ),
            symbol=symbol,
            params={
                "symbol": ysym,
                "type": ",".join(types),
                "period1": int(STATEMENT_START.timestamp()),
                "period2": int((now + timedelta(days=1)).timestamp()),
            },
        )
        if not isinstance(body, dict) or "timeseries" not in body:
            raise BadResponseError(
                f"yahoo {symbol}: timeseries response without 'timeseries'",
                provider=self.name,
                symbol=symbol,
            )
        return body

    def _family(self, symbol: str, ysym: str, types: list[str], now: datetime) -> list[Any]:
        """The timeseries answers for one statement family: one request listing every type
        (annual, quarterly and trailing keys together). Should the long URL fail (a proxy or
        edge refusing its length, a dropped connection), the keys go in chunks of
        ``TIMESERIES_CHUNK``, and keep doing so for this provider (yfinance's strategy)."""
        if not self._timeseries_chunked:
            try:
                return [self._timeseries(symbol, ysym, types, now)]
            except RateLimitedError:
                raise
            except (TransientProviderError, TerminalProviderError) as exc:
                if isinstance(exc, AuthError | BadResponseError) or (
                    isinstance(exc, InvalidSymbolError) and "HTTP 400" not in str(exc)
                ):
                    raise
                log.info("%s; listing the statement keys in chunks from now on", exc)
                self._timeseries_chunked = True
        n = yfund.TIMESERIES_CHUNK
        try:
            return [
                self._timeseries(symbol, ysym, types[i : i + n], now)
                for i in range(0, len(types), n)
            ]
        except (TransientProviderError, TerminalProviderError):
            self._timeseries_chunked = False  # the length was not the problem
            raise

    def _statements(
        self, symbol: str, ysym: str, data_types: list[str], now: datetime
    ) -> tuple[list[dict[str, Any]], list[TerminalProviderError]]:
        """Rows of the statement types among ``data_types``: one request per family."""
        rows: list[dict[str, Any]] = []
        failures: list[TerminalProviderError] = []
        for members in yfund.statement_families(data_types).values():
            keys = {t: yfund.statement_keys(t) for t in members}
            types = [scale + k for scale, ks in keys.values() for k in ks]
            try:
                bodies = self._family(symbol, ysym, types, now)
            except AuthError:
                raise
            except TerminalProviderError as exc:
                log.warning("%s", exc)
                failures += [exc] * len(members)
                continue
            for data_type, (timescale, wanted) in keys.items():
                for body in bodies:
                    rows += yfund.parse_timeseries(
                        body,
                        symbol=symbol,
                        data_type=data_type,
                        timescale=timescale,
                        wanted=wanted,
                        fetched_at=now,
                        provider=self.name,
                    )
        return rows, failures

    def _yfinance(self, symbol: str, action: str, call, local=None) -> Any:
        """Run ``call()`` (yfinance code) with its HTTP routed through this provider (or
        answered by ``local``), and convert whatever it raises at this boundary."""
        import requests

        sess = yfbridge.session(self.home / "cache" / "yfinance" if self.home else None)
        try:
            with yfbridge.route(self.http, self.settings.base_url, symbol, local):
                return call(sess)
        except ProviderError:
            raise
        except requests.HTTPError as exc:
            answer = yfbridge.as_httpx(exc.response)
            err = status_error(answer, provider=self.name, symbol=symbol, secrets=self.http.secrets)
            if err is None:  # a 2xx/3xx yfinance disliked
                raise BadResponseError(
                    f"yahoo {symbol}: {action}: HTTP {answer.status_code}",
                    provider=self.name,
                    symbol=symbol,
                ) from exc
            if isinstance(err, AuthError):
                self.http.abort(str(err))
            raise err from exc
        except Exception as exc:  # yfinance raises many foreign types on odd bodies
            detail = clip(self.http.clean(" ".join(str(exc).split())))
            raise BadResponseError(
                f"yahoo {symbol}: {action}: {type(exc).__name__}: {detail}",
                provider=self.name,
                symbol=symbol,
            ) from exc

    def _held_answers(self, summary: Mapping[str, Any] | None):
        """What yfinance would ask Yahoo and this provider already holds: the batched
        quoteSummary (each accessor gets the modules it names, or Yahoo's own 404 when the
        batch has none of them), and the session's cookie and crumb (the provider's client
        keeps Yahoo's cookie; yfinance would fetch ``fc.yahoo.com`` again on every call)."""
        crumb = self._crumb

        def answer(method: str, url: str, params: dict[str, str]) -> httpx.Response | None:
            parts = urlsplit(url)
            host, path = parts.hostname or "", parts.path
            request = httpx.Request(method, url)
            if host == "fc.yahoo.com" and crumb:
                return httpx.Response(200, text="", request=request)
            if path == "/v1/test/getcrumb" and crumb:
                return httpx.Response(200, text=crumb, request=request)
            if summary is not None and "/v10/finance/quoteSummary/" in path:
                wanted = [m for m in params.get("modules", "").split(",") if m]
                found = {m: summary[m] for m in wanted if m in summary}
                if not found:
                    return httpx.Response(
                        404,
                        json={
                            "quoteSummary": {
                                "result": None,
                                "error": {
                                    "code": "Not Found",
                                    "description": "No fundamentals data found for any of the "
                                    f"summaryTypes={','.join(wanted)}",
                                },
                            }
                        },
                        request=request,
                    )
                body = {"quoteSummary": {"result": [found], "error": None}}
                return httpx.Response(200, json=body, request=request)
            return None

        return answer

    def _accessor(
        self, symbol: str, ysym: str, data_type: str, now: datetime, local=None
    ) -> list[dict[str, Any]]:
        import yfinance as yf

        method = yfund.ACCESSORS[data_type][0]

        def call(sess):
            try:
                return getattr(yf.Ticker(ysym, session=sess), method)()
            except KeyError:  # the quoteSummary module is absent: Yahoo has no such data
                return None

        obj = self._yfinance(symbol, data_type, call, local)
        return yfund.tidy(data_type, obj, symbol=symbol, fetched_at=now, provider=self.name)

    def _fetch_fundamentals(self, request: FetchRequest) -> pl.DataFrame:
        """Tidy ``fundamentals`` rows for ``data_types`` (default: all 23), in at most six
        requests: one quoteSummary carrying every module the accessor types read, one
        timeseries request per statement family, the symbol's event-history chart for
        dividends (shared with the ``actions`` kind: no request when that kind already
        fetched it in this run) and the earnings-calendar page.

        A type Yahoo has nothing for gives no rows; a type that fails terminally is logged and
        skipped (the symbol fails only when every type does); auth and transient failures
        propagate so the stage can stop or retry.
        """
        symbol, instrument = request.symbol, request.instrument
        types = tuple(dict.fromkeys(request.data_types or yfund.DATA_TYPES))
        unknown = [t for t in types if t not in yfund.DATA_TYPES]
        if unknown:
            raise ConfigError(f"unknown fundamentals data type(s) {unknown}")
        ysym = self._symbol(symbol, instrument)
        now = self.clock()
        rows, failures = self._statements(symbol, ysym, list(types), now)
        summary: dict[str, Any] | None = None
        summary_error: TerminalProviderError | None = None
        modules = yfund.quote_summary_modules(types)
        if modules:
            try:
                summary = self.quote_summary(symbol, modules, instrument)
            except AuthError:
                raise
            except TerminalProviderError as exc:
                summary_error = exc
        local = self._held_answers(summary)
        for data_type in types:
            if data_type in yfund.STATEMENTS:
                continue
            try:
                if data_type == "dividends":  # the event chart the actions kind reads
                    actions = parse_events(
                        self._event_history(symbol, ysym), symbol=symbol, provider=self.name
                    )
                    rows += yfund.dividends_rows(
                        actions, symbol=symbol, fetched_at=now, provider=self.name
                    )
                elif summary_error is not None and yfund.MODULES[data_type]:
                    raise summary_error
                else:
                    rows += self._accessor(symbol, ysym, data_type, now, local)
            except AuthError:
                raise
            except TerminalProviderError as exc:
                log.warning("%s", exc)
                failures.append(exc)
        if failures and len(failures) == len(types):
            raise failures[0]
        return yfund.frame(rows)

    # -- market status and calendars ----------------------------------------------------------
    def _fetch_market(self, request: FetchRequest) -> pl.DataFrame:
        """One ``market_cache`` row of ``request.symbol`` (a key): its JSON ``value``."""
        value = self._market_value(request.symbol)
        row = {"key": request.symbol, "value": value, "provider": self.name}
        return rows_frame("market", [{**row, "fetched_at": self.clock()}])

    def _market_value(self, key: str) -> str:
        """JSON text for a ``market_cache`` key: ``status:<REGION>`` (Yahoo's ``markettime``,
        the endpoint behind yfinance's ``Market.status``, kept as Yahoo sends it) or
        ``calendar:earnings|ipo|splits|economic`` for the coming week (yfinance
        ``Calendars``)."""
        import yfinance as yf

        kind, _, arg = key.partition(":")
        if kind == "status":
            body = self.http.get_json(
                self._url("query1", "/v6/finance/markettime"),
                symbol=key,
                params={
                    "formatted": "true",
                    "key": "finance",
                    "lang": "en-US",
                    "market": arg or "US",
                },
            )
            try:
                status = body["finance"]["marketTimes"][0]["marketTime"][0]
            except (KeyError, IndexError, TypeError) as exc:
                raise BadResponseError(
                    f"yahoo {key}: markettime response without a market time",
                    provider=self.name,
                    symbol=key,
                ) from exc
            return json.dumps(status, sort_keys=True)
        if kind == "calendar" and arg in MARKET_CALENDARS:
            today = self.clock().date()

            def call(sess):
                cal = yf.Calendars(start=today, end=today + timedelta(days=7), session=sess)
                getter = {
                    "earnings": cal.get_earnings_calendar,
                    "ipo": cal.get_ipo_info_calendar,
                    "splits": cal.get_splits_calendar,
                    "economic": cal.get_economic_events_calendar,
                }[arg]
                return getter(limit=100)

            df = self._yfinance(key, key, call)
            if df is None or len(df) == 0:
                return "[]"
            return df.reset_index().to_json(orient="records", date_format="iso")
        raise ConfigError(
            f"unknown market key {key!r}; use status:<REGION> or "
            f"calendar:{'|'.join(MARKET_CALENDARS)}"
        )

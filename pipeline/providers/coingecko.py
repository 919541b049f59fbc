"""CoinGecko: the coin list, coin profiles (with icons) and spot prices.

Keyless or Demo plan by default (``https://api.coingecko.com/api/v3``, Demo key in the
``x-cg-demo-api-key`` header from ``MARKETLAKE_COINGECKO_API_KEY``, 100 calls/min); the Pro
host and header with ``options.plan = "pro"``. Coins are identified by CoinGecko's id
(``bitcoin``, ``yearn-finance``, even ``_``); the canonical symbol of a listed coin is its id.
An id only ever reaches a URL as one percent-encoded path segment, and an icon file is named
by the SHA-256 of the id, never by the id itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from datetime import date
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from marketlake.errors import BadResponseError, InvalidSymbolError, ProviderError
from marketlake.lake.atomic import atomic_write_bytes
from marketlake.lake.paths import media_path
from marketlake.pipeline.providers.base import Capabilities, FetchRequest, profile_row, rows_frame
from marketlake.pipeline.providers.http import HttpProvider, with_origin
from marketlake.pipeline.providers.symbols import path_segment, provider_symbol

log = logging.getLogger("marketlake.providers.coingecko")

PUBLIC_URL = "https://api.coingecko.com/api/v3"
PRO_URL = "https://pro-api.coingecko.com/api/v3"
_ICON_EXT = re.compile(r"^[a-z0-9]{1,5}$")
_ICON_MAX_BYTES = 2_000_000


def icon_file_name(coin_id: str, url: str) -> str:
    """``<sha256 of the id>.<ext>``: the extension from the URL path (png when unknown)."""
    ext = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    if not _ICON_EXT.match(ext):
        ext = "png"
    return f"{hashlib.sha256(coin_id.encode()).hexdigest()}.{ext}"


class CoinGeckoProvider(HttpProvider):
    """CoinGecko's public REST API over the shared HTTP layer (it has no redirects: none is
    followed, so the key header never travels to another origin)."""

    name = "coingecko"
    capabilities = Capabilities(
        kinds=frozenset({"profile", "instruments"}),
        timeframes=(),
        rate_limit_per_s=1.6,  # Demo plan: 100 calls/min
        default_concurrency=2,
        asset_types=frozenset({"crypto"}),
        needs_secret=False,  # a Demo key raises the limit; keyless works
    )

    def __init__(self, settings=None, **kw) -> None:
        from marketlake.pipeline.config import ProviderSettings

        settings = settings or ProviderSettings(name=self.name)
        pro = str(settings.options.get("plan", "demo")).lower() == "pro"
        headers = {}
        if settings.secret:
            headers["x-cg-pro-api-key" if pro else "x-cg-demo-api-key"] = settings.secret
        super().__init__(settings, headers=headers, base_url=PRO_URL if pro else PUBLIC_URL, **kw)
        self.download_icons = bool(self.settings.options.get("download_icons", True))

    @staticmethod
    def coin_id(symbol: str, instrument: Mapping[str, Any] | None = None) -> str:
        """The CoinGecko id: ``provider_symbols["coingecko"]``, else the symbol itself."""
        return provider_symbol(instrument, "coingecko") or symbol

    # -- coin list --------------------------------------------------------------------------
    def list_coins(self) -> list[dict[str, Any]]:
        body = self.http.get_json("/coins/list", symbol="coins/list")
        if not isinstance(body, list):
            raise BadResponseError(
                "coingecko coins/list: expected a JSON array",
                provider=self.name,
                symbol="coins/list",
            )
        return [c for c in body if isinstance(c, dict) and c.get("id")]

    def _fetch_instruments(self, request: FetchRequest) -> pl.DataFrame:
        """Every listed coin as an ``instruments`` row keyed by its id (ticker symbols such as
        ``btc`` are shared by several coins, so they cannot be the key)."""
        now = self.clock()
        rows = [
            {
                "symbol": c["id"],
                "name": c.get("name"),
                "asset_type": "crypto",
                "exchange": "COINGECKO",
                "timezone": "UTC",
                "currency": "USD",
                "is_etf": False,
                "active": True,
                "provider": self.name,
                "provider_symbols": json.dumps(
                    {"coingecko": c["id"], "ticker": str(c.get("symbol") or "").upper()}
                ),
                "updated_at": now,
            }
            for c in self.list_coins()
        ]
        return rows_frame("instruments", rows)

    # -- profiles -----------------------------------------------------------------------------
    def coin(self, coin_id: str, *, market_data: bool = True) -> dict[str, Any]:
        """The ``/coins/{id}`` document (no tickers, community or developer data)."""
        body = self.http.get_json(
            "/coins/" + path_segment(coin_id),
            symbol=coin_id,
            params={
                "localization": "false",
                "tickers": "false",
                "market_data": "true" if market_data else "false",
                "community_data": "false",
                "developer_data": "false",
                "sparkline": "false",
            },
        )
        if isinstance(body, dict) and body.get("error"):
            raise InvalidSymbolError(
                f"coingecko {coin_id}: {body['error']}", provider=self.name, symbol=coin_id
            )
        if not isinstance(body, dict) or not body.get("id"):
            raise BadResponseError(
                f"coingecko {coin_id}: coin document without an id",
                provider=self.name,
                symbol=coin_id,
            )
        return body

    @staticmethod
    def platforms(doc: Mapping[str, Any]) -> dict[str, str]:
        """Chain → contract address of a token (a native coin's ``{"": ""}`` gives ``{}``)."""
        raw = doc.get("platforms") or {}
        return {k: v for k, v in raw.items() if k and isinstance(v, str) and v}

    def _fetch_profile(self, request: FetchRequest) -> pl.DataFrame:
        """Name, description, market cap, 24 h volume (USD) and icon of one coin."""
        symbol = request.symbol
        cid = self.coin_id(symbol, request.instrument)
        doc = self.coin(cid)
        market = doc.get("market_data") or {}
        image = doc.get("image") or {}
        icon_url = image.get("large") or image.get("small") or image.get("thumb")
        icon_path = self._icon(cid, icon_url) if icon_url and self.download_icons else None

        def usd(key: str) -> float | None:
            v = (market.get(key) or {}).get("usd")
            return float(v) if isinstance(v, int | float) else None

        return profile_row(
            symbol=symbol,
            provider=self.name,
            name=doc.get("name"),
            description=(doc.get("description") or {}).get("en") or None,
            sector="Digital Assets",
            industry=", ".join(doc.get("categories") or []) or None,
            country=doc.get("country_origin") or None,
            website=next(iter((doc.get("links") or {}).get("homepage") or []), None) or None,
            market_cap=usd("market_cap"),
            volume_24h=usd("total_volume"),
            icon_url=icon_url,
            icon_path=icon_path,
            raw=json.dumps(doc, sort_keys=True),
            fetched_at=self.clock(),
        )

    def _icon(self, coin_id: str, url: str) -> str | None:
        """Download the icon once into ``media/icons``; the path relative to the home.

        With a base-URL override (replay server, proxy) the icon is fetched from that origin
        too, so nothing leaves for the real CDN. A failed download leaves the profile without
        an icon rather than failing it.
        """
        if self.home is None or not url.startswith(("http://", "https://")):
            return None
        target = media_path(self.home) / "icons" / icon_file_name(coin_id, url)
        rel = str(target.relative_to(self.home))
        if target.exists():
            return rel
        src = with_origin(url, self.settings.base_url) if self.settings.base_url else url
        try:
            resp = self.http.get(
                src, symbol=coin_id, rate_limited=False, headers={"Accept": "image/*"}
            )
        except ProviderError as exc:
            log.warning("icon of %s not downloaded: %s", coin_id, exc)
            return None
        if not resp.content or len(resp.content) > _ICON_MAX_BYTES:
            return None
        atomic_write_bytes(target, resp.content)
        return rel

    # -- prices -------------------------------------------------------------------------------
    def simple_price(self, ids: list[str], vs_currencies: list[str]) -> dict[str, dict[str, float]]:
        """Current prices: ``{id: {vs_currency: price}}`` (ids CoinGecko does not know are
        simply absent)."""
        body = self.http.get_json(
            "/simple/price",
            symbol=",".join(ids),
            params={"ids": ",".join(ids), "vs_currencies": ",".join(vs_currencies)},
        )
        if not isinstance(body, dict):
            raise BadResponseError(
                "coingecko simple/price: expected a JSON object",
                provider=self.name,
                symbol=",".join(ids),
            )
        return {
            k: {c: float(p) for c, p in v.items() if isinstance(p, int | float)}
            for k, v in body.items()
            if isinstance(v, dict)
        }

    def price_on(self, coin_id: str, day: date) -> dict[str, float]:
        """A coin's price in every quote currency at 00:00 UTC of ``day``."""
        body = self.http.get_json(
            f"/coins/{path_segment(coin_id)}/history",
            symbol=coin_id,
            params={"date": day.strftime("%d-%m-%Y"), "localization": "false"},
        )
        prices = ((body or {}).get("market_data") or {}).get("current_price")
        if not isinstance(prices, dict):
            raise InvalidSymbolError(
                f"coingecko {coin_id}: no market data on {day}", provider=self.name, symbol=coin_id
            )
        return {c: float(p) for c, p in prices.items() if isinstance(p, int | float)}

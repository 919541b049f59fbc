"""Settings, read once at the edge into frozen objects.

Precedence: explicit argument (CLI flag) > environment > ``marketlake.toml`` > default.
Nothing below the CLI reads the environment: stages receive a :class:`Settings`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

import platformdirs

from marketlake.errors import ConfigError

PROVIDER_NAMES = ("synthetic", "files", "yahoo", "coingecko", "indodax", "upstox", "fmp")
SECRET_ENV = {
    "fmp": "MARKETLAKE_FMP_API_KEY",
    "upstox": "MARKETLAKE_UPSTOX_TOKEN",
    "coingecko": "MARKETLAKE_COINGECKO_API_KEY",
}


@dataclass(frozen=True)
class ProviderSettings:
    """Per-provider knobs: endpoint, secret, rate limit and retry policy."""

    name: str
    base_url: str | None = None
    secret: str | None = field(default=None, repr=False)
    rate_limit_per_s: float | None = None
    concurrency: int | None = None
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 30.0
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class SegmentSettings:
    """A named slice of the universe synced together (e.g. ``equity``, ``crypto``)."""

    name: str
    asset_types: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    provider: str | None = None
    timeframes: tuple[str, ...] = ("1D",)
    kinds: tuple[str, ...] = ("ohlcv",)
    start: str | None = None
    schedule: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, resolved once."""

    home: Path
    dsn: str | None = field(default=None, repr=False)
    concurrency: int = 8
    batch_tasks: int = 250
    batch_rows: int = 2_000_000
    overlap_bars: int = 3
    stale_after_hours: float = 24.0
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    segments: Mapping[str, SegmentSettings] = field(default_factory=dict)
    now: datetime | None = None
    pg_schema: str = "marketlake"
    universe_file: Path | None = None

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings(name=name)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction."""
        out = [p.secret for p in self.providers.values() if p.secret]
        if self.dsn:
            parsed = urlparse(self.dsn)
            if parsed.password:
                out.append(parsed.password)
        return tuple(out)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _read_toml(path: Path | None, required: bool) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.exists():
        if required:
            raise ConfigError(f"config file not found: {path}")
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def _check_url(name: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} base URL must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def _int(value: Any, name: str, minimum: int = 1) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc
    if out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {out}")
    return out


def load_settings(
    *,
    home: str | Path | None = None,
    dsn: str | None = None,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings from flags, the environment and ``marketlake.toml``."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    explicit = config_file is not None
    cfg = _read_toml(Path(config_file) if explicit else cwd / "marketlake.toml", explicit)
    general = cfg.get("marketlake", cfg)

    home_value = home or env.get("MARKETLAKE_HOME") or general.get("home")
    home_path = Path(home_value) if home_value else Path(platformdirs.user_data_dir("marketlake"))
    dsn_value = dsn or env.get("MARKETLAKE_DSN") or general.get("dsn") or None

    providers: dict[str, ProviderSettings] = {}
    pcfg = cfg.get("providers", {})
    for name in PROVIDER_NAMES:
        section = dict(pcfg.get(name, {}))
        url = env.get(f"MARKETLAKE_{name.upper()}_BASE_URL") or section.pop("base_url", None)
        secret = env.get(SECRET_ENV[name]) if name in SECRET_ENV else None
        known = {k: section.pop(k) for k in list(section) if k in _PROVIDER_FIELDS}
        providers[name] = ProviderSettings(
            name=name,
            base_url=_check_url(name, url) if url else None,
            secret=secret or None,
            options=MappingProxyType(section),
            **known,
        )

    segments: dict[str, SegmentSettings] = {}
    for name, section in cfg.get("segments", {}).items():
        segments[name] = SegmentSettings(
            name=name,
            asset_types=tuple(section.get("asset_types", ())),
            symbols=tuple(section.get("symbols", ())),
            provider=section.get("provider"),
            timeframes=tuple(section.get("timeframes", ("1D",))),
            kinds=tuple(section.get("kinds", ("ohlcv",))),
            start=section.get("start"),
            schedule=section.get("schedule"),
        )

    sync = cfg.get("sync", {})
    values: dict[str, Any] = {
        "concurrency": _int(sync.get("concurrency", 8), "sync.concurrency"),
        "batch_tasks": _int(sync.get("batch_tasks", 250), "sync.batch_tasks"),
        "batch_rows": _int(sync.get("batch_rows", 2_000_000), "sync.batch_rows"),
        "overlap_bars": _int(sync.get("overlap_bars", 3), "sync.overlap_bars", 0),
        "stale_after_hours": float(sync.get("stale_after_hours", 24.0)),
        "pg_schema": str(cfg.get("postgres", {}).get("schema", "marketlake")),
        "universe_file": Path(cfg["universe"]["file"])
        if cfg.get("universe", {}).get("file")
        else None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "concurrency" in overrides and overrides["concurrency"] is not None:
        values["concurrency"] = _int(overrides["concurrency"], "--concurrency")
    return Settings(
        home=home_path.expanduser(),
        dsn=dsn_value,
        providers=MappingProxyType(providers),
        segments=MappingProxyType(segments),
        **values,
    )


_PROVIDER_FIELDS = {
    "rate_limit_per_s",
    "concurrency",
    "max_retries",
    "backoff_base_s",
    "backoff_max_s",
    "timeout_s",
}

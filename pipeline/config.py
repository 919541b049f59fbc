"""Settings, read once at the edge into frozen objects, validated completely when loaded.

Precedence: explicit argument (CLI flag) > environment > ``marketlake.toml`` > default.
Nothing below the CLI reads the environment: the CLI passes it in, and stages receive a
:class:`Settings`. The file's structure is a set of pydantic models that forbid unknown keys
(:mod:`.config_file`, imported only when there is a file), so a misspelt setting
(``concurrancy``) is an error naming the key, its section and the file, never silently
ignored. Every problem is one :class:`ConfigError` line (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import platformdirs

from marketlake.errors import ConfigError, LakeError
from marketlake.lake.location import LEASE_S, LakeLocation
from marketlake.lake.store import Lake
from marketlake.pipeline.redact import redact

if TYPE_CHECKING:
    from marketlake.pipeline.config_file import File

PROVIDER_NAMES = ("synthetic", "files", "yahoo", "coingecko", "indodax", "upstox", "fmp")
SECRET_ENV = {
    "fmp": "MARKETLAKE_FMP_API_KEY",
    "upstox": "MARKETLAKE_UPSTOX_TOKEN",
    "coingecko": "MARKETLAKE_COINGECKO_API_KEY",
}
CONFIG_FILE = "marketlake.toml"


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
    deadline_s: float = 120.0  # one exchange, whole body included (timeout_s is per read)
    max_response_bytes: int = 64 * 1024 * 1024
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
    tolerance_hours: float | None = None  # grace after a session closes before data is overdue
    # trading calendars whose instruments belong here (XBOM: NSE/BSE; XNYS/XNAS: US)
    calendars: tuple[str, ...] = ()
    # per-kind provider (kind -> provider), e.g. {"profile": "coingecko"} for crypto
    routes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # what `sync SEGMENT` runs: bars and data ("sync"), expired F&O by expiry
    # ("fo_expired"), or indicators over the segment's bars ("indicators")
    task: str = "sync"
    description: str = ""


SEGMENT_TASKS = ("sync", "fo_expired", "indicators")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, resolved once. ``now`` pins the clock (``MARKETLAKE_NOW``):
    every timestamp a run takes comes from :meth:`clock`."""

    home: Path
    dsn: str | None = field(default=None, repr=False)
    concurrency: int = 8
    batch_tasks: int = 5000
    batch_rows: int = 2_000_000
    commit_every_s: float = 30.0  # finished work is committed at least this often
    overlap_bars: int = 3
    stale_after_hours: float = 24.0
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    segments: Mapping[str, SegmentSettings] = field(default_factory=dict)
    now: datetime | None = None
    pg_schema: str = "marketlake"
    universe_file: Path | None = None
    lock_wait: bool | float = False  # a busy lake: fail at once, wait, or wait this long (s)
    serve: Mapping[str, Any] = field(default_factory=dict)  # [serve]: the service's settings
    lake_uri: str | None = None  # the lake elsewhere: s3://bucket/prefix (default home/lake)
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    lake_lease_s: float = LEASE_S  # an object-store writer lease not renewed this long is dead

    @property
    def lake(self) -> LakeLocation:
        """Where the lake lives: ``lake_uri`` (with the storage options), else home/lake."""
        if self.lake_uri:
            return LakeLocation.parse(
                self.lake_uri, self.storage_options, lease_s=self.lake_lease_s
            )
        return LakeLocation(str((self.home / "lake").absolute()), lease_s=self.lake_lease_s)

    def open_lake(self, *, create: bool = True) -> Lake:
        """The lake these settings name."""
        return Lake(self.home, create=create, location=self.lake)

    def clock(self) -> datetime:
        """The one clock of a run: the pinned ``now`` when set, else the wall clock (UTC)."""
        return self.now if self.now is not None else datetime.now(UTC)

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings(name=name)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction."""
        from marketlake.pipeline.redact import dsn_secrets

        out = [p.secret for p in self.providers.values() if p.secret]
        out += [v for k, v in self.storage_options.items() if k in _SECRET_OPTIONS]
        out += [urlparse(p.base_url).password or "" for p in self.providers.values() if p.base_url]
        return tuple(s for s in (*out, *dsn_secrets(self.dsn)) if s)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _check_url(source: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{source}: base URL must be an http(s) URL, got {redact(url)!r}")
    return url.rstrip("/")


def _int(value: Any, name: str, minimum: int = 1) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc
    if out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {out}")
    return out


def parse_now(value: str, source: str = "MARKETLAKE_NOW") -> datetime:
    """A pinned clock value: ISO date or datetime, naive means UTC."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{source}: expected an ISO date or time like 2024-01-31T18:00:00+00:00, got {value!r}"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _home(flag: str | Path | None, env: Mapping[str, str], general: File | None) -> Path:
    if flag is not None:
        if not str(flag).strip():
            raise ConfigError("--home is empty: give a directory")
        return Path(flag).expanduser()
    if "MARKETLAKE_HOME" in env:
        if not env["MARKETLAKE_HOME"].strip():
            raise ConfigError("MARKETLAKE_HOME is set but empty: unset it or give a directory")
        return Path(env["MARKETLAKE_HOME"]).expanduser()
    value = None
    if general is not None:
        value = general.home if general.home is not None else general.marketlake.home
    if value is not None:
        if not value.strip():
            raise ConfigError("home is empty in marketlake.toml: remove it or give a directory")
        return Path(value).expanduser()
    return Path(platformdirs.user_data_dir("marketlake"))


# the standard AWS environment -> object-store options (delta-rs, polars and obstore alike)
_AWS_ENV = {
    "AWS_ENDPOINT_URL_S3": "aws_endpoint_url",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "AWS_REGION": "aws_region",
    "AWS_DEFAULT_REGION": "aws_region",
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_ALLOW_HTTP": "aws_allow_http",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "aws_virtual_hosted_style_request",
}
_SECRET_OPTIONS = frozenset({"aws_secret_access_key", "aws_session_token"})
_TRUE = ("1", "true", "yes", "on")


def _lake_uri(env: Mapping[str, str], cfg: File | None) -> tuple[str | None, dict[str, str]]:
    """The lake's URI (MARKETLAKE_LAKE_URI > [lake] uri) and, for s3://, its storage options
    from the standard AWS environment; commits always use conditional puts."""
    uri = env.get("MARKETLAKE_LAKE_URI")
    source = "MARKETLAKE_LAKE_URI"
    if uri is not None and not uri.strip():
        raise ConfigError(
            "MARKETLAKE_LAKE_URI is set but empty: unset it or give s3://bucket/prefix"
        )
    if uri is None:
        uri, source = cfg and cfg.lake.uri, "[lake] uri in marketlake.toml"
    if not uri:
        return None, {}
    try:
        location = LakeLocation.parse(uri.strip())
    except LakeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if location.is_local:
        return location.uri, {}
    if env.get("AWS_S3_ALLOW_UNSAFE_RENAME", "").strip().lower() in _TRUE:
        raise ConfigError(
            "AWS_S3_ALLOW_UNSAFE_RENAME is refused: two writers could overwrite each other's "
            "commits; the lake commits with S3 conditional writes, unset it"
        )
    if env.get("AWS_S3_LOCKING_PROVIDER", "").strip():
        raise ConfigError(
            "AWS_S3_LOCKING_PROVIDER: delta-rs has no DynamoDB log store any more; the lake "
            "commits with S3 conditional writes (If-None-Match), unset it"
        )
    options: dict[str, str] = {}
    for name, key in _AWS_ENV.items():
        value = env.get(name, "").strip()
        if value and key not in options:
            options[key] = value
    options["aws_conditional_put"] = "etag"
    return location.uri, options


def load_settings(
    *,
    home: str | Path | None = None,
    dsn: str | None = None,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve and validate settings from flags, ``env`` (the caller's environment; none when
    omitted) and ``marketlake.toml``. Raises one :class:`ConfigError` naming the setting."""
    env = {} if env is None else env
    cwd = cwd or Path.cwd()
    explicit = config_file is not None
    path = Path(config_file) if explicit else cwd / CONFIG_FILE
    env_secrets = tuple(v for k in SECRET_ENV.values() if (v := env.get(k)))
    cfg: File | None = None  # no file: every setting the dataclasses' default
    if explicit or path.exists():
        from marketlake.pipeline.config_file import read

        cfg = read(path, explicit, env_secrets)

    home_path = _home(home, env, cfg)
    dsn_value = (
        dsn or env.get("MARKETLAKE_DSN") or (cfg and (cfg.dsn or cfg.marketlake.dsn)) or None
    )

    providers: dict[str, ProviderSettings] = {}
    for name in PROVIDER_NAMES:
        url_env = f"MARKETLAKE_{name.upper()}_BASE_URL"
        url, source = env.get(url_env), url_env
        known: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if cfg is not None:
            section = getattr(cfg.providers, name)
            if not url:
                url, source = section.base_url, f"providers.{name}.base_url (in {path})"
            known, options = section.values()
        secret = env.get(SECRET_ENV[name]) if name in SECRET_ENV else None
        providers[name] = ProviderSettings(
            name=name,
            base_url=_check_url(source, url) if url else None,
            secret=secret or None,
            options=MappingProxyType(options),
            **known,
        )

    segments = {
        name: SegmentSettings(
            name=name,
            asset_types=tuple(seg.asset_types),
            symbols=tuple(seg.symbols),
            provider=seg.provider,
            timeframes=tuple(seg.timeframes),
            kinds=tuple(seg.kinds),
            start=seg.start,
            schedule=seg.schedule,
            tolerance_hours=seg.tolerance_hours,
            calendars=tuple(seg.calendars),
            routes=MappingProxyType(dict(seg.routes)),
            task=seg.task,
            description=seg.description,
        )
        for name, seg in (cfg.segments if cfg is not None else {}).items()
    }

    values: dict[str, Any] = {"serve": MappingProxyType({})}
    if cfg is not None:
        values = {
            **cfg.sync.model_dump(),
            "pg_schema": cfg.postgres.schema_,
            "universe_file": Path(cfg.universe.file).expanduser() if cfg.universe.file else None,
            "serve": MappingProxyType(cfg.serve.model_dump(exclude_none=True)),
            "lake_lease_s": cfg.lake.lease_s,
        }
    if env.get("MARKETLAKE_NOW", "").strip():
        values["now"] = parse_now(env["MARKETLAKE_NOW"])
    elif "MARKETLAKE_NOW" in env and overrides.get("now") is None:
        raise ConfigError("MARKETLAKE_NOW is set but empty: unset it or give a date")
    if overrides.get("concurrency") is not None:
        overrides["concurrency"] = _int(overrides["concurrency"], "--concurrency")
    values["lake_uri"], values["storage_options"] = _lake_uri(env, cfg)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(
        home=home_path,
        dsn=dsn_value,
        providers=MappingProxyType(providers),
        segments=MappingProxyType(segments),
        **values,
    )

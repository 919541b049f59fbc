"""Settings, read once at the edge into frozen objects, validated completely when loaded.

Precedence: explicit argument (CLI flag) > environment > ``marketlake.toml`` > default.
Nothing below the CLI reads the environment: the CLI passes it in, and stages receive a
:class:`Settings`. The file's structure is a set of pydantic models that forbid unknown keys,
so a misspelt setting (``concurrancy``) is an error naming the key, its section and the file,
never silently ignored. Every problem is one :class:`ConfigError` line (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import platformdirs
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from marketlake.errors import ConfigError, LakeError
from marketlake.lake.location import LEASE_S, LakeLocation
from marketlake.lake.store import Lake
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.redact import redact

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


# -- the structure of marketlake.toml ----------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _General(_Section):
    home: str | None = None
    dsn: str | None = None


class _Sync(_Section):
    concurrency: int = Field(8, ge=1)
    batch_tasks: int = Field(5000, ge=1)
    batch_rows: int = Field(2_000_000, ge=1)
    commit_every_s: float = Field(30.0, gt=0)
    overlap_bars: int = Field(3, ge=0)
    stale_after_hours: float = Field(24.0, gt=0)


class _Segment(_Section):
    asset_types: list[str] = []
    symbols: list[str] = []
    provider: str | None = None
    timeframes: list[str] = ["1D"]
    kinds: list[str] = ["ohlcv"]
    start: str | None = None
    schedule: str | None = None
    tolerance_hours: float | None = Field(None, ge=0)
    calendars: list[str] = []
    routes: dict[str, str] = {}
    task: Literal["sync", "fo_expired", "indicators"] = "sync"
    description: str = ""

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, str]) -> dict[str, str]:
        from marketlake.pipeline.providers.base import KINDS

        for kind, provider in value.items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} in routes; valid: {', '.join(KINDS)}")
            if provider not in PROVIDER_NAMES:
                raise ValueError(
                    f"unknown provider {provider!r} for {kind}; known: {', '.join(PROVIDER_NAMES)}"
                )
        return value

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: list[str]) -> list[str]:
        try:
            return list(tfs.check(value, source=None))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        from marketlake.pipeline.providers.base import KINDS

        bad = [k for k in value if k not in KINDS]
        if bad:
            raise ValueError(f"unknown kind(s) {bad}; valid: {', '.join(KINDS)}")
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        if value is not None and value not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {value!r}; known: {', '.join(PROVIDER_NAMES)}")
        return value

    @field_validator("start")
    @classmethod
    def _start(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"expected a date like 2015-01-01, got {value!r}") from None
        return value


class _Provider(_Section):
    """What every provider accepts; subclasses add the provider's own options."""

    base_url: str | None = None
    rate_limit_per_s: float | None = Field(None, gt=0)
    concurrency: int | None = Field(None, ge=1)
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    deadline_s: float = Field(120.0, gt=0)
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1)


class _Synthetic(_Provider):
    seed: int = 42


class _Files(_Provider):
    path: str | None = None
    mapping: dict[str, str] = {}
    timezone: str | None = None
    timeframe: str = "1D"
    symbol: str | None = None


class _CoinGecko(_Provider):
    plan: Literal["demo", "pro"] = "demo"
    download_icons: bool = True


class _Providers(_Section):
    synthetic: _Synthetic = _Synthetic()
    files: _Files = _Files()
    yahoo: _Provider = _Provider()
    coingecko: _CoinGecko = _CoinGecko()
    indodax: _Provider = _Provider()
    upstox: _Provider = _Provider()
    fmp: _Provider = _Provider()


class _Postgres(_Section):
    schema_: str = Field("marketlake", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class _Universe(_Section):
    file: str | None = None


_IDENT = r"^[a-z_][a-z0-9_]{0,62}$"


class _PullTable(_Section):
    """One table of the serving schema that ``marketlake pull`` may read: its key, the column
    that every change stamps, and the soft-delete column (a non-null value means deleted)."""

    key: list[Annotated[str, Field(pattern=_IDENT)]] = Field(min_length=1)
    updated_at: str = Field("updated_at", pattern=_IDENT)
    deleted: str | None = Field(None, pattern=_IDENT)


class _Pull(_Section):
    """``[serve.pull]``: the serving tables exposed to ``marketlake pull``."""

    tables: dict[Annotated[str, Field(pattern=_IDENT)], _PullTable] = {}


class _Serve(_Section):
    """``[serve]``: where the service listens, and the settings it applies at start (checked
    there, like the same settings over HTTP)."""

    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    schedule: str | dict[str, Any] | None = None
    segment_schedules: dict[str, str | dict[str, Any]] | None = None
    overdue_grace: str | None = None
    pull: _Pull | None = None
    # rows of a pushed change batch (or of the files that may hold its keys) merged in
    # memory; a larger batch is merged out of core (pipeline/remote/spilled.py)
    push_memory_rows: int | None = Field(None, ge=1)


class _Lake(_Section):
    uri: str | None = None
    lease_s: float = Field(LEASE_S, ge=1)


class _File(_Section):
    """The whole file: general keys at the top (or under ``[marketlake]``) and sections."""

    home: str | None = None
    dsn: str | None = None
    marketlake: _General = _General()
    sync: _Sync = _Sync()
    segments: dict[str, _Segment] = {}
    providers: _Providers = _Providers()
    postgres: _Postgres = _Postgres()
    universe: _Universe = _Universe()
    serve: _Serve = _Serve()
    lake: _Lake = _Lake()


_PROVIDER_FIELDS = frozenset(_Provider.model_fields)


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts (for a "did you mean")."""
    for part in loc:
        info = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if info is None:
            if model is _File and part == "segments":
                return []
            continue
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif str(part) == "segments":
            model = _Segment
    return [info.alias or name for name, info in model.model_fields.items()]


def _describe(exc: pydantic.ValidationError, source: str, secrets: tuple[str, ...]) -> str:
    """One line for the first problem: the key, what is wrong, the file."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc)
    section = ".".join(str(p) for p in loc[:-1])
    where = f"[{section}]" if section else "the top level"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        known = _known_keys(_File, loc[:-1])
        import difflib  # only to name a misspelt key

        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        text = f"{key}: unknown setting {str(loc[-1])!r} in {where}{hint}"
    else:
        msg = str(first["msg"]).removeprefix("Value error, ")
        value = first.get("input")
        got = (
            f", got {value!r}"
            if isinstance(value, str | int | float | bool) and "got " not in msg
            else ""
        )
        text = f"{key}: {msg}{got}"
    return redact(f"{text}{more} (in {source})", secrets)


def _read_toml(path: Path, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError(f"--config: settings file not found: {path}")
        return {}
    import tomllib  # only when there is a settings file

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None


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


def _home(flag: str | Path | None, env: Mapping[str, str], general: _File) -> Path:
    if flag is not None:
        if not str(flag).strip():
            raise ConfigError("--home is empty: give a directory")
        return Path(flag).expanduser()
    if "MARKETLAKE_HOME" in env:
        if not env["MARKETLAKE_HOME"].strip():
            raise ConfigError("MARKETLAKE_HOME is set but empty: unset it or give a directory")
        return Path(env["MARKETLAKE_HOME"]).expanduser()
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


def _lake_uri(env: Mapping[str, str], cfg: _File) -> tuple[str | None, dict[str, str]]:
    """The lake's URI (MARKETLAKE_LAKE_URI > [lake] uri) and, for s3://, its storage options
    from the standard AWS environment; commits always use conditional puts."""
    uri = env.get("MARKETLAKE_LAKE_URI")
    source = "MARKETLAKE_LAKE_URI"
    if uri is not None and not uri.strip():
        raise ConfigError(
            "MARKETLAKE_LAKE_URI is set but empty: unset it or give s3://bucket/prefix"
        )
    if uri is None:
        uri, source = cfg.lake.uri, "[lake] uri in marketlake.toml"
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
    try:
        cfg = _File.model_validate(_read_toml(path, explicit))
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), env_secrets)) from None

    home_path = _home(home, env, cfg)
    dsn_value = dsn or env.get("MARKETLAKE_DSN") or cfg.dsn or cfg.marketlake.dsn or None

    providers: dict[str, ProviderSettings] = {}
    for name in PROVIDER_NAMES:
        section: _Provider = getattr(cfg.providers, name)
        url_env = f"MARKETLAKE_{name.upper()}_BASE_URL"
        url, source = env.get(url_env), url_env
        if not url:
            url, source = section.base_url, f"providers.{name}.base_url (in {path})"
        secret = env.get(SECRET_ENV[name]) if name in SECRET_ENV else None
        known = section.model_dump(include=_PROVIDER_FIELDS - {"base_url"})
        options = section.model_dump(exclude=set(_PROVIDER_FIELDS), exclude_unset=True)
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
        for name, seg in cfg.segments.items()
    }

    values: dict[str, Any] = {
        **cfg.sync.model_dump(),
        "pg_schema": cfg.postgres.schema_,
        "universe_file": Path(cfg.universe.file).expanduser() if cfg.universe.file else None,
        "serve": MappingProxyType(cfg.serve.model_dump(exclude_none=True)),
    }
    if env.get("MARKETLAKE_NOW", "").strip():
        values["now"] = parse_now(env["MARKETLAKE_NOW"])
    elif "MARKETLAKE_NOW" in env and overrides.get("now") is None:
        raise ConfigError("MARKETLAKE_NOW is set but empty: unset it or give a date")
    if overrides.get("concurrency") is not None:
        overrides["concurrency"] = _int(overrides["concurrency"], "--concurrency")
    values["lake_uri"], values["storage_options"] = _lake_uri(env, cfg)
    values["lake_lease_s"] = cfg.lake.lease_s
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(
        home=home_path,
        dsn=dsn_value,
        providers=MappingProxyType(providers),
        segments=MappingProxyType(segments),
        **values,
    )

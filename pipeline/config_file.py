"""The structure of ``marketlake.toml``: pydantic models that forbid unknown keys, so a
misspelt setting (``concurrancy``) is an error naming the key, its section and the file,
never silently ignored.

Imported only when there is a settings file (:func:`read`): without one every setting is the
default of :mod:`marketlake.pipeline.config`'s dataclasses (``tests/pipeline/test_config.py``
checks an empty file gives the same), and a scheduled run pays for neither pydantic nor these
models (about 0.1 s of a fresh process's CPU).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from marketlake.errors import ConfigError
from marketlake.lake.location import LEASE_S
from marketlake.pipeline import timeframes as tfs
from marketlake.pipeline.config import PROVIDER_NAMES
from marketlake.pipeline.redact import redact


def read(path: Path, required: bool, secrets: tuple[str, ...]) -> File | None:
    """The settings file at ``path`` validated, None when there is none (an error when
    ``required``); every problem is one :class:`ConfigError` line naming the key."""
    raw = _read_toml(path, required)
    if raw is None:
        return None
    try:
        return File.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), secrets)) from None


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

    def values(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The common settings but ``base_url``, and the provider's own options (only those
        the file sets)."""
        known = self.model_dump(include=PROVIDER_FIELDS - {"base_url"})
        return known, self.model_dump(exclude=set(PROVIDER_FIELDS), exclude_unset=True)


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


class File(_Section):
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


PROVIDER_FIELDS = frozenset(_Provider.model_fields)


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts (for a "did you mean")."""
    for part in loc:
        info = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if info is None:
            if model is File and part == "segments":
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
        known = _known_keys(File, loc[:-1])
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


def _read_toml(path: Path, required: bool) -> dict[str, Any] | None:
    if not path.exists():
        if required:
            raise ConfigError(f"--config: settings file not found: {path}")
        return None
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None

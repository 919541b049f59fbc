"""The service's settings, kept in the lake's ``sync_settings`` table (one JSON value per key,
mirrored to PostgreSQL by ``load``) and validated on every write.

Only the keys below exist. Provider base URLs, secrets, the DSN and the lake location are
never settings here: they are read at the edge from the environment, so no HTTP client can
point the service at another host or read a secret back.

``marketlake.toml``'s ``[serve]`` values are applied when they differ from what the file said
last time (remembered under an internal key), so a change made through the API or the page
lasts until the file itself changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from marketlake.errors import ConfigError
from marketlake.lake.store import Lake
from marketlake.pipeline.service.schedules import (
    Schedule,
    format_duration,
    parse_duration,
    parse_schedule,
)

_TOML_APPLIED = "_toml_applied"  # internal: what marketlake.toml said when last applied
DEFAULTS: dict[str, Any] = {
    "schedule": None,
    "segment_schedules": {},
    "overdue_grace": "10m",
}
DESCRIPTIONS = {
    "schedule": "the daily run's schedule: an interval (12h) or a cron with a timezone",
    "segment_schedules": "per segment, a schedule for syncing that segment alone",
    "overdue_grace": "how late a scheduled run may start before health reports it overdue",
}
_FORBIDDEN = ("url", "secret", "token", "password", "dsn", "home", "lake", "path", "key")


class SettingError(ConfigError):
    """A setting that does not exist, cannot be set over HTTP, or has a bad value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ServiceSettings:
    """The validated settings the scheduler and health checks read."""

    schedule: Schedule | None
    segment_schedules: Mapping[str, Schedule]
    overdue_grace: timedelta

    def schedules(self) -> dict[str, Schedule]:
        """Every schedule by name: ``daily`` and ``segment:<name>``."""
        out = {} if self.schedule is None else {"daily": self.schedule}
        out.update({f"segment:{k}": v for k, v in self.segment_schedules.items()})
        return out


def _normalise(key: str, value: Any) -> Any:
    """The stored JSON form of ``value`` for ``key``, or a :class:`SettingError`."""
    try:
        if key == "schedule":
            s = parse_schedule(value, key)
            return None if s is None else s.to_json()
        if key == "segment_schedules":
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected an object of segment -> schedule")
            out = {}
            for seg, sched in value.items():
                if not isinstance(seg, str) or not seg.strip():
                    raise ConfigError(f"{key}: segment names must be non-empty strings")
                s = parse_schedule(sched, f"{key}.{seg}")
                if s is not None:
                    out[seg] = s.to_json()
            return out
        if key == "overdue_grace":
            return format_duration(parse_duration(value, key))
    except SettingError:
        raise
    except ConfigError as exc:
        raise SettingError(key, str(exc)) from exc
    if any(word in key.lower() for word in _FORBIDDEN):
        raise SettingError(key, f"{key} cannot be set over HTTP (set it where the service starts)")
    raise SettingError(key, f"unknown setting {key!r}; settings: {', '.join(DEFAULTS)}")


def _stamp_since(value: Any, old: Any, now: datetime) -> Any:
    """A schedule that is new, changed or re-enabled counts its slots from ``now``; one
    written again unchanged keeps its ``since``."""
    if not isinstance(value, dict):
        return value
    if isinstance(old, dict) and "since" in old and _without_since(old) == _without_since(value):
        return old
    return {**_without_since(value), "since": now.isoformat()}


class SettingsStore:
    """Reads and validated writes of ``sync_settings``; cached, thread-safe."""

    def __init__(self, lake: Lake, *, clock=lambda: datetime.now(UTC)) -> None:
        self.lake = lake
        self.clock = clock
        self._mutex = threading.Lock()
        self._cache: dict[str, Any] | None = None

    def _stored(self) -> dict[str, Any]:
        if self._cache is None:
            frame = self.lake.read("sync_settings")
            self._cache = {k: json.loads(v) for k, v in frame.select("key", "value").iter_rows()}
        return self._cache

    def values(self) -> dict[str, Any]:
        """Every public setting (defaults filled in)."""
        with self._mutex:
            stored = self._stored()
            return {k: stored.get(k, DEFAULTS[k]) for k in DEFAULTS}

    def current(self) -> ServiceSettings:
        v = self.values()
        return ServiceSettings(
            schedule=parse_schedule(v["schedule"]),
            segment_schedules={
                k: s
                for k, s in (
                    (k, parse_schedule(x, f"segment_schedules.{k}"))
                    for k, x in (v["segment_schedules"] or {}).items()
                )
                if s is not None
            },
            overdue_grace=parse_duration(v["overdue_grace"], "overdue_grace"),
        )

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The normalised form of ``changes`` (every key checked before any is written)."""
        return {k: _normalise(k, v) for k, v in changes.items()}

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and write ``changes`` in one commit; returns the public settings."""
        clean = self.validate(changes)
        now = self.clock()
        with self._mutex:
            stored = self._stored()
            out = {}
            for k, v in clean.items():
                if k == "schedule":
                    v = _stamp_since(v, stored.get(k), now)
                elif k == "segment_schedules":
                    olds = stored.get(k) or {}
                    v = {s: _stamp_since(x, olds.get(s), now) for s, x in v.items()}
                out[k] = v
            self._write(out, now)
        return self.values()

    def _write(self, values: Mapping[str, Any], now: datetime) -> None:
        if not values:
            return
        frame = pl.DataFrame(
            {
                "key": list(values),
                "value": [json.dumps(v, sort_keys=True) for v in values.values()],
                "updated_at": [now] * len(values),
            },
            schema_overrides={"updated_at": pl.Datetime("us", "UTC")},
        )
        self.lake.upsert("sync_settings", frame, run_id="settings", stage="serve")
        self._cache = None

    def apply_file(self, file_values: Mapping[str, Any]) -> list[str]:
        """Apply the ``[serve]`` values of ``marketlake.toml`` that changed since the file was
        last applied; returns the keys written."""
        clean = self.validate(file_values)
        with self._mutex:
            last = self._stored().get(_TOML_APPLIED) or {}
        changed = {k: v for k, v in clean.items() if last.get(k) != v}
        if not changed:
            return []
        self.update(changed)
        with self._mutex:
            self._write({_TOML_APPLIED: {**last, **changed}}, self.clock())
        return sorted(changed)


def _without_since(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "since"}
    return value

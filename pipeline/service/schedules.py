"""Schedules: an interval (``12h``, ``1d6h``, ``90m``) or a cron expression with a timezone.

A schedule names its slots (the moments a run is due). The scheduler keeps no timer state:
the slot to run is computed from the last *completed* run's slot and the clock, so a restart
neither skips nor doubles a run, and slots missed while the service was down collapse into one
run at start. Cron parsing and DST-correct slot arithmetic come from ``croniter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from marketlake.errors import ConfigError

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "min": 60, "m": 60, "s": 1}
_DURATION = re.compile(r"^\s*(?:every\s+)?((\d+(?:\.\d+)?)\s*(min|[wdhms])\s*)+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(min|[wdhms])")
_NAMED = {"hourly": "1h", "daily": "1d", "weekly": "1w"}
MIN_INTERVAL = timedelta(seconds=1)


def parse_duration(text: object, name: str = "interval") -> timedelta:
    """``"12h"``, ``"1d6h"``, ``"90m"``, ``"every 30min"``, ``"daily"`` -> timedelta (the
    forms a segment's ``schedule`` takes; a :class:`ConfigError` naming ``name`` otherwise)."""
    if isinstance(text, str):
        text = _NAMED.get(text.strip().lower(), text)
    if not isinstance(text, str) or not _DURATION.match(text.lower()):
        raise ConfigError(f"{name}: expected a duration like 12h, 1d6h or 90m, got {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text.lower()))
    if seconds < MIN_INTERVAL.total_seconds():
        raise ConfigError(f"{name}: must be at least 1s, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta | float | None) -> str | None:
    """timedelta -> ``"2h30m"`` (the seeds' style); negative values keep their sign."""
    if delta is None:
        return None
    seconds = int(round(delta.total_seconds() if isinstance(delta, timedelta) else delta))
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return sign + "".join(out[:2])


def _zone(name: object, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{field}: unknown timezone {name!r}") from exc


@dataclass(frozen=True)
class Schedule:
    """When a run is due: every ``interval``, or at the slots of ``cron`` in ``timezone``.

    ``since`` is when the schedule was (re)enabled: a schedule that never completed a run
    counts its first slot from there (an interval's first slot is ``since`` itself).
    """

    interval: timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    since: datetime | None = None

    @property
    def text(self) -> str:
        if self.interval is not None:
            return format_duration(self.interval) or ""
        tz = "" if self.timezone == "UTC" else f"CRON_TZ={self.timezone} "
        return f"{tz}{self.cron}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled}
        if self.interval is not None:
            out["interval"] = format_duration(self.interval)
        else:
            out["cron"] = self.cron
            out["timezone"] = self.timezone
        if self.since is not None:
            out["since"] = self.since.isoformat()
        return out

    # -- slots ----------------------------------------------------------------------------
    def due_slot(self, last_slot: datetime | None, now: datetime) -> datetime | None:
        """The slot a run is due for at ``now`` (the latest one; earlier missed slots are
        folded into it), or None when nothing is due."""
        if not self.enabled:
            return None
        if self.interval is not None:
            anchor = last_slot or self.since
            if anchor is None:
                return now
            if last_slot is None:
                return anchor if anchor <= now else None
            if now < anchor + self.interval:
                return None
            steps = (now - anchor) // self.interval
            return anchor + steps * self.interval
        prev = self._cron_prev(now)
        floor = last_slot if last_slot is not None else self.since
        if floor is None:
            return None
        if last_slot is not None:
            return prev if prev > last_slot else None
        return prev if prev >= floor else None

    def next_slot(self, last_slot: datetime | None, now: datetime) -> datetime | None:
        """The next slot a run will be due for: the due slot when one is due now, else the
        first slot after ``now``."""
        if not self.enabled:
            return None
        due = self.due_slot(last_slot, now)
        if due is not None:
            return due
        if self.interval is not None:
            anchor = last_slot or self.since or now
            if anchor > now:
                return anchor
            steps = (now - anchor) // self.interval + 1
            return anchor + steps * self.interval
        return self._cron_next(now)

    def _cron_prev(self, now: datetime) -> datetime:
        tz = ZoneInfo(self.timezone)
        # croniter's prev of an exact slot is the slot before it: nudge past ``now``
        return (
            croniter(self.cron, (now + timedelta(microseconds=1)).astimezone(tz))
            .get_prev(datetime)
            .astimezone(UTC)
        )

    def _cron_next(self, now: datetime) -> datetime:
        tz = ZoneInfo(self.timezone)
        return croniter(self.cron, now.astimezone(tz)).get_next(datetime).astimezone(UTC)


def parse_schedule(value: object, name: str = "schedule") -> Schedule | None:
    """A schedule from its text (``"12h"``, ``"0 5 * * 1-5"``,
    ``"CRON_TZ=America/New_York 0 5 * * 1-5"``) or its JSON object
    (``{"interval": "12h"}`` / ``{"cron": ..., "timezone": ...}``, optional ``enabled``,
    ``since``); None and ``"off"`` mean no schedule."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    if isinstance(value, str):
        text = value.strip()
        tz = "UTC"
        m = re.match(r"^CRON_TZ=(\S+)\s+(.*)$", text)
        if m:
            tz, text = m.group(1), m.group(2)
            return _cron(text, tz, True, None, name)
        if _DURATION.match(text.lower()) or text.lower() in _NAMED:
            return Schedule(interval=parse_duration(text, name))
        return _cron(text, tz, True, None, name)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"interval", "cron", "timezone", "enabled", "since"})
        if unknown:
            raise ConfigError(f"{name}: unknown field {unknown[0]!r}")
        enabled = value.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{name}.enabled: expected true or false, got {enabled!r}")
        since = value.get("since")
        if since is not None:
            try:
                since = datetime.fromisoformat(str(since))
            except ValueError as exc:
                raise ConfigError(f"{name}.since: expected an ISO time, got {since!r}") from exc
            since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        has_interval, has_cron = value.get("interval") is not None, value.get("cron") is not None
        if has_interval == has_cron:
            raise ConfigError(f"{name}: give exactly one of interval or cron")
        if has_interval:
            if value.get("timezone") not in (None, "UTC"):
                raise ConfigError(f"{name}.timezone: only a cron schedule has a timezone")
            return Schedule(
                interval=parse_duration(value["interval"], f"{name}.interval"),
                enabled=enabled,
                since=since,
            )
        return _cron(value["cron"], value.get("timezone") or "UTC", enabled, since, name)
    raise ConfigError(f"{name}: expected a duration, a cron expression or an object")


def _cron(expr: object, tz: object, enabled: bool, since: datetime | None, name: str) -> Schedule:
    if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ConfigError(
            f"{name}: expected a duration (12h) or a 5-field cron expression, got {expr!r}"
        )
    _zone(tz, f"{name}.timezone")
    return Schedule(cron=" ".join(expr.split()), timezone=str(tz), enabled=enabled, since=since)

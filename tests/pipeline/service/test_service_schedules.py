"""Schedule slots: intervals and cron with a timezone, missed slots folded into one run."""

from datetime import UTC, datetime, timedelta

import pytest

from marketlake.errors import ConfigError
from marketlake.pipeline.service.schedules import (
    format_duration,
    parse_duration,
    parse_schedule,
)

T0 = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)


def test_durations_parse_and_format():
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("1d6h") == timedelta(hours=30)
    assert parse_duration("90m") == timedelta(minutes=90)
    # the forms a segment's schedule takes in marketlake.toml
    assert parse_duration("every 30min") == timedelta(minutes=30)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_schedule("daily").interval == timedelta(days=1)
    assert format_duration(timedelta(hours=2, minutes=30)) == "2h30m"
    assert format_duration(timedelta(seconds=-90)) == "-1m30s"
    for bad in ("12", "h", "0s", "-1h", "12 hours", 12):
        with pytest.raises(ConfigError, match="interval"):
            parse_duration(bad)


def test_interval_first_slot_is_when_it_was_enabled():
    s = parse_schedule({"interval": "1h", "since": T0.isoformat()})
    assert s.due_slot(None, T0 - timedelta(minutes=1)) is None
    assert s.due_slot(None, T0) == T0
    assert s.next_slot(None, T0 - timedelta(minutes=1)) == T0


def test_interval_slots_follow_the_last_completed_one():
    s = parse_schedule("1h")
    assert s.due_slot(T0, T0 + timedelta(minutes=59)) is None
    assert s.due_slot(T0, T0 + timedelta(hours=1)) == T0 + timedelta(hours=1)
    assert s.next_slot(T0, T0 + timedelta(minutes=10)) == T0 + timedelta(hours=1)


def test_missed_interval_slots_run_once_not_once_each():
    s = parse_schedule("1h")
    late = T0 + timedelta(hours=5, minutes=20)
    slot = s.due_slot(T0, late)
    assert slot == T0 + timedelta(hours=5)  # the latest slot only
    assert s.due_slot(slot, late) is None  # and after it ran, nothing more is due


def test_cron_in_a_timezone_keeps_local_time_across_dst():
    s = parse_schedule("CRON_TZ=America/New_York 0 5 * * *")
    assert s.timezone == "America/New_York" and s.cron == "0 5 * * *"
    before = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)  # 05:00 EST = 10:00 UTC
    after = datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # 05:00 EDT = 09:00 UTC (DST began)
    assert s.due_slot(before - timedelta(days=1), before) == before
    assert s.next_slot(before, before + timedelta(hours=1)) == after
    # down for three days: one run for the latest slot
    assert s.due_slot(before, after + timedelta(days=2, hours=1)) == after + timedelta(days=2)


def test_cron_never_run_counts_from_when_it_was_enabled():
    s = parse_schedule({"cron": "0 * * * *", "since": "2026-03-06T12:30:00+00:00"})
    assert s.due_slot(None, datetime(2026, 3, 6, 12, 59, tzinfo=UTC)) is None
    assert s.due_slot(None, datetime(2026, 3, 6, 13, 0, tzinfo=UTC)) == datetime(
        2026, 3, 6, 13, 0, tzinfo=UTC
    )


def test_disabled_schedule_is_never_due():
    s = parse_schedule({"interval": "1m", "enabled": False})
    assert s.due_slot(None, T0) is None and s.next_slot(None, T0) is None


@pytest.mark.parametrize(
    "value, needle",
    [
        ("61 5 * * *", "cron"),
        ({"cron": "0 5 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval": "1h", "cron": "0 5 * * *"}, "exactly one"),
        ({"interval": "1h", "every": 2}, "every"),
        ({"interval": "1h", "enabled": "yes"}, "enabled"),
    ],
)
def test_bad_schedules_name_what_is_wrong(value, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_schedule(value)


def test_off_means_no_schedule():
    assert parse_schedule("off") is None and parse_schedule(None) is None

"""The scheduler on a real lake with real sync runs and an injected clock: each slot runs
exactly once, across restarts, and a run killed mid-way runs again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from marketlake.lake import Lake
from marketlake.pipeline import journal, universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.service.runs import RunManager, RunRequest
from marketlake.pipeline.service.scheduler import Scheduler
from marketlake.pipeline.service.settings_store import SettingsStore

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def lake_home(home):
    lake = Lake(home)
    for s in ("AAA", "BBB"):
        universe.add(lake, s, run_id="u", provider="synthetic")
    return home


def _boot(home, clock):
    """One service lifetime: a manager and a scheduler over the lake (no thread; we tick),
    its runs on the same clock."""
    settings = load_settings(home=home, env={}).with_(now=clock.now)
    manager = RunManager(settings)
    store = SettingsStore(manager.lake, clock=clock)
    sched = Scheduler(manager, store, clock=clock)
    manager.on_finish = sched.finished
    manager.recover()
    return manager, store, sched


def _wait(run):
    deadline = time.monotonic() + 60
    while run.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not run.active
    return run


def _tick_and_wait(sched: Scheduler):
    run = sched.tick()
    return _wait(run) if run is not None else None


def _scheduled(home) -> pl.DataFrame:
    return journal.runs(Lake(home)).filter(pl.col("trigger") == "schedule").sort("started_at")


def test_interval_fires_once_per_slot_across_restarts(lake_home):
    clock = Clock(T0)
    _, store, sched = _boot(lake_home, clock)
    store.update({"schedule": {"interval": "1h"}})  # enabled now: first slot is T0

    first = _tick_and_wait(sched)
    assert first is not None and first.request.slot == T0 and first.final["status"] == "ok"
    clock.now = T0 + timedelta(minutes=10)
    assert _tick_and_wait(sched) is None

    # restart before the next slot: nothing doubles
    clock.now = T0 + timedelta(minutes=30)
    _, store, sched = _boot(lake_home, clock)
    assert _tick_and_wait(sched) is None
    assert sched.next_runs()["daily"] == T0 + timedelta(hours=1)

    clock.now = T0 + timedelta(hours=1, seconds=1)
    second = _tick_and_wait(sched)
    assert second is not None and second.request.slot == T0 + timedelta(hours=1)
    assert _tick_and_wait(sched) is None

    # down from 1h to 5h20m: the missed slots run once, at start
    clock.now = T0 + timedelta(hours=5, minutes=20)
    _, store, sched = _boot(lake_home, clock)
    third = _tick_and_wait(sched)
    assert third is not None and third.request.slot == T0 + timedelta(hours=5)
    assert _tick_and_wait(sched) is None
    _, store, sched = _boot(lake_home, clock)
    assert _tick_and_wait(sched) is None

    runs = _scheduled(lake_home)
    assert runs.height == 3
    assert runs.get_column("status").to_list() == ["success"] * 3


def test_a_scheduled_run_left_running_is_interrupted_and_its_slot_runs_again(lake_home):
    clock = Clock(T0)
    _, store, sched = _boot(lake_home, clock)
    store.update({"schedule": {"interval": "1h"}})
    assert _tick_and_wait(sched) is not None
    # a process died mid-run for the T0+1h slot: its journal row says running
    lake = Lake(lake_home)
    journal.record_start(
        lake,
        "20261120T190000Z-dead00",
        "daily",
        trigger="schedule",
        started_at=T0 + timedelta(hours=1),
        metadata={"schedule": "daily", "slot": (T0 + timedelta(hours=1)).isoformat()},
    )
    clock.now = T0 + timedelta(hours=1, minutes=5)
    _, store, sched = _boot(lake_home, clock)  # start-up recovery marks it interrupted
    dead = journal.find(lake, "20261120T190000Z-dead00")
    assert dead["status"] == "interrupted"
    again = _tick_and_wait(sched)
    assert again is not None and again.request.slot == T0 + timedelta(hours=1)
    assert again.final["status"] == "ok"


def test_a_manual_daily_run_moves_the_daily_schedule_on_across_restarts(lake_home):
    # regression: only scheduled runs moved a schedule, so a daily run started by hand at
    # 18:30 was followed by the scheduled one at 19:00 (the next run is computed from the
    # last completed run, whoever started it)
    clock = Clock(T0)
    _, store, sched = _boot(lake_home, clock)
    store.update({"schedule": {"interval": "1h"}})  # first slot: T0
    assert _tick_and_wait(sched).request.slot == T0

    clock.now = T0 + timedelta(minutes=30)
    manager, store, sched = _boot(lake_home, clock)
    manual = _wait(manager.start(RunRequest("daily", trigger="api")))
    assert manual.final["status"] in ("ok", "partial") and manual.started_at == clock.now
    assert sched.next_runs()["daily"] == T0 + timedelta(hours=1, minutes=30)
    clock.now = T0 + timedelta(hours=1, seconds=1)
    assert _tick_and_wait(sched) is None  # the 19:00 slot was covered by the manual run

    _, store, sched = _boot(lake_home, clock)  # the journal says so after a restart too
    assert sched.next_runs()["daily"] == T0 + timedelta(hours=1, minutes=30)
    assert _tick_and_wait(sched) is None
    clock.now = T0 + timedelta(hours=1, minutes=31)
    due = _tick_and_wait(sched)
    assert due is not None and due.request.slot == T0 + timedelta(hours=1, minutes=30)

    # a manual run of part of the work (some symbols) moves nothing
    clock.now = T0 + timedelta(hours=2)
    manager, store, sched = _boot(lake_home, clock)
    part = RunRequest("sync", trigger="api", params={"segments": ["equity"], "symbols": ["AAA"]})
    _wait(manager.start(part))
    assert sched.next_runs()["daily"] == T0 + timedelta(hours=2, minutes=30)
    runs = journal.runs(Lake(lake_home)).filter(pl.col("trigger") == "api")
    assert runs.height == 2

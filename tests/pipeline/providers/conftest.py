"""Fixtures of the provider tests: a started replay server and a fake clock."""

from __future__ import annotations

import pytest
from replay_server import FakeClock, ReplayServer


@pytest.fixture
def replay():
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()

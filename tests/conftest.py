"""Shared fixtures: a fresh lake home per test, the recorded provider responses, and a real
PostgreSQL database (skipped with a reason when none is reachable, unless
``MARKETLAKE_REQUIRE_POSTGRES=1``, as in CI, turns the skip into a failure)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from tests_helpers import fixtures_dir, in_ci, require

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEST_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh MARKETLAKE_HOME."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture(scope="session")
def provider_fixtures() -> Path:
    return require(fixtures_dir() / "providers", "recorded provider responses")


def _pg_available(dsn: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
        return None
    except Exception as exc:  # any failure means: no usable server
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_server_dsn() -> str:
    """DSN of a reachable PostgreSQL server (MARKETLAKE_TEST_DSN, default local ``test``)."""
    dsn = os.environ.get("MARKETLAKE_TEST_DSN", DEFAULT_TEST_DSN)
    why = _pg_available(dsn)
    if why is not None:
        msg = f"PostgreSQL not reachable at MARKETLAKE_TEST_DSN ({why})"
        if os.environ.get("MARKETLAKE_REQUIRE_POSTGRES") == "1" or in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return dsn


@pytest.fixture
def pg_dsn(pg_server_dsn: str):
    """A DSN whose ``options`` select a fresh, empty schema; dropped afterwards.

    Yields ``(dsn, schema)``: pass ``schema`` as the serving schema (settings.pg_schema).
    """
    import psycopg

    schema = f"mltest_{uuid.uuid4().hex[:10]}"
    yield pg_server_dsn, schema
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test is a failed run: a missing fixture, server or browser never
    passes unnoticed."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if in_ci() and skipped and session.exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; failing the run", red=True)
        session.exitstatus = 1

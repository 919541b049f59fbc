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


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 (and DynamoDB) API on loopback: moto's server mode on a free port."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_lake(s3_endpoint: str) -> dict[str, str]:
    """The environment of a lake at ``s3://<fresh bucket>/lake`` on the loopback S3 API:
    MARKETLAKE_LAKE_URI and the standard AWS variables."""
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_ALLOW_HTTP": "true",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=bucket)
    return {**env, "MARKETLAKE_LAKE_URI": f"s3://{bucket}/lake"}


@pytest.fixture(scope="session")
def dask_client():
    """Two local Dask worker processes, two threads each, with nannies that restart a killed
    worker (started once: a worker process takes seconds to start on a busy machine)."""
    import logging

    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()

"""The serving boundary: driver errors (ADBC and psycopg) become one line of our error tree."""

from __future__ import annotations

import psycopg
import pytest

from marketlake.errors import ConnectionConfigError, LoadError, TransientLoadError
from marketlake.pipeline.serving.errors import driver_errors

pytestmark = pytest.mark.postgres


def test_psycopg_statement_error_becomes_load_error_with_sqlstate(pg_server_dsn: str) -> None:
    with psycopg.connect(pg_server_dsn) as conn:
        with pytest.raises(LoadError) as info:
            with driver_errors("probe", ()):
                conn.execute("SELECT * FROM no_such_table_anywhere")
    assert not isinstance(info.value, TransientLoadError)
    assert info.value.sqlstate == "42P01"  # type: ignore[attr-defined]
    assert str(info.value).startswith("probe: ")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_refused_connect_is_a_redacted_config_error(pg_server_dsn: str) -> None:
    secret = "s3cret-canary-pw"
    dsn = pg_server_dsn.replace("/test", "/no_such_database_xyz").replace(
        "postgres@", f"postgres:{secret}@"
    )
    with pytest.raises(ConnectionConfigError) as info:
        with driver_errors("connect", (secret,), connecting_to=dsn):
            psycopg.connect(dsn, connect_timeout=3)
    assert secret not in str(info.value)
    assert "no_such_database_xyz" in str(info.value)


def test_lost_session_is_transient_and_reported(pg_server_dsn: str) -> None:
    lost: list[bool] = []
    victim = psycopg.connect(pg_server_dsn, autocommit=True)
    pid = victim.info.backend_pid
    with psycopg.connect(pg_server_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(TransientLoadError):
        with driver_errors("probe", (), on_lost=lambda: lost.append(True)):
            victim.execute("SELECT 1")
    assert lost == [True]
    victim.close()

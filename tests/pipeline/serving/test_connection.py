"""The serving connection on ADBC's low-level API against a real PostgreSQL: parameters in
and rows out as Python values, binary COPY inside the open transaction, server errors (also
those met while a result streams) as our errors with their SQLSTATE, no JIT in the session,
and no pandas imported on the way."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
import pytest

from marketlake.errors import LoadError
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.serving.connection import Serving

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(home, pg_dsn):
    dsn, schema = pg_dsn
    settings = load_settings(home=home, dsn=dsn, env={}).with_(pg_schema=schema)
    with Serving(settings) as conn:
        yield conn


def test_parameters_go_in_and_rows_come_out_as_python_values(db):
    when = datetime(2026, 1, 6, 21, 0, tzinfo=UTC)
    rows = db.run(
        "SELECT $1::text, $2::bigint, $3::timestamptz, $4::boolean, $5::float8, $6::text",
        ("ohlcv", 2**40, when, True, 1.5, None),
    )
    assert rows == [("ohlcv", 2**40, when, True, 1.5, None)]
    assert db.run("SELECT g, g * 2 FROM generate_series(1, 3) AS g") == [(1, 2), (2, 4), (3, 6)]
    assert db.run("SELECT 1 WHERE false") == []


def test_without_the_driver_managers_private_helpers_statements_still_run(db, monkeypatch):
    # the reader and the Ctrl-C bridge are the driver manager's own, not its public API: a
    # release without them falls back to pyarrow's reader and a plain call
    monkeypatch.setitem(sys.modules, "adbc_driver_manager._reader", None)
    monkeypatch.delattr("adbc_driver_manager._lib._blocking_call")
    assert db.run("SELECT $1::bigint + 1, $2::text", (41, "x")) == [(42, "x")]
    assert db.run("SELECT 1 WHERE false") == []


def test_a_statement_without_columns_returns_no_rows(db):
    assert db.run("CREATE TEMP TABLE t (x int)") == []
    db.script("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
    assert db.run("SELECT sum(x) FROM t") == [(3,)]


def test_ingest_copies_inside_the_transaction(db):
    frame = pl.DataFrame({"symbol": ["A", "B"], "close": [1.0, 2.0]}).to_arrow()
    assert db.ingest("staged", frame, mode="replace", temporary=True) == 2
    assert db.run("SELECT symbol, close FROM staged ORDER BY symbol") == [("A", 1.0), ("B", 2.0)]
    db.rollback()  # the temp table was made in the rolled-back transaction
    with pytest.raises(LoadError) as err:
        db.run("SELECT count(*) FROM staged")
    assert err.value.sqlstate == "42P01"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 / 0",
        # the error comes with the third row, while the result is already streaming
        "SELECT CASE WHEN g < 3 THEN g ELSE 1 / (g - g) END FROM generate_series(1, 3) AS g",
    ],
)
def test_server_errors_become_load_errors_with_their_sqlstate(db, sql):
    with pytest.raises(LoadError) as err:
        db.run(sql, what="divide")
    assert err.value.sqlstate == "22012"
    assert str(err.value).startswith("divide: ")
    db.rollback()
    assert db.run("SELECT 1") == [(1,)]  # the session lives on


def test_the_session_runs_without_jit(db):
    assert db.run("SELECT current_setting('jit')") == [("off",)]


OPEN = """
import sys
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.serving.connection import Serving

home, dsn, schema = sys.argv[1:]
settings = load_settings(home=home, dsn=dsn, env={}).with_(pg_schema=schema)
with Serving(settings) as db:
    db.run("SELECT $1::text", ("x",))
print(sorted(m for m in ("pandas", "pyarrow.dataset") if m in sys.modules))
"""


def test_a_connection_imports_neither_pandas_nor_pyarrow_dataset(home, pg_dsn):
    dsn, schema = pg_dsn
    out = subprocess.run(
        [sys.executable, "-c", OPEN, str(home), dsn, schema],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"

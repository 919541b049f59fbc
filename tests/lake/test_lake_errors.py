import subprocess
import sys

import duckdb
import pytest

from marketlake.errors import LakeError
from marketlake.lake._errors import lake_errors


def test_duckdb_errors_become_lake_errors():
    with pytest.raises(LakeError, match="query t failed: .*nope"):
        with lake_errors("query", "t"):
            duckdb.sql("SELECT * FROM nope")


def test_the_lake_does_not_import_duckdb():
    # DuckDB (0.4 s to import) is loaded by the code that queries, not by every lake user
    code = "import marketlake.lake.store, sys; print('duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

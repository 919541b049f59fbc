"""A nightly increment (sync from the synthetic market, compute, load into PostgreSQL), in a
fresh process, imports neither pandas nor pyarrow.dataset (together about a second of a cold
start): the load speaks ADBC's low-level API, not its DB-API module, which imports both. Nor
pydantic: without a settings file there is nothing for its models to check. Nor
pyarrow.compute (about 0.3 s, its functions' docs parsed at import): nothing on the way casts
an arrow array."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.compute import run_compute
from marketlake.pipeline.stages.ingest import run_sync
from marketlake.pipeline.stages.load import run_load

pytestmark = pytest.mark.postgres
DAY0 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
# few symbols (the writer's one-value dictionaries, made from 1,024 rows on, are checked
# for the same in tests/lake/test_writes.py)
SYMBOLS = ["AAA", "BBB", "CCC"]

NIGHTLY = """
import json, sys
from datetime import datetime
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.stages.compute import run_compute
from marketlake.pipeline.stages.ingest import run_sync
from marketlake.pipeline.stages.load import run_load

home, now, dsn, schema = sys.argv[1:]
settings = load_settings(home=home, env={}, now=datetime.fromisoformat(now))
settings = settings.with_(dsn=dsn, pg_schema=schema)
synced = run_sync(settings, provider="synthetic", timeframes=["1D"]).inserted
computed = run_compute(settings).inserted
loaded = run_load(settings).status
found = sorted(
    m for m in ("pandas", "pyarrow.compute", "pyarrow.dataset", "pydantic") if m in sys.modules
)
print(json.dumps({"synced": synced, "computed": computed, "loaded": loaded, "found": found}))
"""


def test_a_nightly_increment_imports_no_pandas_pyarrow_dataset_compute_or_pydantic(home, pg_dsn):
    dsn, schema = pg_dsn
    lake = Lake(home)
    universe.add_many(lake, SYMBOLS, run_id="u", asset_type="equity", provider="synthetic")
    settings = load_settings(home=home, env={}, now=DAY0).with_(dsn=dsn, pg_schema=schema)
    # the default lookback's years: the increment adds one day and resumes each series
    run_sync(settings, provider="synthetic", timeframes=["1D"], start="2020-01-01")
    run_compute(settings)
    run_load(settings)
    now = (DAY0 + timedelta(days=1)).isoformat()
    out = subprocess.run(
        [sys.executable, "-c", NIGHTLY, str(home), now, dsn, schema],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["synced"], report["computed"]) == (len(SYMBOLS), len(SYMBOLS))
    assert report["loaded"] == "ok"
    assert report["found"] == []

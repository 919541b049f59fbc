"""Writing a pushed stream as data files in bounded memory: however many rows arrive, the
writer holds at most its buffer bound; rows land in row groups of the bounded size, in files
of the right partitions with correct statistics, and commit as one version."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lake"))
from test_batches import many_bars  # noqa: E402

from marketlake.errors import ValidationError  # noqa: E402
from marketlake.lake import Lake, writes  # noqa: E402
from marketlake.lake.batches import conform  # noqa: E402
from marketlake.lake.tables import TABLES  # noqa: E402
from marketlake.pipeline.remote.files import Bounds, FileWriter  # noqa: E402

BOUNDS = Bounds(group_rows=3_000, buffer_rows=8_000, file_rows=20_000, open_files=3)


def interleaved(frame, batch_rows: int):
    """Batches that each mix every partition (the worst case for per-partition buffers)."""
    arrow = frame.sort(["symbol", "ts"]).to_arrow()
    schema = pa.schema(TABLES["ohlcv"].schema)
    for batch in arrow.to_batches(max_chunksize=batch_rows):
        yield from conform([batch], schema)


def write(home: Path, frame, batch_rows: int = 1_000) -> tuple[FileWriter, list]:
    lake = Lake(home)
    tdef = TABLES["ohlcv"]
    dt = writes.create(lake.uri("ohlcv"), tdef)
    out = FileWriter(lake.location, tdef, pa.schema(tdef.schema), BOUNDS)
    adds = out.write_all(interleaved(frame, batch_rows))
    writes.commit_files(dt, tdef, adds, writes.commit_properties("r", "push"))
    return out, adds


@pytest.mark.parametrize("days", [300, 900])
def test_rows_held_do_not_grow_with_the_rows_written(tmp_path, days):
    frame = many_bars(60, days)  # 3 or 9 yearly partitions per batch, 18k or 54k rows
    out, adds = write(tmp_path / "home", frame)
    assert out.rows == frame.height
    assert out.peak_buffered <= BOUNDS.buffer_rows + 1_000  # one batch beyond the bound

    lake = Lake(tmp_path / "home")
    got = lake.read("ohlcv").select(frame.columns).sort(["symbol", "ts"])
    assert got.equals(frame.select(frame.columns).sort(["symbol", "ts"]))
    assert lake.version("ohlcv") == 1  # one commit

    root = lake.location.path / "ohlcv"
    for add in adds:
        meta = pq.ParquetFile(root / add.path).metadata
        assert meta.num_rows < BOUNDS.file_rows + BOUNDS.group_rows + 1_000  # closed once full
        assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 3_000
        part = pq.read_table(root / add.path)
        st = json.loads(add.stats)
        assert st["numRecords"] == meta.num_rows == part.num_rows
        assert st["minValues"]["symbol"] == min(part.column("symbol").to_pylist())
        assert st["maxValues"]["symbol"] == max(part.column("symbol").to_pylist())
        assert add.partition_values["period"] == str(part.column("ts")[0].as_py().year)
        assert st["nullCount"]["adj_close"] == part.num_rows


def test_a_failed_write_leaves_no_files(tmp_path):
    lake = Lake(tmp_path / "home")
    tdef = TABLES["ohlcv"]
    writes.create(lake.uri("ohlcv"), tdef)
    out = FileWriter(lake.location, tdef, pa.schema(tdef.schema), BOUNDS)

    def failing():
        yield from interleaved(many_bars(60, 300), 1_000)
        raise ValidationError("ohlcv: the body ended early")

    with pytest.raises(ValidationError):
        out.write_all(failing())
    assert not list((lake.location.path / "ohlcv").rglob("*.parquet"))

"""The local read path on pyarrow.parquet alone: the same rows as a plain filter over the whole
table, files pruned from the Delta log before any is opened, page checksums verified (a damaged
page is an error naming the table and the file), and no pyarrow.dataset (nor pandas) imported."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import Field
from tests_helpers import bars

from marketlake.errors import LakeCorruptError
from marketlake.lake import Lake, local_reads
from marketlake.lake.local_reads import DataFile, data_files, schema_of, terms

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def lake(home):
    """ohlcv in several files: two symbol groups x two periods (2024, 2025), a second
    timeframe, and rows of one symbol written later (statistics overlapping the others')."""
    lake = Lake(home)
    for syms in (["AAA", "BBB"], ["XXX", "YYY"]):
        lake.upsert("ohlcv", bars(syms, days=400, start=T0), run_id="r", stage="t")
    lake.upsert("ohlcv", bars(["AAA"], days=50, start=T0, tf="1h"), run_id="r", stage="t")
    later = bars(["CCC"], days=20, start=T0 + timedelta(days=400), close=5.0)
    lake.upsert("ohlcv", later, run_id="r", stage="t")
    return lake


def _kept(lake: Lake, predicate: pl.Expr) -> list[DataFile]:
    dt = lake.table("ohlcv")
    files = data_files(dt, schema_of(dt))
    found = terms(predicate)
    return [f for f in files if f.may_hold(found)]


PREDICATES = [
    pl.col("timeframe") == "1D",
    pl.col("symbol").is_in(["BBB", "CCC"]),
    (pl.col("timeframe") == "1D") & (pl.col("ts") >= T0 + timedelta(days=380)),
    pl.col("ts").is_between(T0 + timedelta(days=10), T0 + timedelta(days=20)),
    (pl.lit(T0 + timedelta(days=399)) < pl.col("ts")) & (pl.col("symbol") == "XXX"),
    (pl.col("symbol") == "AAA") | (pl.col("close") > 2),
    pl.col("is_final").is_null() | (pl.col("period") == "2025"),
    pl.col("symbol").is_in(["ZZZ"]),
    # partition columns alone: true or false for a whole file
    (pl.col("timeframe") == "1h") | (pl.col("period") == "2024"),
    (pl.col("timeframe") != "1D") & pl.col("period").is_in(["2024", "2025"]),
    pl.col("period").is_null(),
]


@pytest.mark.parametrize("predicate", PREDICATES, ids=range(len(PREDICATES)))
def test_a_filtered_scan_equals_the_filter_over_every_row(lake, predicate):
    everything = lake.read("ohlcv")
    want = everything.filter(predicate).sort("symbol", "timeframe", "ts")
    got = lake.scan("ohlcv").filter(predicate).collect().sort("symbol", "timeframe", "ts")
    assert got.equals(want)
    assert got.schema == everything.schema


@pytest.mark.parametrize("dictionary", [(), ("symbol", "timeframe")])
def test_a_file_whose_partition_values_satisfy_the_predicate_is_not_filtered(
    lake, monkeypatch, dictionary
):
    """A predicate of partition columns alone holds for all of a file's rows or none: a file
    it holds for is read without filtering its rows (the others are pruned)."""
    want = lake.read("ohlcv").filter(pl.col("timeframe") == "1D").select("symbol", "close")
    filtered = []
    real = pl.DataFrame.filter

    def spy(self, *args, **kwargs):
        filtered.append(self.height)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "filter", spy)
    scan = lake.scan("ohlcv", dictionary=dictionary)
    got = scan.filter(pl.col("timeframe") == "1D").select("symbol", "close").collect()
    monkeypatch.undo()
    got = got.with_columns(pl.col("symbol").cast(pl.String))
    assert got.sort("symbol", "close").equals(want.sort("symbol", "close"))
    assert filtered == []
    dt = lake.table("ohlcv")
    files = data_files(dt, schema_of(dt, dictionary))
    holds = [local_reads._holds(pl.col("timeframe") == "1D", f, schema_of(dt)) for f in files]
    assert holds == [f.partition["timeframe"] == "1D" for f in files]
    two = pl.col("period") > pl.col("timeframe")  # two partition columns, compared as text
    for f in files:
        want_two = f.partition["period"] > f.partition["timeframe"]
        assert local_reads._holds(two, f, schema_of(dt)) == want_two


def test_files_are_pruned_by_partition_values_and_key_statistics(lake):
    dt = lake.table("ohlcv")
    assert len(data_files(dt, schema_of(dt))) == 7  # 2 groups x 2 years, 1h x 2 months, CCC
    assert len(_kept(lake, pl.col("timeframe") == "1h")) == 2
    assert len(_kept(lake, pl.col("symbol").is_in(["XXX", "ZZZ"]))) == 2
    later = (pl.col("timeframe") == "1D") & (pl.col("ts") >= T0 + timedelta(days=380))
    assert len(_kept(lake, later)) == 3  # the 2025 files of both groups, and CCC's
    assert len(_kept(lake, pl.col("symbol") == "CCC")) == 1
    # an `or`, or a term on a column without statistics, prunes nothing
    assert len(_kept(lake, (pl.col("symbol") == "AAA") | (pl.col("close") > 2))) == 7
    assert len(_kept(lake, pl.col("close") > 100)) == 7


def test_terms_read_the_conjunction_of_column_and_constant(lake):
    t = T0 + timedelta(days=3)
    assert terms(pl.col("ts").is_between(T0, t, closed="left")) == [
        ("ts", "GtEq", T0),
        ("ts", "Lt", t),
    ]
    assert terms((pl.lit("B") > pl.col("symbol")) & pl.col("timeframe").is_in(["1h", "1D"])) == [
        ("symbol", "Lt", "B"),
        ("timeframe", "in", ["1D", "1h"]),
    ]
    assert terms(pl.col("symbol").is_in(["A", None])) == [("symbol", "in", ["A"])]
    assert terms((pl.col("symbol") == "A") | (pl.col("symbol") == "B")) == []
    assert terms(pl.col("symbol").str.starts_with("A")) == []
    assert terms(None) == []


def test_a_pruned_read_never_opens_the_files_it_skips(lake, monkeypatch):
    opened = []
    real = local_reads.pq.ParquetFile

    def spy(path, *a, **kw):
        opened.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(local_reads.pq, "ParquetFile", spy)
    got = lake.scan("ohlcv").filter(pl.col("symbol") == "CCC").collect()
    assert got.height == 20 and len(opened) == 1


def test_projection_dictionary_limit_and_partition_columns_only(lake):
    scan = lake.scan("ohlcv", dictionary=("symbol", "timeframe"))
    cov = (
        scan.filter(pl.col("timeframe") == "1D")
        .group_by("symbol")
        .agg(pl.len(), pl.col("ts").max())
        .collect()
        .sort("symbol")
    )
    assert cov.schema["symbol"] == pl.Categorical()
    assert cov.get_column("symbol").cast(pl.String).to_list() == [
        "AAA",
        "BBB",
        "CCC",
        "XXX",
        "YYY",
    ]
    assert cov.get_column("len").to_list() == [400, 400, 20, 400, 400]
    assert lake.scan("ohlcv").head(7).collect().height == 7
    parts = lake.scan("ohlcv").select("timeframe", "period").collect()
    assert parts.height == lake.read("ohlcv").height
    assert parts.group_by("timeframe").len().sort("timeframe").rows() == [
        ("1D", 1620),
        ("1h", 50),
    ]
    none = lake.scan("ohlcv").filter(pl.col("symbol") == "ZZZ").select("close").collect()
    assert none.height == 0 and none.schema == pl.Schema({"close": pl.Float64})


def test_a_damaged_page_in_a_file_read_names_the_table_and_file(lake):
    dt = lake.table("ohlcv")
    target = next(f for f in data_files(dt, schema_of(dt)) if f.ranges["symbol"][0] == "CCC")
    path = lake.path("ohlcv") / target.path
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    # a read that prunes the damaged file away is unaffected
    assert lake.scan("ohlcv").filter(pl.col("symbol") == "AAA").collect().height == 450
    with pytest.raises(LakeCorruptError) as err:
        lake.scan("ohlcv").filter(pl.col("symbol") == "CCC").collect()
    assert err.value.table == "ohlcv" and err.value.file == target.path
    assert "ohlcv" in str(err.value) and target.path in str(err.value)


def test_distinct_pairs_are_the_rows_distinct_pairs_at_each_version(lake):
    """``Lake.distinct`` lists (timeframe, symbol) from each file's symbol dictionary: the
    pairs a query over every row finds, at the latest version and at an older one."""
    for version in (None, 1):
        rows = lake.read("ohlcv", version)
        want = rows.select("timeframe", "symbol").unique().sort("timeframe", "symbol")
        got = lake.distinct("ohlcv", "symbol", "timeframe", version)
        assert got is not None
        assert got.schema == want.schema
        assert got.sort("timeframe", "symbol").equals(want)
    assert lake.distinct("ohlcv", "symbol", "timeframe").height == 6  # 5 daily, 1 hourly
    empty = lake.distinct("indicators", "symbol", "timeframe")  # nothing written to it
    assert empty is not None and empty.is_empty()


def test_distinct_pairs_of_a_damaged_file_name_it(lake):
    dt = lake.table("ohlcv")
    target = next(f for f in data_files(dt, schema_of(dt)) if f.ranges["symbol"][0] == "CCC")
    path = lake.path("ohlcv") / target.path
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == "symbol"
    )
    mid = (
        chunk.dictionary_page_offset or chunk.data_page_offset
    ) + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])  # the symbols' pages
    path.write_bytes(bytes(data))
    with pytest.raises(LakeCorruptError) as err:
        lake.distinct("ohlcv", "symbol", "timeframe")
    assert err.value.table == "ohlcv" and err.value.file == target.path


def test_a_local_scan_imports_neither_pyarrow_dataset_nor_pandas(lake):
    code = (
        "import sys\n"
        "import polars as pl\n"
        "from marketlake.lake import Lake\n"
        f"lake = Lake({str(lake.home)!r}, create=False)\n"
        "n = lake.scan('ohlcv').filter(pl.col('symbol') == 'AAA').collect().height\n"
        "print(n, sorted(m for m in ('pandas', 'pyarrow.dataset') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["450", "[]"]


def test_a_column_added_after_the_files_were_written_reads_as_nulls(lake):
    lake.table("ohlcv").alter.add_columns([Field.from_arrow(pa.field("note", pa.string()))])
    scan = lake.scan("ohlcv", dictionary=("symbol", "note"))
    got = scan.filter(pl.col("symbol") == "CCC").collect()
    assert got.height == 20 and got.get_column("note").null_count() == 20
    assert got.schema["note"] == pl.Categorical() == got.schema["symbol"]


def test_files_are_read_ahead_in_order_a_bounded_few_at_a_time(lake, monkeypatch):
    import threading
    import time

    opened: list[str] = []
    running = [0, 0]  # now, most at once
    lock = threading.Lock()
    read = local_reads.read_file

    def slow(root, name, f, *a, **k):
        with lock:
            opened.append(f.path)
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.02)
        try:
            return list(read(root, name, f, *a, **k))
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(local_reads, "read_file", slow)
    scan = lake.scan("ohlcv")
    whole = scan.collect()
    assert len(opened) >= 4 and running[1] == local_reads.READ_AHEAD  # two at once
    monkeypatch.setattr(local_reads, "read_file", read)
    assert whole.equals(lake.scan("ohlcv").collect())  # files in the same order
    monkeypatch.setattr(local_reads, "read_file", slow)
    files = len(opened)
    opened.clear()
    assert scan.head(3).collect().height == 3
    assert len(opened) <= local_reads.READ_AHEAD + 1 < files  # no file read past the limit's

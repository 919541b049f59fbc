"""The append path's files: statistics taken from the written footer equal those computed
from the rows, partitions are split correctly whether their rows are contiguous or not, and a
text column of one value goes to the writer as a one-entry dictionary."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests_helpers import bars

from marketlake.errors import LakeError
from marketlake.lake import Lake, writes
from marketlake.lake.frames import file_stats, stats
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import OHLCV, single_timeframe, with_period
from marketlake.lake.writes import grouping, split_rows, to_file_arrow, write_file, write_files


def test_footer_statistics_equal_the_rows_statistics(tmp_path):
    ts = [datetime(2024, 1, d, 9, 30, 0, 999_500, tzinfo=UTC) for d in range(1, 5)]
    frame = pl.DataFrame(
        {
            "symbol": ["B", None, "A", "C"],
            "ts": ts,
            "open": [1.5, float("nan"), None, 2.0],
            "high": [None, None, None, None],
            "close": [float("inf"), 1.0, 2.0, 3.0],
            "volume": [float("nan")] * 4,
            "key": ["x" * 40, "a", "b", "c"],
            "rows": [3, None, 1, 2],
        },
        schema_overrides={"high": pl.Float64},
    )
    table = frame.to_arrow()
    _, meta = write_file(LakeLocation.local(tmp_path), "t", "f.parquet", table)
    assert json.loads(file_stats(meta, table)) == json.loads(stats(frame))
    # min/max are tracked only for the columns readers skip files by, null counts for all
    by_name = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
    assert meta.row_group(0).column(by_name["rows"]).statistics is None
    assert meta.row_group(0).column(by_name["close"]).statistics.has_min_max
    with pytest.raises(LakeError, match="no statistics for rows"):
        file_stats(meta)


def test_footer_statistics_span_row_groups(tmp_path):
    frame = bars(["A", "B", "C"], days=40).drop("timeframe")
    path = tmp_path / "f.parquet"
    pq.write_table(frame.to_arrow(), path, row_group_size=7)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups > 1
    assert json.loads(file_stats(meta)) == json.loads(stats(frame))


@pytest.mark.parametrize(
    ("gather_rows", "tf"), [(1, "1D"), (10**9, "1D"), (1, "1h"), (10**9, "1h")]
)
def test_parts_contiguous_or_scattered_land_every_row_once(tmp_path, monkeypatch, gather_rows, tf):
    """Scattered rows, gathered at once (partitions at least half of ``GATHER_ROWS``) or a
    run of partitions at a time (an eighth of the rows: one year of daily bars, several
    months of hourly ones): every file holds its partition's rows, in order, with the
    statistics of those rows."""
    monkeypatch.setattr(writes, "GATHER_ROWS", gather_rows)
    lake = Lake(tmp_path)
    frame = bars(["A", "B"], days=800, tf=tf)  # symbol-major: each period's rows scattered
    frame = frame.with_columns(pl.lit("r").alias("run_id"))
    rows, adds = write_files(lake.location, OHLCV, frame)
    assert rows == frame.height
    periods = sorted(a.partition_values["period"] for a in adds)
    assert periods == sorted(with_period(frame).get_column("period").unique().to_list())
    back = pl.concat(
        pl.read_parquet(lake.path("ohlcv") / a.path).with_columns(
            pl.lit(a.partition_values["period"]).alias("period")
        )
        for a in adds
    )
    assert back.height == frame.height
    assert (
        back.sort("symbol", "ts")
        .select("symbol", "ts", "close")
        .equals(frame.sort("symbol", "ts").select("symbol", "ts", "close"))
    )
    for a in adds:  # within a file, rows keep their order (symbol, then ts)
        part = pl.read_parquet(lake.path("ohlcv") / a.path)
        assert part.equals(part.sort("symbol", "ts"))
        period = a.partition_values["period"]
        fmt = "%Y" if tf == "1D" else "%Y-%m"
        assert (part.get_column("ts").dt.strftime(fmt) == period).all()
        got = json.loads(a.stats)
        assert got["numRecords"] == part.height
        assert got["minValues"]["symbol"] == part.get_column("symbol").min()
        assert got["maxValues"]["ts"].startswith(part.get_column("ts").max().strftime("%Y-%m-%d"))


def test_text_columns_of_one_value_or_long_runs_go_as_dictionaries_and_read_back_as_text(
    tmp_path,
):
    """A text column of one value is a one-entry dictionary; one whose rows come in long
    runs (symbols, series after series) a dictionary of its values, each once, built from the
    runs; one of short runs or with a null stays text. All read back as the same text."""
    n = 3000
    frame = pl.DataFrame(
        {
            "same": ["x"] * n,
            "varies": ["a", "b"] * (n // 2),
            "a_null": ["x"] * (n - 1) + [None],
            "ends_alike": ["q"] + ["r"] * (n - 2) + ["q"],
            "runs": ["s2", "s1", "s3", "s1"] * 6 + ["s4"] * (n - 24),  # s1 in two runs
            "long_runs": [f"s{i // 100:02d}" for i in range(n)],
            "runs_with_null": ["x"] * (n - 1) + [None],
        }
    ).with_columns(pl.lit("run-1").alias("literal"))  # a literal column, never expanded
    schema = pa.schema([(c, pa.string()) for c in frame.columns])
    table = to_file_arrow(frame, schema)
    kinds = {f.name: pa.types.is_dictionary(f.type) for f in table.schema}
    assert kinds == {
        "same": True,
        "varies": False,  # runs of one row
        "a_null": False,
        "ends_alike": True,
        "runs": True,  # s1 in two runs: coded twice, held once
        "long_runs": True,
        "runs_with_null": False,
        "literal": True,
    }
    assert table.column("long_runs").chunk(0).dictionary.to_pylist() == [
        f"s{i:02d}" for i in range(30)
    ]
    assert table.column("ends_alike").chunk(0).dictionary.to_pylist() == ["q", "r"]
    assert table.column("runs").chunk(0).dictionary.to_pylist() == ["s2", "s1", "s3", "s4"]
    write_file(LakeLocation.local(tmp_path), "t", "f.parquet", table)
    assert pl.read_parquet(tmp_path / "t" / "f.parquet").equals(frame)
    # a value in several runs: each run coded, the dictionary holding it once
    few = frame.select(pl.col("runs").head(24).extend_constant("s4", 2000))
    coded = to_file_arrow(few, pa.schema([("runs", pa.string())])).column("runs").chunk(0)
    assert coded.dictionary.to_pylist() == ["s2", "s1", "s3", "s4"]
    assert coded.to_pylist() == few.get_column("runs").to_list()


def test_one_value_dictionaries_are_made_without_importing_pandas():
    """pyarrow imports pandas (a third of a second) when it builds arrays from Python or
    numpy values; a nightly's writes stay clear of it."""
    probe = (
        "import sys, polars as pl, pyarrow as pa\n"
        "from marketlake.lake.writes import to_file_arrow\n"
        "frame = pl.DataFrame({'s': ['x'] * 2000, 'v': list(range(2000))})\n"
        "schema = pa.schema([('s', pa.string()), ('v', pa.int64())])\n"
        "table = to_file_arrow(frame, schema)\n"
        "assert pa.types.is_dictionary(table.schema.field('s').type)\n"
        "print('pandas' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_single_timeframe_of_a_literal_column_and_of_nulls():
    two = pl.DataFrame({"x": [1, 2]})
    assert single_timeframe(two.with_columns(pl.lit("1h").alias("timeframe"))) == "1h"
    assert single_timeframe(pl.DataFrame({"timeframe": ["1D", "1h"]})) is None
    assert single_timeframe(pl.DataFrame({"timeframe": [None, "1D"]})) is None
    assert (
        single_timeframe(pl.DataFrame({"timeframe": []}, schema={"timeframe": pl.String})) is None
    )


def test_a_frames_one_value_columns_are_dictionaries_in_every_part(tmp_path):
    lake = Lake(tmp_path)
    frame = bars(list("ABCDEF"), days=800).with_columns(pl.lit("r").alias("run_id"))
    rows, adds = write_files(lake.location, OHLCV, frame)
    paths = [lake.path("ohlcv") / a.path for a in adds]
    big = [p for p in paths if pq.ParquetFile(p).metadata.num_rows >= 1024]
    assert rows == frame.height and len(big) > 1
    for path in big:
        part = pq.read_table(path)
        # written as one-entry dictionaries (no arrow schema in the footer), read as text
        assert b"ARROW:schema" not in (pq.ParquetFile(path).metadata.metadata or {})
        assert part.schema.field("run_id").type == pa.string()
        assert set(part.column("run_id").to_pylist()) == {"r"}
        assert pa.types.is_string(part.schema.field("symbol").type)


def test_columns_of_one_value_left_out_of_the_gather_come_back_in_every_file(tmp_path):
    """A flag, a stamp and a text of one value, a column no row has, and a float column of
    signed zeros (never taken for one value): each file holds exactly its rows' values."""
    stamp = datetime(2026, 1, 5, 22, tzinfo=UTC)
    frame = bars(list("ABC"), days=900, tf="1h").with_columns(
        pl.lit(True).alias("is_final"),
        pl.lit(stamp).alias("ingested_at"),
        pl.lit("r").alias("run_id"),
        pl.lit(None, pl.Float64).alias("open_interest"),
        pl.col("close").alias("adj_close"),
    )
    zeros = pl.Series([0.0, -0.0] * (frame.height // 2) + [0.0] * (frame.height % 2))
    frame = frame.with_columns(zeros.alias("volume"))
    rows, adds = write_files(LakeLocation.local(tmp_path), OHLCV, frame)
    assert rows == frame.height and len(adds) > 1
    back = pl.concat(
        pl.read_parquet(tmp_path / "ohlcv" / a.path).with_columns(
            pl.lit(a.partition_values["period"]).alias("period")
        )
        for a in adds
    )
    want = with_period(frame).select(back.columns)
    key = ["symbol", "ts"]
    assert back.sort(key).equals(want.sort(key))
    signs = back.sort(key).get_column("volume").to_numpy()
    assert (
        signs.view("int64") == want.sort(key).get_column("volume").to_numpy().view("int64")
    ).all()


def test_a_part_takes_the_one_values_it_is_given():
    n = 2000
    frame = pl.DataFrame({"same": ["x"] * n, "varies": ["a", "b"] * (n // 2)})
    schema = pa.schema([(c, pa.string()) for c in frame.columns])
    table = to_file_arrow(frame, schema, {"same": "x", "absent": "y"})
    assert pa.types.is_dictionary(table.schema.field("same").type)
    assert not pa.types.is_dictionary(table.schema.field("varies").type)
    assert table.column("same").to_pylist() == ["x"] * n
    # given nothing, no column is asked for one value: that one comes coded from its one run
    given_none = to_file_arrow(frame, schema, {})
    assert not pa.types.is_dictionary(given_none.schema.field("varies").type)
    assert given_none.column("same").chunk(0).dictionary.to_pylist() == ["x"]
    # a small part never (its query would cost more than it saves)
    small = to_file_arrow(frame.head(10), schema, {"same": "x"})
    assert not pa.types.is_dictionary(small.schema.field("same").type)


def _appended_after(tmp_path, monkeypatch, commit_first: bool):
    """An append whose commit raises, after landing (``commit_first``) or before."""
    from deltalake import DeltaTable

    from marketlake.lake import writes

    lake = Lake(tmp_path)
    lake.upsert("ohlcv", bars(["A"]), run_id="a", stage="t")
    real = writes.commit_files

    def failing(dt, tdef, adds, props):
        if commit_first:
            real(dt, tdef, adds, props)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(writes, "commit_files", failing)
    frame = bars(["B"], days=40).with_columns(pl.lit("b").alias("run_id"))
    dt = DeltaTable(str(lake.path("ohlcv")))
    try:
        writes.append_files(dt, lake.location, OHLCV, frame, writes.commit_properties("b", "t"))
    except RuntimeError:
        pass
    else:
        raise AssertionError("the commit's error was swallowed")
    on_disk = {
        p.relative_to(lake.path("ohlcv")).as_posix() for p in lake.path("ohlcv").rglob("*.parquet")
    }
    live = {f["path"] for f in writes.live_files(DeltaTable(str(lake.path("ohlcv"))))}
    return lake, on_disk, live


def test_files_of_a_commit_that_landed_before_its_error_are_kept(tmp_path, monkeypatch):
    lake, on_disk, live = _appended_after(tmp_path, monkeypatch, commit_first=True)
    assert live <= on_disk  # every committed file still there
    read = lake.read("ohlcv")
    assert sorted(read.get_column("symbol").unique().to_list()) == ["A", "B"]
    assert read.height == 3 + 40


def test_files_of_a_commit_that_failed_are_removed(tmp_path, monkeypatch):
    lake, on_disk, live = _appended_after(tmp_path, monkeypatch, commit_first=False)
    assert on_disk == live  # nothing left behind
    assert lake.read("ohlcv").get_column("symbol").unique().to_list() == ["A"]


def test_rows_grouped_by_partition_are_the_parts_rows_in_order():
    # a bulk batch of hourly bars: symbol after symbol, each spanning several months
    frame = pl.DataFrame(
        {
            "symbol": [s for s in "ABC" for _ in range(6)],
            "month": [m for _ in "ABC" for m in (1, 1, 2, 2, 3, 3)],
            "row": range(18),
        }
    )
    order, spans = grouping(frame, ["month"])
    grouped = frame[order]
    assert [(k, a, n) for k, a, n in spans] == [((1,), 0, 6), ((2,), 6, 6), ((3,), 12, 6)]
    for (key, take), (key2, a, n) in zip(split_rows(frame, ["month"]), spans, strict=True):
        assert key == key2
        assert grouped.slice(a, n).equals(take())  # each partition's rows, in their order
    together = frame.sort("month", maintain_order=True)
    none, spans2 = grouping(together, ["month"])
    assert none is None and spans2 == spans  # already grouped: no gather
    assert grouping(frame.clear(), ["month"]) == (None, [])
    assert grouping(frame, []) == (None, [((), 0, 18)])


def test_indicator_floats_lz4_cannot_shrink_are_stored_plain_and_read_back(tmp_path):
    """lz4 finds nothing to shrink in smooth floats (an SMA): their pages go uncompressed;
    integer-valued floats (OBV) and repeats still shrink and keep lz4; page checksums stay."""
    rng = np.random.default_rng(5)
    n = 20_000
    smooth = np.cumsum(rng.standard_normal(n)) + 100.0
    table = pa.table(
        {
            "symbol": ["AAA"] * n,
            "sma_20": smooth,
            "obv": np.cumsum(np.round(rng.uniform(-1, 1, n) * 1000)),
            "flat": np.full(n, 1.5),
            "short": pa.array([1.25] * 10 + [None] * (n - 10), pa.float64()),
        }
    )
    path = tmp_path / "indicators" / "f.parquet"
    write_file(LakeLocation.local(tmp_path), "indicators", "f.parquet", table)
    meta = pq.read_metadata(path)
    codecs = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).compression
        for i in range(meta.num_columns)
    }
    assert codecs == {
        "symbol": "LZ4",
        "sma_20": "UNCOMPRESSED",
        "obv": "LZ4",
        "flat": "LZ4",
        "short": "LZ4",
    }
    # the full columns stored required: the table's (nullable) schema the readers apply
    assert pq.read_table(path, page_checksum_verification=True).cast(table.schema).equals(table)
    # another table's floats keep its codec whatever they hold
    write_file(LakeLocation.local(tmp_path), "ohlcv", "f.parquet", table.select(["sma_20"]))
    other = pq.read_metadata(tmp_path / "ohlcv" / "f.parquet").row_group(0).column(0)
    assert other.compression == "ZSTD"


def _required(path) -> dict[str, bool]:
    """Per column of a parquet file, whether it is required (no definition levels)."""
    schema = pq.ParquetFile(path).schema
    return {
        schema.column(i).name: schema.column(i).max_definition_level == 0
        for i in range(len(schema))
    }


def test_columns_without_nulls_are_written_required_and_every_reader_takes_the_tables_schema(
    tmp_path,
):
    """A column holding no null is written required (the writer builds and encodes no
    definition level per value); a column with a null stays optional. A table whose files
    differ so -- adj_close full in one file, with a null in the next of the same partition
    -- reads the same through polars, the pyarrow dataset DuckDB and loads use, the table's
    batches, the change feed, a merge into such a file and a compaction of the two."""
    from marketlake.lake import batches
    from marketlake.lake.duck import connect
    from marketlake.lake.maintenance import maintain

    lake = Lake(tmp_path)
    full = bars(["AAA"], days=4).with_columns(adj_close=pl.lit(1.5))
    holed = bars(["BBB"], days=4).with_columns(
        adj_close=pl.Series([2.5, None, 2.5, 2.5], dtype=pl.Float64)
    )
    lake.append("ohlcv", full, run_id="r1", stage="t")
    lake.append("ohlcv", holed, run_id="r2", stage="t")
    files = sorted(lake.path("ohlcv").rglob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    first, second = (_required(p) for p in files)
    assert first["close"] and first["adj_close"] and second["close"]
    assert not second["adj_close"]  # a null: optional
    assert not first["open_interest"]  # null on every row
    assert pq.read_table(files[0]).column("adj_close").to_pylist() == [1.5] * 4

    want = pl.concat([full, holed], how="diagonal_relaxed").sort("symbol", "ts")
    cols = ["symbol", "ts", "close", "adj_close"]

    def read() -> pl.DataFrame:
        return lake.read("ohlcv").sort("symbol", "ts").select(cols)

    assert read().equals(want.select(cols))
    table = lake.dataset("ohlcv").to_table(columns=["adj_close"])
    assert table.schema.field("adj_close").nullable
    assert sorted(table.column("adj_close").to_pylist(), key=str) == sorted(
        want.get_column("adj_close").to_list(), key=str
    )
    con = connect(lake, ["ohlcv"])
    assert con.execute("SELECT count(*), count(adj_close) FROM ohlcv").fetchone() == (8, 7)
    streamed = batches.reader(lake.table("ohlcv"), "ohlcv", ["symbol", "adj_close"]).read_all()
    assert streamed.num_rows == 8 and streamed.column("adj_close").null_count == 1
    assert lake.changes("ohlcv", 0).height == 8

    # a merge puts a null into the file where adj_close was required
    fix = full.head(1).with_columns(adj_close=pl.lit(None, pl.Float64), close=pl.lit(9.0))
    lake.upsert("ohlcv", fix, run_id="r3", stage="t")
    want = want.with_columns(
        close=pl.when(pl.col("symbol") == "AAA", pl.col("ts") == fix["ts"][0])
        .then(9.0)
        .otherwise("close"),
        adj_close=pl.when(pl.col("symbol") == "AAA", pl.col("ts") == fix["ts"][0])
        .then(None)
        .otherwise("adj_close"),
    )
    assert read().equals(want.select(cols))
    maintain(lake, tables=["ohlcv"], vacuum=False)
    assert len(lake.table("ohlcv").file_uris()) == 1
    assert read().equals(want.select(cols))

"""A parquet export of many symbols read a block of row groups at a time: the same rows as
read whole, each block decoded once and let go, a damaged block failing only its symbols."""

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, load_settings
from marketlake.pipeline.providers import file_groups
from marketlake.pipeline.providers.base import FetchRequest
from marketlake.pipeline.providers.files import FilesProvider
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, tzinfo=UTC)
SYMBOLS = [f"S{i:02d}" for i in range(20)]
BARS = 40  # per symbol: 800 rows, row groups of 64, blocks of two row groups (128 rows)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Files of any size read a block at a time, blocks of two 64-row groups, at most one
    kept beyond those a request needs."""
    monkeypatch.setattr(file_groups, "MEMORY_SHARE", 0.0)
    monkeypatch.setattr(file_groups, "BLOCK_ROWS", 100)
    monkeypatch.setattr(file_groups, "KEPT_ROWS", 100)


def bars(symbols=SYMBOLS, n=BARS) -> pl.DataFrame:
    rows = []
    for k, s in enumerate(symbols):
        for i in range(n):
            c = 10.0 + k + i / 10
            rows.append((s, date(2024, 1, 1) + timedelta(days=i), c, c + 1, c - 1, c, 100.0 + i))
    return pl.DataFrame(
        rows, schema=["ticker", "date", "open", "high", "low", "close", "volume"], orient="row"
    )


def write(path, frame: pl.DataFrame, row_group_size: int = 64):
    pq.write_table(frame.to_arrow(), path, row_group_size=row_group_size)
    return path


def provider(path) -> FilesProvider:
    return FilesProvider(ProviderSettings("files", options={"path": str(path)}))


def request(symbol: str) -> FetchRequest:
    return FetchRequest(
        symbol=symbol,
        kind="ohlcv",
        timeframe="1D",
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=NOW,
    )


def sync(home, path, symbols=SYMBOLS):
    lake = Lake(home)
    universe.add_many(lake, list(symbols), run_id="u", provider="files")
    settings = load_settings(home=home, env={}, now=NOW)
    providers = dict(settings.providers)
    providers["files"] = ProviderSettings("files", options={"path": str(path)})
    res = run_sync(settings.with_(providers=providers), start="2024-01-01")
    return lake, res


def test_each_symbol_gets_the_rows_the_whole_read_gives(tmp_path):
    path = write(tmp_path / "export.parquet", bars())
    p = provider(path)
    whole = p.read_file(path)
    p.prepare()
    grouped = p._streamed["S00"]
    assert grouped.decoded_blocks() == [0]  # the first block decoded while a sync plans
    for s in SYMBOLS:
        got = p.fetch(request(s))
        want = whole.filter(pl.col("symbol") == s).drop("_reject")
        assert got.drop("_reject").equals(want), s
        # blocks go once every symbol in them has had its rows
        assert len(grouped.decoded_blocks()) <= 1
    assert grouped.decoded_blocks() == []
    assert p.symbols() == SYMBOLS


def test_blocks_are_decoded_once_in_order_and_again_when_asked_again(tmp_path, monkeypatch):
    path = write(tmp_path / "export.parquet", bars())
    p = provider(path)
    p.prepare()
    grouped = p._streamed["S00"]
    decoded = []
    real = grouped._decode
    monkeypatch.setattr(grouped, "_decode", lambda b: decoded.append(b) or real(b))
    first = p.fetch_many([request(s) for s in SYMBOLS])
    assert decoded == list(range(1, 7))  # block 0 was decoded by prepare; 800 rows / 128
    assert sum(f.height for f in first) == len(SYMBOLS) * BARS
    again = p.fetch(request("S10"))  # a re-fetch (a readjusted series) decodes its block again
    assert decoded[-1] == 400 // 128
    assert again.drop("_reject").equals(first[10])


def test_a_sync_lands_every_row_of_a_streamed_file(home, tmp_path):
    source = bars()
    lake, res = sync(home, write(tmp_path / "export.parquet", source))
    assert res.status == "ok", res.errors
    got = lake.read("ohlcv").sort("symbol", "ts")
    assert got.height == source.height == res.inserted
    assert got["close"].to_list() == source.sort("ticker", "date")["close"].to_list()


def test_a_file_whose_symbols_are_not_together_is_read_whole(home, tmp_path):
    shuffled = bars().sample(fraction=1.0, shuffle=True, seed=7)
    path = write(tmp_path / "export.parquet", shuffled)
    p = provider(path)
    p.prepare()
    assert p._streamed == {}
    lake, res = sync(home, path)
    assert res.status == "ok", res.errors
    assert lake.read("ohlcv").height == shuffled.height


def test_a_symbol_in_two_files_is_read_whole_from_both(home, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write(src / "a.parquet", bars(SYMBOLS[:10]))
    later = bars(["S09"], n=BARS + 5).filter(pl.col("date") >= date(2024, 2, 1))
    write(src / "b.parquet", pl.concat([later, bars(SYMBOLS[10:])]))
    p = provider(src)
    p.prepare()
    assert p._streamed == {}  # S09 is in both files
    lake, res = sync(home, src)
    assert res.status == "ok", res.errors
    got = lake.read("ohlcv")
    assert got.filter(pl.col("symbol") == "S09").height == BARS + 5
    assert got.height == len(SYMBOLS) * BARS + 5


def test_a_row_without_a_time_is_reported_as_the_file_is_read_whole(home, tmp_path):
    frame = bars().with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("date")).alias("date")
    )
    path = write(tmp_path / "export.parquet", frame)
    p = provider(path)
    assert p.problems() == [
        {
            "symbol": "S00",
            "reason": "export.parquet: a row without a time",
            "source": str(path),
        }
    ]
    assert p._streamed == {}


def test_a_damaged_block_fails_its_symbols_and_the_others_land(home, tmp_path):
    path = write(tmp_path / "export.parquet", bars())
    meta = pq.read_metadata(path)
    chunk = meta.row_group(2).column(5)  # close of block 1: rows 128-255, symbols S03-S06
    with open(path, "r+b") as f:
        f.seek(chunk.data_page_offset)
        f.write(b"\xff" * 64)  # its first page header is garbage
    lake, res = sync(home, path)
    assert res.status != "ok"
    failed = sorted({e.split()[0] for e in res.errors})
    assert failed == ["S03", "S04", "S05", "S06"]
    assert all("export.parquet: unreadable rows 128-255" in e for e in res.errors)
    landed = lake.read("ohlcv")
    assert sorted(landed["symbol"].unique()) == [s for s in SYMBOLS if s not in failed]
    assert landed.height == (len(SYMBOLS) - 4) * BARS


def test_local_timestamps_are_read_whole(tmp_path):
    """A local time the clocks skipped has no UTC time: reported as the file is read whole."""
    frame = bars().with_columns(pl.col("date").cast(pl.Datetime("us")))
    path = write(tmp_path / "export.parquet", frame)
    options = {"path": str(path), "timezone": "America/New_York"}
    p = FilesProvider(ProviderSettings("files", options=options))
    p.prepare()
    assert p._streamed == {}
    assert p.fetch(request("S01")).height == BARS


def test_a_file_that_fits_in_memory_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(file_groups, "MEMORY_SHARE", 0.25)
    monkeypatch.setattr(file_groups, "available_memory", lambda: 4 * 800 * 100)
    path = write(tmp_path / "export.parquet", bars())  # 800 rows: 80 kB of a quarter's 80 kB
    p = provider(path)
    p.prepare()
    assert p._streamed == {}
    assert p.fetch(request("S01")).height == BARS
    monkeypatch.setattr(file_groups, "available_memory", lambda: 4 * 800 * 100 - 1)
    p = provider(path)
    p.prepare()
    assert set(p._streamed) == set(SYMBOLS)


def test_available_memory_is_what_the_system_reports():
    with open("/proc/meminfo") as f:
        line = next(x for x in f if x.startswith("MemAvailable:"))
    reported = int(line.split()[1]) * 1024
    assert abs(file_groups.available_memory() - reported) < reported // 10


def test_symbol_spans_need_one_run_per_symbol(tmp_path):
    frame = pa.table({"s": ["A", "A", "B", "B", "B", "C"]})
    pq.write_table(frame, tmp_path / "ok.parquet")
    assert file_groups.symbol_spans(tmp_path / "ok.parquet", "s") == {
        "A": (0, 2),
        "B": (2, 3),
        "C": (5, 1),
    }
    pq.write_table(pa.table({"s": ["A", "B", "A"]}), tmp_path / "split.parquet")
    assert file_groups.symbol_spans(tmp_path / "split.parquet", "s") is None

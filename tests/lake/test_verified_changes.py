"""The change feed's files are checked before delta-rs reads them (it reads without CRCs)."""

import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.errors import LakeCorruptError
from marketlake.lake import Lake


def _run(home, now, *args):
    env = {"MARKETLAKE_NOW": now, "MARKETLAKE_HOME": str(home)}
    res = CliRunner().invoke(app, list(args), env=env)
    assert res.exit_code == 0, res.output


def _flip_inside_a_page(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))


def test_a_damaged_file_in_the_change_feed_is_an_error_naming_it(home):
    # regression: compute and load read the change feed through delta-rs, which does not
    # check page checksums: a damaged page added since the watermark came back as numbers
    _run(home, "2026-06-01T18:00:00+00:00", "universe", "add", "AAA", "--provider", "synthetic")
    _run(home, "2026-06-01T18:00:00+00:00", "sync", "--timeframes", "1D", "--start", "2024-01-01")
    lake = Lake(home)
    before = lake.version("ohlcv")
    known = {p for p in lake.path("ohlcv").rglob("*.parquet")}
    _run(home, "2026-11-20T18:00:00+00:00", "sync", "--timeframes", "1D")
    added = [
        p
        for p in lake.path("ohlcv").rglob("*.parquet")
        if p not in known and "_delta_log" not in p.parts
    ]
    assert added, "the second sync added no file"
    clean = lake.changes("ohlcv", before + 1)
    assert clean.height > 0
    target = max(added, key=lambda p: p.stat().st_size)
    _flip_inside_a_page(target)
    with pytest.raises(LakeCorruptError) as err:
        lake.changes("ohlcv", before + 1)
    rel = target.relative_to(lake.path("ohlcv")).as_posix()
    assert rel in str(err.value) and "damaged" in str(err.value)

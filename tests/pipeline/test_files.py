from datetime import UTC, datetime

import polars as pl
import pytest

from marketlake.errors import ValidationError
from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import ProviderSettings, load_settings
from marketlake.pipeline.providers.files import FilesProvider
from marketlake.pipeline.stages.ingest import run_sync

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def files_settings(home, path, **options):
    settings = load_settings(home=home, env={}, now=NOW)
    providers = dict(settings.providers)
    providers["files"] = ProviderSettings("files", options={"path": str(path), **options})
    return settings.with_(providers=providers)


def write_csv(path, rows):
    pl.DataFrame(rows).write_csv(path)
    return path


GOOD = {
    "Date": ["2024-01-02", "2024-01-03"],
    "Open": [10.0, 11.0],
    "High": [12.0, 12.5],
    "Low": [9.5, 10.5],
    "Close": [11.0, 12.0],
    "Volume": [100, 200],
}


def test_import_directory_with_mapping_and_problems(home, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_csv(src / "AAA.csv", GOOD)
    write_csv(src / "BBB.csv", {**GOOD, "Close": [11.0, float("nan")]})
    (src / "CORRUPT.parquet").write_bytes(b"PAR1 this is not parquet")
    (src / "EMPTY.csv").write_text("")
    write_csv(src / "NOCLOSE.csv", {k: v for k, v in GOOD.items() if k != "Close"})
    lake = Lake(home)
    for s in ("AAA", "BBB"):
        universe.add(lake, s, run_id="u", provider="files")
    res = run_sync(files_settings(home, src), start="2024-01-01")
    assert res.tasks_ok == 2
    got = lake.read("ohlcv").sort("symbol", "ts")
    assert got.select("symbol", "close").rows() == [("AAA", 11.0), ("AAA", 12.0), ("BBB", 11.0)]
    assert got["ts"][0] == datetime(2024, 1, 2, tzinfo=UTC)
    q = lake.read("quarantine")
    reasons = " | ".join(q["reason"].to_list())
    assert "CORRUPT.parquet: unreadable file" in reasons
    assert "EMPTY.csv: empty file" in reasons
    assert "NOCLOSE.csv: missing column(s) ['close']" in reasons
    assert "close is missing or not finite" in reasons  # BBB's NaN row
    assert res.quarantined == 4


def test_naive_timestamps_need_a_timezone(tmp_path):
    path = write_csv(
        tmp_path / "AAA.csv", {**GOOD, "Date": ["2024-01-02 09:30", "2024-01-02 09:31"]}
    )
    p = FilesProvider(ProviderSettings("files", options={"path": str(path)}))
    with pytest.raises(ValidationError, match="AAA.csv: timestamps have no timezone"):
        p.read_file(path)
    p = FilesProvider(
        ProviderSettings(
            "files", options={"path": str(path), "timeframe": "1m", "timezone": "America/New_York"}
        )
    )
    f = p.read_file(path)
    assert f["ts"][0] == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def test_column_mapping_and_parquet(tmp_path):
    path = tmp_path / "prices.parquet"
    pl.DataFrame(
        {
            "ticker": ["BRK.B"],
            "when": [datetime(2024, 1, 2, tzinfo=UTC)],
            "o": [1.0],
            "hi": [2.0],
            "lo": [0.5],
            "px": [1.5],
        }
    ).write_parquet(path)
    p = FilesProvider(
        ProviderSettings(
            "files",
            options={
                "path": str(path),
                "mapping": {"ts": "when", "high": "hi", "low": "lo", "close": "px"},
            },
        )
    )
    f = p.read_file(path)
    assert f.select("symbol", "open", "high", "low", "close").rows() == [
        ("BRK.B", 1.0, 2.0, 0.5, 1.5)
    ]

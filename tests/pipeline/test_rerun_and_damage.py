"""Re-runs that must change nothing, and a damaged lake reported in one line (through the CLI)."""

import json

import pytest
from typer.testing import CliRunner

from marketlake.cli import app
from marketlake.lake import Lake

ENV = {"MARKETLAKE_NOW": "2026-11-20T18:00:00+00:00"}


def run(home, *args):
    return CliRunner().invoke(app, [*args], env={**ENV, "MARKETLAKE_HOME": str(home)})


def _json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_demo_twice_second_run_changes_nothing(home):
    # regression: the second `marketlake demo` ended partial, exit 1 (`Expected an object with
    # dunder __arrow_c_schema__`): the compute step's watermark commit failed
    first = run(home, "demo", "--symbols", "2", "--json")
    assert first.exit_code == 0, first.output
    second = run(home, "demo", "--symbols", "2", "--json")
    assert second.exit_code == 0, second.output
    report = _json(second)
    assert report["status"] == "ok"
    assert sum(s["rows"]["inserted"] for s in report["steps"]) == 0
    assert sum(s["rows"]["updated"] for s in report["steps"]) == 0


def test_compute_with_nothing_to_write_and_daily_after_maintain(home):
    # regression: `compute` with nothing to write failed, and so did `maintain` then `daily`
    assert run(home, "universe", "add", "AAA", "--provider", "synthetic").exit_code == 0
    assert run(home, "sync", "--timeframes", "1D", "--start", "2026-01-01").exit_code == 0
    assert run(home, "compute").exit_code == 0
    again = run(home, "compute", "--timeframes", "1D", "--json")
    assert again.exit_code == 0, again.output
    assert (_json(again)["rows"]["inserted"], _json(again)["rows"]["updated"]) == (0, 0)
    assert run(home, "maintain", "--vacuum-hours", "0").exit_code == 0
    daily = run(home, "daily", "--json")
    assert daily.exit_code == 0, daily.output


@pytest.fixture
def damaged(home):
    assert run(home, "universe", "add", "AAA", "--provider", "synthetic").exit_code == 0
    assert run(home, "sync", "--timeframes", "1D", "--start", "2025-01-01").exit_code == 0
    lake = Lake(home)
    target = max(
        (p for p in lake.path("ohlcv").rglob("*.parquet") if "_delta_log" not in p.parts),
        key=lambda p: p.stat().st_size,
    )
    return home, target, target.relative_to(lake.path("ohlcv")).as_posix()


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("sync", "--timeframes", "1D"),
        ("compute",),
        ("export", "ohlcv", "--out", "{tmp}"),
        ("maintain", "--verify"),
    ],
)
def test_truncated_data_file_is_one_line_naming_table_and_file(damaged, tmp_path, args):
    # regression: a truncated data file gave a Rust panic and a 70-line traceback from sync,
    # compute, export and status, and `status` exited 0 looking fine
    home, target, rel = damaged
    with open(target, "r+b") as fh:
        fh.truncate(target.stat().st_size // 2)
    res = run(home, *[a.format(tmp=tmp_path / "out") for a in args])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert "ohlcv" in lines[0] and rel in lines[0]


def test_maintain_verify_names_a_file_with_64_bytes_overwritten(damaged):
    # regression: 64 bytes overwritten inside a data file were read as prices, no error
    home, target, rel = damaged
    assert run(home, "maintain", "--verify").exit_code == 0
    data = bytearray(target.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(64)
    target.write_bytes(bytes(data))
    res = run(home, "maintain", "--verify")
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert "ohlcv" in line and rel in line and "row group 0" in line


def _flip_inside_a_page(path):
    """Invert 64 bytes a third of the way into the file (inside a column chunk's pages),
    keeping its size: only a page checksum can tell."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "args",
    [
        ("sync", "--timeframes", "1D", "--start", "2025-01-01", "--force"),
        ("compute",),
        ("export", "ohlcv", "--out", "{tmp}"),
        ("query", "SELECT * FROM ohlcv ORDER BY ts"),
    ],
)
def test_a_page_failing_its_checksum_is_one_line_naming_table_and_file(damaged, tmp_path, args):
    # regression: only `maintain --verify` checked page CRCs; reads returned wrong numbers
    home, target, rel = damaged
    _flip_inside_a_page(target)
    res = run(home, *[a.format(tmp=tmp_path / "out") for a in args])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    assert "ohlcv" in errors[0] and rel in errors[0] and "damaged" in errors[0], errors[0]

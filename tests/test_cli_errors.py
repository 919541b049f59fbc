"""Usage and configuration errors: one unwrapped line naming the flag or setting and where it
came from, exit 2, nothing written, no traceback unless ``--debug``."""

from __future__ import annotations

import polars as pl
import pytest
import typer
from test_cli import run

from marketlake import cli


def files(home):
    """Every file under ``home`` with its mtime (a writer lock taken and released may touch a
    directory; no file may appear, change or go)."""
    return {p: p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}


@pytest.fixture
def synced(home):
    assert run(home, "universe", "add", "AAA", "--provider", "synthetic").exit_code == 0
    r = run(home, "sync", "--timeframes", "1D", "--start", "2026-11-01")
    assert r.exit_code == 0, r.output
    return home


def assert_usage_error(r, *needles):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, never wrapped off a terminal
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], lines[0]


def write(tmp_path, text):
    path = tmp_path / "marketlake.toml"
    path.write_text(text)
    return path


CASES = {
    # regression: an unknown symbol was accepted or exit 1
    "unknown_symbol": (["sync", "--symbols", "NOPE"], {}, None, ["NOPE", "not in the universe"]),
    # regression: --start after --end planned nothing and exited 0
    "start_after_end": (
        ["sync", "--start", "2026-06-02", "--end", "2026-06-01"],
        {},
        None,
        ["--start", "--end"],
    ),
    "start_equals_end": (
        ["sync", "--start", "2026-06-01", "--end", "2026-06-01"],
        {},
        None,
        ["--start"],
    ),
    # regression: --limit -1 was a Python slice (every symbol but the last)
    "negative_limit": (["sync", "--limit", "-1"], {}, None, ["--limit must be >= 0"]),
    # regression: --concurrency 0 was a traceback
    "zero_concurrency": (["sync", "--concurrency", "0"], {}, None, ["--concurrency"]),
    # regression: maintain compacted, then crashed on --vacuum-hours -1
    "negative_vacuum_hours": (
        ["maintain", "--vacuum-hours", "-1"],
        {},
        None,
        ["--vacuum-hours must be >= 0"],
    ),
    # regression: a bad MARKETLAKE_NOW was a traceback
    "bad_now": (["status"], {"MARKETLAKE_NOW": "soon"}, None, ["MARKETLAKE_NOW"]),
    # regression: file:// base URLs were tracebacks
    "file_url": (
        ["status"],
        {"MARKETLAKE_YAHOO_BASE_URL": "file:///etc/passwd"},
        None,
        ["MARKETLAKE_YAHOO_BASE_URL", "http(s)"],
    ),
    # regression: concurrency = "many" was a traceback
    "concurrency_many": (["status"], {}, '[sync]\nconcurrency = "many"\n', ["sync.concurrency"]),
    # regression: a TOML syntax error was a traceback
    "toml_syntax": (["status"], {}, "[sync\n", ["not valid TOML", "marketlake.toml"]),
    # regression: unknown keys were ignored
    "unknown_key": (
        ["status"],
        {},
        "[sync]\nconcurrancy = 4\n",
        ["concurrancy", "[sync]", "marketlake.toml"],
    ),
    # regression: a segment with timeframe 7x silently planned nothing
    "segment_timeframe_7x": (
        ["sync", "--dry-run"],
        {},
        '[segments.eq]\nasset_types = ["equity"]\ntimeframes = ["7x"]\n',
        ["segments.eq.timeframes", "7x"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_usage_error_is_one_line_exit_2_nothing_written(synced, tmp_path, case):
    args, env, toml, needles = CASES[case]
    if toml is not None:
        args = [*args, "--config", str(write(tmp_path, toml))]
    before = files(synced)
    r = run(synced, *args, env=env)
    assert_usage_error(r, *needles)
    assert files(synced) == before


def test_missing_config_file_and_empty_home(home, tmp_path):
    # regression: a missing --config file was a traceback
    r = run(home, "status", "--config", str(tmp_path / "nope.toml"))
    assert_usage_error(r, "--config", "nope.toml")
    # regression: MARKETLAKE_HOME="" silently meant the platform default
    r = run(home, "status", env={"MARKETLAKE_HOME": ""})
    assert_usage_error(r, "MARKETLAKE_HOME")


def test_ftp_base_url_never_prints_its_secret(home):
    # regression: an ftp:// base URL was a traceback that could show the password
    r = run(home, "status", env={"MARKETLAKE_INDODAX_BASE_URL": "ftp://u:SECRET@host/"})
    assert_usage_error(r, "MARKETLAKE_INDODAX_BASE_URL")
    assert "SECRET" not in r.output


def test_universe_import_of_missing_or_symbolless_csv(home, tmp_path):
    # regression: a missing or symbol-less CSV exited 1
    r = run(home, "universe", "import", str(tmp_path / "none.csv"))
    assert_usage_error(r, "not found", "none.csv")
    csv = tmp_path / "names.csv"
    csv.write_text("name,sector\nAlpha,Tech\n")
    r = run(home, "universe", "import", str(csv))
    assert_usage_error(r, "no symbol column")


def test_debug_adds_the_traceback(home):
    r = run(home, "--debug", "sync", "--limit", "-1")
    assert r.exit_code == 2 and "Traceback" in r.stderr and "--limit" in r.stderr
    r = run(home, "sync", "--limit", "-1", env={"MARKETLAKE_DEBUG": "1"})
    assert r.exit_code == 2 and "Traceback" in r.stderr


def test_a_panic_becomes_one_line_exit_1(home, capsys, monkeypatch):
    # regression: polars' and delta-rs' panics (BaseException subclasses) escaped the guard
    panic = pl.exceptions.PanicException
    assert not issubclass(panic, Exception)
    monkeypatch.setenv("MARKETLAKE_HOME", str(home))
    monkeypatch.delenv("MARKETLAKE_DEBUG", raising=False)
    cli._state["debug"] = False
    with pytest.raises(typer.Exit) as info, cli._session(None, None, None):
        raise panic("index out of bounds\nthread panicked at ...")
    assert info.value.exit_code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: internal error: PanicException: index out of bounds"]

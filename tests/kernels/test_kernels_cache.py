"""The kernels' build-time numba cache: signatures it covers, freshness, and the parallel split."""

from __future__ import annotations

import shutil

import numba
import polars as pl
import pytest
from kernels_testdata import frame_of, random_walk
from tests_helpers import run_without_polars

from marketlake import kernels
from marketlake.kernels import _cache, aot, driver


def test_precompile_covers_every_signature_compute_uses(monkeypatch):
    """A cache filled at build time is only used if it holds the exact signatures (array
    layouts, read-only flags) that compute passes; anything else would compile on first use.
    Every call here goes to numba (none to the kernels compiled ahead of time)."""
    monkeypatch.setattr(aot, "SERIAL_ROWS", -1)
    walks = {f"S{i:02d}": random_walk(60 + i, seed=i) for i in range(3)}
    frame = frame_of(walks, step_s=3600)
    kernels.compute(frame)
    kernels.compute(frame.with_columns(pl.col("symbol").cast(pl.Categorical)))
    kernels.compute(
        frame.with_columns(("A_RATHER_LONG_SYMBOL_" + pl.col("symbol")).alias("symbol"))
    )
    kernels.compute(frame.reverse(), session_tz="America/New_York")
    kernels.compute(frame.sort("ts", "symbol"))  # runs of one row each: gathered by runs
    kernels.compute(frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC"))), ["obv"])
    built = {
        (d.py_func.__name__, tuple(numba.typeof(a) for a in args))
        for d, args in _cache.precompile_calls()
    }
    used = {
        (d.py_func.__name__, tuple(sig))
        for d in (
            driver.run_plan,
            driver.scan_runs,
            driver.scan_string_views,
            driver.run_gather_index,
        )
        for sig in d.signatures
    }
    assert {name for name, _ in used} == {
        "run_plan",
        "scan_runs",
        "scan_string_views",
        "run_gather_index",
    }
    assert used <= built, used - built


def test_fingerprint_ignores_mtimes_but_not_contents(tmp_path, monkeypatch):
    # regression: the fingerprint hashed file mtimes, so an installer copying the sources (new
    # mtimes) made the first run delete the cache compiled at build time and compile again
    for p in _cache._PKG.glob("*.py"):
        shutil.copy(p, tmp_path / p.name)
    monkeypatch.setattr(_cache, "_PKG", tmp_path)
    before = _cache.fingerprint()
    for p in tmp_path.glob("*.py"):
        p.touch()
    assert _cache.fingerprint() == before
    with (tmp_path / "adapter.py").open("a") as f:  # no compiled code in it
        f.write("\n# edited\n")
    assert _cache.fingerprint() == before
    with (tmp_path / "moving.py").open("a") as f:
        f.write("\n# edited\n")
    edited = _cache.fingerprint()
    assert edited != before
    with (tmp_path / "plan.py").open("a") as f:  # no compiled code, but its op codes are
        f.write("\n# edited\n")
    assert _cache.fingerprint() != edited


@pytest.mark.slow
def test_build_step_needs_no_polars():
    """setup.py precompiles with numba and numpy only (the build environment has nothing else):
    with polars and pyarrow unimportable the package still imports and builds its calls."""
    code = "import marketlake.kernels._cache as c\nprint(len(c.precompile_calls()))"
    assert run_without_polars(code) == str(len(_cache.precompile_calls()))


def test_many_groups_and_one_task_per_op_agree():
    """Enough symbols for one parallel task per group of four, and each symbol alone (one task
    per op): the same numbers either way."""
    walks = {f"S{i:02d}": random_walk(40 + 7 * i, seed=100 + i) for i in range(40)}
    frame = frame_of(walks, step_s=86_400)
    assert driver.split_ops(len(walks) // 4, 18, numba.get_num_threads()) == 1
    together = kernels.compute(frame)
    for sym in ("S00", "S17", "S39"):
        alone = kernels.compute(frame.filter(pl.col("symbol") == sym))
        assert together.filter(pl.col("symbol") == sym).equals(alone), sym

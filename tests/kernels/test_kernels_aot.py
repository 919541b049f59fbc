"""The kernels compiled ahead of time: present after an install, the same values as numba's
bit for bit, small calls run without loading numba, arguments checked, never a build of
other sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from kernels_testdata import frame_of, random_walk

from marketlake import kernels
from marketlake.kernels import adapter, aot, resume, seeds
from marketlake.kernels.registry import resolve
from marketlake.kernels.signatures import example_calls

ALL = [
    "sma(9)", "sma(200)", "ema(9)", "ema(1)", "rsi(14)", "macd(12,26,9)", "bbands(20,2)",
    "atr(14)", "adx(14)", "supertrend(10,3)", "obv", "vwap", "pivots", "fib(100)", "fib(5)",
]  # fmt: skip


def test_the_install_built_the_kernels_for_the_current_sources():
    """``pip install`` (setup.py) compiled the module of the current sources' key, and small
    calls run on it: a missing C compiler or a failed build shows here, not as a slower
    nightly."""
    name = aot.module_name()
    assert aot.built(), f"{name} was not built (see setup.py's output)"
    assert f"marketlake.kernels.{name}" in sys.modules
    assert not adapter.engine(aot.SERIAL_ROWS).parallel
    assert adapter.engine(aot.SERIAL_ROWS + 1).parallel


def test_each_level_this_cpu_runs_was_built_and_gives_the_same_values(monkeypatch):
    """The install built a module per CPU level (x86-64: v3 and generic), and every level this
    CPU runs gives every output bit for bit as the others do: the v3 build's wider vectors
    change no arithmetic (no fast-math, no fused or reordered operations)."""
    levels = aot.runnable()
    if {"avx2", "fma", "bmi2"} <= aot._cpu_flags():
        assert levels == ["x86-64-v3", ""]  # this machine runs both: both compared
    assert aot.module_name() == aot.module_name(levels[0])  # the best level is the one loaded
    frame = _frame()
    results = []
    for cpu in levels:
        found = aot._load(aot.module_name(cpu))
        assert found, f"the {cpu or 'generic'} level was not built (see setup.py's output)"
        monkeypatch.setattr(aot, "_FUNCTIONS", found)
        monkeypatch.setattr(aot, "_OR_NUMBA", {})
        results.append(kernels.compute(frame, ALL, session_tz="America/New_York"))
    for other in results[1:]:
        assert other.columns == results[0].columns
        for c in other.columns:
            a, b = results[0].get_column(c), other.get_column(c)
            if a.dtype == pl.Float64:
                assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True), c
            else:
                assert a.equals(b), c


def test_a_level_is_run_only_by_a_cpu_with_all_its_features():
    v3 = dict(aot.LEVELS)["x86-64-v3"]
    assert aot.runnable(frozenset()) == [""]
    assert aot.runnable(v3 | {"sse4_2"}) == ["x86-64-v3", ""]
    for flag in v3:  # any one missing: the generic build only
        assert aot.runnable(v3 - {flag}) == [""]


def test_a_level_that_fails_to_build_leaves_the_generic_one(monkeypatch, capsys):
    tried, kept = [], []

    def build(out_dir=None, cpu="", *, keep=frozenset()):
        tried.append(cpu)
        kept.append(keep)
        if cpu:
            raise RuntimeError("unknown processor")
        return Path("generic.so")

    monkeypatch.setattr(aot, "build", build)
    monkeypatch.setattr(aot.platform, "machine", lambda: "x86_64")
    assert aot.build_all() == [Path("generic.so")]
    assert tried == ["", "x86-64-v3"]  # the generic one first
    assert kept[0] == {aot.module_name(""), aot.module_name("x86-64-v3")}  # neither removed
    assert "kernels not built for x86-64-v3: unknown processor" in capsys.readouterr().err
    monkeypatch.setattr(aot.platform, "machine", lambda: "aarch64")
    tried.clear()
    assert aot.build_all() == [Path("generic.so")] and tried == [""]


def _frame() -> pl.DataFrame:
    walks = {f"S{i:02d}": random_walk(30 + 97 * i, seed=i) for i in range(9)}
    flat = random_walk(300, seed=99)
    for k in ("open", "high", "low", "close"):  # no range, no change: every 0 / 0 there is
        flat[k] = np.full(300, 50.0)
    walks["FLAT"] = flat
    gappy = random_walk(400, seed=7)
    gappy["close"][[0, 1, 50, 51, 52, 200]] = np.nan  # leading and inner NaNs
    walks["GAPS"] = gappy
    return frame_of(walks, step_s=3600)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Jakarta"])
def test_the_built_kernels_give_what_numbas_give(monkeypatch, zone):
    """Every output of every indicator (the default set and more, hourly bars over session
    changes, a flat series where every ratio divides zero by zero, NaN gaps) equal to the
    parallel jitted driver's, NaNs alike."""
    frame = _frame()
    assert frame.height <= aot.SERIAL_ROWS
    built = kernels.compute(frame, ALL, session_tz=zone)
    monkeypatch.setattr(aot, "SERIAL_ROWS", -1)  # every call to numba
    jitted = kernels.compute(frame, ALL, session_tz=zone)
    assert built.columns == jitted.columns
    for c in built.columns:
        a, b = built.get_column(c), jitted.get_column(c)
        if a.dtype == pl.Float64:
            assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True), c
        else:
            assert a.equals(b), c
    for c in ("vwap", "rsi_14", "fib_100_500"):  # computed, not all NaN
        assert built.get_column(c).is_nan().sum() < built.height, c


def test_unsorted_frames_are_ordered_by_the_built_scans_as_by_numbas(monkeypatch):
    frame = _frame()
    pieces = frame.sort("ts", "symbol")  # runs of one row each: gathered by runs
    for f in (pieces, frame.reverse(), frame.with_columns(pl.col("symbol").cast(pl.Categorical))):
        built = adapter.sort_frame(f)
        with monkeypatch.context() as m:
            m.setattr(aot, "SERIAL_ROWS", -1)
            jitted = adapter.sort_frame(f)
        assert built[0].equals(jitted[0]) and np.array_equal(built[1], jitted[1])


@pytest.mark.parametrize("name", ["ema(9)", "ema(1)", "atr(14)", "obv"])
def test_the_built_continuations_give_what_numbas_give(name):
    rng = np.random.default_rng(3)
    n = 500
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    bars = {
        "close": close,
        "high": close * 1.01,
        "low": close * 0.99,
        "volume": rng.random(n) * 1e6,
    }
    starts = np.array([5, 100, 300], np.int64)
    stops = np.array([50, 250, 500], np.int64)
    seed = rng.random(3) * 100
    spec = resolve([name])[0]
    built, jitted = np.full(n, np.nan), np.full(n, np.nan)
    resume.resume_into(spec, bars, starts, stops, seed, built)
    fn = getattr(seeds, f"{spec.name}_resume")
    if spec.name == "ema":
        fn(close, starts, stops, seed, int(spec.params[0]), jitted)
    elif spec.name == "atr":
        fn(bars["high"], bars["low"], close, starts, stops, seed, 14, jitted)
    else:
        fn(close, bars["volume"], starts, stops, seed, jitted)
    assert np.isfinite(built[starts[0] : stops[0]]).all()
    assert np.array_equal(built, jitted, equal_nan=True)


@pytest.mark.parametrize("monthly", [False, True])
def test_the_built_layout_gives_what_numbas_gives(monthly):
    """A full recompute's period order and gathers (values with their validity bits, int64
    and int32 columns: one entry point, two signatures) equal to numba's."""
    from marketlake.kernels import layout

    rng = np.random.default_rng(5)
    n = 5_000
    day = 86_400_000_000
    ts = np.sort(rng.integers(0, 3_000, n)) * day // (24 if monthly else 1)
    ts = adapter._readonly(ts.astype(np.int64))
    built_fn, numba_fn = aot.function("period_order"), layout.period_order
    got, want = built_fn(ts, day, monthly), numba_fn(ts, day, monthly)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
    order = adapter._readonly(got[0])
    block = rng.standard_normal((3, n))
    block[rng.random((3, n)) < 0.2] = np.nan
    block = adapter._readonly(block)
    outs = [(np.empty((3, n)), np.empty((3, (n + 7) // 8), np.uint8)) for _ in range(2)]
    aot.function("take_valid")(block, order, *outs[0])
    layout.take_valid(block, order, *outs[1])
    assert np.array_equal(outs[0][0], outs[1][0], equal_nan=True)
    assert np.array_equal(outs[0][1], outs[1][1])
    for dtype in (np.int64, np.int32):
        src = adapter._readonly(rng.integers(0, 1_000, n).astype(dtype))
        a, b = np.empty(n, dtype), np.empty(n, dtype)
        aot.function("take")(src, order, a)
        layout.take(src, order, b)
        assert np.array_equal(a, b) and np.array_equal(a, src[order])
    with pytest.raises(aot.ArgumentTypes, match="take: argument 0 is a 1-d float32 array"):
        aot.function("take")(src.astype(np.float32), order, np.empty(n, np.float32))


def test_a_call_with_other_types_is_refused_not_misread():
    """pycc's wrappers read any array as the declared type: the check refuses another dtype,
    dimensions, a non-contiguous view, a read-only output and a wrong count, naming the
    entry point and the argument."""
    scan = aot.function("scan_runs")
    ts = np.arange(10, dtype=np.int64)
    ids = np.zeros(10, np.uint32)
    offsets, ascending = scan(ids, ts)
    assert list(offsets) == [0, 10] and ascending
    with pytest.raises(aot.ArgumentTypes, match=r"scan_runs: argument 0 is a 1-d int64 array"):
        scan(ids.astype(np.int64), ts)
    with pytest.raises(
        aot.ArgumentTypes, match="argument 1 is a 1-d int64 array \\(non-contiguous"
    ):
        scan(ids, np.arange(20, dtype=np.int64)[::2])
    with pytest.raises(aot.ArgumentTypes, match="argument 1 is a 2-d"):
        scan(ids, ts.reshape(2, 5))
    with pytest.raises(aot.ArgumentTypes, match="takes 2 arguments, got 1"):
        scan(ids)
    ema = aot.function("ema_resume")
    out = np.zeros(10)
    out.flags.writeable = False
    one = np.array([1], np.int64)
    with pytest.raises(
        aot.ArgumentTypes, match="argument 5 is a 1-d float64 array \\(C, read-only\\)"
    ):
        ema(np.ones(10), one, one + 3, np.ones(1), 3, out)


_OTHER_TYPES = """
import numpy as np
from marketlake.kernels import adapter, aot
ema = aot.entry("ema_resume", 0)
x = np.linspace(1.0, 2.0, 10)
seeds = np.ones(1)
seeds.flags.writeable = False  # the build's example passes a writable one
one = np.array([1], np.int64)
got, want = np.full(10, np.nan), np.full(10, np.nan)
ema(x, one, one + 5, seeds, 3, got)
aot.function("ema_resume")(x, one, one + 5, seeds.copy(), 3, want)
assert np.array_equal(got, want, equal_nan=True) and np.isfinite(got[1:6]).all()
src = np.arange(6, dtype=np.float32)
out = np.empty(6, np.float32)
aot.entry("take", 6)(src, adapter._readonly(np.arange(6)[::-1].copy()), out)
print(out.tolist())
"""


def test_a_small_call_of_other_types_goes_to_numba():
    """``entry`` hands a call whose types the module was not built for to numba (which
    compiles them) instead of failing: a read-only seed array, a float32 column. In a
    process of its own: the signatures numba compiles here are no build's."""
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_TYPES], capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[0] == "[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]", out.stderr


def test_every_export_has_an_example_call():
    names = {name for name, _ in example_calls()}
    assert set(aot.EXPORTS) <= names
    assert all(aot.function(n) is not None for n in aot.EXPORTS)


def test_small_calls_and_resumes_load_no_numba():
    """A pipeline process (the kernels' preload off) computing small frames, continuing a
    seeded indicator and keeping and continuing states never imports numba: its 0.4 s of CPU is what the module saves."""
    code = """
import sys
import marketlake.pipeline
from marketlake import kernels
from marketlake.kernels import resume
from marketlake.kernels.registry import resolve
import numpy as np, polars as pl
from datetime import datetime, timedelta, UTC
n = 300
ts = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(n)]
close = np.linspace(1.0, 2.0, n)
frame = pl.DataFrame({"symbol": ["A"] * n, "ts": ts, "open": close, "high": close + 1,
                      "low": close - 1, "close": close, "volume": close})
kernels.compute(frame, session_tz="America/New_York")
kernels.compute(frame.reverse())
x = np.linspace(1.0, 2.0, n)
one = np.array([1], np.int64)
resume.resume_into(resolve(["ema(9)"])[0], {"close": x}, one, one + 5, np.ones(1), x.copy())
bars = {"high": x + 1, "low": x - 1, "close": x.copy()}
for spec in resume.stateful(None):
    w = resume.width(spec)
    after = np.zeros((3, w))
    span = (np.zeros(1, np.int64), np.full(1, n, np.int64), np.full(1, n - 3, np.int64))
    resume.states_into(spec, bars, *span, np.zeros(1, np.int64), after)
    out = {c: np.full(n, np.nan) for c in spec.columns}
    seeds = np.ascontiguousarray(after[-2:-1])
    resume.continue_into(spec, bars, one * (n - 1), one * n, seeds, out, np.zeros((n, w)))
print("numba" in sys.modules, "llvmlite" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_the_built_kernels_let_go_of_pythons_lock():
    """The module's wrappers let go of Python's lock around each call (as the jitted kernels'
    ``nogil=True`` does): they call ``PyEval_SaveThread``, which pycc's default never does."""
    (path,) = Path(aot.__file__).parent.glob(aot.module_name() + ".*")
    code = path.read_bytes()
    assert b"PyEval_SaveThread" in code and b"PyEval_RestoreThread" in code


def test_an_edited_source_never_loads_an_older_build(tmp_path, monkeypatch):
    """The key covers the compiled modules, the op codes and the argument types, not the
    numba-free Python around them; a key without a module gives numba's kernels."""
    import shutil

    from marketlake.kernels import _cache

    for p in Path(aot.__file__).parent.glob("*.py"):
        shutil.copy(p, tmp_path / p.name)
    monkeypatch.setattr(_cache, "_PKG", tmp_path)
    monkeypatch.setattr(aot, "_PKG", tmp_path)
    before = aot.key()
    assert before == aot.key() and before != ""
    seen = {before}
    for name in ("adapter.py", "registry.py"):
        with (tmp_path / name).open("a") as f:
            f.write("\n# edited\n")
        assert aot.key() == before
    for name in ("moving.py", "plan.py", "signatures.py", "driver.py"):
        with (tmp_path / name).open("a") as f:
            f.write("\n# edited\n")
        assert aot.key() not in seen
        seen.add(aot.key())
    assert aot._load("_kernels_0000000000000000") == {}

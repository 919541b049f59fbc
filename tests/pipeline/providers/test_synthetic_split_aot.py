"""The synthetic market's split built ahead of time: present after an install, the same
series as numba's split bit for bit, loaded without numba, never a build of another source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests_helpers import run_without_polars, split_case

from marketlake.pipeline.providers import synthetic, synthetic_split, synthetic_split_aot


def test_the_install_built_the_split_for_the_current_source():
    """``pip install`` (setup.py) compiled the module of the current source's key, and the
    market calls it: a missing C compiler or a failed build shows here, not as a slower sync."""
    name = synthetic_split_aot.module_name()
    assert synthetic_split_aot.built(), f"{name} was not built (see setup.py's output)"
    module = sys.modules[f"marketlake.pipeline.providers.{name}"]
    assert synthetic_split_aot.kernel() is module.split_into


def _case(minutes: int, level: int, longest: int, sessions: int = 200):
    parent, lay, draws = split_case(minutes, level, longest, sessions=sessions)
    parents, r = lay["sqrt_frac"].shape
    names = ("sqrt_frac", "cumfrac", "tail", "invalid", "weight")
    inputs = [*parent, *(np.reshape(lay[k], (parents, r)) for k in names), draws]
    return [synthetic._read_only(a) for a in inputs], (5, sessions, parents * r)


@pytest.mark.parametrize(
    ("minutes", "level", "longest"),
    [(390, 0, 390), (1440, 0, 1440), (390, 1, 390), (210, 1, 390), (390, 2, 390), (390, 4, 390)],
)
def test_the_built_split_gives_what_numbas_gives(minutes, level, longest):
    """Every slot, padding included, equal to the jitted split's on the same inputs."""
    inputs, shape = _case(minutes, level, longest)
    built, jitted = np.full(shape, np.nan), np.full(shape, np.nan)
    synthetic_split_aot.kernel()(*inputs, built)
    synthetic_split.split_into(*inputs, jitted)
    assert not np.isnan(built).any()
    assert np.array_equal(built, jitted)


def test_the_built_split_lets_go_of_pythons_lock():
    """The module's wrapper lets go of Python's lock around the split (as the jitted split's
    ``nogil=True`` does), so a sync's other fetch thread and its writers' Python run beside
    it: it calls ``PyEval_SaveThread``, which ``pycc``'s default wrapper never does."""
    name = synthetic_split_aot.module_name()
    assert synthetic_split_aot.built(), f"{name} was not built (see setup.py's output)"
    (path,) = Path(synthetic_split_aot.__file__).parent.glob(name + ".*")
    code = path.read_bytes()
    assert b"PyEval_SaveThread" in code and b"PyEval_RestoreThread" in code


PREPARED = """
import json, sys
from datetime import UTC, datetime, timedelta
from marketlake.pipeline.config import ProviderSettings
from marketlake.pipeline.providers.base import FetchRequest
from marketlake.pipeline.providers.synthetic import SyntheticProvider
from marketlake.pipeline.providers import synthetic_split_aot

now = datetime(2026, 1, 5, 22, tzinfo=UTC)
p = SyntheticProvider(ProviderSettings("synthetic", options={"seed": 3}), clock=lambda: now)
p.prepare(sys.argv[1:])
loaded = [synthetic_split_aot._KERNEL is not None]
for tf in sys.argv[1:]:
    p.fetch(FetchRequest.bars("AAA", tf, now - timedelta(days=30), now))
name = "marketlake.pipeline.providers." + synthetic_split_aot.module_name()
print(json.dumps(loaded + [name in sys.modules, "numba" in sys.modules,
                           "marketlake.kernels" in sys.modules]))
"""


@pytest.mark.parametrize(
    ("timeframes", "want"),
    [(["1D"], [False, False, False, False]), (["1D", "1h"], [True, True, False, False])],
)
def test_a_sync_asking_for_intraday_bars_loads_the_built_split_and_no_numba(timeframes, want):
    """``prepare`` (a sync's hook, run on a thread while it plans) loads the split only when
    intraday bars were asked for; the built module needs no numba (its import and the
    cached code's load held Python's lock for about 0.3 s), nor the indicator kernels."""
    out = subprocess.run(
        [sys.executable, "-c", PREPARED, *timeframes], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == want


def test_an_edited_source_never_meets_an_older_build():
    """The module's name carries a hash of the split's source: an edit names another module,
    and where none of that name was built, numba's split (of the edited source) runs."""
    source = synthetic_split_aot._SOURCE.read_bytes()
    assert synthetic_split_aot.module_name(source) == synthetic_split_aot.module_name()
    edited = source.replace(b"wick_scale = span * 0.3", b"wick_scale = span * 0.4")
    assert edited != source
    assert synthetic_split_aot.module_name(edited) != synthetic_split_aot.module_name()
    fallback = synthetic_split_aot.resolve(synthetic_split_aot.module_name(edited))
    assert fallback is synthetic_split.split_into


def test_the_build_step_builds_the_module_without_polars(tmp_path):
    """setup.py's build environment has numba and numpy only: the module builds there, and
    replaces the build of an earlier source beside it."""
    older = tmp_path / "_split_0000000000000000.cpython-311-x86_64-linux-gnu.so"
    older.write_bytes(b"an earlier build")
    code = (
        "from pathlib import Path\n"
        "from marketlake.pipeline.providers import synthetic_split_aot as aot\n"
        f"print(aot.build(Path({str(tmp_path)!r})).name)"
    )
    name = run_without_polars(code)
    assert name.startswith(synthetic_split_aot.module_name() + ".")
    assert [p.name for p in tmp_path.iterdir()] == [name]

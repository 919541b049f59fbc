"""Runs of equal codes: counts, starts and distinct values equal numpy's row-by-row ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tests_helpers import sorted_pieces

from marketlake.lake.runs import code_counts, code_runs, sorted_distinct


@pytest.mark.parametrize("kind", ["pieces", "shuffled", "one", "empty"])
def test_code_counts_equal_a_bincount(kind) -> None:
    rng = np.random.default_rng(8)
    codes = {
        "pieces": sorted_pieces(rng, 300, 7)[0].astype(np.uint32),  # a lake read: runs per file
        "shuffled": rng.integers(0, 300, 5000).astype(np.uint32),  # few rows per run
        "one": np.full(10, 4, np.uint16),
        "empty": np.zeros(0, np.uint32),
    }[kind]
    for minlength in (0, 400):
        got = code_counts(codes, minlength)
        assert got.dtype == np.int64
        assert np.array_equal(got, np.bincount(codes, minlength=minlength))
    starts, lengths = code_runs(codes)
    assert lengths.sum() == codes.shape[0]
    assert np.array_equal(np.repeat(codes[starts], lengths), codes)
    assert (codes[starts][1:] != codes[starts][:-1]).all()


def test_sorted_distinct_equals_numpys_unique_without_importing_numpy_ma() -> None:
    rng = np.random.default_rng(10)
    for values in (rng.integers(0, 50, 1000).astype(np.uint32), np.zeros(0, np.int64), [7]):
        values = np.asarray(values)
        got = sorted_distinct(values)
        assert got.dtype == values.dtype and np.array_equal(got, np.unique(values))
    code = (
        "import sys, numpy as np\n"
        "from marketlake.lake.runs import sorted_distinct\n"
        "sorted_distinct(np.array([3, 1, 3]))\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The OpenMP runtime's spin before idle threads sleep: limited unless the process chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from marketlake.kernels import _openmp


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, str(_openmp.SPIN_COUNT)),
        ({"GOMP_SPINCOUNT": "5"}, "5"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, None),
    ],
)
def test_spin_limited_unless_the_process_set_a_wait_policy(monkeypatch, given, expected):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    for k, v in given.items():
        monkeypatch.setenv(k, v)
    _openmp.limit_spin()
    assert os.environ.get("GOMP_SPINCOUNT") == expected


def test_importing_the_kernels_limits_the_spin():
    """libgomp reads GOMP_SPINCOUNT once, when loaded (by the first parallel code numba
    loads, at the earliest in the background preload that importing the kernels starts):
    the import itself must set it."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os\nfrom marketlake import kernels\nprint(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(_openmp.SPIN_COUNT)]

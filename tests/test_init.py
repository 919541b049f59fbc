"""Importing marketlake before polars keeps polars' freed pages lazily freeable, before pyarrow
keeps arrow's allocator off transparent huge pages, and before numpy lets OpenBLAS's idle
worker sleep at once instead of spinning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import marketlake, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _printed(script: str, env: dict[str, str]) -> list[str]:
    """What ``script`` prints in a fresh process with ``env``, split on whitespace."""
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


def _conf(env: dict[str, str]) -> str:
    return _printed(PROBE, env)[0]


def test_polars_allocator_keeps_freed_pages_lazily_freeable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    # polars prepends its own defaults; the last value of an option is the one jemalloc uses
    assert _conf(env).split(",")[-1] == "muzzy_decay_ms:-1"


def test_an_allocator_setting_of_the_environment_is_kept() -> None:
    env = {**os.environ, "_RJEM_MALLOC_CONF": "muzzy_decay_ms:250"}
    assert _conf(env).split(",")[-1] == "muzzy_decay_ms:250"


OPENBLAS = """
import marketlake, os, time
import numpy
time.sleep(0.3)  # the worker's spin, if any, runs meanwhile
workers = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
cpu = sum(
    sum(int(x) for x in open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()[11:13])
    for t in workers
) / os.sysconf("SC_CLK_TCK")
print(os.environ["OPENBLAS_THREAD_TIMEOUT"], cpu)
"""


def _openblas(env: dict[str, str]) -> tuple[str, float]:
    timeout, cpu = _printed(OPENBLAS, env)
    return timeout, float(cpu)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads' CPU from /proc")
def test_openblas_idle_worker_does_not_spin() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    timeout, cpu = _openblas(env)
    # the default timeout spins about 0.1 s; a tick or two is the worker's start
    assert (timeout, cpu <= 0.03) == ("4", True)


def test_an_openblas_setting_of_the_environment_is_kept() -> None:
    env = {**os.environ, "OPENBLAS_THREAD_TIMEOUT": "20"}
    assert _openblas(env)[0] == "20"


ARROW_PAGES = """
import marketlake, os
import pyarrow as pa

buf = pa.allocate_buffer(64 << 20)  # from arrow's default pool (mimalloc): in its arena
huge, size = 0, 0
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if "-" in head and not head.endswith(":"):  # a mapping's first line: its range
        lo, hi = (int(x, 16) for x in head.split("-"))
        size = hi - lo
    elif head == "VmFlags:" and "hg" in line.split()[1:]:  # madvise(MADV_HUGEPAGE)
        huge += size
print(os.environ["MIMALLOC_ALLOW_THP"], huge >> 20)
"""


def _arrow_huge_mb(env: dict[str, str]) -> tuple[str, int]:
    setting, huge = _printed(ARROW_PAGES, env)
    return setting, int(huge)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mappings from /proc")
def test_arrow_allocator_asks_no_huge_pages() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_ALLOW_THP"}
    assert _arrow_huge_mb(env) == ("0", 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mappings from /proc")
def test_an_arrow_allocator_setting_of_the_environment_is_kept() -> None:
    setting, huge = _arrow_huge_mb({**os.environ, "MIMALLOC_ALLOW_THP": "1"})
    assert setting == "1" and huge >= 64  # mimalloc's own default: its arena as huge pages

"""Importing marketlake before polars keeps polars' freed pages lazily freeable, and before
numpy lets OpenBLAS's idle worker sleep at once instead of spinning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import marketlake, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _conf(env: dict[str, str]) -> str:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return run.stdout.strip()


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
    run = subprocess.run(
        [sys.executable, "-c", OPENBLAS], env=env, capture_output=True, text=True, check=True
    )
    timeout, cpu = run.stdout.split()
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

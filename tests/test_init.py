"""Importing marketlake before polars keeps polars' freed pages lazily freeable."""

from __future__ import annotations

import os
import subprocess
import sys

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

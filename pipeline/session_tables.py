"""Exchange calendars' sessions as numpy arrays, built once per machine and kept on disk.

Building an ``exchange-calendars`` calendar imports pandas and the library (about a second)
and evaluates every holiday rule (0.1-0.7 s); a run needs only the sessions. So a table of
sessions is built once per library version and stored as an ``.npz`` file in the user's
cache directory (written to a temporary file, then renamed: a reader never sees half a
file); loading it takes milliseconds and imports neither. A damaged or unreadable file is
built again; a read-only cache directory means building each time.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import platformdirs


def cached(name: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``build()`` returns, from the cache file ``name`` when there is one."""
    path = _root() / f"{name.replace('/', '_')}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # not cached yet, unreadable or damaged: build it
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass
    return arrays


def _root() -> Path:
    """The cache directory, keyed by the library version (its holiday rules)."""
    return Path(platformdirs.user_cache_dir("marketlake")) / "sessions" / f"xc{_version()}"


@cache
def _version() -> str:
    from importlib.metadata import version

    return version("exchange-calendars")

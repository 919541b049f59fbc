"""Numba's on-disk cache of the kernels: kept consistent with the sources, and filled at build time.

Consistency. Numba stamps a cached function with the content hash of *its own* source file
only. The driver inlines kernels from other modules (``kernels.moving``, ``kernels._common``
...), so an edit there would leave stale machine code in use. Before the first compute of a
process (never at import) :func:`ensure_fresh_cache` compares a content hash of the
``kernels/*.py`` that hold compiled code (plus the numba version) with the one stored next to
the cache and, when they differ, deletes the package's cache files
(``kernels/__pycache__/*.nbi|*.nbc``) so numba recompiles. Content, not mtimes: an installer
copying the files keeps the cache valid.

Build-time artefact (the first run). Compiling the kernels costs 25-50 s on 2 cores (more when
the machine is shared), nearly all of it in the parallel driver and the lane kernels linked into
it. Measured ways in:

* compiling only the signatures a run needs: every run needs the same three entry points with
  one signature each (the driver's plan is data, not types), so there is nothing to skip;
* compiling in parallel: numba compiles under the GIL, and the driver is one function; at best
  two processes on two cores halve the part outside the driver;
* a cached artefact: numba's own cache files, written by :func:`precompile` when the package is
  built (``setup.py`` runs it for ``pip install .`` and ``pip install -e .``) on the machine that
  installs it. Numba keys every entry by its version, the CPU name and features and the Python
  version, and stamps it with source content hashes, so the files stay valid when pip copies
  them into site-packages, and a mismatch (another numba, another CPU, an edited kernel) is just
  a cache miss that compiles as before. Loading them takes well under a second.

The artefact is what we ship: it is the only one that moves the whole cost out of the first run.
Numba writes new entries on a miss, into the package's ``__pycache__`` or, if that is
read-only, its user cache directory (``NUMBA_CACHE_DIR``); importing writes nothing of ours.

Preloading. Even from the cache, a process's first kernel call pays numba's own start-up (its
target context, reading and linking the cached machine code): about as long as TA-Lib takes for
2,000 symbols. When the cache was built for these sources, importing ``marketlake.kernels``
starts :func:`preload` in a daemon thread, which loads the entry points while the caller is
still reading its data; a call that comes first simply waits for it (numba's compiler lock).
It only loads code (``Dispatcher.compile`` of the cached signatures, then the polars adapter's
imports), never runs a parallel region, so it cannot collide with the caller's threads.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import numba

_PKG = Path(__file__).resolve().parent
_STAMP = "kernels-sources.fingerprint"


# a module holds compiled code when a line starts with one of numba's decorators
_COMPILED = re.compile(rb"^@(?:njit|intrinsic)\b", re.MULTILINE)


def fingerprint() -> str:
    """Content hash of the kernel modules that hold compiled code, and the numba version.

    Pure-Python modules (the adapter, the registry, this one) do not change machine code, so
    editing them keeps the cache."""
    h = hashlib.sha256(f"numba {numba.__version__}\n".encode())
    for p in sorted(_PKG.glob("*.py")):
        src = p.read_bytes()
        if _COMPILED.search(src):
            h.update(f"{p.name}\n".encode())
            h.update(src)
    return h.hexdigest()


_checked = False


def ensure_fresh_cache() -> None:
    """Run :func:`invalidate_stale_cache` once per process, before the first kernel call."""
    global _checked
    if not _checked:
        _checked = True
        invalidate_stale_cache()


def invalidate_stale_cache() -> bool:
    """Delete numba cache files of this package if any kernel source changed; True if so."""
    cache = _PKG / "__pycache__"
    try:
        fp = fingerprint()
        stamp = cache / _STAMP
        if stamp.is_file() and stamp.read_text() == fp:
            return False
        if cache.is_dir():
            for f in cache.iterdir():
                if f.suffix in (".nbi", ".nbc"):
                    f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(fp)
        return True
    except OSError:  # read-only install: numba then caches elsewhere or not at all
        return False


def precompile_calls() -> list[tuple[object, tuple]]:
    """``(dispatcher, args)`` pairs covering every signature ``kernels.compute``, the
    incremental compute's resumed indicators (``kernels.resume``) and a full recompute's
    output layout (``kernels.layout``) use.

    The argument types mirror the adapter's exactly (read-only inputs, writable outputs,
    C-contiguous): a different layout or writability would be a different signature, compiled
    again on first use. ``tests/kernels`` checks the two stay in step.
    """
    import numpy as np

    from marketlake.kernels import layout, resume
    from marketlake.kernels.driver import SMA, run_plan, scan_runs, scan_string_views

    def ro(a):
        a = np.ascontiguousarray(a)
        a.flags.writeable = False
        return a

    n = 4
    ts = ro(np.arange(n, dtype=np.int64))
    price = ro(np.linspace(1.0, 2.0, n))
    views = np.zeros(n * 16, np.uint8)
    views[0::16] = 1  # every string one byte long, all equal: one run
    buf = ro(views).data
    ops = np.array([[SMA, 0, 2, 0, 0]], np.int64)
    one = np.zeros(1, np.int64)
    # the incremental compute's resumed indicators: writable copies, as it passes them
    x = np.linspace(1.0, 2.0, n)
    rows = (np.array([1], np.int64), np.array([n], np.int64), np.ones(1, np.float64))
    resumed = [
        (resume.ema_resume, (x, *rows, 2, x.copy())),
        (resume.atr_resume, (x, x, x, *rows, 2, x.copy())),
        (resume.obv_resume, (x, x, *rows, x.copy())),
    ]
    # a full recompute's layout of the output block (read-only inputs, writable outputs)
    order = ro(np.arange(n, dtype=np.int64))
    laid = [
        (layout.period_order, (ts, 86_400_000_000, False)),
        (
            layout.take_valid,
            (ro(np.zeros((2, n))), order, np.empty((2, n)), np.empty((2, 1), np.uint8)),
        ),
        (layout.take, (ts, order, np.empty(n, np.int64))),
        (layout.take, (ro(np.zeros(n, np.int32)), order, np.empty(n, np.int32))),
    ]
    return (
        resumed
        + laid
        + [
            (
                scan_string_views,
                (
                    np.frombuffer(buf, np.int64).reshape(-1, 2),
                    np.frombuffer(buf, np.int32).reshape(-1, 4),
                    np.frombuffer(buf, np.uint8).reshape(-1, 16),
                    ts,
                ),
            ),
            (scan_runs, (ro(np.zeros(n, np.uint32)), ts)),
            (
                run_plan,
                (
                    np.array([0, n], np.int64),
                    np.array([[0, -1, -1, -1]], np.int64),
                    price,
                    price,
                    price,
                    price,
                    ts,
                    one.copy(),
                    np.array([0, 1], np.int64),
                    np.array([np.iinfo(np.int64).min], np.int64),
                    one.copy(),
                    86_400_000_000,
                    ops,
                    np.zeros(1, np.float64),
                    np.empty((1, n), np.float64),
                    1,
                ),
            ),
        ]
    )


def preload() -> threading.Thread | None:
    """Load the kernels from a cache built for these sources, in a daemon thread (see above).

    Returns the thread, or None when there is no such cache (the first call compiles then)."""
    try:
        stamp = _PKG / "__pycache__" / _STAMP
        if not stamp.is_file() or stamp.read_text() != fingerprint():
            return None
    except OSError:
        return None

    def load() -> None:
        try:
            for dispatcher, args in precompile_calls():
                dispatcher.compile(tuple(numba.typeof(a) for a in args))
            import marketlake.kernels.adapter  # noqa: F401 -- polars, pyarrow: imported lazily
        except Exception:  # noqa: BLE001 -- an optimisation only: the first call loads instead
            return

    thread = threading.Thread(target=load, name="marketlake-kernels-preload", daemon=True)
    thread.start()
    return thread


def precompile() -> None:
    """Compile (or load) every kernel entry point into numba's cache; used at build time."""
    ensure_fresh_cache()
    for dispatcher, args in precompile_calls():
        dispatcher(*args)


if __name__ == "__main__":
    precompile()

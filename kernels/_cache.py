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

_PKG = Path(__file__).resolve().parent
_STAMP = "kernels-sources.fingerprint"


# a module holds compiled code when a line starts with one of numba's decorators
_COMPILED = re.compile(rb"^@(?:njit|intrinsic)\b", re.MULTILINE)
# numba-free modules whose constants the compiled code reads (frozen into it when compiled)
_FEEDING = ("plan.py",)


def compiled_sources() -> list[tuple[str, bytes]]:
    """``(file name, content)`` of the kernel modules whose edits change machine code: those
    holding compiled code and those whose constants it reads (``plan``: the op codes)."""
    out = []
    for p in sorted(_PKG.glob("*.py")):
        src = p.read_bytes()
        if p.name in _FEEDING or _COMPILED.search(src):
            out.append((p.name, src))
    return out


def fingerprint() -> str:
    """Content hash of :func:`compiled_sources` and the numba version.

    Pure-Python modules (the adapter, the registry, this one) do not change machine code, so
    editing them keeps the cache."""
    import numba

    h = hashlib.sha256(f"numba {numba.__version__}\n".encode())
    for name, src in compiled_sources():
        h.update(f"{name}\n".encode())
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
    """``(dispatcher, args)`` pairs covering every signature the callers use
    (:func:`.signatures.example_calls`)."""
    import importlib

    from marketlake.kernels import signatures

    return [
        (
            getattr(
                importlib.import_module(f"marketlake.kernels.{signatures.MODULES[name]}"), name
            ),
            args,
        )
        for name, args in signatures.example_calls()
    ]


_PRELOAD: threading.Thread | None = None
_PRELOAD_LOCK = threading.Lock()


def preload() -> threading.Thread:
    """Import numba and load the kernels from a cache built for these sources, in a daemon
    thread (see above), once per process; returns that thread. Without such a cache it loads
    nothing (the first call compiles then)."""
    global _PRELOAD
    with _PRELOAD_LOCK:
        if _PRELOAD is None:
            _PRELOAD = threading.Thread(
                target=_load, name="marketlake-kernels-preload", daemon=True
            )
            _PRELOAD.start()
        return _PRELOAD


def _load() -> None:
    try:
        stamp = _PKG / "__pycache__" / _STAMP
        if not stamp.is_file() or stamp.read_text() != fingerprint():
            return
        import numba

        for dispatcher, args in precompile_calls():
            dispatcher.compile(tuple(numba.typeof(a) for a in args))
        import marketlake.kernels.adapter  # noqa: F401 -- polars, pyarrow: imported lazily
    except Exception:  # noqa: BLE001 -- an optimisation only: the first call loads instead
        return


def precompile() -> None:
    """Compile (or load) every kernel entry point into numba's cache; used at build time."""
    ensure_fresh_cache()
    for dispatcher, args in precompile_calls():
        dispatcher(*args)


if __name__ == "__main__":
    precompile()

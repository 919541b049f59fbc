"""Keep numba's on-disk cache of the kernels consistent with their sources.

Numba invalidates a cached function only when *its own* source file changes. The driver and
the lane kernels inline helpers from other modules (``kernels._common`` ...), so an edit there
would leave stale machine code in use. Before the first compute of a process (never at import)
we fingerprint every ``kernels/*.py`` (name, size, mtime) and, when the fingerprint differs from
the one stored next to the cache, delete the package's cache files
(``kernels/__pycache__/*.nbi|*.nbc``) so numba recompiles.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_PKG = Path(__file__).resolve().parent
_STAMP = "kernels-sources.fingerprint"


def fingerprint() -> str:
    h = hashlib.sha256()
    for p in sorted(_PKG.glob("*.py")):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
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

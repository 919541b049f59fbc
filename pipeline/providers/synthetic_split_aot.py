"""The synthetic market's split compiled ahead of time: an extension module without numba.

A sync that asks for intraday bars paid for numba itself in every fresh process: importing it
and loading the cached split cost about 0.3 s of CPU, all of it holding Python's lock while
the daily bars were generated. The build step (``setup.py``) compiles
:func:`.synthetic_split.split_into` with numba's ahead-of-time compiler (``numba.pycc``) into
an extension module, ``_split_<key>`` beside this file, which :func:`kernel` imports in a few
milliseconds; numba is not loaded at all. The ten-year hourly bulk load of the benchmark took
about a tenth less wall and CPU time with it.

``<key>`` is a hash of ``synthetic_split.py``'s source: an edited source never meets an older
build. Without a module of its key (no C compiler at build time, a numba without ``pycc``,
an edited checkout not rebuilt), :func:`kernel` gives numba's jitted split, as before. Both
are numba's compilation of the same source for the same types, without fast-math (no fused
or reordered arithmetic), so the series are the same bit for bit
(``tests/pipeline/providers/test_synthetic_split_aot.py``). Like the jitted split
(``nogil=True``), the module lets go of Python's lock while it splits, so the other fetch
thread and the writers' Python run beside it (``pycc`` holds the lock unless its compile
flags say otherwise: :func:`build` sets them). Its only caller is ``synthetic._split``, which
passes exactly the types of :func:`.synthetic_split.example_args` (the module does not check
them).
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Callable
from pathlib import Path

_SOURCE = Path(__file__).with_name("synthetic_split.py")
_PACKAGE = __name__.rpartition(".")[0]
_LOCK = threading.Lock()
_KERNEL: Callable[..., None] | None = None
# How :func:`build` compiles; part of the key, so a module built another way is never loaded.
_RECIPE = b"numba.pycc, release_gil"


def key(source: bytes | None = None) -> str:
    """The build key of ``source`` (default: ``synthetic_split.py`` as it is now)."""
    data = _SOURCE.read_bytes() if source is None else source
    return hashlib.blake2b(data + b"\0" + _RECIPE, digest_size=8).hexdigest()


def module_name(source: bytes | None = None) -> str:
    """The name of the extension module built from ``source`` (default: the current one)."""
    return f"_split_{key(source)}"


def kernel() -> Callable[..., None]:
    """The split :func:`.synthetic_split.split_into`: the module built ahead of time for the
    current source, else numba's (loaded on first use, once per process)."""
    global _KERNEL
    if _KERNEL is None:
        with _LOCK:
            if _KERNEL is None:
                _KERNEL = resolve(module_name())
    return _KERNEL


def resolve(name: str) -> Callable[..., None]:
    """``split_into`` of the extension module ``name`` of this package, else numba's."""
    try:
        return importlib.import_module(f"{_PACKAGE}.{name}").split_into
    except ImportError:
        from marketlake.pipeline.providers import synthetic_split

        synthetic_split.load()
        return synthetic_split.split_into


def built() -> bool:
    """Whether the split :func:`kernel` gives is the module built ahead of time."""
    return not hasattr(kernel(), "py_func")  # numba's dispatchers keep the Python function


def build(out_dir: Path | None = None) -> Path:
    """Compile the split into ``module_name()`` in ``out_dir`` (default: this package's
    folder) with ``numba.pycc``, for exactly the types the market passes; the module's path.
    Needs numba, numpy, a C compiler and Python's headers; run by ``setup.py``."""
    import warnings

    import numba
    from numba.core import types

    with warnings.catch_warnings():  # pycc is "pending deprecation" with no replacement yet
        warnings.simplefilter("ignore")
        from numba.pycc import CC

    from marketlake.pipeline.providers import synthetic_split

    out = Path(out_dir or Path(__file__).parent)
    name = module_name()
    cc = CC(name)
    cc.output_dir = str(out)
    cc.verbose = False
    argtypes = [numba.typeof(a) for a in synthetic_split.example_args()]
    cc.export("split_into", types.void(*argtypes))(synthetic_split.split_into.py_func)
    from marketlake.kernels.aot import compile_module

    return compile_module(cc, out, "_split_", release_gil=True)

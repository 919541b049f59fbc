"""The kernels compiled ahead of time: an extension module that runs small calls without numba.

Importing numba and loading its cached kernels cost a fresh process about 0.4 s of CPU (0.14 s
the import, 0.27 s the load, medians of 3 here), more than all the kernel work of a nightly
increment (2,600 series, one new bar each: 12 calls, 0.07 s). The build step (``setup.py``)
compiles the entry points a call of ``kernels.compute``, a resume and a full recompute's
layout need -- the driver ``run_plan``, the symbol-run scans, the run gather, the seeded
indicators' continuations and the layout's period order and gathers -- with numba's
ahead-of-time compiler (``numba.pycc``) into an extension module ``_kernels_<key>`` beside
this file, which imports in milliseconds; numba is not loaded at all. pycc has no parallel
target, so there a ``prange`` is a plain loop: one thread, as fast as numba's driver on one
thread (400k bars, the default set: 19 ms either way). :func:`entry` gives it calls of up
to :data:`SERIAL_ROWS` bars; larger ones go to numba's parallel kernels.

``<key>`` hashes the kernel sources that hold compiled code, :mod:`.signatures`, the entry
points exported and the build recipe: an edited source never meets an older build. Without a
module of its key (no C compiler at build time, a numba without ``pycc``, an edited checkout
not rebuilt) :func:`function` gives None and the callers use numba, as before. Like the jitted
kernels (``nogil=True``) the module lets go of Python's lock while it runs, and like them it
gives inf/NaN for a division by zero (numba's ``numpy`` error model; pycc's default raises).

The module is built per CPU level (:data:`LEVELS`), never for the build machine's own CPU
(its features would make the module fail on an older one): on x86-64 for the x86-64-v3 level
(AVX2, FMA, BMI: Intel since 2013, AMD since 2015) and for a generic CPU of the architecture,
elsewhere for the generic one. A process loads the best level whose instructions its CPU has
(its ``/proc/cpuinfo`` flags). On the v3 level the kernels' four-wide steps are real vectors:
200k bars (a chunk of a nightly's resume) compute ADX in 3.1-3.6 ms against 10.1 ms for the
generic build, MACD in 2.8 against 3.9 ms. Every level is numba's compilation of the same
source for the same types without fast-math (no fused or reordered arithmetic), so the values
are numba's bit for bit at every level (``tests/kernels/test_kernels_aot.py``).

pycc's wrappers do not check argument types: an array of another dtype or layout would be
read as if it were right. :func:`function` therefore wraps each entry point's exports (one
per signature of its example calls, :func:`.signatures.example_calls`) in a check that
picks the export whose types the call's match, and raises :class:`ArgumentTypes` (a
TypeError) when none does instead of computing from misread memory. :func:`entry` is what
callers use: the module's entry point for a small call (handing a call of other types to
numba, which compiles them), numba's otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from marketlake.kernels._cache import compiled_sources
from marketlake.kernels.signatures import MODULES, example_calls

_PKG = Path(__file__).resolve().parent
_PACKAGE = __name__.rpartition(".")[0]
# the entry points compiled ahead of time: what ``kernels.compute``, a resume and a full
# recompute's layout call (every signature of their example calls)
EXPORTS = (
    "run_plan",
    "scan_runs",
    "scan_string_views",
    "run_gather_index",
    "ema_resume",
    "atr_resume",
    "obv_resume",
    "rsi_states",
    "macd_states",
    "adx_states",
    "supertrend_states",
    "rsi_continue",
    "macd_continue",
    "adx_continue",
    "supertrend_continue",
    "period_order",
    "take_valid",
    "take",
)
SERIAL_ROWS = 262_144  # bars of the largest call run by the module (see :func:`entry`)
# the CPU levels a module is built for, best first: LLVM's CPU name ("": generic) and the
# /proc/cpuinfo flags a CPU needs to run it (x86-64-v3: AVX, AVX2, BMI1/2, F16C, FMA, LZCNT,
# MOVBE, XSAVE)
LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "x86-64-v3",
        frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    ),
    ("", frozenset()),
)
# How :func:`build` compiles (with the level's CPU); part of the key, so a module built
# another way is never loaded.
_RECIPE = b"numba.pycc, %s cpu, release_gil, error_model=numpy"
_LOCK = threading.Lock()
_FUNCTIONS: dict[str, Callable[..., object]] | None = None
_LOADED: str | None = None  # the name of the module loaded, once one is


def key(cpu: str = "") -> str:
    """The build key of the current sources for the CPU level ``cpu``: the modules whose
    edits change machine code (``kernels._cache.compiled_sources``), the argument types
    (:mod:`.signatures`), the entry points exported and the recipe."""
    recipe = _RECIPE % (cpu or "generic").encode()
    h = hashlib.blake2b(recipe + b"\0" + ",".join(EXPORTS).encode(), digest_size=8)
    sources = [*compiled_sources(), ("signatures.py", (_PKG / "signatures.py").read_bytes())]
    for name, src in sources:
        h.update(b"\0" + name.encode() + b"\0" + src)
    return h.hexdigest()


def module_name(cpu: str | None = None) -> str:
    """The name of the extension module built from the current sources for the CPU level
    ``cpu``; by default the one this process loaded (else the best its CPU runs)."""
    if cpu is None:
        function("run_plan")
        return _LOADED or module_name(runnable()[0])
    return f"_kernels_{key(cpu)}"


def runnable(flags: frozenset[str] | None = None) -> list[str]:
    """The levels of :data:`LEVELS` a CPU with ``flags`` (default: this machine's) runs,
    best first; the generic level always."""
    have = _cpu_flags() if flags is None else flags
    return [cpu for cpu, need in LEVELS if need <= have]


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _cpu_flags() -> frozenset[str]:
    """This machine's CPU flags as Linux reports them on x86-64 (empty elsewhere: the
    generic build only)."""
    if not _x86():
        return frozenset()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def function(name: str) -> Callable[..., object] | None:
    """The export ``name`` of the module built for the current sources, wrapped in its
    argument check; None when there is no such module."""
    global _FUNCTIONS, _LOADED
    if _FUNCTIONS is None:
        with _LOCK:
            if _FUNCTIONS is None:
                for cpu in runnable():  # the best level built of those this CPU runs
                    module = module_name(cpu)  # hashes the sources: once
                    found = _load(module)
                    if found:
                        _LOADED = module
                        break
                _FUNCTIONS = found
    return _FUNCTIONS.get(name)


class ArgumentTypes(TypeError):
    """A call's argument types are none of an export's signatures."""


_OR_NUMBA: dict[str, Callable[..., object]] = {}


def entry(name: str, rows: int) -> Callable[..., object]:
    """The entry point ``name`` for a call over ``rows`` bars: the module's, one thread, up
    to :data:`SERIAL_ROWS` bars when it is built (numba's for a call of other argument types:
    it compiles them); else numba's (parallel where the kernel is)."""
    if rows <= SERIAL_ROWS and function(name) is not None:
        return _OR_NUMBA.get(name) or _OR_NUMBA.setdefault(name, _or_numba(name))
    return _numba(name)


def _numba(name: str) -> Callable[..., object]:
    """numba's dispatcher of ``name``, its cache checked against the sources first."""
    from marketlake.kernels._cache import ensure_fresh_cache

    ensure_fresh_cache()
    return getattr(importlib.import_module(f"{_PACKAGE}.{MODULES[name]}"), name)


def _or_numba(name: str) -> Callable[..., object]:
    built = function(name)
    assert built is not None

    def call(*args):
        try:
            return built(*args)
        except ArgumentTypes:  # raised before anything ran
            return _numba(name)(*args)

    call.__name__ = call.__qualname__ = name
    return call


def built() -> bool:
    """Whether the module of the current sources is there (and loads)."""
    return function("run_plan") is not None


def _load(name: str) -> dict[str, Callable[..., object]]:
    try:
        module = importlib.import_module(f"{_PACKAGE}.{name}")
    except ImportError:
        return {}
    if not all(hasattr(module, n) for n in EXPORTS):  # not a build of this recipe
        return {}
    exports: dict[str, list[tuple[Callable[..., object], tuple]]] = {}
    for fn, args in example_calls():
        if fn in EXPORTS:
            exports.setdefault(fn, []).append(
                (getattr(module, _export_name(fn, len(exports.get(fn, [])))), args)
            )
    return {n: _checked(n, exports[n]) for n in EXPORTS}


def _export_name(name: str, k: int) -> str:
    """The module's name of the ``k``-th signature of ``name`` (the first keeps the name)."""
    return name if k == 0 else f"{name}_{k}"


def _kind(a: object) -> tuple:
    if isinstance(a, np.ndarray):
        return ("array", a.dtype.str, a.ndim)
    if isinstance(a, (bool, np.bool_)):
        return ("bool",)
    if isinstance(a, (int, np.integer)):
        return ("int",)
    if isinstance(a, (float, np.floating)):
        return ("float",)
    return ("other", type(a).__name__)


def _checked(
    name: str, signatures: list[tuple[Callable[..., object], tuple]]
) -> Callable[..., object]:
    """The exports of ``name`` behind a check that picks the one whose example call's
    argument types the call's match: the same dtype and dimensions, C-contiguous, and
    writable where the example is; TypeError when none does."""
    kinds = [[_kind(a) for a in example] for _, example in signatures]
    writable = [
        [isinstance(a, np.ndarray) and a.flags.writeable for a in example]
        for _, example in signatures
    ]

    def matches(k: int, args: tuple) -> int | None:
        """The first argument of ``args`` that does not match signature ``k`` (None: all)."""
        if len(args) != len(kinds[k]):
            return -1
        for i, a in enumerate(args):
            if _kind(a) != kinds[k][i] or (
                kinds[k][i][0] == "array"
                and (not a.flags.c_contiguous or (writable[k][i] and not a.flags.writeable))
            ):
                return i
        return None

    def call(*args):
        for k, (fn, _) in enumerate(signatures):
            if matches(k, args) is None:
                return fn(*args)
        example = signatures[0][1]
        if len(args) != len(example):
            raise ArgumentTypes(f"{name} takes {len(example)} arguments, got {len(args)}")
        i = matches(0, args)
        raise ArgumentTypes(
            f"{name}: argument {i} is {_describe(args[i])}, not {_describe(example[i])}"
        )

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}`` compiled ahead of time, its arguments checked."
    return call


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        layout = "C" if a.flags.c_contiguous else "non-contiguous"
        access = "writable" if a.flags.writeable else "read-only"
        return f"a {a.ndim}-d {a.dtype} array ({layout}, {access})"
    return type(a).__name__


def build_all(out_dir: Path | None = None) -> list[Path]:
    """:func:`build` of every level of :data:`LEVELS` the build machine's architecture has
    (x86-64: both; elsewhere the generic one), the generic one first: a level that fails to
    build (a compiler without it) is reported on stderr and leaves the others; run by
    ``setup.py``."""
    levels = [cpu for cpu, _ in reversed(LEVELS) if _x86() or not cpu]
    keep = {module_name(cpu) for cpu in levels}
    built = []
    for cpu in levels:
        try:
            built.append(build(out_dir, cpu, keep=keep))
        except Exception as exc:  # noqa: BLE001 -- the generic level still serves
            if not cpu:
                raise
            print(f"warning: kernels not built for {cpu}: {exc}", file=sys.stderr)
    return built


def build(out_dir: Path | None = None, cpu: str = "", *, keep: set[str] = frozenset()) -> Path:
    """Compile :data:`EXPORTS` into ``module_name(cpu)`` in ``out_dir`` (default: this
    package's folder) with ``numba.pycc`` for the CPU level ``cpu`` (LLVM's name, "":
    generic), for exactly the types of their example calls; the module's path. Builds of other
    keys there are removed, but those named in ``keep``. Needs numba, numpy, a C compiler and
    Python's headers."""
    import warnings

    import numba

    with warnings.catch_warnings():  # pycc is "pending deprecation" with no replacement yet
        warnings.simplefilter("ignore")
        from numba.pycc import CC

    out = Path(out_dir or _PKG)
    name = module_name(cpu)
    cc = CC(name)
    cc.output_dir = str(out)
    cc.verbose = False
    # a level, not the build machine's own CPU: no instruction it has and another lacks
    cc.target_cpu = cpu
    count: dict[str, int] = {}
    for fn, args in example_calls():
        if fn not in EXPORTS:
            continue
        dispatcher = getattr(importlib.import_module(f"{_PACKAGE}.{MODULES[fn]}"), fn)
        argtypes = tuple(numba.typeof(a) for a in args)
        dispatcher.compile(argtypes)
        ret = dispatcher.overloads[argtypes].signature.return_type
        cc.export(_export_name(fn, count.get(fn, 0)), ret(*argtypes))(dispatcher.py_func)
        count[fn] = count.get(fn, 0) + 1
    return compile_module(cc, out, "_kernels_", keep=keep, release_gil=True, error_model="numpy")


def compile_module(
    cc, out: Path, prefix: str, *, keep: set[str] = frozenset(), **flags: object
) -> Path:
    """Compile ``cc`` (a ``numba.pycc.CC``) into ``out`` with numba's compile ``flags`` set as
    the jitted functions' options set them (``release_gil=True`` for ``nogil``: the module's
    wrapper unboxes the arrays, then lets go of Python's lock around the call), after removing
    the builds of other keys there (``prefix*``) but ``keep``'s; the module's path. pycc makes
    its flags itself, taking none from its caller: its flags class is swapped for the compile."""
    import warnings

    with warnings.catch_warnings():  # pycc is "pending deprecation" with no replacement yet
        warnings.simplefilter("ignore")
        from numba.pycc import compiler as pycc_compiler

    name = cc.name
    mine = {name, *keep}
    for old in out.glob(f"{prefix}*"):  # builds of earlier sources
        if old.is_file() and old.name.split(".")[0] not in mine:
            old.unlink()
    plain = pycc_compiler.Flags

    class AsJitted(plain):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for k, v in flags.items():
                setattr(self, k, v)

    pycc_compiler.Flags = AsJitted
    try:
        cc.compile()
    finally:
        pycc_compiler.Flags = plain
    (path,) = out.glob(name + ".*")
    return path


__all__ = [
    "ArgumentTypes",
    "EXPORTS",
    "SERIAL_ROWS",
    "LEVELS",
    "build",
    "build_all",
    "built",
    "compile_module",
    "entry",
    "function",
    "key",
    "module_name",
    "runnable",
]

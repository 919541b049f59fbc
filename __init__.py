"""marketlake: keep market data in sync.

Providers land bars, profiles and fundamentals in a lake of Delta tables (``marketlake.lake``);
numba kernels compute indicators over polars frames (``marketlake.kernels``); DuckDB and ADBC
load only the deltas into PostgreSQL for serving (``marketlake.pipeline``).
"""

import os as _os

# polars' allocator (jemalloc) hands pages it has held unused for a while back to the system
# at once (MADV_DONTNEED), so the next batch of a stage faults them in again, zeroed: about
# half the page faults of a compute or an import. Kept as lazily freeable (MADV_FREE) instead,
# the system reclaims them only under memory pressure. Read when polars loads, so set before
# any import of it; a value the environment already holds is kept.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "muzzy_decay_ms:-1")

# numpy's OpenBLAS starts a worker thread per further core when numpy loads, and an idle
# worker spins for 2**28 cycles before it sleeps (OpenBLAS's THREAD_TIMEOUT): about 0.1 s of
# CPU in every fresh process, though nothing here calls BLAS. The shortest timeout (2**4)
# lets it sleep at once; BLAS calls stay multithreaded. Read when numpy loads; a value the
# environment already holds is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# pyarrow's allocator (mimalloc) reserves its arenas as transparent huge pages: each first
# touch then faults in 2 MB, and on a machine whose free memory is fragmented (right after
# another process freed gigabytes) the kernel compacts memory to find it, in our time. The
# buffers arrow allocates here (parquet pages, exported frames) are streamed once: plain
# pages serve them as well (a 10M-row files import: 50-60 huge-page faults gone, about 3%
# less CPU). Read when pyarrow loads; a value the environment already holds is kept.
_os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")

# Whether importing ``marketlake.kernels`` starts loading numba and its cached kernels in a
# background thread (``kernels._cache.preload``), so that a script's first large
# ``kernels.compute`` finds them loaded. ``marketlake.pipeline`` turns it off when imported:
# most of its runs are increments, which the kernels compiled ahead of time run without numba
# (``kernels.aot``), and a run that needs numba starts the load itself.
PRELOAD_KERNELS = True

__version__ = "0.1.0"

"""marketlake: keep market data in sync.

Providers land bars, profiles and fundamentals in a lake of Delta tables (``marketlake.lake``);
numba kernels compute indicators over polars frames (``marketlake.kernels``); DuckDB and ADBC
load only the deltas into PostgreSQL for serving (``marketlake.pipeline``).
"""

__version__ = "0.1.0"
